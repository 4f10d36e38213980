"""OWL-ViT, OWLv2, Grounding DINO and MM-Grounding-DINO through transformers, behind :class:`GroundingModel`.

Sources: a hub id (``hf-grounding:google/owlvit-base-patch32``), a local directory holding ``config.json``,
safetensors weights, tokenizer files and ``preprocessor_config.json``, or a config alone with random weights
(:func:`from_config`, for tests: nothing is downloaded).

transformers' processors need torchvision, which we never install, so pre- and post-processing are ours, following
each image processor's settings (read from ``preprocessor_config.json`` when present):

* OWL-ViT: squash-resize to a square (768 px for the released models), bicubic, CLIP mean/std.
* OWLv2: pad bottom/right to a square with grey 0.5, then resize (960 px), bilinear, CLIP mean/std; boxes are
  relative to the padded square and are mapped back to the image.
* (MM-)Grounding DINO: resize keeping the aspect ratio (shortest edge 800, longest at most 1333), bilinear,
  ImageNet mean/std.

Boxes come back as :class:`RegionFeatures` boxes: normalised xyxy of the *original* frame, clipped to it.

Region scores. OWL-ViT/OWLv2 regions are text-free: ``embeds`` are the class head's region embeddings in the
joint space, and ``region_logits`` is OWL's ``(cos + shift) * scale``. Grounding DINO has no joint space: its
regions are the decoder's queries, which have attended to the text, so they exist only for given queries —
``encode_regions`` refuses and :meth:`HFGroundingDino.detect` runs the model on the caption "phrase1 . phrase2 ."
(its training format). There ``embeds`` are the decoder's last hidden states (d_model) — the vectors the model
dot-products with its fused text-token features — and a phrase's probability is the mean of its tokens' sigmoid
probabilities (mmdetection's ``convert_grounding_to_cls_scores``); ``logits`` holds its logit. For the frame
interface Grounding DINO offers its pre-fusion features projected to d_model: image embeds = mean of the last
backbone level after ``input_proj_vision``; text embeds = mean of the BERT tokens after ``text_projection``.
They are *not* a trained joint space: contrastive paradigms on Grounding DINO measure little.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.transforms import CLIP_MEAN, CLIP_STD, ProcessorSettings
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import (
    FrameFeatures,
    GroundingModel,
    ModelDims,
    RegionFeatures,
    TextFeatures,
    clip_boxes,
    cxcywh_to_xyxy,
)
from videoadapt.foundation.hf import HashTokenizer, _hub_reachable
from videoadapt.foundation.tinyowl.model import owl_logits
from videoadapt.utils.safe_io import load_json

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes of preprocessor_config.json
OWL_TYPES = ("owlvit", "owlv2")
DINO_TYPES = ("grounding-dino", "mm-grounding-dino")


def default_preprocessing(model_type: str) -> dict[str, Any]:
    """The image processors' defaults in transformers 5 (used when a checkpoint has no preprocessor file)."""
    if model_type == "owlvit":
        return {"size": 768, "mean": CLIP_MEAN, "std": CLIP_STD, "resample": "bicubic", "pad": False}
    if model_type == "owlv2":
        return {"size": 960, "mean": CLIP_MEAN, "std": CLIP_STD, "resample": "bilinear", "pad": True}
    return {"shortest": 800, "longest": 1333, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "resample": "bilinear"}


def read_preprocessing(path: Path, model_type: str) -> dict[str, Any]:
    """``preprocessor_config.json`` → our settings, falling back to :func:`default_preprocessing` per field."""
    settings = default_preprocessing(model_type)
    if not path.is_file():
        return settings
    config = load_json(path)
    size = config.get("size")
    if isinstance(size, dict):
        if "height" in size:
            settings["size"] = int(size["height"])
        if "shortest_edge" in size:
            settings["shortest"] = int(size["shortest_edge"])
            settings["size"] = int(size["shortest_edge"])
        if "longest_edge" in size:
            settings["longest"] = int(size["longest_edge"])
    elif isinstance(size, int):
        settings["size"] = size
    settings["mean"] = tuple(config.get("image_mean", settings["mean"]))
    settings["std"] = tuple(config.get("image_std", settings["std"]))
    if "resample" in config:
        settings["resample"] = _RESAMPLE.get(config["resample"], settings["resample"])
    return settings


def prepare_frames(frames: np.ndarray | torch.Tensor, settings: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N,H,W,3]`` frames → normalised pixels ``[N,3,h,w]`` and ``[4]`` factors that turn boxes normalised
    to the model's canvas into boxes normalised to the frame (not 1 only where OWLv2 padded)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise VideoadaptError(f"frames must be uint8 [N,H,W,3], got {video.dtype} {tuple(video.shape)}")
    x = video.permute(0, 3, 1, 2).float() / 255.0
    height, width = x.shape[-2:]
    factors = torch.ones(4)
    if "shortest" in settings:  # Grounding DINO: keep the aspect ratio
        scale = settings["shortest"] / min(height, width)
        scale = min(scale, settings["longest"] / max(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
    else:
        if settings.get("pad"):  # OWLv2: grey padding to a square at the bottom and the right
            side = max(height, width)
            x = F.pad(x, (0, side - width, 0, side - height), value=0.5)
            factors = torch.tensor([side / width, side / height, side / width, side / height])
        size = (settings["size"], settings["size"])
    mode = settings["resample"]
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode=mode, antialias=mode != "nearest", align_corners=None)
    mean = torch.tensor(settings["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(settings["std"]).view(1, 3, 1, 1)
    return (x - mean) / std, factors


class HFOwl(GroundingModel):
    """OWL-ViT or OWLv2 (``OwlViTForObjectDetection`` / ``Owlv2ForObjectDetection``): CLIP for the frame
    interface, one region per patch token for grounding."""

    def __init__(self, model: nn.Module, model_type: str, preprocessing: dict[str, Any], tokenizer: Any, name: str):
        super().__init__()
        self.model, self.model_type, self.preprocessing, self.name = model, model_type, preprocessing, name
        self.tokenizer = tokenizer
        self.clip = model.owlvit if model_type == "owlvit" else model.owlv2

    @property
    def dims(self) -> ModelDims:
        vision = self.model.config.vision_config
        grid = vision.image_size // vision.patch_size
        return ModelDims(
            width=vision.hidden_size,
            embed_dim=self.model.config.projection_dim,
            layers=vision.num_hidden_layers,
            patch_grid=(grid, grid),
            text_width=self.model.config.text_config.hidden_size,
        )

    @property
    def processor(self) -> ProcessorSettings:
        s = self.preprocessing
        return ProcessorSettings(
            image_size=self.model.config.vision_config.image_size,
            mean=tuple(s["mean"]),
            std=tuple(s["std"]),
            resize="squash",
            crop="none",
            interpolation=s["resample"],
        )

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def vision_blocks(self) -> nn.ModuleList:
        return self.clip.vision_model.encoder.layers

    def joint_projection(self) -> tuple[nn.Module, nn.Module] | None:
        return self.clip.vision_model.post_layernorm, self.clip.visual_projection

    def vision_modules(self) -> list[nn.Module]:
        heads = [self.model.class_head, self.model.box_head, self.model.layer_norm]
        if self.model_type == "owlv2":
            heads.append(self.model.objectness_head)
        return [self.clip.vision_model, self.clip.visual_projection, *heads]

    def text_modules(self) -> list[nn.Module]:
        return [self.clip.text_model, self.clip.text_projection]

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        self.check_images(images)
        out = self.clip.vision_model(pixel_values=images, output_hidden_states=all_layers)
        pooled = out.pooler_output
        layers = list(out.hidden_states[1:]) if all_layers else None
        return FrameFeatures(
            cls=pooled,
            patches=out.last_hidden_state[:, 1:],
            embeds=self.clip.visual_projection(pooled),
            layers=layers,
        )

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        self.check_texts(texts)
        if prefix_embeddings is not None:
            raise VideoadaptError(f"{self.name}: text prefixes (CoOp) are not supported on OWL models yet")
        max_length = self.model.config.text_config.max_position_embeddings
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length)
        ids = torch.as_tensor(batch["input_ids"])
        mask = torch.as_tensor(batch["attention_mask"])
        out = self.clip.text_model(input_ids=ids, attention_mask=mask)
        return TextFeatures(
            tokens=out.last_hidden_state, mask=mask, embeds=self.clip.text_projection(out.pooler_output)
        )

    def encode_regions(self, images: torch.Tensor) -> RegionFeatures:
        """One region per patch token; boxes normalised to ``images`` (the model's square canvas)."""
        feature_map = self.model.image_embedder(pixel_values=images)[0]  # [N,h,w,D]
        tokens = feature_map.flatten(1, 2)
        cxcywh = self.model.box_predictor(tokens, feature_map)
        head = self.model.class_head
        embeds = head.dense0(tokens)
        shift = head.logit_shift(tokens).squeeze(-1)
        scale = (head.elu(head.logit_scale(tokens)) + 1).squeeze(-1)
        objectness = self.model.objectness_predictor(tokens) if self.model_type == "owlv2" else None
        return RegionFeatures(
            boxes=clip_boxes(cxcywh_to_xyxy(cxcywh)),
            embeds=embeds,
            objectness=objectness,
            aux={"shift": shift, "scale": scale},
        )

    def region_logits(self, regions: RegionFeatures, text_embeds: torch.Tensor) -> torch.Tensor:
        return owl_logits(regions.embeds, regions.aux["shift"], regions.aux["scale"], text_embeds)

    def detect_frames(self, frames: np.ndarray | torch.Tensor, texts: Sequence[str]) -> RegionFeatures:
        """uint8 frames ``[N,H,W,3]`` of any size → regions with logits, boxes normalised to the frames."""
        pixels, factors = prepare_frames(frames, self.preprocessing)
        regions = self.detect(pixels, texts)
        regions.boxes = clip_boxes(regions.boxes * factors)
        return regions


class BertHashTokenizer:
    """Stand-in for a random-weight Grounding DINO without vocabulary files: BERT's special ids ([CLS] 101, [SEP]
    102, "." 1012), which Grounding DINO's text masks look for, and hashed ids for words."""

    cls_token_id, sep_token_id, period_id = 101, 102, 1012

    def __init__(self, vocab_size: int) -> None:
        if vocab_size <= 1030:
            raise VideoadaptError(f"a Grounding DINO text vocabulary needs > 1030 ids (BERT's), got {vocab_size}")
        self.vocab_size = vocab_size

    def encode_phrase(self, phrase: str) -> list[int]:
        ids = []
        for word in re.findall(r"\w+|[^\w\s]", phrase.lower()):
            digest = int.from_bytes(hashlib.blake2s(word.encode(), digest_size=4).digest(), "little")
            ids.append(1030 + digest % (self.vocab_size - 1030))  # above BERT's special and punctuation ids
        return ids


class HFGroundingDino(GroundingModel):
    """Grounding DINO or MM-Grounding-DINO (``*ForObjectDetection``); see the module docstring for the scores."""

    text_conditioned_regions = True

    def __init__(self, model: nn.Module, model_type: str, preprocessing: dict[str, Any], tokenizer: Any, name: str):
        super().__init__()
        self.model, self.model_type, self.preprocessing, self.name = model, model_type, preprocessing, name
        self.tokenizer = tokenizer
        self.core = model.model

    @property
    def dims(self) -> ModelDims:
        d_model = self.model.config.d_model
        size = self.preprocessing["shortest"]
        return ModelDims(
            width=d_model,
            embed_dim=d_model,
            layers=len(self.vision_blocks()),
            patch_grid=(size // 32, size // 32),
            text_width=self.model.config.text_config.hidden_size,
            has_cls=False,
        )

    @property
    def processor(self) -> ProcessorSettings:
        s = self.preprocessing
        return ProcessorSettings(
            image_size=s["shortest"], mean=tuple(s["mean"]), std=tuple(s["std"]), resize="squash", crop="none"
        )

    def vision_blocks(self) -> nn.ModuleList:
        """The backbone's stages (Swin): paradigms that insert modules into ViT blocks do not apply."""
        backbone = self.core.backbone.conv_encoder.model
        encoder = getattr(backbone, "encoder", None)
        layers = getattr(encoder, "layers", None)
        return layers if isinstance(layers, nn.ModuleList) else nn.ModuleList()

    def vision_modules(self) -> list[nn.Module]:
        return [self.core.backbone, self.core.input_proj_vision]

    def text_modules(self) -> list[nn.Module]:
        return [self.core.text_backbone, self.core.text_projection]

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        mask = torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.long, device=images.device)
        features, _ = self.core.backbone(images, mask)
        last = features[-1][0]  # [N,C,h,w]
        projected = self.core.input_proj_vision[len(features) - 1](last).flatten(2).transpose(1, 2)
        patches = last.flatten(2).transpose(1, 2)
        return FrameFeatures(cls=patches.mean(1), patches=patches, embeds=projected.mean(1))

    def _tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, list[list[int]]]:
        """``[CLS] phrase1 . phrase2 . [SEP]`` ids and each phrase's token positions."""
        tok = self.tokenizer
        if isinstance(tok, BertHashTokenizer):
            cls_id, sep_id, period = tok.cls_token_id, tok.sep_token_id, tok.period_id
            pieces = [tok.encode_phrase(t) for t in texts]
        else:
            cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
            period = tok.convert_tokens_to_ids(".")
            pieces = [tok(t.lower(), add_special_tokens=False)["input_ids"] for t in texts]
        ids, positions = [cls_id], []
        for piece in pieces:
            positions.append(list(range(len(ids), len(ids) + len(piece))))
            ids += [*piece, period]
        ids.append(sep_id)
        limit = self.model.config.max_text_len
        if len(ids) > limit:
            raise VideoadaptError(f"{self.name}: {len(texts)} queries take {len(ids)} tokens, more than {limit}")
        return torch.tensor([ids]), positions

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        self.check_texts(texts)
        if prefix_embeddings is not None:
            raise VideoadaptError(f"{self.name}: text prefixes (CoOp) are not supported on Grounding DINO")
        rows = [self._tokenize([t])[0][0] for t in texts]
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        states = self.core.text_projection(self.core.text_backbone(input_ids=ids, attention_mask=mask)[0])
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return TextFeatures(tokens=states, mask=mask, embeds=pooled)

    def encode_regions(self, images: torch.Tensor) -> RegionFeatures:
        raise VideoadaptError(
            f"{self.name}: Grounding DINO's regions are decoder queries conditioned on the text; "
            "call detect(images, texts) instead of encode_regions"
        )

    def region_logits(self, regions: RegionFeatures, text_embeds: torch.Tensor) -> torch.Tensor:
        """Dot products of the decoder states with ``text_embeds`` ``[Q,d_model]`` (Grounding DINO's contrastive
        head, with one vector per query instead of its fused token features)."""
        return regions.embeds.float() @ text_embeds.float().T

    def detect(self, images: torch.Tensor, texts: Sequence[str]) -> RegionFeatures:
        """Run on preprocessed ``images`` ``[N,3,h,w]`` with the caption of ``texts``; boxes normalised to the
        images, clipped."""
        self.check_texts(texts)
        ids, positions = self._tokenize(texts)
        n = images.shape[0]
        ids = ids.expand(n, -1).to(images.device)
        out = self.model(
            pixel_values=images,
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            token_type_ids=torch.zeros_like(ids),
        )
        probs = out.logits.float().sigmoid()  # [N,R,max_text_len]; -inf beyond the caption → 0
        phrase = torch.stack([probs[..., p].mean(-1) for p in positions], dim=-1).clamp(1e-6, 1 - 1e-6)
        return RegionFeatures(
            boxes=clip_boxes(cxcywh_to_xyxy(out.pred_boxes.float())),
            embeds=out.last_hidden_state,
            logits=torch.logit(phrase),
            queries=list(texts),
            aux={"text_tokens": out.encoder_last_hidden_state_text},
        )

    def detect_frames(self, frames: np.ndarray | torch.Tensor, texts: Sequence[str]) -> RegionFeatures:
        pixels, _ = prepare_frames(frames, self.preprocessing)
        return self.detect(pixels, texts)


_CLASSES = {
    "owlvit": ("OwlViTConfig", "OwlViTForObjectDetection"),
    "owlv2": ("Owlv2Config", "Owlv2ForObjectDetection"),
    "grounding-dino": ("GroundingDinoConfig", "GroundingDinoForObjectDetection"),
    "mm-grounding-dino": ("MMGroundingDinoConfig", "MMGroundingDinoForObjectDetection"),
}


def _wrap(
    model: nn.Module, model_type: str, preprocessing: dict[str, Any], tokenizer: Any, name: str
) -> GroundingModel:
    cls = HFOwl if model_type in OWL_TYPES else HFGroundingDino
    return cls(model.eval(), model_type, preprocessing, tokenizer, name)


def from_config(config: Any, seed: int = 0, name: str | None = None) -> GroundingModel:
    """A grounding model with random weights from a transformers config object (tests; nothing downloaded).
    Words become hashed ids (the text tower's weights are random anyway)."""
    import transformers

    model_type = config.model_type.replace("_", "-")
    if model_type not in _CLASSES:
        raise VideoadaptError(f"{model_type!r} is not a grounding model; known: {', '.join(_CLASSES)}")
    torch.manual_seed(seed)
    model = getattr(transformers, _CLASSES[model_type][1])(config)
    if model_type in OWL_TYPES:
        tokenizer: Any = HashTokenizer(config.text_config)
        tokenizer.bos_id = 1  # OWL treats a query whose first id is 0 as padding (its query mask)
    else:
        tokenizer = BertHashTokenizer(config.text_config.vocab_size)
    return _wrap(model, model_type, default_preprocessing(model_type), tokenizer, name or f"config:{model_type}")


def from_pretrained(source: str) -> GroundingModel:
    """Load OWL-ViT, OWLv2 or (MM-)Grounding DINO from a hub id or a local directory (safetensors only)."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import cached_file

    local = Path(source).is_dir() or not _hub_reachable()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except OSError as error:
        raise VideoadaptError(
            f"cannot load {source!r}: {str(error).splitlines()[0]}. Without the hub, download it elsewhere "
            f"(`hf download {source} --local-dir DIR`) and pass the directory"
        ) from None
    model_type = config.model_type.replace("_", "-")
    if model_type not in _CLASSES:
        raise VideoadaptError(f"{source}: model type {model_type!r} is not one of {', '.join(_CLASSES)}")
    try:
        model = getattr(transformers, _CLASSES[model_type][1]).from_pretrained(
            source, use_safetensors=True, local_files_only=local
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        if Path(source).is_dir():
            processor_file = Path(source) / "preprocessor_config.json"
        else:
            found = cached_file(source, "preprocessor_config.json", local_files_only=local)
            processor_file = Path(found) if found else Path("/nonexistent")
    except (OSError, ValueError) as error:
        raise VideoadaptError(f"cannot load {source!r}: {str(error).splitlines()[0]}") from None
    return _wrap(model, model_type, read_preprocessing(processor_file, model_type), tokenizer, source)
