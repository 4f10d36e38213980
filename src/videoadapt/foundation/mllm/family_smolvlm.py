"""SmolVLM2 (transformers' ``SmolVLMForConditionalGeneration``, model type ``smolvlm``) on videos, as its processor
writes them: every frame squashed to the tower's square side (no image splitting for video frames), ``pixel_values``
``[B,T,3,S,S]``, and the video in the prompt as an introduction, then per frame ``Frame from MM:SS:`` followed by
``<fake_token_around_image><global-img>`` + ``image_seq_len`` ``<image>`` tokens + ``<fake_token_around_image>``.
Timestamps assume ``fps`` frames per second of the sampled clip (1 by default; the processor reads them from the
video's metadata), and the frame count is written in digits (the processor spells it with num2words)."""

from __future__ import annotations

from datetime import timedelta

import torch
from torch import nn

from videoadapt.foundation.base import ModelDims
from videoadapt.foundation.mllm.hf_family import VideoFamily

INTRO = "You are provided the following series of {count} frames from a {duration} [H:MM:SS] video.\n"
FRAME = "\nFrame from {minutes:02d}:{seconds:02d}:"
OUTRO = "\n\n"


class SmolVLMFamily(VideoFamily):
    model_types = ("smolvlm",)
    fps = 1.0

    @property
    def image_seq_len(self) -> int:
        grid = int(self._vision.image_size) // int(self._vision.patch_size)
        return grid * grid // int(self.model.config.scale_factor) ** 2

    @property
    def dims(self) -> ModelDims:
        grid = int(self._vision.image_size) // int(self._vision.patch_size)
        text = self.model.config.text_config
        return ModelDims(
            width=int(self._vision.hidden_size),
            embed_dim=int(text.hidden_size),
            layers=int(self._vision.num_hidden_layers),
            patch_grid=(grid, grid),
            text_width=int(text.hidden_size),
            has_cls=False,
        )

    def _text(self, frames: int) -> str:
        image = "<fake_token_around_image><global-img>" + "<image>" * self.image_seq_len + "<fake_token_around_image>"
        duration = timedelta(seconds=int(frames / self.fps))
        text = INTRO.format(count=frames, duration=str(duration))
        for i in range(frames):
            second = int(i / self.fps)
            text += FRAME.format(minutes=second // 60, seconds=second % 60) + image
        return text + OUTRO

    def video_ids(self, frames: int) -> list[int]:
        return list(self.tokenizer(self._text(frames), add_special_tokens=False)["input_ids"])

    def tokens_for(self, frames: int) -> int:
        return len(self.video_ids(frames))

    def pixel_inputs(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_values": video}

    def vision_blocks(self) -> nn.ModuleList:
        return self.model.model.vision_model.encoder.layers

    def vision_modules(self) -> list[nn.Module]:
        return [self.model.model.vision_model]

    def projector_modules(self) -> list[nn.Module]:
        return [self.model.model.connector]

    def language_modules(self) -> list[nn.Module]:
        return [self.model.model.text_model, self.model.lm_head]
