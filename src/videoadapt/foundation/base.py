"""The one interface every image-language foundation model (ILFM) offers to paradigms and tasks.

A paradigm sees an ILFM only through :class:`ImageLanguageModel`: frames in, per-frame features out; texts in,
text features out; its vision blocks to adapt; its dimensions and preprocessing. Whether the weights come from
transformers (CLIP, SigLIP) or from our own TinyCLIP does not matter past this file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
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
    # The ``--backbone`` specification this model was loaded from (set by
    # :func:`videoadapt.foundation.loading.load_backbone`); None for a model built otherwise. A saved adapted
    # encoder records it so that loading can rebuild the backbone.
    spec: str | None = None

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


@dataclass
class RegionFeatures:
    """Per-image candidate regions of a grounding ILFM for ``N`` images with ``R`` regions each.

    ``boxes`` ``[N,R,4]``: normalised **xyxy** (x1, y1, x2, y2 as fractions of the model's input width and height,
    y downwards), clipped to [0, 1]. xyxy rather than OWL-ViT's cxcywh because every consumer (IoU, AP, tracking
    association, mask cropping) wants corners, and clipping is only meaningful on corners. Multiply by the image's
    (W, H, W, H) for pixels.
    ``embeds`` ``[N,R,E]``: region class embeddings, compared with text embeddings by ``region_logits`` (for
    OWL-ViT/TinyOWL: the joint image-text space, not normalised; for Grounding DINO see its wrapper).
    ``objectness`` ``[N,R]``: text-free objectness logits where the model has them (OWLv2), else None.
    ``logits`` ``[N,R,Q]``: text-conditioned region logits for ``queries`` when the regions were computed for given
    texts (:meth:`GroundingModel.detect`), else None. Scores are ``sigmoid(logits)``.
    """

    boxes: torch.Tensor
    embeds: torch.Tensor
    objectness: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    queries: list[str] | None = None
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    """Model-specific per-region tensors that ``region_logits`` needs (OWL's per-region logit shift and scale)."""

    def pixel_boxes(self, width: int, height: int) -> torch.Tensor:
        """Boxes in pixels (x1, y1, x2, y2) of an image ``width`` × ``height``."""
        return self.boxes * self.boxes.new_tensor([width, height, width, height])


def clip_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Normalised xyxy boxes clipped to the image, with x2 >= x1 and y2 >= y1 kept after clipping."""
    boxes = boxes.clamp(0.0, 1.0)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, torch.maximum(x1, x2), torch.maximum(y1, y2)], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


class GroundingModel(ImageLanguageModel):
    """An ILFM that also proposes regions and scores them against text (OWL-ViT, OWLv2, Grounding DINO, TinyOWL).

    Every contrastive paradigm still sees it as an :class:`ImageLanguageModel`; grounding, tracking and
    segmentation tasks call :meth:`detect` (or :meth:`encode_regions` once and :meth:`region_logits` per query set,
    where regions do not depend on the text).
    """

    text_conditioned_regions: bool = False  # True where regions depend on the queries (Grounding DINO)

    @abstractmethod
    def encode_regions(self, images: torch.Tensor) -> RegionFeatures:
        """Regions of preprocessed images ``[N,3,H,W]``, independent of any text."""

    @abstractmethod
    def region_logits(self, regions: RegionFeatures, text_embeds: torch.Tensor) -> torch.Tensor:
        """Logits ``[N,R,Q]`` of every region for each of ``Q`` text embeddings ``[Q,E]`` (from ``encode_text``)."""

    def regions_from_frame_features(self, cls: torch.Tensor, patches: torch.Tensor) -> RegionFeatures:
        """Regions from cached frame features (``FrameFeatures.cls`` ``[N,D]`` and ``.patches`` ``[N,P,D]``) where
        the region heads read only those (TinyOWL); models whose regions need the pixels refuse."""
        raise VideoadaptError(
            f"{type(self).__name__}: regions need the images themselves, not cached frame features; use detect()"
        )

    def detect_frames(self, frames: np.ndarray | torch.Tensor, texts: Sequence[str]) -> RegionFeatures:
        """uint8 frames ``[N,H,W,3]`` of any size (a decoded clip) → regions with ``logits`` for ``texts``, boxes
        normalised to the *original* frames: the model's own resize and centre crop are undone, so a region can
        only lie in the part of the frame the model saw. Models with their own pre-processing override it."""
        from videoadapt.data.transforms import crop_in_frame, preprocess

        height, width = int(frames.shape[1]), int(frames.shape[2])
        settings = self.processor
        pixels = preprocess(frames, settings)
        device = next(self.parameters()).device
        with torch.no_grad():
            regions = self.detect(pixels.to(device), texts)
        top, left, crop_h, crop_w = crop_in_frame(height, width, settings.image_size, settings.resize, settings.crop)
        scale = regions.boxes.new_tensor([crop_w / width, crop_h / height, crop_w / width, crop_h / height])
        shift = regions.boxes.new_tensor([left / width, top / height, left / width, top / height])
        regions.boxes = clip_boxes(regions.boxes * scale + shift)
        return regions

    def detect(self, images: torch.Tensor, texts: Sequence[str]) -> RegionFeatures:
        """Regions with ``logits`` for ``texts`` (one phrase per query): the entry point tasks use."""
        self.check_texts(texts)
        regions = self.encode_regions(images)
        regions.logits = self.region_logits(regions, self.encode_text(list(texts)).embeds)
        regions.queries = list(texts)
        return regions
