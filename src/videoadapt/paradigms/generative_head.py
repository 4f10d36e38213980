"""The video head of every paradigm on a generative ILFM (a video MLLM): its own projector and token pooling.

On a video MLLM the post-network is already there: the projector (and the pooling, with OneVision's separator)
between the image tower and the language model, which LLaVA's first stage trains alone. So whatever paradigms
adapt (the tower: adapters, prompts, partial or full tuning; the language model: LoRA, full tuning), the head is
:class:`GenerativeHead`, and it trains the projector. Its output carries a
:class:`~videoadapt.foundation.mllm.SeenVideos` (``VideoFeatures.generative``): the projected frame tokens bound
to the model, which tasks ask to generate, score candidates or compute the answer loss.

Which paradigms apply: those that adapt the image tower or the language model and bring no head of their own
beyond the temporal one (:data:`GENERATIVE_PARADIGMS`); side networks, extra models and distillation are heads
next to a contrastive tower and are refused with the reason.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.foundation.mllm import SeenVideos
from videoadapt.foundation.mllm.hf_video import HFVideoMLLM
from videoadapt.foundation.mllm.model import VideoMLLM
from videoadapt.paradigms.base import VideoFeatures, VideoHead

GENERATIVE_PARADIGMS = ("post_network", "lora", "adapter", "prompt_tuning", "partial_tuning", "full_finetune")


def is_generative(ilfm: ImageLanguageModel) -> bool:
    """A video MLLM: an image tower, a projector and a language model behind ``generate/score/loss``."""
    return isinstance(ilfm, VideoMLLM | HFVideoMLLM)


def check_generative_composition(spec: str, names: list[str], ilfm: ImageLanguageModel) -> None:
    refused = [n for n in names if n not in GENERATIVE_PARADIGMS]
    if refused:
        raise VideoadaptError(
            f"{spec}: {', '.join(refused)} cannot adapt the video MLLM {ilfm.name}: its projector is the "
            f"post-network and its language model the decoder; use {', '.join(GENERATIVE_PARADIGMS)}"
        )


class _Shared:
    """Holds the MLLM without making it a submodule of the head: it already is one of the encoder (``ilfm``), and
    its parameters must be named (and saved) once."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model


class GenerativeHead(VideoHead):
    """Frame features → projected frame tokens ``[B,T,P,H]`` bound to the MLLM (``VideoFeatures.generative``).

    ``frames`` / ``video`` of the output are the tower's frame embeddings and their mean (what a contrastive task
    would read). A transformers checkpoint projects inside its own forward, so its head passes the pixels on and
    the tower does not run here (``needs_frames`` False)."""

    needs_text = False

    def __init__(self, ilfm: ImageLanguageModel) -> None:
        super().__init__()
        if not is_generative(ilfm):
            raise VideoadaptError(f"{ilfm.name} is not a video MLLM: it has no projector or language model")
        self._shared = _Shared(ilfm)
        self.pixel_route = isinstance(ilfm, HFVideoMLLM)
        self.needs_pixels = self.pixel_route
        self.needs_layers = (not self.pixel_route) and bool(ilfm.needs_layers)  # type: ignore[union-attr]
        self.needs_patches = not self.pixel_route
        for module in ilfm.projector_modules():  # type: ignore[union-attr]
            module.requires_grad_(True)

    @property
    def model(self) -> Any:
        return self._shared.model

    @property
    def needs_frames(self) -> bool:
        return not self.pixel_route

    def forward(
        self, features: FrameFeatures | None, video: torch.Tensor | None = None, text: TextFeatures | None = None
    ) -> VideoFeatures:
        if self.pixel_route:
            if video is None:
                raise VideoadaptError(f"{self.model.name}: this head reads the pixels; pass video=")
            seen = SeenVideos(self.model, video=video)
            empty = video.new_zeros(video.shape[0], video.shape[1], 0)
            return VideoFeatures(empty, empty[:, 0], generative=seen)
        assert features is not None
        seen = SeenVideos(self.model, projected=self.model.project(self.model.tokens_of(features)))
        frames = features.embeds
        return VideoFeatures(frames, frames.mean(dim=1), generative=seen)
