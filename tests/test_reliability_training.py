"""Reliability of training (issue 7): a run killed with SIGKILL at a random step resumes to the bitwise result of
an uninterrupted one; checkpoints are atomic, verified on load, and a damaged one falls back to the previous one;
pickles are refused; a non-finite loss skips the step and too many in a row stop the run; loader workers that
raise, crash or hang on a video name it (or skip it with skip_bad) instead of hanging.

Tiny settings: the ``tiny-random`` backbone, 24 SynthWorld videos of 32 px, batches of 4."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from launch_helpers import check_launch
from videoadapt.data.formats import load_task_data
from videoadapt.data.records import TaskData
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.data.synthworld.disk import write_synthworld
from videoadapt.data.synthworld.world import SynthWorldConfig
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.loading import load_backbone
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.config import load_config
from videoadapt.model.task_model import TaskModel
from videoadapt.tasks import build_task
from videoadapt.train import data as data_module
from videoadapt.train import trainer as trainer_module
from videoadapt.train.data import EpochPlan, WorkerLoader
from videoadapt.train.trainer import Trainer, TrainingInterrupted, train
from videoadapt.utils import checkpoint as ckpt
from videoadapt.utils.safe_io import load_tensors

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = [
    "model.backbone=tiny-random",
    "data.options.videos=24",
    "data.options.size=32",
    "data.options.frames=8",
    "data.frames=4",
    "data.val_split=null",
    "run.batch_size=4",
    "run.progress=false",
    "run.log_every=1",
]
CHEAP = ["model.options.post_network.temporal=mean"]  # only the head trains: the fastest steps


def tiny(*overrides: str):
    return load_config(None, overrides=[*TINY, *overrides])


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> list[str]:
    """Settings that read the frozen backbone's features from one cache, extracted here once: the training runs
    below then never run the backbone (each reuses the complete cache as it is)."""
    directory = tmp_path_factory.mktemp("cache")
    settings = ["run.cache=true", f"run.cache_dir={directory}"]
    metrics = train(tiny(*CHEAP, *settings, "run.max_steps=1"), tmp_path_factory.mktemp("extract") / "run")
    assert metrics["cache"]["videos_encoded"] > 0
    return settings


def one_thread(function, *args, **kwargs):
    """Run ``function`` on one torch thread, as the subprocesses (OMP_NUM_THREADS=1) do: CPU results are bitwise
    reproducible only for the same number of threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def same_weights(a: Path, b: Path) -> None:
    x, y = load_tensors(a), load_tensors(b)
    assert x.keys() == y.keys() and x
    for name in x:
        assert torch.equal(x[name], y[name]), name


def log_rows(run: Path) -> list[tuple[str, ...]]:
    with open(run / "log.csv", newline="") as handle:
        return [(r["step"], r["epoch"], r["loss"], r["lr"]) for r in csv.DictReader(handle)]


def metrics_without_clock(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("seconds", "checkpoint_seconds", "clips_per_s", "train_seconds"):  # wall clock
        metrics["train"].pop(key)
    for entry in metrics["validation"]:
        entry.pop("train_seconds")
    return metrics


# --- 1. SIGKILL at a random step, then --resume ----------------------------------------------------------------


def _step_of(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoints" / "last" / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0  # not written yet, or between the renames of a checkpoint swap


def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(tmp_path, cached):
    """`videoadapt train` killed with SIGKILL once a checkpoint of a randomly chosen step exists (plus a random
    delay, so that the kill may land inside the next checkpoint write), then `videoadapt train --out RUN
    --resume`: model.safetensors (byte for byte), log.csv and metrics.json (less wall-clock fields) are those of
    an uninterrupted run. The temporal transformer trains (3 M parameters, 36 MB checkpoints) on cached features."""
    steps = 14
    settings = [*TINY, *cached, f"run.max_steps={steps}", "run.epochs=10", "run.checkpoint_every=1"]
    # `videoadapt train` lays recognition's defaults under these (the straight run below too); the shared cache
    # holds the eval sampler's frames, so no denser cache_sampler.
    settings += ["model.head.dropout=0.2", "data.cache_sampler=null"]
    chooser = random.Random(20261201)
    kill_after, delay = chooser.randint(2, steps - 5), chooser.uniform(0.0, 0.2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "videoadapt", "train", "--out", str(tmp_path / "killed")]
    victim = subprocess.Popen(
        [*command, *settings], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while _step_of(tmp_path / "killed") < kill_after:
            assert victim.poll() is None, f"the run ended before step {kill_after}: {victim.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.stderr.close()
    killed_at = _step_of(tmp_path / "killed")
    assert kill_after <= killed_at < steps and not (tmp_path / "killed" / "metrics.json").exists()

    # The resumed run (its own config.yaml) and, meanwhile, the uninterrupted one in this process.
    resumed = subprocess.Popen(
        [*command, "--resume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        # As the command trains: the recipe under the settings, the test split's videos opened up front.
        config = load_config(None, overrides=settings, recipe=True)
        one_thread(train, config, tmp_path / "straight", check_test_split=True)
        _, err = resumed.communicate(timeout=120)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 0, err
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert (straight / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
    same_weights(straight / "model.safetensors", killed / "model.safetensors")
    assert log_rows(killed) == log_rows(straight) and len(log_rows(straight)) == steps
    assert metrics_without_clock(killed) == metrics_without_clock(straight)
    # Nothing half-written is left: only the two kept checkpoints.
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["last", "previous"]
    assert not list(killed.rglob("*.partial"))


def test_a_log_row_cut_by_the_kill_is_dropped_on_resume(tmp_path):
    """The kill can land in the middle of appending a log.csv row: the resumed run keeps only whole rows up to
    its checkpoint's step, once each."""
    header = ",".join(trainer_module.LOG_COLUMNS)
    rows = [f"{s},0,1.5,0.001,0.0001,10.0,{s}.0" for s in (1, 2, 3)]
    (tmp_path / "log.csv").write_text("\n".join([header, *rows, "1"]))  # "1" of "12,..."
    fake = SimpleNamespace(out=tmp_path, position=trainer_module.Position(step=2))
    trainer_module.Trainer._start_log(fake)
    assert [r[0] for r in log_rows(tmp_path)] == ["1", "2"]


# --- 2. atomic, verified checkpoints ------------------------------------------------------------------------------


def _save(directory: Path, step: int, **kwargs) -> None:
    torch.manual_seed(step)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    ckpt.save_checkpoint(directory, step, dict(model.state_dict()), optimizer, {"note": step}, **kwargs)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the checksum can tell
    path.write_bytes(bytes(data))


def _pickle_instead(path: Path) -> None:
    torch.save({"weight": torch.zeros(3)}, path)


def _edit_state(path: Path) -> None:
    state = json.loads(path.read_text())
    state["step"] = 99  # valid JSON, wrong content
    path.write_text(json.dumps(state))


DAMAGE = {
    "truncated safetensors": (ckpt.MODEL, _truncate, r"truncated or replaced: \d+ bytes where state.json records \d+"),
    "missing file": (ckpt.OPTIMIZER, Path.unlink, "missing from the checkpoint"),
    "bad JSON": (ckpt.STATE, lambda p: p.write_text('{"step": 2, "rng'), "not valid UTF-8 JSON"),
    "non-UTF-8 JSON": (ckpt.STATE, lambda p: p.write_bytes(b"\xff\xfe{}"), "not valid UTF-8 JSON"),
    "checksum mismatch": (ckpt.MODEL, _flip_a_byte, "checksum mismatch: the file is damaged"),
    "state.json edited": (ckpt.STATE, _edit_state, "checksum mismatch: the file was changed"),
    "pickle in place": (ckpt.MODEL, _pickle_instead, "pickled .torch.save. checkpoint.*unpickling can run"),
    "state.json missing": (ckpt.STATE, Path.unlink, "incomplete checkpoint: state.json is missing"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, case):
    name, damage, reason = DAMAGE[case]
    last, previous = tmp_path / "last", tmp_path / "previous"
    _save(last, 1, previous=previous)
    _save(last, 2, previous=previous)
    assert ckpt.load_checkpoint(previous).step == 1 and ckpt.load_checkpoint(last).step == 2
    damage(last / name)
    warnings: list[str] = []
    found = ckpt.find_checkpoint(last, previous, warn=warnings.append)
    assert found == previous and ckpt.load_checkpoint(found).step == 1
    assert len(warnings) == 1 and re.search(reason, warnings[0]) and str(last) in warnings[0]
    with pytest.raises(ckpt.CheckpointError, match=reason):
        ckpt.load_checkpoint(last)
    # Neither usable: an error with both reasons.
    (previous / ckpt.MODEL).unlink()
    with pytest.raises(ckpt.CheckpointError, match="no usable checkpoint") as info:
        ckpt.find_checkpoint(last, previous, warn=None)
    assert re.search(reason, str(info.value)) and "previous/model.safetensors: missing" in str(info.value)


def test_the_first_save_after_a_fallback_keeps_the_good_previous(tmp_path):
    last, previous = tmp_path / "last", tmp_path / "previous"
    _save(last, 1, previous=previous)
    _save(last, 2, previous=previous)
    _flip_a_byte(last / ckpt.MODEL)  # only a checksum sees it: the cheap check at the swap would keep it
    assert ckpt.find_checkpoint(last, previous, warn=None) == previous
    _save(last, 2, previous=previous, keep_last=False)  # what the trainer does after resuming from previous
    assert ckpt.load_checkpoint(previous).step == 1 and ckpt.load_checkpoint(last).step == 2


class _Killed(BaseException):
    """Stands for SIGKILL inside save_checkpoint (BaseException: nothing in between catches it)."""


@pytest.mark.parametrize("crash", ["model write", "state write", "rename 1", "rename 2", "rename 3", "cleanup"])
def test_a_save_killed_at_any_point_leaves_a_usable_checkpoint(tmp_path, monkeypatch, crash):
    """Checkpoint 3 is being written over 2 (previous 1) when the process dies: the newest complete checkpoint
    is found, never a mixture; the next save succeeds."""
    last, previous = tmp_path / "last", tmp_path / "previous"
    for step in (1, 2):
        _save(last, step, previous=previous)
    real_rename, real_save_json, real_save_tensors = Path.rename, ckpt.save_json, ckpt.save_tensors
    real_rmtree = shutil.rmtree
    renames = {"n": 0}

    def rename(self, target):
        renames["n"] += 1
        if crash == f"rename {renames['n']}":
            raise _Killed
        return real_rename(self, target)

    def save_tensors(path, tensors, metadata=None):
        if crash == "model write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half a file")
            raise _Killed
        return real_save_tensors(path, tensors, metadata)

    def save_json(path, data):
        if crash == "state write":
            raise _Killed
        return real_save_json(path, data)

    def rmtree(path, ignore_errors=False):
        if crash == "cleanup" and path.name.endswith(".trash") and path.exists():
            raise _Killed
        return real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(ckpt, "save_tensors", save_tensors)
    monkeypatch.setattr(ckpt, "save_json", save_json)
    monkeypatch.setattr(ckpt.shutil, "rmtree", rmtree)
    with pytest.raises(_Killed):
        _save(last, 3, previous=previous)
    monkeypatch.undo()
    found = ckpt.find_checkpoint(last, previous, warn=None)
    expected = {"model write": 2, "state write": 2, "rename 1": 2, "rename 2": 2, "rename 3": 2, "cleanup": 3}
    assert ckpt.load_checkpoint(found).step == expected[crash]
    _save(last, 4, previous=previous)
    assert ckpt.load_checkpoint(last).step == 4 and ckpt.load_checkpoint(previous).step in (expected[crash], 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "previous"]


@pytest.fixture(scope="module")
def straight_six(tmp_path_factory, cached):
    """An uninterrupted 6-step run (grad accumulation, dropout, warm-up, 2 steps an epoch), to compare resumed runs
    with; its settings."""
    run = tmp_path_factory.mktemp("straight") / "run"
    settings = [*STEPS6, *cached]
    train(tiny(*settings), run)
    return run, settings


STEPS6 = [
    *CHEAP,
    "run.epochs=3",
    "run.grad_accum=2",
    "run.warmup_steps=2",
    "model.head.dropout=0.3",
    "run.checkpoint_every=1",
]


def test_trainer_resumes_from_previous_when_last_is_damaged(tmp_path, capsys, straight_six):
    straight, settings = straight_six
    run = tmp_path / "run"
    assert Trainer(tiny(*settings), run).fit(stop_at=3) == {"stopped_at": 3}
    _truncate(run / "checkpoints" / "last" / ckpt.MODEL)
    capsys.readouterr()
    train(tiny(*settings), run, resume=True)
    err = capsys.readouterr().err
    assert "unusable checkpoint skipped" in err and "truncated or replaced" in err and "(step 2)" in err
    same_weights(straight / "model.safetensors", run / "model.safetensors")
    assert log_rows(run) == log_rows(straight)


def test_resume_refuses_a_pickled_checkpoint(tmp_path, straight_six):
    """A torch.save file where the trainer expects its checkpoint is refused, never unpickled."""
    run, settings = tmp_path / "run", straight_six[1]
    shutil.copytree(straight_six[0], run)
    checkpoints = run / "checkpoints"
    _pickle_instead(checkpoints / "last" / ckpt.MODEL)
    shutil.rmtree(checkpoints / "previous")
    with pytest.raises(VideoadaptError, match="cannot resume") as info:
        train(tiny(*settings), run, resume=True)
    assert "pickled (torch.save) checkpoint" in str(info.value) and "unpickling can run arbitrary code" in str(
        info.value
    )
    # An old-style checkpoint folder: a .pt file and nothing else.
    shutil.rmtree(checkpoints / "last")
    (checkpoints / "last").mkdir()
    _pickle_instead(checkpoints / "last" / "checkpoint.pt")
    with pytest.raises(VideoadaptError, match=r"holds pickled checkpoint files \(checkpoint.pt\)"):
        train(tiny(*settings), run, resume=True)


def test_no_unsafe_deserialisation_in_the_sources():
    """Audit: every torch.load has weights_only=True, and nothing unpickles (pickle/dill/joblib loads, numpy
    allow_pickle=True)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path}: {match.group(0)}")
        for pattern in (r"pickle\.loads?\(", r"allow_pickle\s*=\s*True", r"(dill|joblib)\.load", r"Unpickler\("):
            offenders += [f"{path}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offenders, offenders


# --- 3. non-finite losses ----------------------------------------------------------------------------------------


def _nan_on_steps(monkeypatch, bad_steps, trainers: list) -> None:
    """The loss of every micro-batch of the optimizer steps ``bad_steps`` (1-based) becomes NaN."""
    real = TaskModel.forward

    def forward(self, batch):
        loss = real(self, batch)
        trainer = trainers[-1]
        return loss * math.nan if trainer.position.step + 1 in bad_steps else loss

    monkeypatch.setattr(TaskModel, "forward", forward)


def _recording(monkeypatch, weights: dict) -> list:
    """Trainers built from now on, and the trainable weights after every step (``_log`` runs once a step)."""
    trainers: list = []
    real_init, real_log = Trainer.__init__, Trainer._log

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        trainers.append(self)

    def log(self, row):
        weights[int(row["step"])] = {k: v.clone() for k, v in self.model.trainable_state().items()}
        return real_log(self, row)

    monkeypatch.setattr(Trainer, "__init__", init)
    monkeypatch.setattr(Trainer, "_log", log)
    return trainers


def test_nonfinite_steps_are_skipped_counted_and_resumable(tmp_path, monkeypatch, cached):
    settings = [
        *CHEAP,
        *cached,
        "run.max_steps=6",
        "run.epochs=2",
        "run.checkpoint_every=1",
        "run.max_nonfinite_steps=3",
    ]
    weights: dict[int, dict] = {}
    trainers = _recording(monkeypatch, weights)
    _nan_on_steps(monkeypatch, {3, 4}, trainers)
    metrics = train(tiny(*settings), tmp_path / "straight")
    assert metrics["train"]["nonfinite_steps"] == 2 and metrics["steps"] == 6
    for name, value in weights[2].items():  # the skipped steps changed nothing
        assert torch.equal(weights[3][name], value) and torch.equal(weights[4][name], value), name
    assert any(not torch.equal(weights[5][k], weights[4][k]) for k in weights[4])
    rows = log_rows(tmp_path / "straight")
    assert [r[2] for r in rows[2:4]] == ["nan", "nan"] and all(math.isfinite(float(r[2])) for r in rows[4:])
    # AdamW counted 4 updates for 6 steps; the schedule still ran 6 (lr of step 6 is the cosine's last).
    optimizer = load_tensors(tmp_path / "straight" / "checkpoints" / "last" / ckpt.OPTIMIZER)
    assert float(optimizer["0.step"]) == 4
    # Stopped inside the bad run and resumed: the same weights, log and counts.
    assert Trainer(tiny(*settings), tmp_path / "resumed").fit(stop_at=3) == {"stopped_at": 3}
    train(tiny(*settings), tmp_path / "resumed", resume=True)
    same_weights(tmp_path / "straight" / "model.safetensors", tmp_path / "resumed" / "model.safetensors")
    assert log_rows(tmp_path / "resumed") == rows
    assert metrics_without_clock(tmp_path / "resumed") == metrics_without_clock(tmp_path / "straight")


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_too_many_nonfinite_steps_in_a_row_stop_and_keep_the_last_good_checkpoint(
    tmp_path, monkeypatch, cached, precision
):
    trainers = _recording(monkeypatch, {})
    _nan_on_steps(monkeypatch, set(range(3, 100)), trainers)
    settings = [
        *CHEAP,
        *cached,
        "run.max_steps=8",
        "run.epochs=2",
        "run.checkpoint_every=1",
        "run.max_nonfinite_steps=3",
        f"run.precision={precision}",
    ]
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny(*settings), tmp_path)
    message = str(info.value)
    assert "training stopped at step 5" in message and "3 consecutive steps" in message
    # Under bf16 autocast the message also suggests fp32 (some bf16 CPU kernels return NaN gradients).
    assert ("train in fp32 (run.precision=no)" in message) == (precision == "bf16")
    assert "run.max_nonfinite_steps=3" in message and "holds step 2, the last good state" in message
    found = ckpt.find_checkpoint(tmp_path / "checkpoints" / "last", tmp_path / "checkpoints" / "previous")
    assert found == tmp_path / "checkpoints" / "last" and ckpt.load_checkpoint(found).step == 2
    assert not (tmp_path / "metrics.json").exists()


NAN_ON_RANK0 = """
import math, os, sys
from videoadapt.model.task_model import TaskModel
real, calls = TaskModel.forward, [0]
def forward(self, batch):  # the 2nd training step's loss is NaN on rank 0 only
    calls[0] += 1
    loss = real(self, batch)
    return loss * math.nan if calls[0] == 2 and os.environ.get("RANK") == "0" else loss
TaskModel.forward = forward
from videoadapt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_processes_agree_on_skipping_a_step_only_one_of_them_saw_fail(tmp_path, cached):
    """MULTI-PROCESS: under `accelerate launch` with 2 processes, a NaN loss on rank 0 alone makes both skip the
    step (the flag is all-reduced): the run finishes (no deadlock, no divergence), one skipped step, finite loss."""
    script = tmp_path / "nan_on_rank0.py"
    script.write_text(NAN_ON_RANK0)
    launcher = Path(sys.executable).with_name("accelerate")
    command = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29531", str(script)]
    command += ["train", "--out", str(tmp_path / "run"), *TINY, *CHEAP, *cached, "run.max_steps=4", "run.epochs=2"]
    command += ["run.clip_grad=null"]  # else the NaN gradient norm alone would tell rank 1
    command += ["data.cache_sampler=null"]  # the shared cache holds the eval sampler's frames
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    check_launch(result, tmp_path / "run" / "metrics.json")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert metrics["train"]["nonfinite_steps"] == 1 and math.isfinite(metrics["train"]["final_loss"])
    assert all(torch.isfinite(t).all() for t in load_tensors(tmp_path / "run" / "model.safetensors").values())


def test_max_nonfinite_steps_is_a_config_key():
    assert tiny().run.max_nonfinite_steps == 5
    with pytest.raises(VideoadaptError, match="max_nonfinite_steps"):
        tiny("run.max_nonfinite_steps=-1")


# --- 4. loader workers -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disk_world(tmp_path_factory):
    """SynthWorld written to disk (mp4s): 20 videos of 32 px, 16 in train."""
    root = tmp_path_factory.mktemp("synthworld")
    write_synthworld(root, SynthWorldConfig(size=32, frames=8), 20)
    return root


def _builder(data: TaskData, skip_bad: bool = False) -> BatchBuilder:
    processor = load_backbone("tiny-random").processor
    sampler = sampler_from_spec("uniform:4:random")
    return BatchBuilder(data, build_task("recognition"), processor, sampler, train=True, skip_bad=skip_bad)


BATCHES = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]


class CrashingSource:
    """Decodes through ``source``; the process decoding video ``bad`` dies (SIGKILL, as a decoder crash would)
    or hangs forever."""

    def __init__(self, source, bad: str, mode: str) -> None:
        self.source, self.bad, self.mode = source, bad, mode

    def frames(self, ref, sampler=None):
        if ref.video_id == self.bad:
            if self.mode == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        return self.source.frames(ref, sampler)


def _with_source(data: TaskData, source) -> TaskData:
    return TaskData(data.task, data.split, data.items, source, data.origin, data.classes)


@pytest.mark.parametrize("start", ["forkserver", "fork"])
def test_two_workers_decode_the_same_batches_as_the_main_process(disk_world, start):
    data = load_task_data(f"synth:{disk_world}", "train", "recognition")
    builder = _builder(data)
    for epoch in (0, 1):  # a fresh set of workers each epoch
        began = time.monotonic()
        batches = list(WorkerLoader(builder, BATCHES, epoch, workers=2, timeout=30, start=start))
        assert time.monotonic() - began < 30
        assert [b.indices for b in batches] == BATCHES
        for batch, indices in zip(batches, BATCHES, strict=True):
            assert torch.equal(batch.video, builder.build(indices, epoch).video)


def test_a_corrupt_mp4_in_a_worker_is_an_error_naming_it_or_a_counted_skip(disk_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(disk_world, root)
    data = load_task_data(f"synth:{root}", "train", "recognition")
    victim = Path(data.items[6].video.path)
    _truncate(victim)
    with pytest.raises(VideoadaptError) as info:
        list(WorkerLoader(_builder(data), BATCHES, 0, workers=2, timeout=30))
    assert "item 6" in str(info.value) and victim.name in str(info.value) and "cannot read its video" in str(info.value)
    batches = list(WorkerLoader(_builder(data, skip_bad=True), BATCHES, 0, workers=2, timeout=30))
    assert [len(b.skipped) for b in batches] == [0, 1, 0, 0] and victim.name in batches[1].skipped[0]
    assert batches[1].indices == [4, 5, 7]


def test_a_worker_that_crashes_decoding_is_an_error_naming_the_video(disk_world):
    """A worker killed while decoding (as by a decoder crash): an error naming the item and the file, within the
    DataLoader's 5 s check of its workers, not a hang."""
    data = load_task_data(f"synth:{disk_world}", "train", "recognition")
    bad = data.items[9].video
    data = _with_source(data, CrashingSource(data.source, bad.video_id, "crash"))
    began = time.monotonic()
    with pytest.raises(VideoadaptError) as info:
        list(WorkerLoader(_builder(data), BATCHES, 0, workers=2, timeout=30))
    message = str(info.value)
    assert "item 9" in message and str(bad.path) in message and "died" in message and "skip_bad" in message
    assert time.monotonic() - began < 30


def test_a_connection_lost_to_a_dead_worker_names_its_video(disk_world):
    """The race the test above can hit: the worker dies while the batch it had finished is still on its way, and
    the DataLoader raises a bare EOFError; the dead worker is found in the table all the same."""
    data = load_task_data(f"synth:{disk_world}", "train", "recognition")
    loader = WorkerLoader(_builder(data), BATCHES, 0, workers=2)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer exists
    table = data_module._WorkerTable(loader.context, 2)
    table.set(0, pid=gone.pid, batch=2, item=9, since=0)
    table.set(1, pid=os.getpid(), batch=1, item=5, since=0)
    loader._table = table
    item, message = loader.explain(EOFError())
    assert item == 9 and "item 9" in message and str(data.items[9].video.path) in message
    assert "died (EOFError: its connection closed)" in message


def test_a_hung_worker_is_stopped_and_with_skip_bad_its_video_skipped(disk_world):
    """A worker stuck decoding one video: stopped after run.worker_timeout (1 s here); with skip_bad that item is
    skipped and counted, naming the file, and every other batch is delivered (the loader restarts after it)."""
    data = load_task_data(f"synth:{disk_world}", "train", "recognition")
    bad = data.items[9].video
    data = _with_source(data, CrashingSource(data.source, bad.video_id, "hang"))
    began = time.monotonic()
    batches = list(WorkerLoader(_builder(data, skip_bad=True), BATCHES, 0, workers=2, timeout=1))
    assert [b.indices for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 10, 11], [12, 13, 14, 15]]
    skipped = [m for b in batches for m in b.skipped]
    assert len(skipped) == 1 and "item 9" in skipped[0] and str(bad.path) in skipped[0]
    assert "made no progress for 1 s (run.worker_timeout) and was stopped" in skipped[0]
    assert time.monotonic() - began < 30


def test_training_with_workers_counts_a_corrupt_video_with_skip_bad(disk_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(disk_world, root)
    data = load_task_data(f"synth:{root}", "train", "recognition")
    victim = EpochPlan(len(data), 4, seed=0).batch(0, 1)[0]  # in the second batch: one step is trained first
    _truncate(Path(data.items[victim].video.path))
    # The up-front header check would find the file first; what is tested here is the worker meeting it mid-run.
    settings = [*CHEAP, f"data.source=synth:{root}", "run.num_workers=2", "run.max_steps=2", "run.epochs=1"]
    settings.append("data.check_videos=false")
    with pytest.raises(TrainingInterrupted, match=rf"step 1 .*item {victim} .*cannot read its video"):
        train(tiny(*settings), tmp_path / "strict")
    metrics = train(tiny(*settings, "data.skip_bad=true"), tmp_path / "skip")
    assert metrics["train"]["skipped_clips"] == 1 and metrics["steps"] == 2


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_checkpoints_at_the_next_step_and_resume_is_exact(tmp_path, cached, sent):
    """Issue 19, item 2: SIGTERM (a cluster's preemption) or one Ctrl-C: `videoadapt train` finishes the step it is
    in, checkpoints it (none was due: checkpoint_every=1000) and exits naming the signal, the step and the resume
    command; resumed, it ends byte for byte where an uninterrupted run ends."""
    steps = 40
    settings = [*TINY, *cached, f"run.max_steps={steps}", "run.epochs=20", "run.checkpoint_every=1000"]
    settings += ["model.head.dropout=0.2", "data.cache_sampler=null", "run.log_every=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "videoadapt", "train", "--out", str(tmp_path / "stopped")]
    victim = subprocess.Popen(
        [*command, *settings], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "stopped" / "log.csv"
        while not log.is_file() or len(log.read_text().splitlines()) < 4:  # header + 3 steps
            assert victim.poll() is None, f"the run ended early: {victim.stderr.read()}"
            assert time.monotonic() < deadline, "no third step within 120 s"
            time.sleep(0.01)
        victim.send_signal(sent)
        _, err = victim.communicate(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == 2, err
    assert f"training stopped by {sent.name} after step" in err and "--resume" in err, err
    stopped_at = _step_of(tmp_path / "stopped")
    assert 3 <= stopped_at < steps and f"after step {stopped_at}:" in err
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    one_thread(train, load_config(None, overrides=settings, recipe=True), tmp_path / "straight")
    same_weights(tmp_path / "straight" / "model.safetensors", tmp_path / "stopped" / "model.safetensors")
