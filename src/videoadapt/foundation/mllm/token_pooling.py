"""How the projected frame tokens of a video become the visual tokens the language model reads.

Input ``[B,T,P,H]``: T frames of P = rows × cols patch tokens, already projected to the LM width H (both PLLaVA and
LLaVA-OneVision pool after the projector). Output ``[B,N,H]`` with N fixed by the pooling and T.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from videoadapt.errors import VideoadaptError


def _grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[B,T,P,H]`` → ``[B,T,H,rows,cols]``."""
    b, t, p, h = tokens.shape
    rows, cols = grid
    if rows * cols != p:
        raise VideoadaptError(f"{p} patch tokens per frame do not form the {rows}x{cols} grid the tower declares")
    return tokens.reshape(b, t, rows, cols, h).permute(0, 1, 4, 2, 3)


class AdaptivePool3d(nn.Module):
    """PLLaVA's pooling (Xu et al., "PLLaVA: Parameter-free LLaVA Extension from Images to Videos", 2024): adaptive
    average pooling over (time, rows, cols) to ``output`` = (t, h, w); ``t`` None keeps every frame. Tokens come out
    frame by frame, row by row: ``N = t·h·w``. Parameter-free."""

    def __init__(self, output: tuple[int | None, int, int]) -> None:
        super().__init__()
        if len(output) != 3 or any(v is not None and int(v) < 1 for v in output):
            raise VideoadaptError(f"PLLaVA pooling output must be (frames or None, rows, cols) >= 1, got {output}")
        self.output = (None if output[0] is None else int(output[0]), int(output[1]), int(output[2]))

    def tokens_for(self, frames: int, grid: tuple[int, int]) -> int:
        t = frames if self.output[0] is None else self.output[0]
        return t * self.output[1] * self.output[2]

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = _grid(tokens, grid).permute(0, 2, 1, 3, 4)  # [B,H,T,rows,cols]
        t = x.shape[2] if self.output[0] is None else self.output[0]
        x = F.adaptive_avg_pool3d(x, (t, self.output[1], self.output[2]))
        return x.flatten(2).transpose(1, 2)


class SpatialPool2x2(nn.Module):
    """LLaVA-OneVision's video tokens (Li et al., "LLaVA-OneVision: Easy Visual Task Transfer", 2024; transformers'
    ``LlavaOnevisionModel.apply_pooling``): each frame's grid bilinearly resized to ⌈rows/2⌉ × ⌈cols/2⌉ (an exact
    2×2 average on even grids), then a learnt separator token after every frame, so the language model sees where
    one frame ends (OneVision appends its ``image_newline`` once, after the last frame). ``N = T·(⌈r/2⌉⌈c/2⌉ + 1)``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        # OneVision initialises image_newline as randn / sqrt(width).
        self.separator = nn.Parameter(torch.randn(width) / math.sqrt(width))

    def tokens_for(self, frames: int, grid: tuple[int, int]) -> int:
        return frames * (math.ceil(grid[0] / 2) * math.ceil(grid[1] / 2) + 1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = _grid(tokens, grid)
        b, t, h, rows, cols = x.shape
        x = F.interpolate(x.flatten(0, 1), size=(math.ceil(rows / 2), math.ceil(cols / 2)), mode="bilinear")
        x = x.flatten(2).transpose(1, 2).reshape(b, t, -1, h)
        separator = self.separator.to(x.dtype).expand(b, t, 1, h)
        return torch.cat([x, separator], dim=2).flatten(1, 2)


class NoPool(nn.Module):
    """Every patch token of every frame, in order: ``N = T·P``."""

    def tokens_for(self, frames: int, grid: tuple[int, int]) -> int:
        return frames * grid[0] * grid[1]

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return tokens.flatten(1, 2)


POOLINGS = ("pllava", "onevision", "none")


def build_pooling(name: str, width: int, output: tuple[int | None, int, int]) -> nn.Module:
    if name == "pllava":
        return AdaptivePool3d(output)
    if name == "onevision":
        return SpatialPool2x2(width)
    if name == "none":
        return NoPool()
    raise VideoadaptError(f"unknown MLLM token pooling {name!r}; known: {', '.join(POOLINGS)}")
