"""Prompt tuning (survey Sec. III-B6): learnable visual prompt tokens in the frozen vision tower (VPT, Jia et al.
2022), and optionally learnable text context (CoOp).

``depth="shallow"`` prepends prompts once, at the first block; ``depth="deep"`` gives every block its own prompts
(each block's prompt outputs are discarded and replaced by the next block's). Prompts sit after the prefix tokens
(CLS) and are removed again after the last block, so the backbone's outputs keep their usual shapes.

``propagation`` — the survey's two temporal designs for visual prompts (Sec. III-B6: "share a single set of
prompts across all frames ... or propagate prompts sequentially across frames so that information accumulates"):

* ``"shared"`` (default): every frame gets the same prompts;
* ``"propagated"``: between blocks, the prompt tokens a block outputs for frame t-1 are carried to frame t (frame
  0 keeps its own), so a frame's prompts summarise what the previous frame's prompts attended to. With deep
  prompts the next block's learnable prompts are added to the carried tokens instead of replacing them; with
  shallow prompts the carried tokens are the prompts. Causal: frame t sees frames t-L+1..t through L blocks,
  at no extra FLOPs and no extra parameters. Exchanging prompt tokens between frames between blocks follows
  Prompt Switch (Deng et al., ICCV 2023, survey ref. [172]), whose prompt cube is transposed between blocks so
  every frame's prompts visit every other frame; we shift by one frame instead, which makes the propagation
  sequential and causal as the survey describes.

``text_context=K`` — CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022; official
KaiyangZhou/CoOp trainers/coop.py, ``PromptLearner`` with ``N_CTX=16``, generic context, ``CLASS_TOKEN_POSITION=
"end"``): K learnable context vectors (init N(0, 0.02)) replace the hand-written "a photo of a" and are inserted
after the text's start token, the class name and its period after them. They live at ``ilfm.text_context`` (a
:class:`TextContext`); encode class names with :func:`encode_with_context`. Only the vectors train; gradients
reach them through the frozen text tower.

Options (:class:`PromptTuningConfig`): ``tokens`` (prompt length per block, 8), ``depth`` ("deep"),
``propagation`` ("shared"), ``text_context`` (0: none); the default head's ``temporal`` ("mean"), ``space`` and
module options.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.paradigms.temporal_head import head_from_config
from videoadapt.registry import registry

DEPTHS = ("shallow", "deep")
PROPAGATIONS = ("shared", "propagated")


@dataclass(frozen=True)
class PromptTuningConfig(TemporalHeadConfig):
    paradigm: ClassVar[str] = "prompt_tuning"
    tokens: int = 8
    depth: Literal["shallow", "deep"] = "deep"
    propagation: Literal["shared", "propagated"] = "shared"
    text_context: int = 0

    def validate(self) -> None:
        self.require("tokens", self.tokens >= 1, "at least 1")
        self.require("text_context", self.text_context >= 0, "at least 0")


class PromptedBlock(nn.Module):
    """A vision block with prompt tokens inserted (``insert``) or replaced (deep VPT) before it, and removed after
    it when it is the last block. With ``context`` (propagated prompts), the block's prompt outputs move one frame
    forward in time before the next block, and this block's prompts are added to the incoming ones."""

    def __init__(
        self,
        block: nn.Module,
        prompts: nn.Parameter | None,
        prefix: int,
        count: int,
        first: bool,
        last: bool,
        context: TemporalContext | None = None,
    ) -> None:
        super().__init__()
        self.block = block
        self.prompts = prompts
        self.prefix, self.count, self.first, self.last = prefix, count, first, last
        self.context = context

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        x = hidden_states
        p, c = self.prefix, self.count
        if self.prompts is not None:
            prompts = self.prompts.to(x.dtype).expand(x.shape[0], -1, -1)
            if self.first:
                x = torch.cat([x[:, :p], prompts, x[:, p:]], dim=1)
            elif self.context is not None:  # propagated: the carried prompts plus this block's own
                x = torch.cat([x[:, :p], x[:, p : p + c] + prompts, x[:, p + c :]], dim=1)
            else:
                x = torch.cat([x[:, :p], prompts, x[:, p + c :]], dim=1)
        out = self.block(x, attention_mask, *args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        if self.last:
            return torch.cat([out[:, :p], out[:, p + c :]], dim=1)
        if self.context is not None:
            out = torch.cat([out[:, :p], _carry_forward(out[:, p : p + c], self.context.frames), out[:, p + c :]], 1)
        return out


def _carry_forward(prompts: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B*T, K, D]`` prompt outputs -> frame t gets frame t-1's (frame 0 keeps its own): causal propagation."""
    bt, k, d = prompts.shape
    x = prompts.reshape(bt // frames, frames, k, d)
    return torch.cat([x[:, :1], x[:, :-1]], dim=1).reshape(bt, k, d)


class TextContext(nn.Module):
    """CoOp's learnable context: ``vectors`` ``[K, text_width]`` inserted after each text's start token.

    ``forward(ilfm, texts)`` encodes class names (CoOp writes them as ``"name."``) with the context; the module
    does not hold the ILFM, so it can live on it (``ilfm.text_context``) without a cycle."""

    def __init__(self, count: int, width: int) -> None:
        super().__init__()
        # CoOp's generic-context initialisation: nn.init.normal_(ctx_vectors, std=0.02).
        self.vectors = nn.Parameter(torch.empty(count, width).normal_(std=0.02))

    def forward(self, ilfm: ImageLanguageModel, texts: Sequence[str]) -> TextFeatures:
        return ilfm.encode_text(texts, prefix_embeddings=self.vectors)


def encode_with_context(ilfm: ImageLanguageModel, texts: Sequence[str]) -> TextFeatures:
    """Text features with the ILFM's learnable context (``prompt_tuning`` with ``text_context``), or plain ones
    when it has none."""
    context = getattr(ilfm, "text_context", None)
    return context(ilfm, texts) if isinstance(context, TextContext) else ilfm.encode_text(texts)


@registry.register("paradigm", "prompt_tuning")
class PromptTuning(Paradigm):
    name = "prompt_tuning"
    config_class = PromptTuningConfig
    config: PromptTuningConfig
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        config = self.config
        count = config.tokens
        blocks = ilfm.vision_blocks()
        if any(isinstance(b, PromptedBlock) for b in blocks):
            raise VideoadaptError("prompt_tuning: this backbone already has prompts")
        dims = ilfm.dims
        prefix = 1 if dims.has_cls else 0
        # VPT's initialisation: uniform in +-sqrt(6 / (3 * patch_area + width)) (Xavier over the patch projection).
        patch = ilfm.processor.image_size // dims.patch_grid[0]
        bound = math.sqrt(6.0 / (3 * patch * patch + dims.width))
        last = len(blocks) - 1
        carry = context if config.propagation == "propagated" else None
        for index in range(len(blocks)):
            prompts = None
            if index == 0 or config.depth == "deep":
                prompts = nn.Parameter(torch.empty(1, count, dims.width).uniform_(-bound, bound))
            blocks[index] = PromptedBlock(blocks[index], prompts, prefix, count, index == 0, index == last, carry)
        if config.text_context:
            if isinstance(getattr(ilfm, "text_context", None), nn.Module):
                raise VideoadaptError("prompt_tuning: this backbone already has a text context")
            # On the ILFM, outside its vision and text towers: the towers stay frozen, the context trains.
            ilfm.text_context = TextContext(config.text_context, dims.text_width)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return head_from_config(ilfm, self.config)
