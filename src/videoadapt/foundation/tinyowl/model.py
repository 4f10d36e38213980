"""TinyOWL: TinyCLIP's image tower turned into an open-vocabulary detector the way OWL-ViT turns CLIP into one
(Minderer et al., "Simple Open-Vocabulary Object Detection with Vision Transformers", ECCV 2022).

Every last-layer patch token becomes one region: a box MLP predicts its box (cxcywh, biased so that each token's box
starts as its own patch), and a linear class head maps it into TinyCLIP's joint image-text space, where it is scored
against text embeddings with a learnt per-token shift and scale of the cosine logit. As in OWL-ViT, the patch tokens
are multiplied by the (post-norm) CLS token before a fresh LayerNorm, which lets each region see the whole image.
The text side is TinyCLIP's, frozen, so any phrase TinyCLIP can embed is a query, held-out categories included.
For every other paradigm TinyOWL is TinyCLIP: ``encode_images``/``encode_text``/``vision_blocks`` delegate to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from videoadapt.data.transforms import ProcessorSettings
from videoadapt.foundation.base import (
    FrameFeatures,
    GroundingModel,
    ModelDims,
    RegionFeatures,
    TextFeatures,
    clip_boxes,
    cxcywh_to_xyxy,
)
from videoadapt.foundation.tinyclip.model import TinyCLIP, TinyCLIPConfig
from videoadapt.foundation.tinyclip.text import MiniLMTextTower


@dataclass(frozen=True)
class TinyOWLConfig:
    clip: dict[str, Any] = field(default_factory=lambda: TinyCLIPConfig().to_dict())
    box_hidden: int = 192  # width of the box MLP's two hidden layers (OWL-ViT: the vision width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyOWLConfig:
        return cls(**data)


def _logit(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x + 1e-4) - torch.log1p(-x + 1e-4)


def box_bias(rows: int, cols: int) -> torch.Tensor:
    """``[rows*cols, 4]`` pre-sigmoid cxcywh bias: each token's box starts centred on its patch, one patch large.

    OWL-ViT's released code (and transformers') places the centres at the patches' bottom-right corners
    (``arange(1, n+1)/n``); we use the patch centres ``(i+0.5)/n``, which is where the token's receptive field is.
    """
    ys, xs = torch.meshgrid(
        (torch.arange(rows, dtype=torch.float32) + 0.5) / rows,
        (torch.arange(cols, dtype=torch.float32) + 0.5) / cols,
        indexing="ij",
    )
    centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2)  # row-major, like the token order
    sizes = torch.tensor([1.0 / cols, 1.0 / rows]).expand_as(centres)
    return _logit(torch.cat([centres, sizes], dim=-1))


class BoxHead(nn.Module):
    """OWL-ViT's box MLP (two GELU hidden layers). The last layer starts at zero so that the initial boxes are
    exactly the box bias: training starts from "each token detects its own patch"."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 4)
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layers(tokens)


class ClassHead(nn.Module):
    """Region embedding in the joint space plus OWL-ViT's per-token logit shift and scale (``elu + 1`` > 0)."""

    def __init__(self, width: int, embed_dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(width, embed_dim)
        self.shift = nn.Linear(width, 1)
        self.scale = nn.Linear(width, 1)
        # Start every region at probability ~0.01 for every query (the focal-loss prior of Lin et al., 2017):
        # at 0.5 the loss of 64 regions x 72 queries of background swamps the few positives in the first steps.
        nn.init.constant_(self.shift.bias, -math.log(99.0))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = nn.functional.elu(self.scale(tokens)) + 1
        return self.embed(tokens), self.shift(tokens).squeeze(-1), scale.squeeze(-1)


def owl_logits(
    embeds: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, text_embeds: torch.Tensor
) -> torch.Tensor:
    """``(cos(region, text) + shift) * scale`` ``[N,R,Q]`` (OWL-ViT's class logits), computed in fp32."""
    region = nn.functional.normalize(embeds.float(), dim=-1, eps=1e-6)
    text = nn.functional.normalize(text_embeds.float(), dim=-1, eps=1e-6)
    return (region @ text.T + shift.float()[..., None]) * scale.float()[..., None]


class TinyOWL(GroundingModel):
    """TinyCLIP (``self.clip``) plus the OWL-ViT detection heads. Trainable in detection training: the image tower
    and the heads; TinyCLIP's text side stays frozen (so held-out names keep their TinyCLIP embedding)."""

    def __init__(self, config: TinyOWLConfig | None = None, text_tower: MiniLMTextTower | None = None) -> None:
        super().__init__()
        self.config = config or TinyOWLConfig()
        self.name = "tiny-owl"
        self.clip = TinyCLIP(TinyCLIPConfig.from_dict(self.config.clip), text_tower=text_tower)
        width, embed_dim = self.clip.config.width, self.clip.config.embed_dim
        rows, cols = self.clip.dims.patch_grid
        self.merge_norm = nn.LayerNorm(width)
        self.box_head = BoxHead(width, self.config.box_hidden)
        self.class_head = ClassHead(width, embed_dim)
        self.box_bias = nn.Buffer(box_bias(rows, cols), persistent=False)

    # --- the ImageLanguageModel interface: TinyCLIP's ------------------------------------------------------------

    @property
    def dims(self) -> ModelDims:
        return self.clip.dims

    @property
    def processor(self) -> ProcessorSettings:
        return self.clip.processor

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def vision_blocks(self) -> nn.ModuleList:
        return self.clip.vision_blocks()

    def joint_projection(self) -> tuple[nn.Module, nn.Module] | None:
        return self.clip.joint_projection()

    def vision_modules(self) -> list[nn.Module]:
        return [*self.clip.vision_modules(), self.merge_norm, self.box_head, self.class_head]

    def text_modules(self) -> list[nn.Module]:
        return self.clip.text_modules()

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        return self.clip.encode_images(images, all_layers=all_layers)

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        return self.clip.encode_text(texts, prefix_embeddings=prefix_embeddings)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.clip.embed_texts(texts)

    # --- regions -------------------------------------------------------------------------------------------------

    def encode_regions(self, images: torch.Tensor) -> RegionFeatures:
        """One region per patch token; ``aux`` holds ``cxcywh`` (unclipped, what the box losses train) and the
        logit ``shift``/``scale``."""
        self.check_images(images)
        tokens, _ = self.clip.vision(images)
        return self.regions_from_frame_features(self.clip.vision.post_layernorm(tokens[:, 0]), tokens[:, 1:])

    def regions_from_frame_features(self, cls: torch.Tensor, patches: torch.Tensor) -> RegionFeatures:
        """The regions of :meth:`encode_regions` from what ``encode_images`` returns (``FrameFeatures.cls``, the
        post-norm CLS token ``[N,D]``, and ``.patches``, the last block's patch tokens ``[N,P,D]``), so cached frame
        features suffice: no second pass of the tower."""
        patches = self.merge_norm(self.clip.vision.post_layernorm(patches) * cls.unsqueeze(1))
        cxcywh = torch.sigmoid(self.box_head(patches).float() + self.box_bias)
        embeds, shift, scale = self.class_head(patches)
        return RegionFeatures(
            boxes=clip_boxes(cxcywh_to_xyxy(cxcywh)),
            embeds=embeds,
            aux={"cxcywh": cxcywh, "shift": shift, "scale": scale},
        )

    def region_logits(self, regions: RegionFeatures, text_embeds: torch.Tensor) -> torch.Tensor:
        return owl_logits(regions.embeds, regions.aux["shift"], regions.aux["scale"], text_embeds)

    def detect(self, images: torch.Tensor, texts: Sequence[str]) -> RegionFeatures:
        self.check_texts(texts)
        regions = self.encode_regions(images)
        regions.logits = self.region_logits(regions, self.embed_texts(list(texts)))
        regions.queries = list(texts)
        return regions

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen MiniLM, which ships with its own package."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.text_tower.")}

    @classmethod
    def from_tinyclip(cls, clip: TinyCLIP, config: TinyOWLConfig | None = None) -> TinyOWL:
        """Fresh heads on a pretrained TinyCLIP (the start of detection training)."""
        config = config or TinyOWLConfig(clip=clip.config.to_dict())
        model = cls(config, text_tower=clip.text_tower)
        model.clip.load_state_dict(clip.state_dict())
        return model
