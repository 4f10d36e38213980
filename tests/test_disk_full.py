"""Issue 19, item 3 (checkpoints and every atomic write): a full disk leaves the last good state usable and says
which file and roughly how much space it needed. The disk is filled by an injected writer (a tmpfs needs a mount)."""

from __future__ import annotations

import errno

import pytest
import torch

from test_reliability_training import TINY
from videoadapt.model.config import load_config
from videoadapt.train.trainer import Trainer, TrainingInterrupted, train
from videoadapt.utils import safe_io
from videoadapt.utils.checkpoint import find_checkpoint, load_checkpoint
from videoadapt.utils.safe_io import DiskFullError, atomic_write_bytes, load_tensors

# The reliability tests' tiny run (random tower, 24 SynthWorld videos), 6 steps with a checkpoint after each.
SMALL = [*TINY, "run.epochs=3", "run.max_steps=6", "run.checkpoint_every=1"]


def _fill_the_disk(monkeypatch, when) -> None:
    """From now on, opening a file for which ``when(path)`` holds fails as a full disk does."""
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and when(str(path)):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(safe_io, "open", full_open, raising=False)


def test_a_full_disk_keeps_the_file_as_it_was_and_says_how_much_was_needed(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_bytes(target, b"the good one")
    _fill_the_disk(monkeypatch, lambda path: True)
    with pytest.raises(DiskFullError, match=r"metrics\.json: the disk is full: writing it needs 2\.0 MB \(.* MB free"):
        atomic_write_bytes(target, b"x" * 2_000_000)
    assert target.read_bytes() == b"the good one" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_training_on_a_full_disk_stops_with_the_last_checkpoint_usable(tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = Trainer(load_config(None, overrides=SMALL), run)
    assert trainer.fit(stop_at=3) == {"stopped_at": 3}
    _fill_the_disk(monkeypatch, lambda path: "checkpoints" in path)
    with pytest.raises(TrainingInterrupted, match=r"the disk is full: writing it needs .* MB"):
        train(load_config(None, overrides=SMALL), run, resume=True)
    # The last good checkpoint is whole, and nothing half-written is left beside it.
    state = load_checkpoint(find_checkpoint(run / "checkpoints" / "last"))
    assert state.step == 3 and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last", "previous"]
    monkeypatch.undo()
    resumed = train(load_config(None, overrides=SMALL), run, resume=True)
    straight = train(load_config(None, overrides=SMALL), tmp_path / "straight")
    assert resumed["steps"] == straight["steps"] == 6
    a, b = load_tensors(run / "model.safetensors"), load_tensors(tmp_path / "straight" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
