"""Frames to model input: resize, crop and normalise as an image model's processor does.

``preprocess`` turns uint8 RGB frames ``[T,H,W,3]`` into float32 ``[T,3,S,S]``. With the default
``resize="shortest_edge"`` it follows transformers' ``CLIPImageProcessor``: scale so the short side is
``S`` (long side ``int(S * long / short)``), antialiased bicubic, then a centre crop at
``((H - S) // 2, (W - S) // 2)``, then ``/ 255`` and ``(x - mean) / std``. ``resize="squash"`` resizes
straight to ``S x S`` without cropping, as ``SiglipImageProcessor`` does. The resize runs on uint8 and
rounds back to uint8, like the PIL resize those processors use, so results agree with them to within a
level or two of 255 (docs/video-io.md has the measurement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CLIP_MEAN",
    "CLIP_SETTINGS",
    "CLIP_STD",
    "SIGLIP_SETTINGS",
    "ProcessorSettings",
    "decode_short_side",
    "preprocess",
    "resized_size",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESIZES = ("shortest_edge", "squash")
_CROPS = ("center", "none")
_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact"}


@dataclass(frozen=True)
class ProcessorSettings:
    """How a model wants its frames: square side ``image_size``, per-channel ``mean``/``std`` of 0..1 pixels.

    ``resize``: ``"shortest_edge"`` (keep the aspect ratio; needs ``crop="center"``) or ``"squash"`` (straight
    to a square). ``crop``: ``"center"`` or ``"none"``. ``interpolation``: ``"bicubic"``, ``"bilinear"`` or
    ``"nearest"``.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "shortest_edge"
    crop: str = "center"
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        # Processor configs arrive as lists from JSON; tuples keep the settings hashable.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {self.mean} and {self.std}")
        if self.resize not in _RESIZES:
            raise ValueError(f"resize must be one of {_RESIZES}, got {self.resize!r}")
        if self.crop not in _CROPS:
            raise ValueError(f"crop must be one of {_CROPS}, got {self.crop!r}")
        if self.resize == "shortest_edge" and self.crop != "center":
            raise ValueError("resize='shortest_edge' leaves a non-square image; it needs crop='center'")
        if self.interpolation not in _MODES:
            raise ValueError(f"interpolation must be one of {tuple(_MODES)}, got {self.interpolation!r}")


# OpenAI CLIP (ViT-B/32, B/16 at 224): openai/clip-vit-base-patch16's preprocessor_config.json.
CLIP_SETTINGS = ProcessorSettings(image_size=224, mean=CLIP_MEAN, std=CLIP_STD)
# SigLIP (google/siglip-base-patch16-224): bicubic squash to 224x224, no crop, mean = std = 0.5.
SIGLIP_SETTINGS = ProcessorSettings(
    image_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="squash", crop="none"
)


# Frames are decoded no larger than this many times the model's side, nor below DECODE_SHORT_SIDE_FLOOR pixels.
DECODE_SHORT_SIDE_FACTOR = 4
DECODE_SHORT_SIDE_FLOOR = 720


def decode_short_side(settings: ProcessorSettings) -> int:
    """The shorter side to ask the decoder for (``read_video(max_short_side=...)``) when frames go to ``settings``.

    ``max(4 * image_size, 720)``: a video up to 720p is decoded at its own size, so its pixels are exactly those
    of a full-size decode; a larger one (1080p, 4K) is shrunk by FFmpeg while converting to RGB, which bounds the
    memory of a clip, and the resize here then works from a frame at least four times the model's side. Against
    preprocessing the full 4K frame the result differs by about one level of 255 on average (docs/video-io.md).
    """
    return max(DECODE_SHORT_SIDE_FACTOR * settings.image_size, DECODE_SHORT_SIDE_FLOOR)


def resized_size(height: int, width: int, settings: ProcessorSettings) -> tuple[int, int]:
    """``(height, width)`` after the resize step, before cropping; the long side is truncated, as in
    transformers."""
    if settings.resize == "squash":
        return settings.image_size, settings.image_size
    return _shortest_edge(height, width, settings.image_size)


def _shortest_edge(height: int, width: int, size: int) -> tuple[int, int]:
    return (size, int(size * width / height)) if height <= width else (int(size * height / width), size)


def crop_in_frame(
    height: int, width: int, image_size: int, resize: str = "shortest_edge", crop: str = "center"
) -> tuple[float, float, float, float]:
    """Where the model's square input lies in a ``height`` × ``width`` frame: ``(top, left, crop height, crop
    width)`` in the frame's own pixels, after :func:`resized_size` and the centre crop (the whole frame when the
    processor squashes or does not crop). What maps a model's boxes or masks back onto the user's frame."""
    if resize == "squash" or crop != "center":
        return 0.0, 0.0, float(height), float(width)
    new_h, new_w = _shortest_edge(height, width, image_size)
    top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
    return top * height / new_h, left * width / new_w, image_size * height / new_h, image_size * width / new_w


def preprocess(frames: np.ndarray | torch.Tensor, settings: ProcessorSettings) -> torch.Tensor:
    """uint8 RGB frames ``[T,H,W,3]`` (numpy or torch) to normalised float32 ``[T,3,S,S]``."""
    video = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3 or 0 in video.shape[1:3]:
        raise ValueError(f"frames must be uint8 [T,H,W,3] with H, W > 0, got {video.dtype} {tuple(video.shape)}")
    if not len(video):  # interpolate rejects empty batches
        return torch.zeros((0, 3, settings.image_size, settings.image_size), dtype=torch.float32)
    video = video.permute(0, 3, 1, 2)  # [T,3,H,W]
    height, width = video.shape[-2:]
    new_h, new_w = resized_size(height, width, settings)
    if (new_h, new_w) != (height, width):
        mode = _MODES[settings.interpolation]
        # Antialiasing is what PIL does when shrinking; without it, downscaled frames alias.
        antialias = mode != "nearest-exact"
        if video.device.type == "cpu":
            video = F.interpolate(video.contiguous(), size=(new_h, new_w), mode=mode, antialias=antialias)
        else:
            # uint8 interpolation is a CPU kernel; elsewhere resize in float and round as the CPU path does.
            resized = F.interpolate(video.float(), size=(new_h, new_w), mode=mode, antialias=antialias)
            video = resized.round_().clamp_(0, 255).to(torch.uint8)
    if settings.crop == "center":
        size = settings.image_size
        top, left = (new_h - size) // 2, (new_w - size) // 2
        video = video[..., top : top + size, left : left + size]
    mean = torch.tensor(settings.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(settings.std, dtype=torch.float32).view(1, 3, 1, 1)
    # Rescale first, then normalise, in float32: the order and precision transformers uses.
    return ((video.float() * (1 / 255) - mean) / std).contiguous()
