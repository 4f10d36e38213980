"""Inject adapters into the vision blocks of an ILFM.

Every supported block (transformers' CLIP and SigLIP encoder layers, which TinyCLIP reuses) is a pre-LN block
with the same parts: ``layer_norm1``, ``self_attn``, ``layer_norm2``, ``mlp``. :class:`AdaptedBlock` replaces a
block in its ``ModuleList`` and recomputes it from those parts with the adapters in place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.adapter.config import VARIANTS, AdapterConfig
from videoadapt.paradigms.adapter.layer import BottleneckAdapter, STAdapter
from videoadapt.paradigms.base import TemporalContext

BLOCK_PARTS = ("layer_norm1", "self_attn", "layer_norm2", "mlp")


def _attend(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = block.self_attn(hidden_states=x, attention_mask=None)
    return out[0] if isinstance(out, tuple) else out


class AdaptedBlock(nn.Module):
    def __init__(
        self, block: nn.Module, config: AdapterConfig, dim: int, grid: tuple[int, int], context: TemporalContext
    ) -> None:
        super().__init__()
        missing = [p for p in BLOCK_PARTS if not hasattr(block, p)]
        if missing:
            raise VideoadaptError(
                f"adapter: {type(block).__name__} lacks {missing}; only CLIP-style blocks are supported"
            )
        self.block = block
        self.config = config
        self.context = context
        width = config.bottleneck(dim)
        self.scale = config.branch_scale()
        if config.variant == "st_adapter":
            unknown = set(config.before) - {"attention", "mlp"}
            if unknown or not config.before:
                raise VideoadaptError(f"adapter: ST-Adapter goes before 'attention' and/or 'mlp', got {config.before}")
            self.before = nn.ModuleDict({p: STAdapter(dim, width, config.kernel, grid, context) for p in config.before})
        elif config.variant == "aim":
            self.temporal = BottleneckAdapter(dim, width, skip=False)
            self.spatial = BottleneckAdapter(dim, width, skip=True)
            self.joint = BottleneckAdapter(dim, width, skip=False)
        else:
            self.parallel = BottleneckAdapter(dim, width, skip=False, activation="relu")

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        b = self.block
        x = hidden_states
        variant = self.config.variant
        if variant == "st_adapter":
            if "attention" in self.before:
                x = self.before["attention"](x)
            x = x + _attend(b, b.layer_norm1(x))
            if "mlp" in self.before:
                x = self.before["mlp"](x)
            return x + b.mlp(b.layer_norm2(x))
        if variant == "aim":
            # Temporal adaptation: the block's own (frozen) attention, applied across the frames of each token.
            bt, n, d = x.shape
            t = self.context.frames
            xt = x.view(bt // t, t, n, d).transpose(1, 2).reshape(-1, t, d)
            xt = self.temporal(_attend(b, b.layer_norm1(xt)))
            x = x + xt.view(bt // t, n, t, d).transpose(1, 2).reshape(bt, n, d)
            x = x + self.spatial(_attend(b, b.layer_norm1(x)))
            normed = b.layer_norm2(x)
            return x + b.mlp(normed) + self.scale * self.joint(normed)
        x = x + _attend(b, b.layer_norm1(x))
        # AdaptFormer's branch reads the residual stream itself, not the LayerNorm output (official code).
        return x + b.mlp(b.layer_norm2(x)) + self.scale * self.parallel(x)


def inject_adapters(ilfm: ImageLanguageModel, config: AdapterConfig, context: TemporalContext) -> list[AdaptedBlock]:
    if config.variant not in VARIANTS:
        raise VideoadaptError(f"adapter: unknown variant {config.variant!r}; known: {', '.join(VARIANTS)}")
    blocks = ilfm.vision_blocks()
    count = len(blocks) if config.blocks is None else config.blocks
    if not 1 <= count <= len(blocks):
        raise VideoadaptError(f"adapter: blocks must be in 1..{len(blocks)}, got {count}")
    dims = ilfm.dims
    adapted = []
    for index in range(len(blocks) - count, len(blocks)):
        if isinstance(blocks[index], AdaptedBlock):
            raise VideoadaptError("adapter: this backbone already has adapters")
        block = AdaptedBlock(blocks[index], config, dims.width, dims.patch_grid, context)
        for name, parameter in block.named_parameters():
            parameter.requires_grad_(not name.startswith("block."))
        blocks[index] = block
        adapted.append(block)
    return adapted
