"""TinyCLIP checkpoints: ``model.safetensors`` (everything but the frozen MiniLM, which its own package ships),
``config.json`` (the architecture) and ``model_card.json`` (recipe, data seed, steps, wall time, machine, zero-shot
results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoadapt.errors import InputFileError
from videoadapt.foundation.tinyclip.model import TinyCLIP, TinyCLIPConfig
from videoadapt.utils.safe_io import load_json, load_tensors, save_json, save_tensors

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "model_card.json"


def shipped_directory() -> Path:
    """The checkpoint that ships inside the package (the demo's default backbone)."""
    path = Path(__file__).parent / "weights"
    if not is_checkpoint(path):
        raise InputFileError(
            path,
            "the shipped TinyCLIP checkpoint is missing; produce one with `videoadapt pretrain --out DIR` "
            "and pass `--backbone tiny:DIR`",
        )
    return path


def is_checkpoint(path: Path) -> bool:
    config = path / CONFIG
    return config.is_file() and (path / WEIGHTS).is_file() and load_json(config).get("model_type") == "tinyclip"


def save(model: TinyCLIP, path: str | Path, card: dict[str, Any] | None = None) -> None:
    path = Path(path)
    save_tensors(path / WEIGHTS, model.trainable_state_dict(), metadata={"format": "pt", "model_type": "tinyclip"})
    save_json(path / CONFIG, {"model_type": "tinyclip", **model.config.to_dict()})
    if card is not None:
        save_json(path / CARD, card)


def load(path: str | Path) -> TinyCLIP:
    path = Path(path)
    config = load_json(path / CONFIG)
    if config.pop("model_type", None) != "tinyclip":
        raise InputFileError(path / CONFIG, "not a TinyCLIP config (model_type must be 'tinyclip')")
    model = TinyCLIP(TinyCLIPConfig.from_dict(config))
    state = load_tensors(path / WEIGHTS)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("text_tower.")]
    if missing or unexpected:
        raise InputFileError(
            path / WEIGHTS, f"weights do not fit the config (missing {missing}, unexpected {unexpected})"
        )
    return model.eval()


def card(path: str | Path) -> dict[str, Any]:
    return load_json(Path(path) / CARD)
