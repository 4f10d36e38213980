"""The one interface every image-language foundation model (ILFM) offers to paradigms and tasks.

A paradigm sees an ILFM only through :class:`ImageLanguageModel`: frames in, per-frame features out; texts in,
text features out; its vision blocks to adapt; its dimensions and preprocessing. Whether the weights come from
transformers (CLIP, SigLIP) or from our own TinyCLIP does not matter past this file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from videoadapt.data.transforms import ProcessorSettings
from videoadapt.errors import VideoadaptError


@dataclass(frozen=True)
class ModelDims:
    """Sizes a paradigm needs to build modules that fit the backbone."""

    width: int  # vision token width D
    embed_dim: int  # joint image-text space E
    layers: int  # number of vision blocks
    patch_grid: tuple[int, int]  # (rows, cols) of patch tokens at the processor's image size
    text_width: int  # text token width
    has_cls: bool = True  # SigLIP pools with an attention head instead of a CLS token

    @property
    def num_patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1]


@dataclass
class FrameFeatures:
    """Per-frame outputs of the vision tower for a batch of videos ``[B,T,3,H,W]``.

    ``cls``: the pooled token before projection ``[B,T,D]``; ``patches``: last-layer patch tokens ``[B,T,P,D]``;
    ``embeds``: frame embeddings in the joint space ``[B,T,E]`` (not normalised); ``layers``: when asked for, every
    block's output tokens ``[L][B,T,N,D]`` (N = P plus the CLS token if any), for side networks.
    """

    cls: torch.Tensor
    patches: torch.Tensor
    embeds: torch.Tensor
    layers: list[torch.Tensor] | None = None


@dataclass
class TextFeatures:
    """Text tower outputs: ``tokens`` ``[N,L,Dt]``, ``mask`` ``[N,L]`` (1 = real token), ``embeds`` ``[N,E]``."""

    tokens: torch.Tensor
    mask: torch.Tensor
    embeds: torch.Tensor


class ImageLanguageModel(nn.Module, ABC):
    """An image-language model seen frame by frame. Subclasses wrap one model family."""

    name: str = "ilfm"

    @property
    @abstractmethod
    def dims(self) -> ModelDims: ...

    @property
    @abstractmethod
    def processor(self) -> ProcessorSettings:
        """Image size, mean and std that frames must be preprocessed with."""

    @abstractmethod
    def vision_blocks(self) -> nn.ModuleList:
        """The transformer blocks of the vision tower, in order (what adapters, LoRA and prompts target)."""

    @abstractmethod
    def vision_modules(self) -> list[nn.Module]:
        """Every module of the image tower, its projection into the joint space included."""

    @abstractmethod
    def text_modules(self) -> list[nn.Module]:
        """Every module of the text tower, its projection included."""

    @abstractmethod
    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        """Encode ``[N,3,H,W]`` images into FrameFeatures without the frame axis (``cls`` ``[N,D]``, ...)."""

    @abstractmethod
    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        """Encode texts. ``prefix_embeddings`` ``[K, text_width]``, when given, are inserted into every text's token
        embeddings after its start token (BOS/[CLS]; at the very start where there is none) — learnable context in
        the manner of CoOp (Zhou et al., IJCV 2022). Gradients reach them through the frozen text tower."""

    @property
    def logit_scale(self) -> torch.Tensor:
        """Temperature of the contrastive head as ``exp(logit_scale)``; 100 when the model has none."""
        return torch.tensor(100.0)

    def joint_projection(self) -> tuple[nn.Module, nn.Module] | None:
        """``(norm, projection)`` with ``embeds = projection(norm(token))`` for the last block's pooled token (CLIP's
        ``ln_post`` and ``proj``), so that a module can map a token of its own (width D) into the joint space the
        way the model does; None where the model pools otherwise (SigLIP's attention-pooling head)."""
        return None

    def encode_frames(self, video: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        """Encode a batch of videos ``[B,T,3,H,W]`` frame by frame."""
        if video.ndim != 5:
            raise VideoadaptError(f"encode_frames expects [B,T,3,H,W], got shape {tuple(video.shape)}")
        b, t = video.shape[:2]
        flat = self.encode_images(video.flatten(0, 1), all_layers=all_layers)
        return FrameFeatures(
            cls=flat.cls.reshape(b, t, -1),
            patches=flat.patches.reshape(b, t, *flat.patches.shape[-2:]),
            embeds=flat.embeds.reshape(b, t, -1),
            layers=None if flat.layers is None else [layer.reshape(b, t, *layer.shape[-2:]) for layer in flat.layers],
        )

    def check_images(self, images: torch.Tensor) -> None:
        size = self.processor.image_size
        if images.ndim != 4 or images.shape[1] != 3:
            raise VideoadaptError(f"{self.name}: images must be [N,3,H,W], got shape {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != (size, size):
            raise VideoadaptError(
                f"{self.name}: images are {tuple(images.shape[-2:])} but the model takes {size}x{size}; "
                "preprocess them with videoadapt.data.transforms.preprocess(frames, model.processor)"
            )

    @staticmethod
    def check_texts(texts: Sequence[str]) -> None:
        if isinstance(texts, str):
            raise VideoadaptError("encode_text takes a list of strings, got one string")
        if len(texts) == 0:
            raise VideoadaptError("encode_text got an empty list of texts")
