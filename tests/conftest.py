"""Shared fixtures. ASL clips: 3 real camera clips (CC-BY-4.0, see tests/fixtures/asl/NOTICE.md). The MiniLM text
tower of the paradigm tests (their other shared scaffolding is in tests/paradigm_helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on a 2-core machine: one thread each (and in the processes they start), or four
    # threads would share two cores. Set before torch is imported, so its thread pools start that way.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

ASL_FIXTURE_DIR = Path(__file__).parent / "fixtures" / "asl"


@pytest.fixture(scope="session")
def asl_clips() -> list[Path]:
    """The ASL fixture clips (H.264 in Matroska, 640x480, 30 fps), sorted by name."""
    clips = sorted(ASL_FIXTURE_DIR.glob("*.mkv"))
    assert len(clips) == 3, f"expected 3 ASL fixture clips in {ASL_FIXTURE_DIR}"
    return clips


@pytest.fixture(scope="session")
def text_tower():
    """The frozen MiniLM text tower that the small TinyCLIP backbones share: loaded once per session (it is the
    expensive part of building one). Frozen and in eval mode whatever wraps it, so sharing it is safe."""
    from videoadapt.foundation.tinyclip.text import MiniLMTextTower

    return MiniLMTextTower()


@pytest.fixture
def trained(monkeypatch):
    """``videoadapt train`` without training: the resolved config it would train on."""
    from videoadapt.train import trainer as trainer_module

    seen = {}

    def fake_train(config, out, resume=False, check_test_split=False):
        seen["config"] = config
        return {"steps": 0, "train": {"final_loss": 0.0}, "best": {"metrics": {}}}

    monkeypatch.setattr(trainer_module, "train", fake_train)
    return seen
