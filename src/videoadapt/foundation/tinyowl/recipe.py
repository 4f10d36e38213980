"""The settings of TinyOWL's detection training (``videoadapt pretrain --detection``), apart from the training code
(scipy's matcher and all) so that the command line can show their defaults without importing it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DetectionRecipe:
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3  # heads
    backbone_lr_scale: float = 0.2  # image tower learning rate = lr * this
    weight_decay: float = 0.05
    warmup: int = 100
    bf16: bool = True
    seed: int = 0  # head initialisation
    data_seed: int = 0  # SynthWorld seed of the training images
    max_objects: int = 4
    checkpoint_every: int = 100
    init: str = "tiny"  # TinyCLIP to start from: "tiny" (shipped) or a checkpoint directory
    box_hidden: int = 192

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))
