"""Qwen2-VL and Qwen2.5-VL (transformers' ``Qwen2VLForConditionalGeneration``/``Qwen2_5_VLForConditionalGeneration``)
on videos, with the processor's layout rebuilt here: frames resized to a square side that is a multiple of
``patch × merge`` (28; ``frame_size``, default 224), an odd frame count padded with the last frame (frames go in
pairs, ``temporal_patch_size`` 2), every 2×14×14 tube flattened as (channel, time, row, col) and the tubes ordered
by merge window (``Qwen2VLVideoProcessor.patchify``), ``video_grid_thw`` = (T/2, S/14, S/14). The prompt holds
``<|vision_start|>`` + ``T/2·(S/28)²`` ``<|video_pad|>`` + ``<|vision_end|>``."""

from __future__ import annotations

import math

import torch
from torch import nn

from videoadapt.data.transforms import CLIP_MEAN, CLIP_STD
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ModelDims
from videoadapt.foundation.mllm.hf_family import VideoFamily

DEFAULT_FRAME_SIZE = 224


def patchify(video: torch.Tensor, patch: int, merge: int, temporal: int) -> tuple[torch.Tensor, list[int]]:
    """``[B,T,C,S,S]`` (T a multiple of ``temporal``) → ``([B·t·h·w, C·temporal·patch²], [t, h, w])``."""
    b, t, c, height, width = video.shape
    gt, gh, gw = t // temporal, height // patch, width // patch
    x = video.reshape(b, gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    # (b, t, h-window, w-window, h-in-window, w-in-window) then the tube (c, time, row, col).
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return x.reshape(b * gt * gh * gw, c * temporal * patch * patch), [gt, gh, gw]


class Qwen2VLFamily(VideoFamily):
    model_types = ("qwen2_vl", "qwen2_5_vl")
    default_mean, default_std = CLIP_MEAN, CLIP_STD  # Qwen2-VL's processor normalises as CLIP
    fps = 2.0  # frames per second of the sampled clip that Qwen2.5-VL's time positions assume (its processor's default)

    @property
    def _factor(self) -> int:
        return int(self._vision.patch_size) * int(self._vision.spatial_merge_size)

    @property
    def side(self) -> int:
        side = int(self.frame_size or DEFAULT_FRAME_SIZE)
        if side % self._factor:
            raise VideoadaptError(f"Qwen2-VL frames need a side that is a multiple of {self._factor}, got {side}")
        return side

    @property
    def dims(self) -> ModelDims:
        grid = self.side // int(self._vision.patch_size)
        width = int(getattr(self._vision, "embed_dim", None) or self._vision.hidden_size)
        text = self.model.config.text_config
        return ModelDims(
            width=width,
            embed_dim=int(text.hidden_size),
            layers=int(self._vision.depth),
            patch_grid=(grid, grid),
            text_width=int(text.hidden_size),
            has_cls=False,
        )

    def frames_ok(self, frames: int) -> int:
        temporal = int(self._vision.temporal_patch_size)
        return math.ceil(frames / temporal) * temporal

    def tokens_for(self, frames: int) -> int:
        windows = (self.side // self._factor) ** 2
        return self.frames_ok(frames) // int(self._vision.temporal_patch_size) * windows + 2

    def video_ids(self, frames: int) -> list[int]:
        config = self.model.config
        return [
            int(config.vision_start_token_id),
            *[int(config.video_token_id)] * (self.tokens_for(frames) - 2),
            int(config.vision_end_token_id),
        ]

    def pixel_inputs(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = video.shape[1]
        padded = self.frames_ok(frames)
        if padded != frames:  # as the processor does: repeat the last frame
            video = torch.cat([video, video[:, -1:].expand(-1, padded - frames, -1, -1, -1)], dim=1)
        v = self._vision
        flat, grid = patchify(video, int(v.patch_size), int(v.spatial_merge_size), int(v.temporal_patch_size))
        thw = torch.tensor([grid] * video.shape[0], dtype=torch.long, device=video.device)
        inputs = {"pixel_values_videos": flat, "video_grid_thw": thw}
        if self.model.config.model_type == "qwen2_5_vl":
            # Qwen2.5-VL spaces the temporal positions of frame pairs by their duration (absolute time in M-RoPE).
            seconds = int(v.temporal_patch_size) / self.fps
            inputs["second_per_grid_ts"] = torch.full((video.shape[0],), seconds, device=video.device)
        return inputs

    def token_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        # Modality of every token (0 text, 2 video), which the processor returns and M-RoPE needs: without it
        # Qwen2-VL refuses and Qwen2.5-VL silently falls back to 1-D positions for the video.
        video = input_ids == int(self.model.config.video_token_id)
        return {"mm_token_type_ids": (video.to(torch.int32) * 2)}

    def vision_blocks(self) -> nn.ModuleList:
        return self.model.model.visual.blocks

    def vision_modules(self) -> list[nn.Module]:
        visual = self.model.model.visual
        return [m for name, m in visual.named_children() if name != "merger"]

    def projector_modules(self) -> list[nn.Module]:
        return [self.model.model.visual.merger]
