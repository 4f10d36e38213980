"""A space-time transformer over the frozen patch tokens of every frame (ViViT's joint space-time attention,
"model 1", run on top of an image model instead of inside it).

Frame-level embeddings keep what a caption of a still image needs (which objects, their colours and rough
places) and lose the fine geometry that motion lives in: a 12-degree turn, a slide within one cell of a 3x3 grid.
The patch tokens still have it. This post-network module reads them:

* the grid of ``P`` patch tokens of each frame is average-pooled to ``grid x grid`` cells (fewer tokens: attention
  over ``T * grid**2`` tokens stays cheap on a CPU), layer-normalised and projected to ``width``;
* learned space and time position embeddings are added (both initialised N(0, 0.02), as in ViViT);
* one learned summary token is prepended, and ``layers`` pre-LN transformer layers attend jointly over space and
  time;
* video = mean over time of the input frame features + ``out_proj(summary token)``, ``out_proj`` initialised to
  zero, so that training starts exactly at mean pooling of the image model's frame embeddings (as the Q-Former and
  the temporal transformer here do). The frame features pass through unchanged.

Everything it reads is in the feature cache (patch tokens are cached), so it is a frozen-feature paradigm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, TextFeatures


class SpaceTimeTransformer(nn.Module):
    """``(frame features [B,T,F], FrameFeatures) -> (frames [B,T,F], video [B,F], {"summary": [B,W]})``."""

    takes_features = True
    needs_text = False

    def __init__(
        self,
        feature_width: int,
        patch_width: int,
        patch_grid: tuple[int, int],
        grid: int | None = None,
        width: int = 192,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        max_frames: int = 64,
    ) -> None:
        super().__init__()
        rows, cols = patch_grid
        # 4x4 cells by default (64 px TinyCLIP: 8x8 patches, 2x2 a cell), fewer on smaller grids.
        grid = min(4, rows, cols) if grid is None else grid
        if grid < 1 or grid > min(rows, cols):
            raise VideoadaptError(f"spacetime: grid must be between 1 and the patch grid {rows}x{cols}, got {grid}")
        if width % heads:
            raise VideoadaptError(f"spacetime: width {width} is not divisible by heads {heads}")
        self.patch_grid, self.grid, self.max_frames = (rows, cols), grid, max_frames
        self.norm_in = nn.LayerNorm(patch_width)
        self.embed = nn.Linear(patch_width, width)
        self.space = nn.Parameter(torch.empty(grid * grid, width))
        self.time = nn.Parameter(torch.empty(max_frames, width))
        self.summary = nn.Parameter(torch.empty(1, 1, width))
        for parameter in (self.space, self.time, self.summary):
            nn.init.normal_(parameter, std=0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                heads,
                dim_feedforward=4 * width,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.out_proj = nn.Linear(width, feature_width)
        nn.init.zeros_(self.out_proj.weight)  # starts as mean pooling of the frame features (module docstring)
        nn.init.zeros_(self.out_proj.bias)

    def tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """``[B,T,P,D]`` patch tokens -> ``[B, T*grid*grid, width]`` embedded space-time tokens."""
        b, t, p, d = patches.shape
        rows, cols = self.patch_grid
        if p != rows * cols:
            raise VideoadaptError(f"spacetime: expected {rows}x{cols}={rows * cols} patch tokens, got {p}")
        if t > self.max_frames:
            raise VideoadaptError(f"spacetime was built for at most {self.max_frames} frames, got {t}")
        grid = patches.reshape(b * t, rows, cols, d).permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)  # [B*T, g*g, D]
        x = self.embed(self.norm_in(pooled)).reshape(b, t, self.grid * self.grid, -1)
        x = x + self.space.to(x.dtype)[None, None] + self.time[:t].to(x.dtype)[None, :, None]
        return x.flatten(1, 2)

    def forward(
        self, frames: torch.Tensor, features: FrameFeatures, text: TextFeatures | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        x = self.tokens(features.patches.to(self.embed.weight.dtype))
        x = torch.cat([self.summary.to(x.dtype).expand(len(x), -1, -1), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        summary = self.norm(x[:, 0])
        video = frames.mean(dim=1) + self.out_proj(summary).to(frames.dtype)
        return frames, video, {"summary": summary}
