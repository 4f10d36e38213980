"""Open-vocabulary video instance segmentation (OV-VIS): every object of any named category, segmented and followed.

The head is MinVIS/OV2Seg's in shape, on the encoder's **patch tokens** ``[B,T,P,D]`` and, with a pixel stem, the
clips' **pixels** (a task head reads only :class:`VideoFeatures`; this one sets ``needs_pixels``, and the model then
passes the preprocessed clips in ``VideoFeatures.pixels``, decoded beside the cached tokens):

1. per frame, learnt queries read the patch tokens in a small transformer decoder (``temporal/mask_decoder.py``);
   each query's mask is its mask embedding · per-pixel features that a pixel-shuffle decoder makes of the patch
   tokens themselves (the tokens first attend to each other in ``context_layers`` (1) encoder layers, then each is
   expanded into its ``upsample`` × ``upsample`` sub-patch cells by an MLP of ``fine_hidden`` (256) units, then
   one 3×3 convolution), so masks are finer than the 8-pixel patches (32×32 cells for a 64-pixel frame); with
   ``pixel_stride`` s > 0 (1; 0: tokens only) a light convolutional stem (``stem_dim`` 32 channels) reads the
   frame at stride s and is fused with those features, masks then at the frame's size / s (edges of solid shapes
   are in the pixels, not in tokens made for classification); bilinearly upsampled to the frame at prediction;
2. each query is classified by the cosine similarity of its class embedding to the category names' text
   embeddings (scaled by a learnt temperature), plus a no-object logit: any list of names is a vocabulary;
3. with a grounding ILFM whose region heads read the cached tokens (TinyOWL) and an encoder that passes the CLS
   tokens on, the region class logits of the patches, pooled under each query's mask, are a second classifier
   that never trained on SynthWorld videos (FC-CLIP's out-of-vocabulary branch): the two are combined by a
   geometric mean, ``p_in^(1-g) * p_out^g`` with ``g = alpha`` (0.35) for the categories the head trained on and
   ``beta`` (0.65) for the others (``open_vocab: false`` turns it off);
4. training is per frame: Hungarian matching and Mask2Former's losses (``temporal/mask_criterion.py``); the text
   vocabulary of training is the training split's categories minus ``extra["novel_categories"]``;
5. identities are kept by matching queries across frames (``temporal/query_association.py``, MinVIS): a video
   instance is one chain of matched queries: its class probabilities the mean over frames, times its mask
   quality (Mask2Former's mask score: the mean foreground probability inside the mask) to the power ``mask_score``
   (2); each query gives its ``classes_per_query`` (3) best categories, and the ``top_k`` (30) best (query,
   category) pairs of a video are its prediction (choices made on SynthWorld validation).

The zero-shot row (``head: detection``) is the grounding ILFM's per-frame detection: its region boxes scored
against the names, kept above ``detection_threshold`` after class-agnostic NMS, a box filled as the mask, linked
across frames by box IoU only (``temporal/iou_linking.py``), each track's category by vote (mean scores).

Frames: the ``T`` sampled frames are the evaluation sampler's (``uniform:T``: the middle frame of each of ``T``
equal segments); every video frame takes the mask of the nearest sampled frame. Training takes the ground truth
of the same frames, exact when ``T`` is the video's frame count (the recipe) and within half a segment otherwise.
Predictions per item: a list of ``VideoInstance(category, score, masks {frame: COCO RLE})``
(``metrics/video_segmentation.py``); metrics: YouTube-VIS AP, AP50, AP75, AR1, AR10 and LV-VIS's AP of base
and novel categories apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import nn

from videoadapt.data.masks import encode_masks
from videoadapt.data.records import Item, TaskData, TrackingItem, VideoRef
from videoadapt.data.transforms import crop_in_frame
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import GroundingModel, ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.registry import registry
from videoadapt.tasks.base import (
    Request,
    SurveyTable,
    Task,
    TaskHead,
    TextEncoder,
    check_predictions,
    check_spec,
    frames_of_samples,
    head_device,
)
from videoadapt.temporal.association import nms
from videoadapt.temporal.iou_linking import link_by_iou
from videoadapt.temporal.mask_criterion import MaskSetCriterion
from videoadapt.temporal.mask_decoder import MaskQueryDecoder
from videoadapt.temporal.query_association import associate_queries

HEADS = ("queries", "detection")
PROMPT = "{}"  # the category name as it is; TinyOWL's names were trained bare


@dataclass(frozen=True)
class UserTrackingItem(TrackingItem):
    """A user's video (``videoadapt predict``): no tracks, and the category names to look for."""

    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Geometry:
    """Where the model's square input lies in the original frame: ``top``, ``left``, ``height``, ``width`` pixels of
    the original frame that the processor's resize and centre crop keep."""

    top: int
    left: int
    height: int
    width: int


def frame_geometry(width: int, height: int, processor: dict[str, Any]) -> Geometry:
    top, left, crop_h, crop_w = crop_in_frame(
        height,
        width,
        int(processor["image_size"]),
        str(processor.get("resize", "shortest_edge")),
        str(processor.get("crop", "center")),
    )
    return Geometry(int(round(top)), int(round(left)), max(1, int(round(crop_h))), max(1, int(round(crop_w))))


def nearest_sampled(num_frames: int, frames: Sequence[int]) -> np.ndarray:
    """For each video frame, the index (into ``frames``, the sampled video frames) of the nearest sampled one."""
    picks = np.asarray(frames, dtype=np.int64)
    return np.abs(np.arange(num_frames)[:, None] - picks[None, :]).argmin(1)


class QueryMaskHead(TaskHead):
    def __init__(self, spec: dict[str, Any], ilfm: ImageLanguageModel) -> None:
        super().__init__(spec)
        self.decoder = MaskQueryDecoder(
            int(spec["width"]),
            int(spec["embed_dim"]),
            (int(spec["grid"][0]), int(spec["grid"][1])),
            hidden=int(spec["hidden"]),
            queries=int(spec["queries"]),
            layers=int(spec["layers"]),
            pixel_dim=int(spec["pixel_dim"]),
            upsample=int(spec["upsample"]),
            context_layers=int(spec.get("context_layers", 0)),
            fine_hidden=int(spec.get("fine_hidden", 0)),
            pixel_stride=int(spec.get("pixel_stride", 0)),
            stem_dim=int(spec.get("stem_dim", 32)),
        )
        # With a pixel stem the head reads the clips beside the patch tokens (VideoFeatures.pixels).
        self.needs_pixels = self.decoder.stem is not None
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))
        self.criterion = MaskSetCriterion()
        # Used, not owned: the region heads are the backbone's (never trained here).
        self.__dict__["ilfm"] = ilfm if isinstance(ilfm, GroundingModel) else None

    def decode(self, patches: torch.Tensor, features: VideoFeatures) -> dict[str, torch.Tensor]:
        """The decoder's outputs for every frame of ``patches [B,T,P,D]``, frames flattened (``N = B*T``); with a
        pixel stem it reads ``features.pixels [B,T,3,S,S]`` too."""
        pixels = None
        if self.needs_pixels:
            if features.pixels is None:
                raise VideoadaptError(
                    "segmentation head with a pixel stem (pixel_stride > 0): VideoFeatures carry no pixels; the "
                    "model passes them when the head says needs_pixels"
                )
            pixels = features.pixels.flatten(0, 1)
        return self.decoder(patches.flatten(0, 1), pixels)

    def class_logits(self, out: dict[str, torch.Tensor], text_embeds: torch.Tensor) -> torch.Tensor:
        """``[N,Q,C+1]``: scaled cosine with each name, then the no-object logit."""
        scale = self.log_scale.exp().clamp(max=100.0)
        names = F.normalize(text_embeds.float().to(out["class_embeds"].device), dim=-1)
        logits = scale * F.normalize(out["class_embeds"].float(), dim=-1) @ names.T
        return torch.cat((logits, out["no_object"].float().unsqueeze(-1)), -1)

    def region_probabilities(
        self, features: VideoFeatures, masks: torch.Tensor, text_embeds: torch.Tensor
    ) -> torch.Tensor | None:
        """The ILFM's region classifier pooled under each query's mask: ``[N,Q,C]`` class distributions, or None
        where there is none (not a grounding ILFM, or no CLS tokens from the encoder)."""
        ilfm = self.__dict__["ilfm"]
        if ilfm is None or features.cls is None or features.patches is None or not self.spec.get("open_vocab"):
            return None
        with torch.no_grad():
            try:
                regions = ilfm.regions_from_frame_features(
                    features.cls.flatten(0, 1).float(), features.patches.flatten(0, 1).float()
                )
            except VideoadaptError:
                return None
            logits = ilfm.region_logits(regions, text_embeds.to(regions.embeds.device)).float()  # [N,P,C]
        rows, cols = int(self.spec["grid"][0]), int(self.spec["grid"][1])
        weights = F.adaptive_avg_pool2d(masks.detach().float().sigmoid(), (rows, cols)).flatten(2)  # [N,Q,P]
        pooled = weights @ logits / weights.sum(-1, keepdim=True).clamp(min=1e-6)
        return pooled.softmax(-1)


class DetectionMaskHead(TaskHead):
    """No parameters: the grounding ILFM's per-frame detections as box masks (the zero-shot row)."""

    def __init__(self, spec: dict[str, Any], ilfm: ImageLanguageModel) -> None:
        super().__init__(spec)
        if not isinstance(ilfm, GroundingModel):
            raise VideoadaptError(
                f"segmentation head 'detection' needs a grounding ILFM (tiny-owl), not {type(ilfm).__name__}: a "
                "contrastive model has no regions"
            )
        self.__dict__["ilfm"] = ilfm


@registry.register("task", "segmentation")
class Segmentation(Task):
    name = "segmentation"
    monitor = "ap"
    needs_patches = True
    survey = (
        SurveyTable(
            "segmentation",
            "Table II: open-vocabulary video instance segmentation",
            (("AP", "ap"), ("AP_b", "ap_base"), ("AP_n", "ap_novel"), ("AP50", "ap50"), ("AR10", "ar10")),
            primary="ap",
            zero_shot_head={"head": "detection"},
        ),
    )

    def check_item(self, item: Item, data: TaskData) -> str | None:
        if not isinstance(item, TrackingItem):
            return f"not a tracking item ({type(item).__name__})"
        if item.num_frames < 1 or item.width < 1 or item.height < 1:
            return f"{item.num_frames} frames of {item.width}x{item.height} pixels"
        for track in item.tracks:
            if track.masks is None or len(track.masks) != len(track.frames):
                return f"track {track.track_id} has no mask on each of its frames (segmentation needs masks)"
            for frame, rle in zip(track.frames, track.masks, strict=True):
                if not 0 <= frame < item.num_frames:
                    return f"track {track.track_id}: frame {frame} outside the video's {item.num_frames} frames"
                if list(rle.get("size", ())) != [item.height, item.width]:
                    return (
                        f"track {track.track_id}, frame {frame}: mask of size {rle.get('size')} in a "
                        f"{item.height}x{item.width} video"
                    )
        return None

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        tracking: list[TrackingItem] = list(items)  # type: ignore[arg-type]
        classes = list(data.classes) if data.classes else []
        for item in tracking:
            for name in getattr(item, "categories", ()):
                if name not in classes:
                    classes.append(name)
        return {"items": tracking, "classes": classes}

    # --- model --------------------------------------------------------------------------------------------------

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> TaskHead:
        kind = str((spec or {}).get("head", self.option("head", "queries")))
        if kind not in HEADS:
            raise VideoadaptError(f"model.head.head: unknown segmentation head {kind!r}; known: {HEADS}")
        processor = ilfm.processor
        common = {
            "processor": {"image_size": processor.image_size, "resize": processor.resize, "crop": processor.crop},
            "top_k": int(self.option("top_k", 30)),
        }
        if kind == "detection":
            if spec is None:
                spec = {
                    "head": "detection",
                    **common,
                    "detection_threshold": float(self.option("detection_threshold", 0.1)),
                    "link_iou": float(self.option("link_iou", 0.3)),
                }
            return DetectionMaskHead(spec, ilfm)
        if spec is None:
            novel = set(data.extra.get("novel_categories", []) or [])
            classes = [c for c in data.classes if c not in novel]
            if not classes:
                raise VideoadaptError(f"segmentation: the training data ({data.origin}) names no categories")
            spec = {
                "head": "queries",
                **common,
                "classes": classes,
                "hidden": int(self.option("hidden", 192)),
                "queries": int(self.option("queries", 16)),
                "layers": int(self.option("layers", 2)),
                "pixel_dim": int(self.option("pixel_dim", 32)),
                "upsample": int(self.option("upsample", 4)),
                "context_layers": int(self.option("context_layers", 1)),
                "fine_hidden": int(self.option("fine_hidden", 256)),
                "pixel_stride": int(self.option("pixel_stride", 1)),
                "stem_dim": int(self.option("stem_dim", 32)),
                "grid": list(ilfm.dims.patch_grid),
                "width": int(ilfm.dims.width),
                "embed_dim": int(ilfm.dims.embed_dim),
                "open_vocab": bool(self.option("open_vocab", True)),
                "alpha": float(self.option("alpha", 0.35)),
                "beta": float(self.option("beta", 0.65)),
                "classes_per_query": int(self.option("classes_per_query", 3)),
                "mask_score": float(self.option("mask_score", 2.0)),
            }
            synonyms = data.extra.get("category_synonyms") or {} if self.option("synonyms", False) else {}
            spec["category_synonyms"] = {str(k): [str(n) for n in v] for k, v in dict(synonyms).items()}  # type: ignore[call-overload]
        check_spec(
            spec, self.name, ("classes", "hidden", "queries", "layers", "pixel_dim", "upsample", "grid", "width")
        )
        return QueryMaskHead(spec, ilfm)

    def _patches(self, features: VideoFeatures) -> torch.Tensor:
        if features.patches is None:
            raise VideoadaptError(
                "segmentation reads patch tokens, and this encoder gave none (its head drops them); use a paradigm "
                "that keeps the backbone's patches (post_network, adapter, lora, ...)"
            )
        return features.patches

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        if not isinstance(head, QueryMaskHead):
            raise VideoadaptError("segmentation head 'detection' has nothing to train (it is the zero-shot row)")
        patches = self._patches(features)
        b, t = patches.shape[:2]
        out = head.decode(patches, features)
        vocabulary = list(head.spec["classes"])
        logits = head.class_logits(out, text.embeds([PROMPT.format(c) for c in vocabulary]))
        index = {c: i for i, c in enumerate(vocabulary)}
        size = (int(out["masks"].shape[-2]), int(out["masks"].shape[-1]))
        device = head_device(head)
        labels, masks = [], []
        for i, item in enumerate(targets["items"]):
            frames = frames_of_samples(targets, i, item.num_frames, t)
            frame_labels, frame_masks = ground_truth_frames(item, frames, size, head.spec["processor"], index)
            labels += [x.to(device) for x in frame_labels]
            masks += [m.to(device) for m in frame_masks]
        return head.criterion(logits, out["masks"], labels, masks)["loss_total"]

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        from videoadapt.metrics.video_segmentation import VideoInstance

        classes = list(targets["classes"])
        if not classes:
            raise VideoadaptError("segmentation: no category names to look for (the data's classes, or --text)")
        embeds = class_text(text, classes, head.spec.get("category_synonyms") or {})
        if isinstance(head, DetectionMaskHead):
            tracks = detection_tracks(head, features, embeds, targets["items"])
        else:
            tracks = query_tracks(head, self._patches(features), features, embeds, classes)  # type: ignore[arg-type]
        predictions = []
        for i, (item, item_tracks) in enumerate(zip(targets["items"], tracks, strict=True)):
            frames = frames_of_samples(targets, i, item.num_frames, item_tracks.sampled)
            found = item_tracks(item, int(head.spec["top_k"]), frames)
            predictions.append([VideoInstance(classes[c], s, m) for c, s, m in found])
        return predictions

    # --- metrics -------------------------------------------------------------------------------------------------

    def _metric_inputs(self, predictions: Sequence[Any], data: TaskData) -> tuple[list, dict, list, list]:
        check_predictions(self, predictions, data)
        ids = [item.video.video_id for item in data.items]
        if len(set(ids)) != len(ids):
            raise VideoadaptError(f"segmentation: {data.origin} lists a video twice; video ids must be unique")
        novel = list(data.extra.get("novel_categories", []) or [])
        return list(data.items), dict(zip(ids, predictions, strict=True)), list(data.classes), novel

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        from videoadapt.metrics.video_segmentation import vis_metrics

        items, by_video, classes, novel = self._metric_inputs(predictions, data)
        return {k: float(v) for k, v in vis_metrics(items, by_video, classes, novel).items()}

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """One row per video in data order (``vis_statistics``: every video at once, as the ranking is global)."""
        from videoadapt.metrics.video_segmentation import vis_statistics

        items, by_video, classes, novel = self._metric_inputs(predictions, data)
        return vis_statistics(items, by_video, classes, novel)

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from videoadapt.metrics.video_segmentation import vis_metrics_from_sums

        return vis_metrics_from_sums(sums)

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per video: ``id``, the predicted instances (category, score, frames with a mask) and the ground-truth
        objects (category, frames)."""
        check_predictions(self, predictions, data)
        records = []
        for instances, item in zip(predictions, data.items, strict=True):
            records.append(
                {
                    "id": item.video.video_id,
                    "predicted": [
                        {"category": p.category, "score": round(float(p.score), 4), "frames": len(p.masks)}
                        for p in instances
                    ],
                    "objects": [{"category": t.category, "frames": len(t.frames)} for t in item.tracks],  # type: ignore[union-attr]
                }
            )
        return records

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """YouTube-VIS json both ways (``metrics/segmentation_files.py``): the result list and the ground truth
        (videos numbered 1.. in data order, categories 1.. in ``data.classes`` order, LV-VIS's base/novel
        ``partition``), which ``videoadapt score --task segmentation --gt ground_truth.json`` reads back."""
        from videoadapt.metrics import segmentation_files as sf
        from videoadapt.metrics.prediction_files import documents

        items, by_video, classes, novel = self._metric_inputs(predictions, data)
        truth = sf.vis_ground_truth(items, classes, novel)
        results = sf.vis_results(
            by_video,
            items,
            {c: k + 1 for k, c in enumerate(classes)},
            {item.video.video_id: k + 1 for k, item in enumerate(items)},
        )
        return documents(json.dumps(results), json.dumps(truth))

    # --- a user's video -------------------------------------------------------------------------------------------

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        names = tuple(dict.fromkeys(t.strip() for t in request.texts if t.strip()))
        if not names:
            raise VideoadaptError("segmentation: give the category names to segment (--text NAME, one each)")
        if not (request.width > 0 and request.height > 0 and request.fps > 0):
            raise VideoadaptError("segmentation: the video's frame size and rate are unknown; masks are in its pixels")
        frames = max(1, int(round(request.duration * request.fps)))
        return [
            UserTrackingItem(
                video, frames, float(request.fps), int(request.width), int(request.height), (), categories=names
            )
        ]

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        fps = item.fps  # type: ignore[union-attr]
        instances = []
        for p in list(prediction)[:top_k]:
            boxes = {}
            for frame, rle in sorted(p.masks.items()):
                box = mask_utils.toBbox(rle)
                if box[2] > 0 and box[3] > 0:
                    boxes[int(frame)] = [
                        round(float(box[0]), 1),
                        round(float(box[1]), 1),
                        round(float(box[0] + box[2]), 1),
                        round(float(box[1] + box[3]), 1),
                    ]
            instances.append(
                {
                    "category": p.category,
                    "score": round(float(p.score), 4),
                    "start_s": min(boxes) / fps if boxes else None,
                    "end_s": (max(boxes) + 1) / fps if boxes else None,
                    "boxes_xyxy": boxes,  # frame -> the mask's bounding box in pixels
                    "masks": {int(f): m for f, m in sorted(p.masks.items())},  # frame -> COCO RLE
                }
            )
        return {"instances": instances}


# --- ground truth ---------------------------------------------------------------------------------------------


def ground_truth_frames(
    item: TrackingItem, frames: Sequence[int], size: tuple[int, int], processor: dict[str, Any], index: dict[str, int]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The instances on each sampled frame (``frames``: the video frames sampled): per frame ``labels [G]``
    (indices into the training vocabulary ``index``; objects of other categories are left out) and ``masks
    [G,h,w]`` in the model's view of the frame, area-downsampled to the mask head's cells (fractions in [0, 1])."""
    picks = [int(f) for f in frames]
    where = frame_geometry(item.width, item.height, processor)
    per_frame: list[list[tuple[int, dict]]] = [[] for _ in picks]
    for track in item.tracks:
        if track.category not in index or track.masks is None:
            continue
        by_frame = dict(zip(track.frames, track.masks, strict=True))
        for k, f in enumerate(picks):
            rle = by_frame.get(int(f))
            if rle is not None:
                per_frame[k].append((index[track.category], rle))
    labels, masks = [], []
    for entries in per_frame:
        labels.append(torch.tensor([e[0] for e in entries], dtype=torch.long))
        if not entries:
            masks.append(torch.zeros(0, *size))
            continue
        decoded = mask_utils.decode([e[1] for e in entries])  # [H,W,G] uint8
        full = torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1))).float()
        crop = full[:, where.top : where.top + where.height, where.left : where.left + where.width]
        masks.append(F.interpolate(crop[None], size=size, mode="area")[0])
    return labels, masks


def to_frame(logits: torch.Tensor, item: TrackingItem, processor: dict[str, Any]) -> np.ndarray:
    """Mask logits ``[K,h,w]`` in the model's view -> bool masks ``[K,H,W]`` of the original frame."""
    where = frame_geometry(item.width, item.height, processor)
    inside = F.interpolate(logits[None].float(), size=(where.height, where.width), mode="bilinear", align_corners=False)
    out = np.zeros((len(logits), item.height, item.width), dtype=bool)
    region = (inside[0] > 0).cpu().numpy()
    h = min(where.height, item.height - where.top)
    w = min(where.width, item.width - where.left)
    out[:, where.top : where.top + h, where.left : where.left + w] = region[:, :h, :w]
    return out


def class_text(text: TextEncoder, classes: Sequence[str], synonyms: dict[str, list[str]]) -> torch.Tensor:
    """``[C,E]`` unit text embeddings a prediction names its instances by: per category, the mean of the unit
    embeddings of its name and its ``synonyms`` (CLIP's prompt ensembling over names; the data's
    ``extra["category_synonyms"]``, kept in the head's spec), renormalised."""
    rows = []
    for category in classes:
        names = [category, *synonyms.get(category, [])]
        rows.append(F.normalize(text.embeds([PROMPT.format(n) for n in names]).float(), dim=-1).mean(0))
    return F.normalize(torch.stack(rows), dim=-1)


# --- decoding ------------------------------------------------------------------------------------------------


def combined_probabilities(
    head: QueryMaskHead, out: dict[str, torch.Tensor], features: VideoFeatures, embeds: torch.Tensor, classes: list[str]
) -> torch.Tensor:
    """``[N,Q,C]`` class probabilities of each query (no-object mass excluded), with the ILFM's pooled region
    classifier combined in where there is one."""
    probs = head.class_logits(out, embeds).softmax(-1)
    foreground, within = 1 - probs[..., -1:], probs[..., :-1]
    region = head.region_probabilities(features, out["masks"], embeds)
    if region is None:
        return within
    seen = torch.tensor([c in set(head.spec["classes"]) for c in classes], device=within.device)
    gamma = torch.where(seen, float(head.spec["alpha"]), float(head.spec["beta"]))
    given_object = (within / foreground.clamp(min=1e-6)).clamp(min=1e-8)
    mixed = given_object ** (1 - gamma) * region.to(within.device).clamp(min=1e-8) ** gamma
    return foreground * mixed / mixed.sum(-1, keepdim=True)


def query_tracks(
    head: QueryMaskHead, patches: torch.Tensor, features: VideoFeatures, embeds: torch.Tensor, classes: list[str]
) -> list[Any]:
    b, t = patches.shape[:2]
    out = head.decode(patches, features)
    probs = combined_probabilities(head, out, features, embeds, classes).reshape(b, t, *out["masks"].shape[1:2], -1)
    masks = out["masks"].reshape(b, t, *out["masks"].shape[1:])
    states = out["states"].reshape(b, t, *out["states"].shape[1:])
    per_query = max(1, int(head.spec.get("classes_per_query", 1)))
    power = float(head.spec.get("mask_score", 0.0))
    decoders = []
    for i in range(b):
        order = associate_queries(states[i]).to(probs.device)  # [T,Q]
        chained = probs[i].gather(1, order[..., None].expand(-1, -1, probs.shape[-1]))  # [T,Q,C]
        chained_masks = masks[i][torch.arange(t, device=masks.device)[:, None], order.to(masks.device)]  # [T,Q,h,w]
        scores = chained.mean(0)  # [Q,C]
        if power:
            scores = scores * mask_quality(chained_masks).to(scores.device)[:, None] ** power
        decoders.append(_QueryDecoder(scores, per_query, chained_masks, head.spec["processor"]))
    return decoders


def mask_quality(logits: torch.Tensor) -> torch.Tensor:
    """``[Q]`` from mask logits ``[T,Q,h,w]``: Mask2Former's mask score (the mean foreground probability inside the
    predicted mask) averaged over the frames where the mask is not empty; 0 for a query that is empty throughout."""
    p = logits.float().sigmoid()
    inside = (logits > 0).float()
    area = inside.sum((-2, -1))  # [T,Q]
    per_frame = (p * inside).sum((-2, -1)) / area.clamp(min=1)
    shown = (area > 0).float()
    return (per_frame * shown).sum(0) / shown.sum(0).clamp(min=1)


class _QueryDecoder:
    """Turns one video's query chains into its top-k instances once its item is known: the best ``top_k`` (query,
    category) pairs by score, each query giving at most ``per_query`` categories (1: its arg-max only; more is
    Mask2Former's instance inference, a second guess of an unsure class at a lower score)."""

    def __init__(self, scores: torch.Tensor, per_query: int, masks: torch.Tensor, processor: dict) -> None:
        self.scores, self.per_query, self.masks, self.processor = scores, per_query, masks, processor

    @property
    def sampled(self) -> int:
        """How many sampled frames the video's masks are on."""
        return int(self.masks.shape[0])

    def __call__(self, item: TrackingItem, top_k: int, frames: Sequence[int]) -> list[tuple[int, float, dict]]:
        """The best ``top_k`` instances of ``item``, whose sampled frames are the video frames ``frames``."""
        c = self.scores.shape[-1]
        best, categories = self.scores.topk(min(self.per_query, c), dim=-1)  # [Q,k]
        order = best.flatten().argsort(descending=True)[:top_k].tolist()
        nearest = nearest_sampled(item.num_frames, frames)
        encoded: dict[int, list[dict]] = {}
        out = []
        for flat in order:
            q, j = divmod(flat, best.shape[1])
            if q not in encoded:
                encoded[q] = encode_masks(to_frame(self.masks[:, q], item, self.processor))  # [T] RLEs
            rles = encoded[q]
            out.append(
                (
                    int(categories[q, j]),
                    float(best[q, j]),
                    {f: rles[int(nearest[f])] for f in range(item.num_frames)},
                )
            )
        return out


def detection_tracks(
    head: DetectionMaskHead, features: VideoFeatures, embeds: torch.Tensor, items: Sequence[TrackingItem]
) -> list[Any]:
    if features.cls is None or features.patches is None:
        raise VideoadaptError(
            "segmentation head 'detection' reads the backbone's CLS and patch tokens; use post_network (the "
            "zero-shot row's encoder)"
        )
    ilfm: GroundingModel = head.__dict__["ilfm"]
    b, t = features.patches.shape[:2]
    with torch.no_grad():
        regions = ilfm.regions_from_frame_features(features.cls.flatten(0, 1), features.patches.flatten(0, 1))
        scores = ilfm.region_logits(regions, embeds.to(regions.embeds.device)).float().sigmoid()  # [N,R,C]
    scores = scores.reshape(b, t, *scores.shape[1:]).cpu().numpy()
    boxes = regions.boxes.reshape(b, t, -1, 4).float().cpu().numpy()
    threshold, link = float(head.spec["detection_threshold"]), float(head.spec["link_iou"])
    return [_DetectionDecoder(boxes[i], scores[i], threshold, link, head.spec["processor"]) for i in range(b)]


def frame_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5, keep: int = 10) -> np.ndarray:
    """Indices of the ``keep`` best boxes left by greedy class-agnostic non-maximum suppression, best first."""
    kept = nms(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores, dtype=torch.float32), iou)
    return kept[:keep].numpy().astype(np.int64)


class _DetectionDecoder:
    def __init__(
        self, boxes: np.ndarray, scores: np.ndarray, threshold: float, link: float, processor: dict[str, Any]
    ) -> None:
        self.boxes, self.scores, self.threshold, self.link, self.processor = boxes, scores, threshold, link, processor

    @property
    def sampled(self) -> int:
        return len(self.boxes)

    def __call__(self, item: TrackingItem, top_k: int, frames: Sequence[int]) -> list[tuple[int, float, dict]]:
        t = len(self.boxes)
        where = frame_geometry(item.width, item.height, self.processor)
        scale = np.array([where.width, where.height, where.width, where.height], dtype=np.float64)
        shift = np.array([where.left, where.top, where.left, where.top], dtype=np.float64)
        kept_boxes, kept_scores = [], []
        for k in range(t):
            best = self.scores[k].max(-1)
            candidates = np.flatnonzero(best >= self.threshold)
            chosen = (
                candidates[frame_nms(self.boxes[k][candidates], best[candidates])] if len(candidates) else candidates
            )
            kept_boxes.append(self.boxes[k][chosen] * scale + shift)
            kept_scores.append(self.scores[k][chosen])
        ids = link_by_iou(kept_boxes, self.link)
        tracks: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for k in range(t):
            for box, score, track in zip(kept_boxes[k], kept_scores[k], ids[k], strict=True):
                tracks.setdefault(int(track), []).append((k, box, score))
        ranked = []
        for detections in tracks.values():
            mean = np.mean([d[2] for d in detections], axis=0)
            category = int(mean.argmax())
            ranked.append((float(mean[category]), category, detections))
        ranked.sort(key=lambda r: -r[0])
        nearest = nearest_sampled(item.num_frames, frames)
        out = []
        for score, category, detections in ranked[:top_k]:
            masks = np.zeros((t, item.height, item.width), dtype=bool)
            for k, box, _ in detections:
                x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
                x2, y2 = min(item.width, int(math.ceil(box[2]))), min(item.height, int(math.ceil(box[3])))
                masks[k, y1:y2, x1:x2] = True
            rles = encode_masks(masks)
            out.append((category, score, {f: rles[int(nearest[f])] for f in range(item.num_frames)}))
        return out
