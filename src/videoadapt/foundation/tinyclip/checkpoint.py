"""TinyCLIP checkpoints: ``model.safetensors`` (everything but the frozen MiniLM, which its own package ships),
``config.json`` (the architecture) and ``model_card.json`` (recipe, data seed, steps, wall time, machine, zero-shot
results), in the layout of :mod:`videoadapt.foundation.model_files`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoadapt.foundation.model_files import CARD, CONFIG, WEIGHTS, ModelFiles, card
from videoadapt.foundation.tinyclip.model import TinyCLIP, TinyCLIPConfig

__all__ = ["CARD", "CONFIG", "FILES", "WEIGHTS", "card", "is_checkpoint", "load", "save", "shipped_directory"]


def _build(config: dict[str, Any]) -> TinyCLIP:
    return TinyCLIP(TinyCLIPConfig.from_dict(config))


FILES = ModelFiles(
    model_type="tinyclip",
    model_name="TinyCLIP",
    build=_build,
    frozen_prefix="text_tower.",
    shipped=Path(__file__).parent / "weights",  # the demo's default backbone
    missing_shipped="the shipped TinyCLIP checkpoint is missing; produce one with `videoadapt pretrain --out DIR` "
    "and pass `--backbone tiny:DIR`",
)
shipped_directory, is_checkpoint, save, load = FILES.shipped_directory, FILES.is_checkpoint, FILES.save, FILES.load
