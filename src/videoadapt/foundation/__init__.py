"""Image-language foundation models behind one interface, and the ``--backbone`` loader."""

from videoadapt.foundation.base import (
    FrameFeatures,
    GroundingModel,
    ImageLanguageModel,
    ModelDims,
    RegionFeatures,
    TextFeatures,
)
from videoadapt.foundation.loading import load_backbone

__all__ = [
    "FrameFeatures",
    "GroundingModel",
    "ImageLanguageModel",
    "ModelDims",
    "RegionFeatures",
    "TextFeatures",
    "load_backbone",
]
