"""Fine-tuning with extra models (survey Sec. III-B3): a second model runs beside the image-language model and
its outputs are fused into the image model's frame stream.

The survey names two families — dynamic signals and structural outputs — served by three ``stream`` values:

* ``"motion"`` (default): dynamic signals from a video network — CoSD (Gu et al., "Collaborative Static and
  Dynamic Vision-Language Streams for Spatio-Temporal Video Grounding", CVPR 2023) adds SlowFast features, CoSTA
  (Liang et al., AAAI 2024) 3D-CNN features, both fused with the image stream by cross-attention. Here the second
  stream is a small 3D CNN over frame differences (:class:`videoadapt.temporal.motion.MotionEncoder`, trained from
  scratch: no pretrained video network ships offline), and the image model's frame embeddings read its tokens
  through zero-initialised cross-attention (:class:`videoadapt.temporal.fusion.CrossStreamFusion`). The stream
  reads pixels (``needs_pixels``); when the image model stays frozen its frame features may still come from the
  feature cache: ``encoder(video, cached=features)``.
* ``"saliency"``: a motion saliency map, the survey's "motion saliency maps" — the magnitude of the frame difference,
  pooled to the patch grid (:mod:`videoadapt.temporal.saliency`) — weights the image model's own patch tokens into
  one actor token per frame (plus where the saliency lies). It reads pixels for the map and the patch tokens, so
  with a frozen image model the features come from the cache. Captions and questions name the object that acts;
  a frame's CLS embedding describes the whole scene, these tokens say which object in it that is.
* ``"structure"``: the structural outputs of another model — boxes (and optionally labels, scores, masks) of a
  detector or segmenter for each frame, the survey's second family ("detection results, segmentation masks, and
  motion saliency maps"; e.g. NetTrack [42] builds on Grounding-DINO's detections). They come in at call time as
  named inputs, ``encoder(video, boxes=boxes)`` (or ``encoder(cached=features, boxes=boxes)``): ``boxes``
  ``[B,T,K,4]`` normalised ``(x1, y1, x2, y2)``, ``masks`` ``[B,T,K,H,W]``, ``labels`` ``[B,T,K]`` (class ids),
  ``scores`` ``[B,T,K]`` — those declared by the ``inputs`` option, each of which must then be given — and the
  optional ``valid`` ``[B,T,K]`` (False for padding). Each object becomes a token (box geometry, pooled mask,
  label, score, time), and the frame embeddings read all objects of the clip through the same zero-initialised
  cross-attention. This stream reads no pixels, so with a frozen image model the whole encoder runs from the
  feature cache.

Because every fusion branch starts at zero, an untrained head returns the plain image-model stream (its frames and,
with ``temporal="mean"``, their mean): the extra model only adds what training finds useful. The image model may
be adapted at the same time (``adapter+extra_models``, ``lora+extra_models``): this paradigm brings the head.

Options: ``stream`` (one of the three, or several joined by ``+``, e.g. ``"motion+saliency"``: the frames then
read all their tokens at once), ``temporal`` ("mean" | "transformer", after fusion), ``temporal_layers`` (1),
``fusion_layers`` (1), ``heads`` (4), ``max_frames`` (64); motion: ``channels`` ([16, 32, 64]), ``grid`` (2, motion
tokens per frame side); saliency: ``floor`` (0.05, the share of even pooling, so a still frame pools all
patches); structure: ``inputs`` (["boxes"]; any of boxes, masks, labels, scores), ``num_labels``
(needed with labels), ``mask_grid`` (4, masks are average-pooled to this grid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import Paradigm, VideoFeatures, VideoHead
from videoadapt.paradigms.options import ParadigmConfig
from videoadapt.registry import registry
from videoadapt.temporal.fusion import CrossStreamFusion
from videoadapt.temporal.modules import temporal_module
from videoadapt.temporal.motion import MotionEncoder
from videoadapt.temporal.saliency import SaliencyEncoder

STREAMS = ("motion", "saliency", "structure")
TEMPORALS = ("mean", "transformer")
COMMON_OPTIONS = ("stream", "temporal", "temporal_layers", "fusion_layers", "heads", "max_frames")
STREAM_OPTIONS = {
    "motion": ("channels", "grid"),
    "saliency": ("floor",),
    "structure": ("inputs", "num_labels", "mask_grid"),
}
STRUCTURE_EMBEDDED = ("boxes", "masks", "labels", "scores")
STRUCTURE_INPUTS = (*STRUCTURE_EMBEDDED, "valid")


@dataclass(frozen=True)
class ExtraModelsConfig(ParadigmConfig):
    """The options of the module docstring; the stream options are accepted only with their stream."""

    paradigm: ClassVar[str] = "extra_models"
    stream: str = "motion"
    temporal: Literal["mean", "transformer"] = "mean"
    temporal_layers: int = 1
    fusion_layers: int = 1
    heads: int = 4
    max_frames: int = 64
    channels: tuple[int, ...] = (16, 32, 64)
    grid: int = 2
    floor: float = 0.05
    inputs: tuple[Literal["boxes", "masks", "labels", "scores"], ...] = ("boxes",)
    num_labels: int = 0
    mask_grid: int = 4

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.stream.split("+"))

    def validate(self) -> None:
        streams = self.streams
        if any(name not in STREAMS for name in streams) or len(set(streams)) != len(streams):
            raise VideoadaptError(
                f"extra_models: unknown stream {self.stream!r}; known: {', '.join(STREAMS)}, or several joined by "
                "'+' (each once)"
            )
        for name in ("temporal_layers", "fusion_layers", "heads", "max_frames", "grid", "mask_grid"):
            self.require(name, getattr(self, name) >= 1, "at least 1")
        self.require("channels", len(self.channels) > 0 and min(self.channels) >= 1, "positive channel counts")
        self.require("floor", self.floor >= 0, "at least 0")
        self.require("num_labels", self.num_labels >= 0, "at least 0")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ExtraModelsConfig:
        stream = options.get("stream", "motion")
        streams = stream.split("+") if isinstance(stream, str) else []
        known = COMMON_OPTIONS + tuple(o for name in streams for o in STREAM_OPTIONS.get(name, ()))
        misplaced = [name for name in options if name not in known and name in cls.option_names()]
        if misplaced:
            raise VideoadaptError(
                f"extra_models(stream={stream!r}): options {misplaced} belong to another stream; known: "
                f"{', '.join(known)}"
            )
        return super().from_options(options)


class StructureEncoder(nn.Module):
    """Per-object tokens from another model's outputs, plus one learned "no object" token so that a clip without
    any detection still has something to attend to (all-padded attention would be undefined).

    ``inputs`` declares which outputs are embedded (each has its own parameters, and each must then be given, so
    that the trainable parameters are exactly those that learn): ``boxes``, ``masks``, ``labels`` (needs
    ``num_labels``), ``scores``; at least one of boxes and masks."""

    def __init__(
        self,
        width: int,
        inputs: tuple[str, ...] = ("boxes",),
        num_labels: int = 0,
        mask_grid: int = 4,
        max_frames: int = 64,
    ) -> None:
        super().__init__()
        unknown = sorted(set(inputs) - set(STRUCTURE_EMBEDDED))
        if unknown or not inputs:
            raise VideoadaptError(
                f"extra_models: unknown structure inputs {unknown}; known: {', '.join(STRUCTURE_EMBEDDED)}"
            )
        if not {"boxes", "masks"} & set(inputs):
            raise VideoadaptError("extra_models: the structure inputs need boxes and/or masks to place the objects")
        if "labels" in inputs and num_labels <= 0:
            raise VideoadaptError("extra_models: inputs include labels; set num_labels (the detector's classes)")
        self.inputs = tuple(i for i in STRUCTURE_EMBEDDED if i in inputs)
        self.embed = nn.ModuleDict()
        if "boxes" in inputs:
            # Box geometry: corners, centre and size, so that the MLP need not learn subtraction first.
            self.embed["boxes"] = nn.Sequential(nn.Linear(8, width), nn.GELU(), nn.Linear(width, width))
        if "masks" in inputs:
            self.embed["masks"] = nn.Sequential(
                nn.Linear(mask_grid * mask_grid, width), nn.GELU(), nn.Linear(width, width)
            )
        if "labels" in inputs:
            self.embed["labels"] = nn.Embedding(num_labels, width)
        if "scores" in inputs:
            self.embed["scores"] = nn.Linear(1, width)
        self.time = nn.Parameter(torch.zeros(max_frames, width))
        self.empty = nn.Parameter(torch.zeros(1, width))
        nn.init.normal_(self.time, std=0.02)
        nn.init.normal_(self.empty, std=0.02)
        self.mask_grid = mask_grid
        self.max_frames = max_frames

    def forward(
        self,
        shape: tuple[int, int],
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``shape`` = (B, T) of the frames. Returns tokens ``[B,1+T*K,W]`` and padding ``[B,1+T*K]``."""
        b, t = shape
        given = {"boxes": boxes, "masks": masks, "labels": labels, "scores": scores}
        missing = [name for name in self.inputs if given[name] is None]
        if missing:
            raise VideoadaptError(
                f"extra_models(stream='structure') fuses another model's per-frame outputs and is missing {missing}: "
                "pass boxes= [B,T,K,4] (normalised x1,y1,x2,y2) and the other declared inputs "
                f"({', '.join(self.inputs)}) to the encoder, e.g. encoder(video, boxes=boxes)"
            )
        extra = [name for name, value in given.items() if value is not None and name not in self.inputs]
        if extra:
            raise VideoadaptError(
                f"extra_models: {extra} given but the head embeds only {list(self.inputs)}; "
                "add them to the extra_models option inputs"
            )
        if t > self.max_frames:
            raise VideoadaptError(f"extra_models: built for at most {self.max_frames} frames, got {t}")
        name = "boxes" if boxes is not None else "masks"
        reference = given[name]
        assert reference is not None
        if reference.ndim < 3 or tuple(reference.shape[:2]) != (b, t):
            raise VideoadaptError(
                f"extra_models: {name} must start with [B,T,K] = [{b},{t},K] to fit the frames, "
                f"got {tuple(reference.shape)}"
            )
        k = reference.shape[2]
        dtype = self.time.dtype
        tokens = self.time[:t].view(1, t, 1, -1).expand(b, t, k, -1)
        if boxes is not None:
            _check("boxes", boxes, (b, t, k, 4))
            x1, y1, x2, y2 = boxes.to(dtype).unbind(-1)
            geometry = torch.stack([x1, y1, x2, y2, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
            tokens = tokens + self.embed["boxes"](geometry)
        if masks is not None:
            if masks.ndim != 5 or tuple(masks.shape[:3]) != (b, t, k):
                raise VideoadaptError(
                    f"extra_models: masks must be [B,T,K,H,W] = [{b},{t},{k},H,W], got {tuple(masks.shape)}"
                )
            pooled = F.adaptive_avg_pool2d(masks.to(dtype).flatten(0, 2), self.mask_grid).flatten(1)
            tokens = tokens + self.embed["masks"](pooled).view(b, t, k, -1)
        if scores is not None:
            _check("scores", scores, (b, t, k))
            tokens = tokens + self.embed["scores"](scores.to(dtype).unsqueeze(-1))
        if labels is not None:
            _check("labels", labels, (b, t, k))
            if valid is not None:
                labels = labels.masked_fill(~valid.bool(), 0)  # padding may carry any id, e.g. -1
            classes = self.embed["labels"].num_embeddings
            if labels.min() < 0 or labels.max() >= classes:
                raise VideoadaptError(f"extra_models: labels must be in 0..{classes - 1}")
            tokens = tokens + self.embed["labels"](labels.long())
        present = torch.ones(b, t, k, dtype=torch.bool, device=tokens.device)
        if valid is not None:
            _check("valid", valid, (b, t, k))
            present = valid.bool().to(tokens.device)
        tokens = torch.cat([self.empty.expand(b, 1, -1), tokens.reshape(b, t * k, -1)], dim=1)
        padding = torch.cat([present.new_zeros(b, 1), ~present.flatten(1)], dim=1)
        return tokens, padding


def _check(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        dims = ",".join(str(s) for s in shape)
        raise VideoadaptError(
            f"extra_models: {name} must have shape [{dims}] to fit the frames, got {tuple(tensor.shape)}"
        )


class ExtraStreamsHead(VideoHead):
    """The image model's frame embeddings ``[B,T,E]`` read the tokens of one or more extra streams ``[B,M,E]``
    (concatenated) through cross-stream fusion, then a temporal module makes the video embedding."""

    def __init__(
        self,
        ilfm: ImageLanguageModel,
        streams: tuple[str, ...] = ("motion",),
        temporal: str = "mean",
        temporal_layers: int = 1,
        fusion_layers: int = 1,
        heads: int = 4,
        max_frames: int = 64,
        channels: tuple[int, ...] = (16, 32, 64),
        grid: int = 2,
        floor: float = 0.05,
        inputs: tuple[str, ...] | list[str] | str = ("boxes",),
        num_labels: int = 0,
        mask_grid: int = 4,
    ) -> None:
        super().__init__()
        if temporal not in TEMPORALS:
            raise VideoadaptError(f"extra_models: unknown temporal {temporal!r}; known: {', '.join(TEMPORALS)}")
        self.streams = tuple(streams)
        self.width = ilfm.dims.embed_dim
        if "motion" in self.streams:
            self.motion = MotionEncoder(self.width, tuple(int(c) for c in channels), int(grid), int(max_frames))
        if "saliency" in self.streams:
            self.saliency = SaliencyEncoder(
                ilfm.dims.width, self.width, ilfm.dims.patch_grid, float(floor), int(max_frames)
            )
        if "structure" in self.streams:
            inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
            self.structure = StructureEncoder(self.width, inputs, int(num_labels), int(mask_grid), int(max_frames))
            self.extra_inputs = STRUCTURE_INPUTS
        # The motion and saliency streams read the pixels; the structure stream reads another model's outputs.
        self.needs_pixels = bool({"motion", "saliency"} & set(self.streams))
        # Only the saliency stream pools patch tokens; without it the cache skips reading them.
        self.needs_patches = "saliency" in self.streams
        self.fusion = CrossStreamFusion(self.width, layers=int(fusion_layers), heads=int(heads))
        options = {"layers": int(temporal_layers)} if temporal == "transformer" else {}
        self.temporal = temporal_module(temporal, self.width, **options)

    def forward(
        self,
        features: FrameFeatures,
        video: torch.Tensor | None = None,
        text: TextFeatures | None = None,
        **structure: torch.Tensor | None,
    ) -> VideoFeatures:
        if self.needs_pixels and video is None:
            raise VideoadaptError(f"extra_models(stream={'+'.join(self.streams)!r}) reads the pixels: pass the video")
        b, t = features.embeds.shape[:2]
        tokens: list[torch.Tensor] = []
        if "motion" in self.streams:
            tokens.append(self.motion(video).flatten(1, 2))  # [B,T*G*G,E]
        if "saliency" in self.streams:
            tokens.append(self.saliency(video, features.patches))  # [B,T,E]
        mask = None  # only detected objects can be absent (padding); pixel streams always have every token
        if "structure" in self.streams:
            objects, absent = self.structure((b, t), **structure)
            present = [torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device) for x in tokens]
            mask = torch.cat([*present, absent.to(objects.device)], dim=1)
            tokens.append(objects)
        dtype = features.embeds.dtype
        context = torch.cat([x.to(dtype) for x in tokens], dim=1)
        frames = self.fusion(features.embeds, context, mask)
        frames, pooled = self.temporal(frames)
        return VideoFeatures(frames=frames, video=pooled, patches=features.patches)


@registry.register("paradigm", "extra_models")
class ExtraModels(Paradigm):
    name = "extra_models"
    config_class = ExtraModelsConfig
    config: ExtraModelsConfig

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        c = self.config
        return ExtraStreamsHead(
            ilfm,
            streams=c.streams,
            temporal=c.temporal,
            temporal_layers=c.temporal_layers,
            fusion_layers=c.fusion_layers,
            heads=c.heads,
            max_frames=c.max_frames,
            channels=c.channels,
            grid=c.grid,
            floor=c.floor,
            inputs=c.inputs,
            num_labels=c.num_labels,
            mask_grid=c.mask_grid,
        )
