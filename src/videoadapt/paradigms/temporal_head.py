"""The temporal head: a temporal module over per-frame features (mean pooling, CLIP4Clip's seqTransf, a Q-Former, a
space-time transformer, Moment-DETR), the head post-network tuning trains and the head every other paradigm without
one of its own is read by."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import VideoFeatures, VideoHead
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.temporal.modules import TEMPORAL_MODULES, temporal_module

SPACES = ("joint", "cls")
TEXT_BLOCK_PARTS = ("layer_norm1", "self_attn", "layer_norm2", "mlp")


def text_transformer(ilfm: ImageLanguageModel) -> tuple[nn.ModuleList, torch.Tensor]:
    """The text tower's blocks and position table when they can initialise a temporal transformer over joint-space
    frame embeddings (CLIP4Clip): a transformers CLIP-style text model (``encoder.layers`` of blocks with
    ``layer_norm1``, ``self_attn``, ``layer_norm2``, ``mlp``; ``embeddings.position_embedding``) whose width is the
    joint dim. Otherwise a VideoadaptError that says what the tower is."""
    dims = ilfm.dims
    tower = ilfm.text_modules()[0]
    layers = getattr(getattr(tower, "encoder", None), "layers", None)
    table = getattr(getattr(tower, "embeddings", None), "position_embedding", None)
    clip_style = (
        isinstance(layers, nn.ModuleList)
        and len(layers) > 0
        and all(hasattr(layers[0], part) for part in TEXT_BLOCK_PARTS)
        and isinstance(table, nn.Embedding)
    )
    if not clip_style or dims.text_width != dims.embed_dim:
        raise VideoadaptError(
            f"temporal 'seqtransf' copies CLIP4Clip's initialisation from the text tower (its first blocks and its "
            f"position table), which needs a CLIP-style text transformer as wide as the joint space; {ilfm.name}'s "
            f"text tower is {type(tower).__name__} (width {dims.text_width}, joint dim {dims.embed_dim}). Use "
            "temporal 'transformer' (the same structure, zero-initialised)"
        )
    assert isinstance(layers, nn.ModuleList) and isinstance(table, nn.Embedding)
    return layers, table.weight


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
        if temporal == "seqtransf":
            if space != "joint":
                raise VideoadaptError("temporal 'seqtransf' (text-tower blocks) reads joint-space frame embeddings")
            text_tower = text_transformer(ilfm)
            self.temporal = temporal_module(temporal, self.width, ilfm.dims, text_tower=text_tower, **options)
        else:
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
            return VideoFeatures(
                frames=frames, video=pooled, patches=features.patches, outputs=outputs, cls=features.cls
            )
        frames, pooled = self.temporal(inputs)
        return VideoFeatures(frames=frames, video=pooled, patches=features.patches, cls=features.cls)


def head_from_config(ilfm: ImageLanguageModel, config: TemporalHeadConfig) -> TemporalHead:
    """The temporal head a paradigm's config describes."""
    return TemporalHead(ilfm, temporal=config.temporal, space=config.space, **config.module_options)


__all__ = ["SPACES", "TEMPORAL_MODULES", "TemporalHead", "head_from_config", "temporal_module", "text_transformer"]
