"""LLaVA-OneVision (Li et al., 2024; transformers' ``LlavaOnevisionForConditionalGeneration``) on videos: every
frame squashed to the SigLIP tower's square side, ``pixel_values_videos`` ``[B,T,3,S,S]``, and the prompt's video
written as ``T·⌈g/2⌉² + 1`` video tokens (2×2-pooled patch grid g×g per frame, one newline token after the last
frame), as its processor counts them."""

from __future__ import annotations

import math

import torch
from torch import nn

from videoadapt.foundation.base import ModelDims
from videoadapt.foundation.mllm.hf_family import VideoFamily


class OneVisionFamily(VideoFamily):
    model_types = ("llava_onevision",)

    @property
    def grid(self) -> int:
        return int(self._vision.image_size) // int(self._vision.patch_size)

    @property
    def dims(self) -> ModelDims:
        text = self.model.config.text_config
        return ModelDims(
            width=int(self._vision.hidden_size),
            embed_dim=int(text.hidden_size),
            layers=int(self._vision.num_hidden_layers),
            patch_grid=(self.grid, self.grid),
            text_width=int(text.hidden_size),
            has_cls=False,
        )

    def tokens_for(self, frames: int) -> int:
        return frames * math.ceil(self.grid / 2) ** 2 + 1

    def video_ids(self, frames: int) -> list[int]:
        return [int(self.model.config.video_token_id)] * self.tokens_for(frames)

    def pixel_inputs(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_values_videos": video}

    def _tower(self) -> nn.Module:
        tower = self.model.model.vision_tower
        return getattr(tower, "vision_model", tower)

    def vision_blocks(self) -> nn.ModuleList:
        return self._tower().encoder.layers

    def vision_modules(self) -> list[nn.Module]:
        return [self.model.model.vision_tower]

    def projector_modules(self) -> list[nn.Module]:
        return [self.model.model.multi_modal_projector]

    def projector_parameters(self) -> list[nn.Parameter]:
        return [self.model.model.image_newline]  # a bare parameter of the model, not a module
