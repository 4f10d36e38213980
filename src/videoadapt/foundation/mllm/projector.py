"""The projector from image-tower tokens to the language model's embedding space."""

from __future__ import annotations

import torch
from torch import nn


class MLPProjector(nn.Module):
    """LLaVA-1.5's projector (Liu et al., "Improved Baselines with Visual Instruction Tuning", 2023; transformers'
    ``LlavaMultiModalProjector``): ``Linear(D, H) → GELU → Linear(H, H)``, H the language model's width. Applied to
    every token: ``[..., D] -> [..., H]``. ``norm``: a LayerNorm on the tower tokens first, as Qwen2-VL's patch merger
    (``ln_q``), so that the projector starts from unit-scale inputs whatever the tower's residual stream holds."""

    def __init__(self, vision_width: int, lm_width: int, norm: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(vision_width) if norm else nn.Identity()
        self.linear_1 = nn.Linear(vision_width, lm_width)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(lm_width, lm_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(self.norm(tokens))))
