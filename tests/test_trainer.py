"""The trainer: exact resume, feature cache, run folder, CLI train + eval, configs and overrides, bad input, and
two processes under `accelerate launch` matching one. Tiny settings throughout (``hf-config:clip-tiny``, 40
SynthWorld videos of 32 px)."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from launch_helpers import check_launch
from videoadapt.cli import main
from videoadapt.data.formats import load_task_data
from videoadapt.data.records import TaskData
from videoadapt.errors import VideoadaptError, VideoDecodeError
from videoadapt.inference.evaluate import evaluate_run
from videoadapt.model import build as build_module
from videoadapt.model import data as data_module
from videoadapt.model.build import build_encoder
from videoadapt.model.config import load_config
from videoadapt.tasks import build_task, task_names
from videoadapt.tasks.base import text_adapter_spec
from videoadapt.train import trainer as trainer_module
from videoadapt.train.data import EpochPlan
from videoadapt.train.schedule import lr_at
from videoadapt.train.trainer import Trainer, TrainingInterrupted, train
from videoadapt.utils.checkpoint import find_checkpoint, load_checkpoint
from videoadapt.utils.safe_io import load_tensors

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = [
    "model.backbone=hf-config:clip-tiny",
    "data.options.videos=40",
    "data.options.size=32",
    "data.options.frames=8",
    "data.frames=4",
    "run.batch_size=8",
    "run.progress=false",
    "run.log_every=1",
]


def tiny(*overrides: str, path: str | Path | None = None):
    return load_config(path, overrides=[*TINY, *overrides])


# --- schedule and data plan -------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_the_floor():
    rates = [lr_at(s, 1.0, total_steps=10, warmup_steps=2, min_ratio=0.1) for s in range(10)]
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[1:], rates[2:], strict=False))
    assert lr_at(10, 1.0, 10, 2, 0.1) == pytest.approx(0.1)


def test_epoch_plan_is_seeded_and_split_across_processes():
    plan = EpochPlan(20, 8, seed=3)
    assert len(plan) == 2  # the incomplete batch is dropped
    assert plan.batch(0, 0) == plan.batch(0, 0)
    assert plan.batch(0, 0) != plan.batch(1, 0)
    halves = plan.batch(1, 1, rank=0, world=2) + plan.batch(1, 1, rank=1, world=2)
    assert halves == plan.batch(1, 1)


# --- exact resume ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", ["head only", "backbone and head"])
def test_resume_is_exact(tmp_path, groups):
    """6 optimizer steps straight == 3 steps, stop, resume, 3 more: bitwise, with dropout, gradient accumulation,
    warm-up and an epoch boundary in between (the plan has 4 micro-batches = 2 steps per epoch); with a frozen
    backbone (one learning-rate group) and with LoRA in it at its own rate (two)."""
    overrides = [
        "run.epochs=3",
        "run.grad_accum=2",
        "run.warmup_steps=2",
        "model.head.dropout=0.3",
        "data.val_split=null",
        "run.checkpoint_every=2",
    ]
    if groups == "backbone and head":
        overrides += ["model.paradigm=lora", "run.backbone_lr=2e-4"]
    straight = tmp_path / "straight"
    train(tiny(*overrides), straight)
    interrupted = tmp_path / "interrupted"
    assert Trainer(tiny(*overrides), interrupted).fit(stop_at=3) == {"stopped_at": 3}
    state = load_checkpoint(find_checkpoint(interrupted / "checkpoints" / "last"))
    assert state.step == 3 and state.extra["position"] == {"step": 3, "epoch": 1, "batch": 2}
    backbone_lr = 2e-4 if groups == "backbone and head" else 1e-3
    assert state.extra["schedule"]["base_lr"] == {"head": 1e-3, "backbone": backbone_lr}
    # The rates of the 4th update: warm-up is over (2 steps), cosine progress (3 - 2) / (6 - 2).
    expected = {
        name: base * 0.5 * (1 + math.cos(math.pi / 4)) for name, base in state.extra["schedule"]["base_lr"].items()
    }
    assert state.extra["schedule"]["lr"] == pytest.approx(expected)
    roles = [group["group"] for group in state.optimizer["param_groups"]]
    # LoRA matrices all decay (no biases); the head has both kinds.
    assert roles == (["backbone", "head", "head"] if groups == "backbone and head" else ["head", "head"])
    with pytest.raises(VideoadaptError, match="--resume"):
        Trainer(tiny(*overrides), interrupted).fit()
    if groups == "head only":
        # A log.csv written before the backbone group (no backbone_lr column) is continued, not dropped.
        with open(interrupted / "log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        with open(interrupted / "log.csv", "w", newline="") as handle:
            old = [c for c in rows[0] if c != "backbone_lr"]
            writer = csv.DictWriter(handle, fieldnames=old, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    train(tiny(*overrides), interrupted, resume=True)

    a, b = load_tensors(straight / "model.safetensors"), load_tensors(interrupted / "model.safetensors")
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name
    opt_a = load_tensors(straight / "checkpoints" / "last" / "optimizer.safetensors")
    opt_b = load_tensors(interrupted / "checkpoints" / "last" / "optimizer.safetensors")
    assert all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a)
    # The log has one row per step: the resumed run does not repeat or lose any.
    with open(interrupted / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    with open(straight / "log.csv") as handle:
        assert [(r["lr"], r["backbone_lr"]) for r in csv.DictReader(handle)] == [
            (r["lr"], r["backbone_lr"]) for r in rows
        ]


# --- learning-rate groups ----------------------------------------------------------------------------------


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_backbone_and_head_train_at_their_own_rates(tmp_path):
    """LoRA in the backbone at run.backbone_lr, the head at run.lr, both on warm-up + cosine: each optimizer group
    holds exactly one side's parameters, log.csv and metrics.json report both rates and group sizes."""
    config = tiny("model.paradigm=lora", "run.lr=1e-3", "run.backbone_lr=1e-4", "run.max_steps=4", "run.warmup_steps=1")
    trainer = Trainer(config, tmp_path)
    metrics = trainer.fit()
    model = trainer.model
    in_backbone = {id(p) for p in model.encoder.ilfm.parameters() if p.requires_grad}
    backbone_size = sum(p.numel() for p in model.encoder.ilfm.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < backbone_size < total
    for group in trainer.optimizer.param_groups:
        assert {id(p) in in_backbone for p in group["params"]} == {group["group"] == "backbone"}
    assert metrics["param_groups"] == {
        "backbone": {"parameters": backbone_size, "base_lr": 1e-4},
        "head": {"parameters": total - backbone_size, "base_lr": 1e-3},
    }
    # Warm-up of one step, then cosine over the remaining 3: 1, 1, 0.75, 0.25 of each base rate.
    factors = [1.0, 1.0, 0.75, 0.25]
    rows = _rows(tmp_path)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3 * f for f in factors])
    assert [float(r["backbone_lr"]) for r in rows] == pytest.approx([1e-4 * f for f in factors])
    # What the optimizer used for the last update, per group.
    last = {g["group"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert last == pytest.approx({"backbone": 2.5e-5, "head": 2.5e-4})


def test_parameters_a_head_declares_as_backbone_copies_take_the_backbone_rate(tmp_path, monkeypatch):
    """A video head's ``backbone_parameters()`` (a copy of the backbone inside the head) join the backbone group,
    even with the ILFM itself frozen."""
    real_build = build_module.build_encoder
    declared: list[torch.nn.Parameter] = []

    def build(config, ilfm=None):
        encoder = real_build(config, ilfm)
        declared.extend(p for p in encoder.head.parameters() if p.ndim >= 2)
        encoder.head.backbone_parameters = lambda: declared[:1]
        return encoder

    monkeypatch.setattr(build_module, "build_encoder", build)
    trainer = Trainer(tiny("run.max_steps=1", "run.backbone_lr=1e-5", "data.val_split=null"), tmp_path)
    metrics = trainer.fit()
    groups = {g["group"]: g for g in trainer.optimizer.param_groups}
    assert [id(p) for p in groups["backbone"]["params"]] == [id(declared[0])]
    assert metrics["param_groups"]["backbone"] == {"parameters": declared[0].numel(), "base_lr": 1e-5}


def test_resuming_with_other_rates_says_so(tmp_path, capsys):
    """Changing a base rate on resume is allowed (a gentler backbone for the rest of the run); the schedule then
    follows another curve, and the trainer says which rates changed."""
    settings = ("model.paradigm=lora", "run.max_steps=2", "data.val_split=null", "run.backbone_lr=1e-4")
    assert Trainer(tiny(*settings), tmp_path).fit(stop_at=1) == {"stopped_at": 1}
    capsys.readouterr()
    metrics = train(tiny(*settings, "run.backbone_lr=1e-5"), tmp_path, resume=True)
    err = capsys.readouterr().err
    assert "base rates {'head': 0.001, 'backbone': 0.0001} are now {'head': 0.001, 'backbone': 1e-05}" in err
    assert metrics["param_groups"]["backbone"]["base_lr"] == 1e-5
    # Step 2 follows the new base rate: the cosine's second half of 2 steps is 1/2 of it.
    assert float(_rows(tmp_path)[-1]["backbone_lr"]) == pytest.approx(0.5e-5)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("run.lr=0", "run.lr"),
        ("run.lr=-1e-3", "run.lr"),
        ("run.lr=fast", "run.lr"),
        ("run.backbone_lr=0", "run.backbone_lr"),
        ("run.backbone_lr=-1e-7", "run.backbone_lr"),
        ("run.backbone_lr=.nan", "run.backbone_lr"),
    ],
)
def test_a_non_positive_learning_rate_is_a_config_error(override, key):
    with pytest.raises(VideoadaptError, match=rf"{re.escape(key)} must be a positive, finite learning rate"):
        load_config(overrides=[override])


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "often"])
def test_eval_every_steps_must_be_a_whole_number_of_steps(value):
    with pytest.raises(VideoadaptError, match="run.eval_every_steps must be a whole number"):
        load_config(overrides=[f"run.eval_every_steps={value}"])


# --- learning curves ---------------------------------------------------------------------------------------


def test_the_progress_line_shows_the_last_and_the_best_validation(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("videoadapt.utils.progress.LINE_SECONDS", 0.0)  # a line for every update
    summary = train(tiny("run.epochs=2", "run.eval_every_steps=3", "run.progress=true"), tmp_path / "r")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train recognition")]
    shown = [line for line in lines if " · val top1 " in line]
    assert shown, lines
    history, best = summary["validation"], summary["best"]
    assert shown[-1].endswith(f" · val top1 {history[-1]['top1']:.4g} (best {best['value']:.4g} @ {best['step']})")
    assert not any(" · val " in line for line in lines[: lines.index(shown[0])])  # nothing before the first


def test_learning_curve_validates_every_n_steps_and_resumes_exactly(tmp_path, monkeypatch):
    """run.eval_every_steps=3 over 2 epochs of 4 steps: validations at steps 3 and 6, at each epoch's end (4, 8),
    none twice; each with the training seconds so far (validation and checkpoints excluded: both are slowed down
    here by 0.2 s a call, which must not show) and the clips seen. Stopped at a validated step and resumed, the
    history, best step and weights are those of the uninterrupted run."""
    settings = ("run.epochs=2", "run.eval_every_steps=3", "model.head.dropout=0.3", "run.checkpoint_every=1")
    real_evaluate, real_save = trainer_module.evaluate_data, trainer_module.ckpt.save_checkpoint
    calls = {"evaluate": 0, "save": 0}

    def slow(name, function):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            time.sleep(0.2)
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(trainer_module, "evaluate_data", slow("evaluate", real_evaluate))
    monkeypatch.setattr(trainer_module.ckpt, "save_checkpoint", slow("save", real_save))
    straight = train(tiny(*settings), tmp_path / "straight")
    history = straight["validation"]
    assert [h["step"] for h in history] == [3, 4, 6, 8] and calls["evaluate"] == 4
    assert [h["clips_seen"] for h in history] == [24, 32, 48, 64] and straight["train"]["clips_seen"] == 64
    seconds = [h["train_seconds"] for h in history]
    assert 0 < seconds[0] and all(a < b for a, b in zip(seconds, seconds[1:], strict=False))
    assert seconds[-1] <= straight["train"]["train_seconds"]
    paused = 0.2 * (calls["evaluate"] + calls["save"])
    assert straight["train"]["train_seconds"] <= straight["train"]["seconds"] - paused
    top1 = [h["top1"] for h in history]
    assert straight["best"]["step"] == history[top1.index(max(top1))]["step"]

    run = tmp_path / "interrupted"
    assert Trainer(tiny(*settings), run).fit(stop_at=3) == {"stopped_at": 3}
    state = load_checkpoint(find_checkpoint(run / "checkpoints" / "last"))
    assert [h["step"] for h in state.extra["history"]] == [3]
    resumed = train(tiny(*settings), run, resume=True)

    def without_clock(entries):
        return [{k: v for k, v in h.items() if k != "train_seconds"} for h in entries]

    assert without_clock(resumed["validation"]) == without_clock(history)
    assert resumed["best"] == straight["best"]
    assert resumed["validation"][0]["train_seconds"] == state.extra["history"][0]["train_seconds"]
    resumed_seconds = [h["train_seconds"] for h in resumed["validation"]]
    assert all(a < b for a, b in zip(resumed_seconds, resumed_seconds[1:], strict=False))
    a, b = load_tensors(tmp_path / "straight" / "model.safetensors"), load_tensors(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_validation_by_steps_alone_and_early_stopping_on_it(tmp_path):
    """With run.eval_every=0 the step validations (and the final one) still run; patience counts them."""
    settings = ("run.epochs=3", "run.eval_every=0", "run.eval_every_steps=2", "run.lr=1e-12", "run.patience=2")
    metrics = train(tiny(*settings, "run.monitor=top1"), tmp_path)
    # lr 1e-12 never improves top-1: the first validation is the best, the third stops the run.
    assert [h["step"] for h in metrics["validation"]] == [2, 4, 6]
    assert metrics["stopped_early"] and metrics["steps"] == 6 and metrics["best"]["step"] == 2
    assert load_checkpoint(find_checkpoint(tmp_path / "checkpoints" / "last")).step == 6


# --- run folder, early stopping ---------------------------------------------------------------------------


def test_run_folder_and_early_stopping(tmp_path):
    # lr 1e-12 (0 is refused) moves the weights by ~1e-12, far below any margin between two logits, so the validation
    # metric never improves: patience 1 stops after the second validation.
    metrics = train(tiny("run.epochs=5", "run.lr=1e-12", "run.patience=1", "run.monitor=top1"), tmp_path)
    assert metrics["stopped_early"] and len(metrics["validation"]) == 2
    assert metrics["weights"] == "best" and metrics["best"]["step"] == 4
    for name in ("config.yaml", "model.safetensors", "vocabulary.json", "metrics.json", "log.csv"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoints" / "last" / "state.json").is_file()
    assert json.loads((tmp_path / "vocabulary.json").read_text())["classes"]
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) >= {"step", "loss", "lr", "clips_per_s"}
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))  # no pickles


# --- feature cache -----------------------------------------------------------------------------------------


def test_cache_means_the_backbone_never_runs_in_training(tmp_path, monkeypatch):
    """With a frozen backbone and run.cache, features are extracted once; training epochs (and a second run on the
    same cache) never call the vision tower."""
    calls = {"n": 0}
    real_build = build_module.build_encoder

    def counting_build(config, ilfm=None):
        encoder = real_build(config, ilfm)
        tower = encoder.ilfm.vision_modules()[0]  # every image goes through the tower's first module
        tower.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
        return encoder

    monkeypatch.setattr(build_module, "build_encoder", counting_build)
    config = tiny("run.epochs=2", "run.cache=true", f"run.cache_dir={tmp_path / 'cache'}")
    trainer = Trainer(config, tmp_path / "run1")
    trainer.setup()
    after_extraction = calls["n"]
    assert trainer.use_cache and after_extraction > 1  # the width probe + extraction
    trainer.setup = lambda: None  # already set up
    metrics = trainer._fit(None)
    assert calls["n"] == after_extraction  # two epochs and two validations: not one backbone call
    assert metrics["cache"]["used"]

    # A second run finds the cache complete: only the width probe runs the backbone.
    calls["n"] = 0
    train(config, tmp_path / "run2")
    assert calls["n"] == 1

    # Same features, same result as decoding the videos every step (eval sampler in both).
    uncached = train(tiny("run.epochs=2", "data.train_sampler=uniform:4"), tmp_path / "run3")
    cached = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert cached["train"]["final_loss"] == pytest.approx(uncached["train"]["final_loss"], abs=1e-5)


@pytest.mark.parametrize("stream", ["motion", "motion+saliency"])
def test_extra_streams_train_from_the_cache_plus_pixels_as_from_video(tmp_path, stream):
    """A frozen backbone beside streams that read pixels: cached frame features (without patch tokens when no
    stream pools them) and decoded pixels give the run that encodes every clip live."""
    common = ["run.epochs=2", "data.train_sampler=uniform:4", "model.paradigm=extra_models"]
    common.append(f"model.options={{extra_models: {{stream: {stream}, channels: [8, 16]}}}}")
    live = train(tiny(*common), tmp_path / "live")
    cached = train(tiny(*common, "run.cache=true", f"run.cache_dir={tmp_path / 'cache'}"), tmp_path / "cached")
    assert cached["cache"]["used"] and not live["cache"]["used"]
    assert cached["train"]["final_loss"] == pytest.approx(live["train"]["final_loss"], abs=1e-5)


def test_cache_sampler_draws_the_train_frames_from_a_denser_cache(tmp_path):
    """data.cache_sampler=uniform:8 caches every frame of the 8-frame videos; each step then applies the random
    train sampler (uniform:4:random) to the cached rows, which must give the run that decodes those same random
    frames from video every step."""
    common = ("run.epochs=2", "data.val_split=null", "data.train_sampler=uniform:4:random")
    cached = train(
        tiny(*common, "run.cache=true", "data.cache_sampler=uniform:8", f"run.cache_dir={tmp_path / 'c'}"),
        tmp_path / "cached",
    )
    live = train(tiny(*common), tmp_path / "live")
    frozen = train(tiny(*common, "run.cache=true", f"run.cache_dir={tmp_path / 'c4'}"), tmp_path / "frozen")
    assert cached["cache"]["used"] and frozen["cache"]["used"]
    assert cached["train"]["final_loss"] == pytest.approx(live["train"]["final_loss"], abs=1e-5)
    # Without it the cache holds the eval frames only, so the run differs (no jitter): the check above can fail.
    assert frozen["train"]["final_loss"] != pytest.approx(live["train"]["final_loss"], abs=1e-5)


def test_cache_sampler_refuses_a_time_based_train_sampler(tmp_path):
    config = tiny("run.cache=true", "data.cache_sampler=uniform:8", "data.train_sampler=fps:2", "run.max_steps=1")
    with pytest.raises(VideoadaptError, match="counts seconds"):
        train(config, tmp_path)


def test_cache_is_ignored_when_the_backbone_trains(tmp_path):
    metrics = train(tiny("run.max_steps=1", "run.cache=true", "model.paradigm=lora", "data.val_split=null"), tmp_path)
    assert not metrics["cache"]["used"]


# --- configs -------------------------------------------------------------------------------------------------


def test_config_precedence_and_unknown_keys(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("model:\n  paradigm: lora\n  head: {classifier: text}\nrun:\n  lr: 0.5\n  epochs: 3\n")
    config = load_config(yaml, {"run.task": "recognition", "run.epochs": 7}, ["run.lr=1e-3", "data.options.qa=x"])
    assert config.model.paradigm == "lora" and config.model.head.classifier == "text"
    assert config.run.epochs == 7 and config.run.lr == pytest.approx(1e-3)
    assert config.data.options.qa == "x"  # free-form section
    with pytest.raises(VideoadaptError, match="lrr"):
        load_config(overrides=["run.lrr=1"])
    with pytest.raises(VideoadaptError, match="not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path, tiny_backbone):
    config = load_config(path)
    assert config.run.task in set(task_names())
    if config.model.backbone == "mllm":
        from mllm_helpers import make_mllm

        ilfm = make_mllm()  # the embedded MLLM's structure on a tiny random LM: model.mllm must apply to it
    else:
        assert config.model.backbone in ("tiny", "tiny-owl")  # TinyOWL is TinyCLIP with detection heads
        ilfm = copy.deepcopy(tiny_backbone)  # adapters go into the backbone in place
    # The paradigm options are the registered paradigms' own (an unknown option or stream is refused here).
    encoder = build_encoder(config, ilfm=ilfm)
    assert "+".join(encoder.paradigm_names) == str(config.model.paradigm)
    if config.model.backbone == "mllm":  # the settings reached the model (a template is a text with <video>)
        assert ilfm.config.template == config.model.mllm.template and "<video>" in ilfm.config.template
        assert ilfm.config.pool_output == tuple(config.model.mllm.pool_output)
    # Head options with a fixed set of values are known ones (an unknown text adapter or caption mode is refused).
    task = build_task(str(config.run.task), **OmegaConf.to_container(config.model.head))
    text_adapter_spec(task)
    if config.run.task == "retrieval":
        assert task.train_captions() in ("one", "all")


@pytest.fixture(scope="module")
def tiny_backbone():
    from videoadapt.foundation import load_backbone

    return load_backbone("tiny")


def test_shipped_configs_cover_every_task():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert "recognition-post_network.yaml" in names
    for task in ("retrieval", "qa", "captioning", "temporal_grounding", "st_grounding"):
        assert any(n.startswith(f"{task}-") for n in names), task


# --- CLI ----------------------------------------------------------------------------------------------------


def test_cli_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--task", "retrieval", "--paradigm", "post_network", "--backbone", "hf-config:clip-tiny"]
    args += ["--data", "synth", "--out", str(run), "--config", str(CONFIGS / "retrieval-post_network.yaml")]
    args += [o for o in TINY if not o.startswith("model.backbone")] + ["run.epochs=1", "run.lr=1e-3"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "retrieval" and result["items"] == 4
    assert {"t2v_R1", "v2t_R1", "Rsum"} <= set(result["metrics"])
    assert (run / "eval-test.json").is_file()
    # The config the run wrote is the resolved one: YAML, then flags, then overrides.
    saved = load_config(run / "config.yaml")
    assert saved.model.backbone == "hf-config:clip-tiny" and saved.run.lr == pytest.approx(1e-3)
    # A second train into the same folder refuses instead of overwriting.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("task", "keys", "extra"),
    [
        ("recognition", ("top1", "top5", "mean_class_accuracy"), []),
        ("qa", ("accuracy",), []),
        ("temporal_grounding", ("R1@0.5", "mIoU", "MR-mAP"), ["model.head.hidden=32", "model.head.layers=1"]),
        ("retrieval", ("t2v_R1", "v2t_R5", "Rsum"), []),
        ("st_grounding", ("m_tIoU", "m_vIoU", "vIoU@0.5"), ["model.head.hidden=32", "model.head.layers=1"]),
    ],
)
def test_eval_predictions_chain_into_score(tmp_path, capsys, task, keys, extra):
    """`eval --save-predictions DIR` writes what `score` reads, and score gives eval's own figures (issue 16)."""
    run = tmp_path / "run"
    assert main(["train", "--task", task, "--out", str(run), *TINY, "run.max_steps=2", *extra]) == 0
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["eval", "--run", str(run), "--save-predictions", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    suffix = "jsonl" if task == "temporal_grounding" else "json"
    pred, gt = out / f"predictions.{suffix}", out / f"ground_truth.{suffix}"
    assert evaluated["predictions"] == {pred.name: str(pred), gt.name: str(gt)}
    assert main(["score", "--task", task, "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in keys:
        assert scored["metrics"][key] == pytest.approx(evaluated["metrics"][key]), key


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path)]) == 2
    assert "not a finished training run" in capsys.readouterr().err


# --- bad input -----------------------------------------------------------------------------------------------


class _Unreadable:
    """A source whose clip ``bad`` cannot be decoded from its ``fail_from``-th request on (a file that breaks
    while training runs, like a network mount going away)."""

    def __init__(self, source, bad: str, fail_from: int) -> None:
        self.source, self.bad, self.fail_from, self.requests = source, bad, fail_from, 0

    def frames(self, ref, sampler=None):
        if ref.video_id == self.bad:
            self.requests += 1
            if self.requests >= self.fail_from:
                raise VideoDecodeError(f"/videos/{ref.video_id}.mp4", "truncated stream")
        return self.source.frames(ref, sampler)


def _with_unreadable_video(monkeypatch, position: int, fail_from: int = 1) -> str:
    real = data_module.load_split

    def load(config, split):
        data = real(config, split)
        if split != "train":
            return data
        source = _Unreadable(data.source, data.items[position].video.video_id, fail_from)
        return TaskData(data.task, split, data.items, source, data.origin, data.classes)

    monkeypatch.setattr(data_module, "load_split", load)  # training and eval read their splits through it
    return load_task_data("synth", "train", "recognition", videos=40, size=32, frames=8).items[position].video.video_id


def test_unreadable_video_mid_epoch_checkpoints_then_raises(tmp_path, monkeypatch):
    """The clip breaks in epoch 1's third batch (step 7 of 4 per epoch): the 6 completed steps are checkpointed
    even though no checkpoint was due, and the error names the item, the reason and how to continue."""
    settings = ("run.epochs=2", "data.val_split=null", "run.checkpoint_every=100", "model.head.dropout=0.3")
    straight = train(tiny(*settings), tmp_path / "straight")
    position = EpochPlan(32, 8, seed=0).batch(1, 2)[0]
    bad = _with_unreadable_video(monkeypatch, position, fail_from=2)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny(*settings), run)
    message = str(info.value)
    assert bad in message and "truncated stream" in message and "step 6" in message and "--resume" in message
    state = load_checkpoint(find_checkpoint(run / "checkpoints" / "last"))
    assert state.step == 6 and state.extra["position"] == {"step": 6, "epoch": 1, "batch": 2}
    # The clip is readable again (a fresh source): resuming from the error checkpoint ends where the uninterrupted
    # run ended, bitwise, dropout included.
    resumed = train(tiny(*settings), run, resume=True)
    assert resumed["steps"] == straight["steps"] == 8
    a, b = load_tensors(tmp_path / "straight" / "model.safetensors"), load_tensors(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_skip_bad_counts_unreadable_videos(tmp_path, monkeypatch):
    _with_unreadable_video(monkeypatch, EpochPlan(32, 8, seed=0).batch(0, 0)[0])
    metrics = train(tiny("run.epochs=1", "data.val_split=null", "data.skip_bad=true"), tmp_path)
    assert metrics["train"]["skipped_clips"] == 1 and metrics["steps"] == 4
    # eval reports what it scored, and where every other item went (issue 16 (c): it said 32 while scoring 31).
    result = evaluate_run(tmp_path, "train")
    assert result["items"] == 31 and result["skipped"]["unreadable_clips"] == 1
    assert result["skipped"]["items_the_task_refused"] == 0


# --- several processes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["recognition", "retrieval", "retrieval-all-captions"])
def test_two_processes_match_one(tmp_path, task):
    """MULTI-PROCESS (about 15 s each): `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo) trains the
    same weights as one process with the same global batch, each process taking half of it (retrieval gathers
    the other half's embeddings as negatives; with every caption per step, also which video owns each caption)."""
    settings = [*TINY, "run.epochs=2", "data.val_split=null", "model.head.dropout=0"]
    if task.startswith("retrieval"):
        settings = [s for s in settings if "dropout" not in s]
    if task == "retrieval-all-captions":
        task, settings = "retrieval", [*settings, "model.head.train_captions=all"]
    common = ["-m", "videoadapt", "train", "--task", task, "--data", "synth"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # accelerate is a dependency: its launcher sits next to this interpreter, on PATH or not.
    launcher = Path(sys.executable).with_name("accelerate")
    assert launcher.exists(), f"no accelerate launcher next to {sys.executable}"
    two = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    two += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517"]
    result = subprocess.run(
        [*two, *common, "--out", str(tmp_path / "two"), *settings],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_launch(result, tmp_path / "two" / "metrics.json")
    # `videoadapt train` lays the task's defaults under the settings: the one-process run takes them too.
    train(load_config(overrides=[*settings, f"run.task={task}"], recipe=True), tmp_path / "one")
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2
    one = load_tensors(tmp_path / "one" / "model.safetensors")
    two_w = load_tensors(tmp_path / "two" / "model.safetensors")
    assert one.keys() == two_w.keys()
    # Measured: recognition 2e-6, retrieval 1.3e-5 (Adam magnifies summation-order noise of near-zero gradients);
    # without gathering the negatives, retrieval differs by 2.5e-3.
    for name in one:
        torch.testing.assert_close(one[name], two_w[name], atol=1e-4, rtol=1e-4)
