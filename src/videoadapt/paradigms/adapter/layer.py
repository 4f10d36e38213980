"""The modules adapters insert. Each starts as a zero function, so an adapted model first computes exactly what
the pretrained one did."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.paradigms.base import TemporalContext


class TemporalEmbedding(nn.Module):
    """A learned per-frame embedding ``[frames, D]`` (zero at first) added to every token of frame t of ``[B*T, N,
    D]`` tokens (AIM's and ZeroI2V's ``temporal_embedding``, shared over the tokens of a frame)."""

    def __init__(self, frames: int, dim: int, context: TemporalContext) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(frames, dim))
        self.context = context

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.context.frames
        if t > self.table.shape[0]:
            raise VideoadaptError(f"adapter: temporal_embedding holds {self.table.shape[0]} frames, the video has {t}")
        bt, n, d = tokens.shape
        return (tokens.view(bt // t, t, n, d) + self.table[:t, None, :].to(tokens.dtype)).view(bt, n, d)


class Chain(nn.Module):
    """``then(first(*args, **kwargs))``: inserts a module before or after an existing one in place of it (keyword
    arguments, such as transformers' ``interpolate_pos_encoding``, go to ``first``)."""

    def __init__(self, first: nn.Module, then: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.then = then

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.then(self.first(*args, **kwargs))


class STAdapter(nn.Module):
    """ST-Adapter: ``fc1 -> depthwise Conv3d(kernel over T,H,W) -> fc2`` on the patch tokens of every frame,
    added to them; prefix tokens (CLS, prompts) pass unchanged. The convolution starts at zero (official code)."""

    def __init__(
        self, dim: int, width: int, kernel: tuple[int, int, int], grid: tuple[int, int], context: TemporalContext
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, width)
        self.conv = nn.Conv3d(width, width, kernel, padding=tuple(k // 2 for k in kernel), groups=width)
        self.fc2 = nn.Linear(width, dim)
        for tensor in (self.conv.weight, self.conv.bias, self.fc1.bias, self.fc2.bias):
            nn.init.zeros_(tensor)
        self.grid = grid
        self.context = context

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bt, length, dim = tokens.shape
        t = self.context.frames
        h, w = self.grid
        prefix = length - h * w
        x = self.fc1(tokens[:, prefix:])  # [BT, HW, C]
        width = x.shape[-1]
        x = x.view(bt // t, t, h, w, width).permute(0, 4, 1, 2, 3)  # [B, C, T, H, W]
        x = self.conv(x).permute(0, 2, 3, 4, 1).reshape(bt, h * w, width)
        return torch.cat([tokens[:, :prefix], tokens[:, prefix:] + self.fc2(x)], dim=1)


class BottleneckAdapter(nn.Module):
    """``fc2(act(fc1(x)))``, plus ``x`` when ``skip`` (AIM's adapters; AdaptFormer's with ReLU, no skip).

    The up-projection starts at zero, as in both official implementations, so the branch adds nothing at first."""

    def __init__(self, dim: int, width: int, skip: bool, activation: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, width)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.fc2 = nn.Linear(width, dim)
        self.skip = skip
        nn.init.kaiming_uniform_(self.fc1.weight, a=math.sqrt(5))
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.act(self.fc1(x)))
        return x + out if self.skip else out


class LinearAdapter(nn.Module):
    """ZeroI2V's linear adapter: ``x + scale * fc2(dropout(fc1(x)))``, no activation, so that after training it is
    the affine map ``(I + s W2 W1) x + s (W2 b1 + b2)`` and merges into a neighbouring Linear layer (official
    leexinhao/ZeroI2V vit_zero_clip.py ``LinearAdapter``; merging: tools/weight_reparam.py).

    fc1 starts as the official ``_init_weights`` (truncated normal, std 0.02), fc2 at zero: the identity at first."""

    def __init__(self, dim: int, width: int, scale: float, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, width)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, dim)
        self.scale = scale
        nn.init.trunc_normal_(self.fc1.weight, std=0.02)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.fc2(self.dropout(self.fc1(x)))

    @torch.no_grad()
    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, c)`` with ``adapter(x) = A x + c`` in eval mode, in float64 for an exact merge."""
        w1, b1 = self.fc1.weight.double(), self.fc1.bias.double()
        w2, b2 = self.fc2.weight.double(), self.fc2.bias.double()
        eye = torch.eye(w2.shape[0], dtype=torch.float64, device=w2.device)
        return eye + self.scale * (w2 @ w1), self.scale * (w2 @ b1 + b2)


def shifted_attention(attention: nn.Module, x: torch.Tensor, frames: int, shift_div: int) -> torch.Tensor:
    """Self-attention of a frozen CLIP/SigLIP attention module (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``)
    over ``[B*T, N, D]`` frame tokens, with ZeroI2V's STDHA: after the key/value projections, channels
    ``[0, D//shift_div)`` come from frame t-1 and ``[D//shift_div, 2*D//shift_div)`` from frame t+1, the first and
    last frames keeping their own (official mmaction/models/common/stdha.py, ``TemporalShift``, ``divide_head=False``,
    which shifts channels of the projected k and v before the heads are split). No parameters."""
    bt, n, d = x.shape
    heads = attention.num_heads
    q, k, v = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
    fold = d // shift_div
    if frames > 1 and fold > 0:
        k, v = (_shift_channels(t, frames, fold) for t in (k, v))

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(bt, n, heads, d // heads).transpose(1, 2)

    # scaled_dot_product_attention's default scale is head_dim ** -0.5, the scale CLIP and SigLIP use.
    out = nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return attention.out_proj(out.transpose(1, 2).reshape(bt, n, d))


def _shift_channels(t: torch.Tensor, frames: int, fold: int) -> torch.Tensor:
    bt, n, d = t.shape
    x = t.view(bt // frames, frames, n, d)
    back = torch.cat([x[:, :1, :, :fold], x[:, :-1, :, :fold]], dim=1)  # frame t reads frame t-1
    ahead = torch.cat([x[:, 1:, :, fold : 2 * fold], x[:, -1:, :, fold : 2 * fold]], dim=1)  # ... and t+1
    return torch.cat([back, ahead, x[..., 2 * fold :]], dim=-1).view(bt, n, d)
