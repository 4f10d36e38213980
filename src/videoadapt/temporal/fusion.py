"""Cross-stream fusion: the tokens of one stream (the image model's frames) read another stream (motion features,
detected objects) through cross-attention.

This is the collaboration step of two-stream grounding models: CoSD (Gu et al., CVPR 2023) lets its static and
dynamic streams exchange information through cross-attention, CoSTA (Liang et al., AAAI 2024) entangles its static
and dynamic features the same way. Here the image stream is the query and the other stream the keys and values, so
the output stays aligned with the image model's frames (and its joint text space). Each residual branch ends in a
zero-initialised projection, so at initialisation the module is the identity: the fused stream starts as the plain
image-model stream, and the extra model only adds what training finds useful.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossStreamLayer(nn.Module):
    """Pre-LN ``x + attn(LN(x), LN(context))`` then ``x + MLP(LN(x))``; both branches start at zero."""

    def __init__(self, width: int, heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            heads = next(h for h in range(min(heads, width), 0, -1) if width % h == 0)
        self.norm_query = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        for tensor in (self.attention.out_proj.weight, self.attention.out_proj.bias, *self.mlp[-1].parameters()):
            nn.init.zeros_(tensor)

    def forward(self, x: torch.Tensor, context: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        kv = self.norm_context(context)
        x = x + self.attention(self.norm_query(x), kv, kv, key_padding_mask=padding, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class CrossStreamFusion(nn.Module):
    """``(x [B,N,W], context [B,M,W], padding [B,M] | None) -> [B,N,W]``; ``padding`` is True where a context
    token is absent. At least one context token per sample must be present."""

    def __init__(self, width: int, layers: int = 1, heads: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossStreamLayer(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, context: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, context, padding)
        return x
