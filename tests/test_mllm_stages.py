"""LLaVA's two stages on SynthWorld: still scenes as image-caption pairs (``stills``) and a run that starts from
another run's trained weights (``model.init_run``); the MLLM runs on the tiny random model of tests/mllm_helpers.py."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from mllm_helpers import make_mllm
from videoadapt.data.formats import load_task_data
from videoadapt.data.sampling import UniformSegments
from videoadapt.data.synthworld import SynthWorld, SynthWorldConfig
from videoadapt.errors import VideoadaptError


def test_stills_are_static_clips_of_the_still_scenes_with_their_captions() -> None:
    data = load_task_data("synth", "train", "captioning", videos=30, stills=True)
    world = SynthWorld(SynthWorldConfig(seed=0))
    assert len(data.items) == 24 and data.origin.endswith(",stills")  # 80 % of 30, split as videos are
    item = data.items[3]
    image = world.image(3, split="train")
    assert item.video.video_id == "still_train_000003" and item.captions == tuple(image.captions)
    frames = data.source.frames(item.video, UniformSegments(4))
    assert frames.shape == (4, 64, 64, 3) and all(np.array_equal(f, image.image) for f in frames)
    assert data.extra["novel"][3] == image.novel
    # Still scenes show the shapes held out of the training videos, which is what they are for.
    assert any(data.extra["novel"])
    val = load_task_data("synth", "val", "retrieval", videos=30, stills=True)
    assert val.items[0].video.video_id == "still_val_000000"


def test_stills_are_refused_where_they_cannot_serve() -> None:
    with pytest.raises(VideoadaptError, match="serve captioning and retrieval, not qa"):
        load_task_data("synth", "train", "qa", videos=30, stills=True)
    with pytest.raises(VideoadaptError, match="in memory"):
        load_task_data("synth:/nonexistent", "train", "captioning", stills=True)


def _train(main, out, task: str, paradigm: str, *extra: str) -> None:
    argv = ["train", "--task", task, "--data", "synth", "--backbone", "mllm", "--paradigm", paradigm]
    argv += ["--out", str(out), "--data-option", "videos=20", "--data-option", "size=32", "model.head.head=mllm"]
    argv += ["model.head.max_new_tokens=2", "data.frames=2", "run.batch_size=4", "run.max_steps=1"]
    argv += ["run.progress=false", "run.cache=false", "data.val_split=null", "run.eval_every=0", *extra]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random answers never end: cut at the bound, said in a warning
        assert main(argv) == 0


def test_a_run_starts_from_another_runs_trained_weights(tmp_path, monkeypatch, capsys) -> None:
    """Stage 1 trains the projector on still-scene captions; stage 2 (LoRA + projector, multiple-choice QA) starts
    from it: the projector is copied exactly, LoRA keeps its initialisation, and what cannot land is refused."""
    from videoadapt.cli import main
    from videoadapt.foundation import loading
    from videoadapt.model.build import WEIGHTS, load_run, start_from_run
    from videoadapt.model.config import load_config
    from videoadapt.utils.safe_io import load_tensors

    monkeypatch.setattr(loading, "load_backbone", lambda spec: make_mllm(feature_layer=-1))
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    _train(main, stage1, "captioning", "post_network", "data.options.stills=true")
    capsys.readouterr()
    _train(main, stage2, "qa", "lora", f"model.init_run={stage1}")
    first = load_tensors(stage1 / WEIGHTS)
    lora = [k for k in load_tensors(stage2 / WEIGHTS) if "lora_" in k]
    assert lora and first and not any("lora_" in k for k in first)
    said = capsys.readouterr().err
    assert f"{len(first)} trained tensors copied, {len(lora)} start from their initialisation" in said

    model = load_run(stage2).model  # trained one step on QA: the projector has moved since stage 1
    before = {k: v.clone() for k, v in model.trainable_state().items()}
    assert any(not torch.equal(before[k], v) for k, v in first.items())
    assert start_from_run(model, load_config(stage2 / "config.yaml"), stage1) == (len(first), len(lora))
    after = model.trainable_state()
    assert all(torch.equal(after[k], v) for k, v in first.items())
    assert all(torch.equal(after[k], before[k]) for k in lora)

    # LoRA trained in stage 2 has no place in a projector-only model: refused rather than dropped.
    with pytest.raises(VideoadaptError, match="do not train here"):
        load_run(stage1).model.start_from(load_tensors(stage2 / WEIGHTS), "stage2")
    other = load_config(stage2 / "config.yaml")
    other.model.backbone = "tiny"
    with pytest.raises(VideoadaptError, match="trained on backbone 'mllm', this run uses 'tiny'"):
        start_from_run(model, other, stage1)
    with pytest.raises(VideoadaptError, match="not a finished training run"):
        start_from_run(model, load_config(stage2 / "config.yaml"), tmp_path / "nothing")

    # A resumed run has its weights in its checkpoint: it no longer needs the first run.
    shutil.rmtree(stage1)
    _train(main, stage2, "qa", "lora", "--resume", f"model.init_run={stage1}", "run.max_steps=2")
    assert "starting from" not in capsys.readouterr().err
