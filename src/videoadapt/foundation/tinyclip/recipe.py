"""The settings of TinyCLIP's image-text pretraining (``videoadapt pretrain``), apart from the training code so that
the command line can show their defaults without importing it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from videoadapt.foundation.tinyclip.model import TinyCLIPConfig

TWIN_ATTRIBUTES = ("shape", "position", "size", "colour")


@dataclass(frozen=True)
class PretrainRecipe:
    steps: int = 3000
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 150
    twin_fraction: float = 1.0
    twin_weights: tuple[float, ...] = (0.4, 0.4, 0.1, 0.1)  # over TWIN_ATTRIBUTES
    max_objects: int = 2  # per training image (1..max); shorter captions keep the text tower's share small
    bf16: bool = True
    seed: int = 0  # model initialisation
    data_seed: int = 0  # SynthWorld seed of the training images
    checkpoint_every: int = 100
    model: dict[str, Any] = field(default_factory=lambda: TinyCLIPConfig().to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (tuples as lists), so that a recipe read back from a checkpoint compares equal."""
        return json.loads(json.dumps(asdict(self)))
