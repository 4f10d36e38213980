"""Prompt tuning (survey Sec. III-B6): learnable visual prompt tokens in the frozen vision tower (VPT, Jia et al.
2022), shared by every frame of a video.

``depth="shallow"`` prepends prompts once, at the first block; ``depth="deep"`` gives every block its own prompts
(each block's prompt outputs are discarded and replaced by the next block's). Prompts sit after the prefix tokens
(CLS) and are removed again after the last block, so the backbone's outputs keep their usual shapes. Options:
``tokens`` (prompt length per block, 8), ``depth`` ("deep"), ``temporal`` (the default head's module, "mean").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.post_network import TemporalHead
from videoadapt.registry import registry

DEPTHS = ("shallow", "deep")


class PromptedBlock(nn.Module):
    """A vision block with prompt tokens inserted (``insert``) or replaced (deep VPT) before it, and removed after
    it when it is the last block."""

    def __init__(
        self, block: nn.Module, prompts: nn.Parameter | None, prefix: int, count: int, first: bool, last: bool
    ) -> None:
        super().__init__()
        self.block = block
        self.prompts = prompts
        self.prefix, self.count, self.first, self.last = prefix, count, first, last

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        x = hidden_states
        p = self.prefix
        if self.prompts is not None:
            prompts = self.prompts.to(x.dtype).expand(x.shape[0], -1, -1)
            rest = x[:, p:] if self.first else x[:, p + self.count :]
            x = torch.cat([x[:, :p], prompts, rest], dim=1)
        out = self.block(x, attention_mask, *args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        if self.last:
            out = torch.cat([out[:, :p], out[:, p + self.count :]], dim=1)
        return out


@registry.register("paradigm", "prompt_tuning")
class PromptTuning(Paradigm):
    name = "prompt_tuning"
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        count = int(self.options.get("tokens", 8))
        depth = self.options.get("depth", "deep")
        if depth not in DEPTHS or count < 1:
            raise VideoadaptError(f"prompt_tuning: depth must be one of {DEPTHS} and tokens >= 1")
        blocks = ilfm.vision_blocks()
        if any(isinstance(b, PromptedBlock) for b in blocks):
            raise VideoadaptError("prompt_tuning: this backbone already has prompts")
        dims = ilfm.dims
        prefix = 1 if dims.has_cls else 0
        # VPT's initialisation: uniform in +-sqrt(6 / (3 * patch_area + width)) (Xavier over the patch projection).
        patch = ilfm.processor.image_size // dims.patch_grid[0]
        bound = math.sqrt(6.0 / (3 * patch * patch + dims.width))
        last = len(blocks) - 1
        for index in range(len(blocks)):
            prompts = None
            if index == 0 or depth == "deep":
                prompts = nn.Parameter(torch.empty(1, count, dims.width).uniform_(-bound, bound))
            blocks[index] = PromptedBlock(blocks[index], prompts, prefix, count, index == 0, index == last)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return TemporalHead(
            ilfm, temporal=self.options.get("temporal", "mean"), space=self.options.get("space", "joint")
        )
