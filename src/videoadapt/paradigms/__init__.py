"""The transfer paradigms of the survey (Sec. III), one module each, registered by name.

>>> encoder = build_video_encoder(load_backbone("tiny"), "lora+post_network")
>>> features = encoder(video)            # VideoFeatures(frames [B,T,E], video [B,E])
>>> encoder.save_pretrained("out/encoder"); encoder = load_encoder("out/encoder")
"""

from __future__ import annotations

import importlib
import pkgutil

from videoadapt.paradigms.base import (
    Paradigm,
    TemporalContext,
    VideoEncoder,
    VideoFeatures,
    VideoHead,
)
from videoadapt.paradigms.compose import build_video_encoder
from videoadapt.paradigms.saved import load_encoder
from videoadapt.registry import registry

_INFRASTRUCTURE = {"base", "compose", "options", "saved", "temporal_head"}


def load_paradigms() -> None:
    """Import every paradigm module so that each registers itself."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{__name__}.{module.name}")


def paradigm_class(name: str) -> type[Paradigm]:
    load_paradigms()
    return registry.get("paradigm", name)


def paradigm_names() -> list[str]:
    load_paradigms()
    return registry.names("paradigm")


__all__ = [
    "Paradigm",
    "TemporalContext",
    "VideoEncoder",
    "VideoFeatures",
    "VideoHead",
    "build_video_encoder",
    "load_encoder",
    "paradigm_class",
    "paradigm_names",
]
