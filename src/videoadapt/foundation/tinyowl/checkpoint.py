"""TinyOWL checkpoints: ``model.safetensors`` (everything but the frozen MiniLM), ``config.json`` (the
architecture, TinyCLIP's included) and ``model_card.json`` (command, recipe, wall time, machine, zero-shot AP),
in the layout of :mod:`videoadapt.foundation.model_files`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoadapt.foundation.model_files import CARD, CONFIG, WEIGHTS, ModelFiles, card
from videoadapt.foundation.tinyowl.model import TinyOWL, TinyOWLConfig

__all__ = ["CARD", "CONFIG", "FILES", "WEIGHTS", "card", "is_checkpoint", "load", "save", "shipped_directory"]


def _build(config: dict[str, Any]) -> TinyOWL:
    return TinyOWL(TinyOWLConfig.from_dict(config))


FILES = ModelFiles(
    model_type="tinyowl",
    model_name="TinyOWL",
    build=_build,
    frozen_prefix="clip.text_tower.",
    shipped=Path(__file__).parent / "weights",  # backbone spec ``tiny-owl``
    missing_shipped="the shipped TinyOWL checkpoint is missing; produce one with "
    "`videoadapt pretrain --detection --out DIR` and pass `--backbone tiny-owl:DIR`",
)
shipped_directory, is_checkpoint, save, load = FILES.shipped_directory, FILES.is_checkpoint, FILES.save, FILES.load
