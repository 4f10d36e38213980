"""Post-network tuning (survey Sec. III-A2): the backbone stays frozen; a temporal module trained on its per-frame
features makes the video representation. Frame features can therefore come from the feature cache.

Temporal modules: ``mean`` (CLIP4Clip meanP, no parameters) and ``transformer`` (CLIP4Clip seqTransf).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import Paradigm, VideoFeatures, VideoHead
from videoadapt.registry import registry
from videoadapt.temporal import MeanPool, TemporalTransformer


def temporal_module(name: str, width: int, **options: Any) -> nn.Module:
    if name == "mean":
        return MeanPool()
    if name == "transformer":
        return TemporalTransformer(width, **options)
    raise VideoadaptError(f"unknown temporal module {name!r}; known: mean, transformer")


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
        self.temporal = temporal_module(temporal, self.width, **options)

    def forward(
        self, features: FrameFeatures, video: torch.Tensor | None = None, text: TextFeatures | None = None
    ) -> VideoFeatures:
        frames, pooled = self.temporal(features.embeds if self.space == "joint" else features.cls)
        return VideoFeatures(frames=frames, video=pooled, patches=features.patches)


@registry.register("paradigm", "post_network")
class PostNetwork(Paradigm):
    name = "post_network"

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return TemporalHead(ilfm, **{"temporal": "transformer", **self.options})
