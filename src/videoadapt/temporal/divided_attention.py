"""Divided temporal attention (TimeSformer, Bertasius et al., "Is Space-Time Attention All You Need for Video
Understanding?", ICML 2021; official facebookresearch/TimeSformer, lib/models/vit.py, ``Block`` with
``attention_type="divided_space_time"``).

Inside a block, before its spatial attention, every patch position attends over time:
``x_patch <- x_patch + temporal_fc(temporal_attn(temporal_norm1(x_patch)))`` with the sequence running over the T
frames of one position. As in the official ``load_pretrained`` (lib/models/helpers.py), ``temporal_attn`` and
``temporal_norm1`` start as copies of the block's own spatial attention and first LayerNorm; ``temporal_fc`` starts
at zero (official ``VisionTransformer.__init__`` zeroes it in every block but the first; we zero it in every
block so that the adapted model first computes exactly what the image model does).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # only the type: temporal modules do not import the paradigms package
    from videoadapt.paradigms.base import TemporalContext


class DividedTemporalAttention(nn.Module):
    """Temporal attention over the patch tokens of ``[B*T, N, D]`` frame tokens (``context.frames`` = T).

    Prefix tokens (CLS, prompts) are left out, as TimeSformer leaves its CLS token out of temporal attention;
    unlike TimeSformer, each frame keeps its own CLS token (the frames are still encoded as images, and the head
    pools them).
    """

    def __init__(self, block: nn.Module, num_patches: int, context: TemporalContext) -> None:
        super().__init__()
        # Copies of the pretrained block's parts (official init for temporal_attn / temporal_norm1).
        self.norm = copy.deepcopy(block.layer_norm1)
        self.attention = copy.deepcopy(block.self_attn)
        width = self.norm.normalized_shape[0]
        self.fc = nn.Linear(width, width)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.num_patches = num_patches
        self.context = context

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bt, length, dim = tokens.shape
        t = self.context.frames
        prefix = length - self.num_patches
        patches = tokens[:, prefix:]
        # [B*T, P, D] -> [B*P, T, D]: one sequence over time per patch position.
        x = patches.reshape(bt // t, t, self.num_patches, dim).transpose(1, 2).reshape(-1, t, dim)
        out = self.attention(hidden_states=self.norm(x), attention_mask=None)
        out = out[0] if isinstance(out, tuple) else out
        out = out.reshape(bt // t, self.num_patches, t, dim).transpose(1, 2).reshape(bt, self.num_patches, dim)
        return torch.cat([tokens[:, :prefix], patches + self.fc(out)], dim=1)


class TemporalThenSpatialBlock(nn.Module):
    """A pretrained vision block preceded by :class:`DividedTemporalAttention` (TimeSformer's divided order:
    temporal attention, then the block's spatial attention and MLP)."""

    def __init__(self, block: nn.Module, num_patches: int, context: TemporalContext) -> None:
        super().__init__()
        self.temporal = DividedTemporalAttention(block, num_patches, context)
        self.block = block

    def forward(self, hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self.block(self.temporal(hidden_states), attention_mask, *args, **kwargs)
