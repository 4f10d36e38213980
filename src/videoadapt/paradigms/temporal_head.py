"""The temporal head: a temporal module over per-frame features (mean pooling, CLIP4Clip's seqTransf, a Q-Former, a
space-time transformer, Moment-DETR), the head post-network tuning trains and the head every other paradigm without
one of its own is read by."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, ModelDims, TextFeatures
from videoadapt.paradigms.base import VideoFeatures, VideoHead
from videoadapt.temporal import MeanPool, MomentDETR, QFormer, SpaceTimeTransformer, TemporalTransformer

TEMPORAL_MODULES = ("mean", "transformer", "qformer", "spacetime", "moment_detr")


def temporal_module(name: str, width: int, dims: ModelDims | None = None, /, **options: Any) -> nn.Module:
    """A temporal module over features of ``width``. ``qformer``, ``spacetime`` and ``moment_detr`` also need the
    backbone's ``dims`` (patch-token width and grid, text-token width); they take the whole FrameFeatures
    (``takes_features``). The first three are positional-only so that a module may have an option named
    ``width`` (the Q-Former's, the space-time transformer's)."""
    if name == "mean":
        return MeanPool()
    if name == "transformer":
        return TemporalTransformer(width, **options)
    if name in ("qformer", "spacetime", "moment_detr"):
        if dims is None:
            raise VideoadaptError(f"temporal module {name!r} needs the backbone's dims")
        if name == "qformer":
            return QFormer(width, dims.width, **options)
        if name == "spacetime":
            return SpaceTimeTransformer(width, dims.width, dims.patch_grid, **options)
        return MomentDETR(width, dims.text_width, **options)
    raise VideoadaptError(f"unknown temporal module {name!r}; known: {', '.join(TEMPORAL_MODULES)}")


SPACES = ("joint", "cls")


class TemporalHead(VideoHead):
    """A temporal module over per-frame features: the frame embeddings in the joint space (``space="joint"``), or
    the pooled CLS tokens before the projection (``space="cls"``, width D), which classification-only designs such
    as ST-Adapter and AIM feed to their classifier."""

    def __init__(
        self, ilfm: ImageLanguageModel, temporal: str = "transformer", space: str = "joint", **options: Any
    ) -> None:
        super().__init__()
        if space not in SPACES:
            raise VideoadaptError(f"unknown feature space {space!r}; known: {', '.join(SPACES)}")
        self.space = space
        self.width = ilfm.dims.embed_dim if space == "joint" else ilfm.dims.width
        self.temporal = temporal_module(temporal, self.width, ilfm.dims, **options)
        # Grounding modules fuse the query text (Moment-DETR): the encoder then refuses to run without one.
        self.needs_text = bool(getattr(self.temporal, "needs_text", False))
        # Only modules that take the whole FrameFeatures read patch tokens (Q-Former, space-time, Moment-DETR).
        self.needs_patches = bool(getattr(self.temporal, "takes_features", False))

    def forward(
        self, features: FrameFeatures, video: torch.Tensor | None = None, text: TextFeatures | None = None
    ) -> VideoFeatures:
        inputs = features.embeds if self.space == "joint" else features.cls
        if getattr(self.temporal, "takes_features", False):
            frames, pooled, outputs = self.temporal(inputs, features, text)
            return VideoFeatures(frames=frames, video=pooled, patches=features.patches, outputs=outputs)
        frames, pooled = self.temporal(inputs)
        return VideoFeatures(frames=frames, video=pooled, patches=features.patches)
