"""TinyOWL checkpoints: ``model.safetensors`` (everything but the frozen MiniLM), ``config.json`` (the
architecture, TinyCLIP's included) and ``model_card.json`` (command, recipe, wall time, machine, zero-shot AP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoadapt.errors import InputFileError
from videoadapt.foundation.tinyowl.model import TinyOWL, TinyOWLConfig
from videoadapt.utils.safe_io import load_json, load_tensors, save_json, save_tensors

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "model_card.json"
MODEL_TYPE = "tinyowl"


def shipped_directory() -> Path:
    """The TinyOWL checkpoint that ships inside the package (backbone spec ``tiny-owl``)."""
    path = Path(__file__).parent / "weights"
    if not is_checkpoint(path):
        raise InputFileError(
            path,
            "the shipped TinyOWL checkpoint is missing; produce one with `videoadapt pretrain --detection --out DIR` "
            "and pass `--backbone tiny-owl:DIR`",
        )
    return path


def is_checkpoint(path: Path) -> bool:
    config = path / CONFIG
    return config.is_file() and (path / WEIGHTS).is_file() and load_json(config).get("model_type") == MODEL_TYPE


def save(model: TinyOWL, path: str | Path, card: dict[str, Any] | None = None) -> None:
    path = Path(path)
    save_tensors(path / WEIGHTS, model.trainable_state_dict(), metadata={"format": "pt", "model_type": MODEL_TYPE})
    save_json(path / CONFIG, {"model_type": MODEL_TYPE, **model.config.to_dict()})
    if card is not None:
        save_json(path / CARD, card)


def load(path: str | Path) -> TinyOWL:
    path = Path(path)
    config = load_json(path / CONFIG)
    if config.pop("model_type", None) != MODEL_TYPE:
        raise InputFileError(path / CONFIG, f"not a TinyOWL config (model_type must be {MODEL_TYPE!r})")
    model = TinyOWL(TinyOWLConfig.from_dict(config))
    missing, unexpected = model.load_state_dict(load_tensors(path / WEIGHTS), strict=False)
    missing = [k for k in missing if not k.startswith("clip.text_tower.")]
    if missing or unexpected:
        raise InputFileError(
            path / WEIGHTS, f"weights do not fit the config (missing {missing}, unexpected {unexpected})"
        )
    return model.eval()


def card(path: str | Path) -> dict[str, Any]:
    return load_json(Path(path) / CARD)
