"""Motion saliency as a second stream: where the pixels change, which image-model patches hold the acting object.

The survey's extra models include "motion saliency maps" beside detections and masks (Sec. III-B3). The cheapest
saliency map is the magnitude of the temporal frame difference (background subtraction for a static camera, the
RGB-difference modality of TSN): it is large on whatever moves, grows, appears or changes colour, and near zero
elsewhere. Pooled to the patch grid, it weights the frozen image model's patch tokens into one *actor token* per
frame — the pretrained appearance features (shape, colour) of the object the event is about — and its weighted
centroid and spread give the actor's track. A frame-level CLS embedding summarises the whole scene; these tokens
say which object in it acts, which a caption such as "a red star moves left" needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GEOMETRY = 5
"""Per-frame saliency geometry: centroid x, y, spread x, y, log motion energy."""


def motion_saliency(video: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``video [B,T,3,H,W] -> [B,T,rows*cols]``: mean absolute temporal difference per patch cell, each frame
    the mean of its differences with both neighbours (one-sided at the ends), so that every frame, the first
    included, sees the motion around it."""
    if video.shape[1] < 2:
        return video.new_zeros(video.shape[0], video.shape[1], grid[0] * grid[1])
    step = (video[:, 1:] - video[:, :-1]).abs().mean(dim=2)  # [B,T-1,H,W]
    before = torch.cat([step[:, :1], step], dim=1)
    after = torch.cat([step, step[:, -1:]], dim=1)
    energy = (before + after) / 2  # [B,T,H,W]
    b, t = energy.shape[:2]
    return F.adaptive_avg_pool2d(energy.flatten(0, 1), grid).view(b, t, grid[0] * grid[1])


def saliency_weights(saliency: torch.Tensor, floor: float) -> torch.Tensor:
    """``[B,T,P] -> [B,T,P]`` summing to 1 per frame: proportional to the saliency plus ``floor`` times its
    largest value in the clip, so that a frame where nothing changes (before an event starts) pools all patches
    evenly instead of amplifying noise."""
    peak = saliency.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    weights = saliency / peak + floor
    return weights / weights.sum(dim=-1, keepdim=True)


class SaliencyEncoder(nn.Module):
    """``(video [B,T,3,H,W], patches [B,T,P,D]) -> tokens [B,T,width]``: per frame, the saliency-weighted mean
    of the patch tokens (projected) plus an embedding of the saliency geometry, tagged with a learned time
    embedding. Only the projections learn; the saliency itself is fixed."""

    def __init__(
        self, patch_dim: int, width: int, grid: tuple[int, int], floor: float = 0.05, max_frames: int = 64
    ) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.norm = nn.LayerNorm(patch_dim)
        self.project = nn.Linear(patch_dim, width)
        self.geometry = nn.Sequential(nn.Linear(GEOMETRY, width), nn.GELU(), nn.Linear(width, width))
        self.time = nn.Parameter(torch.zeros(max_frames, width))
        nn.init.normal_(self.time, std=0.02)
        self.floor = float(floor)
        self.max_frames = max_frames

    def forward(self, video: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        b, t, p, _ = patches.shape
        if t > self.max_frames:
            raise ValueError(f"SaliencyEncoder was built for at most {self.max_frames} frames, got {t}")
        if p != self.grid[0] * self.grid[1]:
            raise ValueError(f"SaliencyEncoder was built for a {self.grid} patch grid, got {p} patch tokens a frame")
        saliency = motion_saliency(video.float(), self.grid)  # [B,T,P]
        weights = saliency_weights(saliency, self.floor)
        pooled = torch.einsum("btp,btpd->btd", weights.to(patches.dtype), self.norm(patches))
        tokens = self.project(pooled)
        return tokens + self.geometry(_geometry(saliency, weights, self.grid).to(tokens.dtype)) + self.time[:t]


def _geometry(saliency: torch.Tensor, weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[B,T,GEOMETRY]``: the weighted centroid and spread on the patch grid in [-1, 1], and log energy."""
    rows = torch.linspace(-1.0, 1.0, grid[0], device=weights.device, dtype=weights.dtype)
    cols = torch.linspace(-1.0, 1.0, grid[1], device=weights.device, dtype=weights.dtype)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    xs, ys = xs.flatten(), ys.flatten()
    cx = (weights * xs).sum(-1)
    cy = (weights * ys).sum(-1)
    sx = (weights * (xs - cx[..., None]) ** 2).sum(-1).sqrt()
    sy = (weights * (ys - cy[..., None]) ** 2).sum(-1).sqrt()
    energy = torch.log(saliency.sum(-1) + 1e-3)
    return torch.stack([cx, cy, sx, sy, energy], dim=-1)
