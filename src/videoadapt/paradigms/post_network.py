"""Post-network tuning (survey Sec. III-A2): the backbone stays frozen; a temporal module trained on its per-frame
features makes the video representation. Frame features can therefore come from the feature cache.

Temporal modules: ``mean`` (CLIP4Clip meanP, no parameters) and ``transformer`` (CLIP4Clip seqTransf).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, VideoFeatures, VideoHead
from videoadapt.registry import registry
from videoadapt.temporal import MeanPool, TemporalTransformer


def temporal_module(name: str, width: int, **options: Any) -> nn.Module:
    if name == "mean":
        return MeanPool()
    if name == "transformer":
        return TemporalTransformer(width, **options)
    raise VideoadaptError(f"unknown temporal module {name!r}; known: mean, transformer")


class TemporalHead(VideoHead):
    """A temporal module over the frame embeddings in the joint space."""

    def __init__(self, ilfm: ImageLanguageModel, temporal: str = "transformer", **options: Any) -> None:
        super().__init__()
        self.temporal = temporal_module(temporal, ilfm.dims.embed_dim, **options)

    def forward(self, features: FrameFeatures, video: torch.Tensor | None = None) -> VideoFeatures:
        frames, pooled = self.temporal(features.embeds)
        return VideoFeatures(frames=frames, video=pooled, patches=features.patches)


@registry.register("paradigm", "post_network")
class PostNetwork(Paradigm):
    name = "post_network"

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return TemporalHead(ilfm, **{"temporal": "transformer", **self.options})
