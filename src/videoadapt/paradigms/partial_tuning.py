"""Partial tuning (survey Sec. III-B2): only a named subset of the backbone trains.

``subset="bias_norm"`` — biases and LayerNorm parameters (BitFit-like); ``subset="norm"`` — LayerNorms only;
``subset="last_blocks"`` with ``blocks=k`` — the last k vision blocks and what follows them (post-LayerNorm,
projection); ``subset="temporal_attention"`` — divided temporal attention (TimeSformer, Bertasius et al., ICML
2021, official facebookresearch/TimeSformer lib/models/vit.py) inserted before the spatial attention of the last
``blocks`` vision blocks (default: all), initialised from each block's own attention and first LayerNorm with a
zero output projection, so the model starts as the image model; trained: the inserted temporal attention and
every LayerNorm of the vision tower (the survey's partial tuning with temporal attention, Sec. III-B2).

Options (:class:`PartialTuningConfig`): ``subset``, ``blocks``; the default head's ``temporal`` ("mean"),
``space`` and module options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.paradigms.temporal_head import head_from_config
from videoadapt.registry import registry

SUBSETS = ("bias_norm", "norm", "last_blocks", "temporal_attention")


@dataclass(frozen=True)
class PartialTuningConfig(TemporalHeadConfig):
    """``blocks``: with ``last_blocks`` how many of the last blocks train (default 2); with ``temporal_attention``
    how many of the last blocks get temporal attention (default all); refused with the other subsets."""

    paradigm: ClassVar[str] = "partial_tuning"
    subset: Literal["bias_norm", "norm", "last_blocks", "temporal_attention"] = "bias_norm"
    blocks: int | None = None

    def validate(self) -> None:
        self.require("blocks", self.blocks is None or self.blocks >= 1, "at least 1")
        if self.blocks is not None and self.subset in ("bias_norm", "norm"):
            raise VideoadaptError(
                f"partial_tuning: option blocks applies to the subsets last_blocks and temporal_attention, "
                f"not {self.subset}"
            )


@registry.register("paradigm", "partial_tuning")
class PartialTuning(Paradigm):
    name = "partial_tuning"
    config_class = PartialTuningConfig
    config: PartialTuningConfig
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        subset = self.config.subset
        if subset == "temporal_attention":
            _insert_temporal_attention(ilfm, context, self.config.blocks)
            return
        if subset == "last_blocks":
            blocks = ilfm.vision_blocks()
            k = 2 if self.config.blocks is None else self.config.blocks
            if not 1 <= k <= len(blocks):
                raise VideoadaptError(f"partial_tuning: blocks must be in 1..{len(blocks)}, got {k}")
            chosen = set(map(id, blocks[len(blocks) - k :].parameters()))
            after = _after_blocks(ilfm)
            for module in ilfm.vision_modules():
                for parameter in module.parameters():
                    if id(parameter) in chosen or id(parameter) in after:
                        parameter.requires_grad_(True)
            return
        for module in ilfm.vision_modules():
            for child in module.modules():
                norm = isinstance(child, nn.LayerNorm | nn.BatchNorm2d | nn.GroupNorm)
                for name, parameter in child.named_parameters(recurse=False):
                    if norm or (subset == "bias_norm" and name == "bias"):
                        parameter.requires_grad_(True)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return head_from_config(ilfm, self.config)


def _insert_temporal_attention(ilfm: ImageLanguageModel, context: TemporalContext, blocks: int | None) -> None:
    from videoadapt.temporal.divided_attention import TemporalThenSpatialBlock

    layers = ilfm.vision_blocks()
    k = len(layers) if blocks is None else blocks
    if not 1 <= k <= len(layers):
        raise VideoadaptError(f"partial_tuning: blocks must be in 1..{len(layers)}, got {k}")
    if any(isinstance(b, TemporalThenSpatialBlock) for b in layers):
        raise VideoadaptError("partial_tuning: this backbone already has temporal attention")
    for index in range(len(layers) - k, len(layers)):
        if not all(hasattr(layers[index], part) for part in ("layer_norm1", "self_attn")):
            raise VideoadaptError(f"partial_tuning: {type(layers[index]).__name__} is not a CLIP-style block")
        wrapped = TemporalThenSpatialBlock(layers[index], ilfm.dims.num_patches, context)
        wrapped.temporal.requires_grad_(True)
        layers[index] = wrapped
    # Every LayerNorm of the vision tower trains too (the temporal LayerNorms are among them).
    for module in ilfm.vision_modules():
        for child in module.modules():
            if isinstance(child, nn.LayerNorm):
                child.requires_grad_(True)


def _after_blocks(ilfm: ImageLanguageModel) -> set[int]:
    """Parameters after the last block: the final LayerNorm, SigLIP's pooling head, the projection."""
    ids: set[int] = set()
    for module in ilfm.vision_modules():
        if isinstance(module, nn.Linear):  # a projection into the joint space
            ids.update(map(id, module.parameters()))
            continue
        for name, child in module.named_modules():
            if name.split(".")[-1] in ("post_layernorm", "head"):
                ids.update(map(id, child.parameters()))
    return ids
