"""The checkpoint layout of our own models (TinyCLIP, TinyOWL): ``model.safetensors`` (the trainable weights;
the frozen MiniLM ships in its own package), ``config.json`` (``model_type`` plus the architecture) and
``model_card.json``. One implementation, so that every tiny model is saved, recognised and checked alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch

from videoadapt.errors import InputFileError
from videoadapt.utils.safe_io import load_json, load_tensors, save_json, save_tensors

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "model_card.json"


class TinyModel(Protocol):
    """What the layout needs of a model: its config as a dict and the weights it trains."""

    @property
    def config(self) -> Any: ...

    def trainable_state_dict(self) -> dict[str, torch.Tensor]: ...


Model = TypeVar("Model", bound=torch.nn.Module)


@dataclass(frozen=True)
class ModelFiles(Generic[Model]):
    """One model's checkpoints in this layout."""

    model_type: str  # config.json's "model_type"
    model_name: str  # for messages
    build: Callable[[dict[str, Any]], Model]  # the untrained model of a config (model_type removed)
    frozen_prefix: str  # weights under it are not saved (the frozen text tower) and may be missing
    shipped: Path  # the checkpoint that ships inside the package
    missing_shipped: str  # how to produce the shipped checkpoint when a build lacks it

    def shipped_directory(self) -> Path:
        """The shipped checkpoint; a package built without it fails with a way forward, not a bare file error."""
        if not self.is_checkpoint(self.shipped):
            raise InputFileError(self.shipped, self.missing_shipped)
        return self.shipped

    def is_checkpoint(self, path: Path) -> bool:
        config = path / CONFIG
        if not config.is_file() or not (path / WEIGHTS).is_file():
            return False
        return load_json(config).get("model_type") == self.model_type

    def save(self, model: TinyModel, path: str | Path, card: dict[str, Any] | None = None) -> None:
        path = Path(path)
        metadata = {"format": "pt", "model_type": self.model_type}
        save_tensors(path / WEIGHTS, model.trainable_state_dict(), metadata=metadata)
        save_json(path / CONFIG, {"model_type": self.model_type, **model.config.to_dict()})
        if card is not None:
            save_json(path / CARD, card)

    def load(self, path: str | Path) -> Model:
        path = Path(path)
        config = load_json(path / CONFIG)
        if config.pop("model_type", None) != self.model_type:
            raise InputFileError(
                path / CONFIG, f"not a {self.model_name} config (model_type must be {self.model_type!r})"
            )
        model = self.build(config)
        missing, unexpected = model.load_state_dict(load_tensors(path / WEIGHTS), strict=False)
        missing = [k for k in missing if not k.startswith(self.frozen_prefix)]
        if missing or unexpected:
            raise InputFileError(
                path / WEIGHTS, f"weights do not fit the config (missing {missing}, unexpected {unexpected})"
            )
        return model.eval()


def card(path: str | Path) -> dict[str, Any]:
    return load_json(Path(path) / CARD)
