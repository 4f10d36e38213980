"""A small motion stream: frame differences through a 3D convolutional network, as the second (dynamic) stream
that fine-tuning with extra models puts beside an image model (survey Sec. III-B3).

Published two-stream designs read a pretrained video network — SlowFast in CoSD (Gu et al., "Collaborative Static
and Dynamic Vision-Language Streams for Spatio-Temporal Video Grounding", CVPR 2023), a 3D-CNN in CoSTA (Liang et
al., AAAI 2024), optical flow in classic two-stream networks (Simonyan & Zisserman, NeurIPS 2014). None ships
offline here, so the stream is written small and trained from scratch; its input is the temporal difference of
consecutive frames (the RGB-difference modality of TSN, Wang et al., ECCV 2016), which carries motion and no
appearance, so the stream adds what per-frame image features lack instead of relearning them.
"""

from __future__ import annotations

import torch
from torch import nn


def frame_differences(video: torch.Tensor) -> torch.Tensor:
    """``[B,T,3,H,W] -> [B,T,3,H,W]``: ``x[t] - x[t-1]``, and zeros for the first frame so that every frame keeps
    a motion slot aligned with its image features."""
    return torch.cat([torch.zeros_like(video[:, :1]), video[:, 1:] - video[:, :-1]], dim=1)


def _groups(channels: int) -> int:
    # GroupNorm instead of BatchNorm: statistics do not depend on the batch (batch size 1, eval = train).
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class MotionEncoder(nn.Module):
    """``video [B,T,3,H,W] -> tokens [B,T,G*G,width]``: a 3D CNN over frame differences.

    A stem ``Conv3d(3, c0, kernel (3,7,7), stride (1,4,4))`` and one ``Conv3d(kernel 3, stride (1,2,2))`` stage per
    further channel count shrink space and keep time (stride 1 over T, as SlowFast's fast pathway does), so each
    frame keeps its own motion features; adaptive pooling to a ``grid x grid`` map gives ``G*G`` tokens per frame,
    projected to ``width`` and tagged with learned time and position embeddings.
    """

    def __init__(
        self, width: int, channels: tuple[int, ...] = (16, 32, 64), grid: int = 2, max_frames: int = 64
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("MotionEncoder needs at least one channel count")
        layers: list[nn.Module] = [
            nn.Conv3d(3, channels[0], (3, 7, 7), stride=(1, 4, 4), padding=(1, 3, 3)),
            nn.GroupNorm(_groups(channels[0]), channels[0]),
            nn.GELU(),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [
                nn.Conv3d(c_in, c_out, 3, stride=(1, 2, 2), padding=1),
                nn.GroupNorm(_groups(c_out), c_out),
                nn.GELU(),
            ]
        self.network = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d((None, grid, grid))
        self.project = nn.Linear(channels[-1], width)
        self.time = nn.Parameter(torch.zeros(max_frames, width))
        self.position = nn.Parameter(torch.zeros(grid * grid, width))
        nn.init.normal_(self.time, std=0.02)
        nn.init.normal_(self.position, std=0.02)
        self.grid = grid
        self.max_frames = max_frames

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        if t > self.max_frames:
            raise ValueError(f"MotionEncoder was built for at most {self.max_frames} frames, got {t}")
        x = frame_differences(video).transpose(1, 2)  # [B,3,T,H,W]
        # The 3D CNN runs in fp32 even under bf16 autocast: torch 2.13's CPU bf16 Conv3d gives a NaN weight gradient
        # over 2 frames, and its two-thread bf16 kernels spin at barriers when another process holds a core. The
        # network is small; fp32 costs little.
        with torch.autocast(x.device.type, enabled=False):
            x = self.pool(self.network(x.float()))  # [B,C,T,G,G]
        x = x.flatten(3).permute(0, 2, 3, 1)  # [B,T,G*G,C]
        tokens = self.project(x)
        return tokens + self.time[:t, None].to(tokens.dtype) + self.position.to(tokens.dtype)
