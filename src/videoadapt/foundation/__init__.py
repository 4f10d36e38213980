"""Image-language foundation models behind one interface, and the ``--backbone`` loader."""

from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, ModelDims, TextFeatures
from videoadapt.foundation.loading import load_backbone

__all__ = ["FrameFeatures", "ImageLanguageModel", "ModelDims", "TextFeatures", "load_backbone"]
