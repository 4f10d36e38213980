"""videoadapt: adapt image-language foundation models to video-text tasks with any transfer paradigm.

The few names a user needs, from the top (loaded on first use, so that ``import videoadapt`` and the command line
stay fast)::

    import videoadapt as va

    ilfm = va.load_backbone("tiny")                                   # or "hf:openai/clip-vit-base-patch16", a folder
    encoder = va.build_video_encoder(ilfm, "lora+post_network")       # any paradigm, or a composition
    encoder.save_pretrained("my_encoder"); va.load_encoder("my_encoder")  # safetensors + JSON; .merge() folds LoRA
    data = va.load_task_data("folder:my_videos", "train", "recognition")
    metrics = va.train(va.load_config("configs/recognition-post_network.yaml"), "runs/mine")  # or recipe=True
    predictor = va.Predictor("runs/mine")
    predictor.predict("clip.mp4")                                     # {"predictions": [{"top_k": [...]}], ...}
"""

from __future__ import annotations

import importlib
from typing import Any

from videoadapt.errors import VideoadaptError

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "load_backbone": "videoadapt.foundation.loading",
    "build_video_encoder": "videoadapt.paradigms",
    "load_encoder": "videoadapt.paradigms.saved",
    "load_task_data": "videoadapt.data.formats",
    "load_config": "videoadapt.model.config",
    "load_run": "videoadapt.model.build",
    "train": "videoadapt.train.trainer",
    "evaluate_run": "videoadapt.inference.evaluate",
    "Predictor": "videoadapt.inference.predictor",
}

__all__ = ["VideoadaptError", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videoadapt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
