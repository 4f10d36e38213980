"""Parameter-free temporal aggregation."""

from __future__ import annotations

import torch
from torch import nn


class MeanPool(nn.Module):
    """Average over time (CLIP4Clip "meanP"): ``[B,T,D] -> ([B,T,D], [B,D])``; frames pass through unchanged."""

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return frames, frames.mean(dim=1)
