"""The modules adapters insert. Each starts as a zero function, so an adapted model first computes exactly what
the pretrained one did."""

from __future__ import annotations

import math

import torch
from torch import nn

from videoadapt.paradigms.base import TemporalContext


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
