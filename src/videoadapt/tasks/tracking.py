"""Open-vocabulary multi-object tracking (OV-MOT, survey Table II; OVTrack's recipe): find, follow and classify
every object of any named category.

The grounding ILFM is the detector. Its regions come from the encoder's CLS and **patch tokens**
(``GroundingModel.regions_from_frame_features``: TinyOWL's one region per patch), so a frozen ILFM (post-network
on cached features) and an adapted one (LoRA, adapters: adapted patch tokens) detect through the same code; its
region heads are never trained here. Per frame:

* **detections**: each region's category probabilities are ``sigmoid(region_logits)`` against the category names
  in the prompt template (default ``"a {}"`` / ``"an {}"``, the phrases TinyOWL was trained on); a region is a
  detection when its best probability reaches ``score_threshold``; class-agnostic NMS at ``nms_iou``;
* **appearance**: ``temporal/appearance_embedding.py`` embeds every region token; the tracker
  (``temporal/tracker.py``) associates detections with tracks by the bi-softmax of embeddings and Hungarian
  matching, births tracks from detections scoring at least ``init_score``, drops tracks unseen for ``max_age``
  frames, updates memories by momentum, and classifies a track by the score-weighted vote of its boxes.

Trained (head ``track``): the appearance head on pairs of frames of a clip (key frame ``k``, reference frame
``k + gap``, the gap drawn per item and epoch in 1..``max_gap``): regions whose box overlaps a ground-truth box
(IoU >= 0.5, or the best region of an object when its IoU >= 0.3) take that object's track id; QDTrack's
multi-positive cross-entropy (weight 0.25) and cosine L2 (weight 1) over all key × reference regions, plus
OVTrack's distillation of the ILFM's region embeddings (L1 on unit vectors, weight ``distill_weight``). With
``refine`` (default true) a zero-initialised residual MLP on the patch tokens precedes the ILFM's region heads and
is trained with TinyOWL's own DETR set loss (focal class, L1, gIoU; Hungarian matching) on the **base** categories
only (the data's ``novel_categories`` are never queries, as in OVTrack); when the backbone adapts (LoRA, ...) the
same loss reaches it. The untrained head ``detection`` is the zero-shot row: the same detections, association by
IoU only (``metric="iou"``).

Frames: the ``T`` sampled frames stand for video frames ``round((k + 0.5) * N / T - 0.5)`` (the middle frame of
each uniform segment; every frame when ``T = N``); predictions exist on those frames only. Boxes come back in the
video's pixels (the ILFM's resize and centre crop undone). Predictions per item: a list of
``videoadapt.metrics.tracking.TrackedBox`` (frame, track_id, category name, box xyxy pixels, score).
Metrics (``videoadapt.metrics.tracking``): TETA (LocA, AssocA, ClsA), HOTA (DetA, AssA), MOTA, IDF1, each also for
base and novel categories.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import Item, TaskData, TrackingItem, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import GroundingModel, ImageLanguageModel, RegionFeatures, clip_boxes, cxcywh_to_xyxy
from videoadapt.foundation.tinyowl.losses import Targets, set_loss
from videoadapt.foundation.zeroshot_detection import category_phrase
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
)
from videoadapt.temporal.appearance_embedding import (
    AUX_WEIGHT,
    EMBED_WEIGHT,
    AppearanceEmbeddingHead,
    distillation_loss,
    quasi_dense_loss,
)
from videoadapt.temporal.association import box_iou_matrix, nms
from videoadapt.temporal.box_refinement import BoxRefinement, box_refinement_loss
from videoadapt.temporal.tracker import Tracker, TrackerConfig
from videoadapt.temporal.tube_grounding import box_xyxy_to_cxcywh

HEADS = ("track", "detection")
POSITIVE_IOU = 0.5
BEST_REGION_IOU = 0.3
# Detection and association settings: saved in the head's spec, so a run predicts as it was validated.
DECODE_DEFAULTS: dict[str, Any] = {
    "template": "auto",
    "score_threshold": 0.1,
    "nms_iou": 0.5,
    "init_score": 0.2,
    "match_score": 0.3,
    "iou_match": 0.3,
    "max_age": 10,
    "momentum": 0.2,
    "distractor_iou": 0.3,
    "min_cosine": 0.3,
}
# How a finished track is named; absent from the specs of runs saved before them, which keep the box vote.
CLASSIFY_DEFAULTS: dict[str, Any] = {
    "classify": "track",
    "synonyms": True,
    "prior": True,
    "name_from": "refined",
    # Chosen on validation (ClsA of three runs, LoRA x2 and post-network, margins 0-0.1): 0.04.
    "seen_margin": 0.04,
}
CLASSIFY = ("track", "vote")
# Which region class embeddings name a track: the refined tokens' (default) or the ILFM's own (the unrefined patch
# tokens). Validation, same weights after one epoch: ClsA 35.5 refined, 22.9 the ILFM's own (the refinement's set
# loss teaches the base names); it falls to 27.2 refined after three epochs while LocA rises 56.4 -> 59.2.
NAME_FROM = ("ilfm", "refined")
PRIOR_MOMENTUM = 0.99
NOVEL_KEY = "category_novel"  # item_statistics: 1 for each novel category (a constant row per video)
TRAIN_DEFAULTS: dict[str, Any] = {
    "embed_dim": 128,
    "hidden": 256,
    "refine": True,
    "refine_hidden": 256,
    "max_gap": 3,
    "distill_weight": 1.0,
    "detection_weight": 1.0,
    "box_refine": False,
    "box_hidden": 128,
    "box_weight": 1.0,
}


def category_prompt(category: str, template: str) -> str:
    """The text a category is asked as: ``template`` with ``{}`` replaced, or, for ``"auto"``, the phrase TinyOWL
    was trained and is evaluated with (``"a {}"``, ``"an {}"`` before a vowel)."""
    if template == "auto":
        return category_phrase(category)
    if "{}" not in template:
        raise VideoadaptError(f"tracking: the prompt template {template!r} needs a {{}} where the category goes")
    return template.replace("{}", category)


def _grounding_ilfm(ilfm: ImageLanguageModel) -> GroundingModel:
    if not isinstance(ilfm, GroundingModel):
        raise VideoadaptError(
            f"tracking needs a grounding ILFM (tiny-owl, hf-grounding:ID) as its detector, not {type(ilfm).__name__}: "
            "a contrastive model has no boxes"
        )
    return ilfm


class TrackingHead(TaskHead):
    """Detector (the ILFM's region heads, used not owned), optional patch refinement, appearance head."""

    def __init__(self, spec: dict[str, Any], ilfm: ImageLanguageModel) -> None:
        super().__init__(spec)
        self.__dict__["ilfm"] = _grounding_ilfm(ilfm)  # the backbone's weights, never the head's
        self.trained = spec["head"] == "track"
        width, joint = int(spec["width"]), int(ilfm.dims.embed_dim)
        self.refine: nn.Module | None = None
        self.embedding: AppearanceEmbeddingHead | None = None
        if self.trained:
            if spec.get("refine"):
                hidden = int(spec["refine_hidden"])
                self.refine = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU())
                self.refine_out = nn.Linear(hidden, width)
                nn.init.zeros_(self.refine_out.weight)  # starts at the ILFM's own detections
                nn.init.zeros_(self.refine_out.bias)
            self.embedding = AppearanceEmbeddingHead(width, joint, int(spec["embed_dim"]), int(spec["hidden"]))
            self.box_refine: BoxRefinement | None = None
            if spec.get("box_refine"):
                grid = tuple(ilfm.dims.patch_grid)
                self.box_refine = BoxRefinement(width, grid, int(spec["box_hidden"]))  # type: ignore[arg-type]
            # The mean unit class embedding of the training objects' regions (a running mean, saved with the
            # weights): the class prior subtracted when a track is named (see Tracking.predict).
            self.register_buffer("region_mean", torch.zeros(joint))
            self.register_buffer("region_count", torch.zeros(()))

    @property
    def ilfm(self) -> GroundingModel:
        return self.__dict__["ilfm"]

    def forward(self, features: VideoFeatures) -> dict[str, Any]:
        """Regions of every sampled frame: ``regions`` (flattened ``B*T``), ``tokens`` ``[B*T,P,D]`` the region
        tokens, ``embeds`` ``[B*T,P,d]`` the appearance embeddings (trained head only), ``shape`` ``(B, T)``."""
        if features.cls is None or features.patches is None:
            raise VideoadaptError(
                "tracking reads the backbone's CLS and patch tokens (the grounding ILFM's region heads need both), "
                "and this encoder gave none; use a paradigm whose head keeps them (post_network, lora, adapter, ...)"
            )
        b, t = features.patches.shape[:2]
        cls, tokens = features.cls.flatten(0, 1), features.patches.flatten(0, 1)
        naming = None
        if self.refine is not None:
            if self.spec.get("name_from", "refined") == "ilfm":
                with torch.no_grad():
                    naming = self.ilfm.regions_from_frame_features(cls, tokens).embeds
            tokens = tokens + self.refine_out(self.refine(tokens.float())).to(tokens.dtype)
        regions = self.ilfm.regions_from_frame_features(cls, tokens)
        if getattr(self, "box_refine", None) is not None and "cxcywh" in regions.aux:
            # The ILFM's own boxes stay in aux["cxcywh"] (its set loss trains them); boxes are the refined ones.
            # Detached: the box loss must not move the tokens the regions are named by.
            refined = self.box_refine(tokens.detach(), regions.aux["cxcywh"].detach())
            aux = {**regions.aux, "refined_cxcywh": refined}
            regions = dataclasses.replace(regions, boxes=clip_boxes(cxcywh_to_xyxy(refined)), aux=aux)
        out: dict[str, Any] = {"regions": regions, "tokens": tokens, "shape": (b, t)}
        # The class embeddings tracks are named by (and the class prior is learnt from).
        out["naming"] = naming if naming is not None else regions.embeds
        if self.embedding is not None:
            out["embeds"] = self.embedding(tokens)
        return out


@registry.register("task", "tracking")
class Tracking(Task):
    name = "tracking"
    monitor = "teta"
    needs_patches = True
    survey = (
        SurveyTable(
            "tracking",
            "Table II: open-vocabulary multi-object tracking",
            (
                ("TETA", "teta"),
                ("LocA", "loca"),
                ("AssocA", "assoca"),
                ("ClsA", "clsa"),
                ("ClsA (novel)", "clsa_novel"),
                ("HOTA", "hota"),
                ("IDF1", "idf1"),
            ),
            primary="teta",
            zero_shot_head={"head": "detection"},
            zero_shot_note="per-frame detection by the grounding ILFM, association by IoU only",
        ),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._user_categories: list[str] | None = None
        self._scored: tuple[list[str], list[str]] | None = None

    # --- samples ------------------------------------------------------------------------------------------------

    def check_item(self, item: Item, data: TaskData) -> str | None:
        if not isinstance(item, TrackingItem):
            return f"not a tracking item ({type(item).__name__})"
        if item.num_frames <= 0 or item.width <= 0 or item.height <= 0:
            return f"{item.num_frames} frames of {item.width}x{item.height} pixels: all must be positive"
        known = set(data.classes or [])
        for track in item.tracks:
            if known and track.category not in known:
                return f"track {track.track_id}: category {track.category!r} is not one of the data's categories"
            if len(track.frames) != len(track.boxes):
                return f"track {track.track_id}: {len(track.frames)} frames but {len(track.boxes)} boxes"
            for frame, (x1, y1, x2, y2) in zip(track.frames, track.boxes, strict=True):
                if not 0 <= frame < item.num_frames:
                    return f"track {track.track_id}: frame {frame} is outside the video's {item.num_frames} frames"
                if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
                    return f"track {track.track_id}, frame {frame}: box ({x1}, {y1}, {x2}, {y2}) is not a box"
        return None

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        tracking: list[TrackingItem] = list(items)  # type: ignore[arg-type]
        out: dict[str, Any] = {"items": tracking}
        if data.classes:
            out["categories"] = list(data.classes)
        elif self._user_categories:
            out["categories"] = list(self._user_categories)
        if train:
            max_gap = int(self.option("max_gap", TRAIN_DEFAULTS["max_gap"]))
            rngs = rngs if rngs is not None else [np.random.default_rng(i) for i in range(len(tracking))]
            out["gaps"] = [int(r.integers(1, max_gap + 1)) for r in rngs]
        return out

    # --- model --------------------------------------------------------------------------------------------------

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> TaskHead:
        kind = str((spec or {}).get("head", self.option("head", "track")))
        if kind not in HEADS:
            raise VideoadaptError(f"model.head.head: unknown tracking head {kind!r}; known: {', '.join(HEADS)}")
        _grounding_ilfm(ilfm)
        if spec is None:
            if not data.classes:
                raise VideoadaptError(f"{data.origin}: tracking needs the data's category names (TaskData.classes)")
            novel = [str(c) for c in data.extra.get("novel_categories", []) or []]  # type: ignore[union-attr]
            spec = {"head": kind, "categories": list(data.classes), "novel": novel, "width": int(ilfm.dims.width)}
            spec.update({k: self.option(k, v) for k, v in DECODE_DEFAULTS.items()})
            spec.update({k: self.option(k, v) for k, v in CLASSIFY_DEFAULTS.items()})
            if spec["classify"] not in CLASSIFY:
                raise VideoadaptError(f"model.head.classify: {spec['classify']!r} is not one of {', '.join(CLASSIFY)}")
            if spec["name_from"] not in NAME_FROM:
                raise VideoadaptError(
                    f"model.head.name_from: {spec['name_from']!r} is not one of {', '.join(NAME_FROM)}"
                )
            synonyms = data.extra.get("category_synonyms") or {} if spec["synonyms"] else {}
            spec["category_synonyms"] = {str(k): [str(n) for n in v] for k, v in dict(synonyms).items()}  # type: ignore[call-overload]
            if kind == "track":
                spec.update({k: self.option(k, v) for k, v in TRAIN_DEFAULTS.items()})
            unknown = sorted(
                set(self.options) - set(DECODE_DEFAULTS) - set(CLASSIFY_DEFAULTS) - set(TRAIN_DEFAULTS) - {"head"}
            )
            if unknown:
                known = ", ".join(["head", *DECODE_DEFAULTS, *CLASSIFY_DEFAULTS, *TRAIN_DEFAULTS])
                raise VideoadaptError(f"model.head: unknown tracking option(s) {', '.join(unknown)}; known: {known}")
        check_spec(spec, self.name, ("head", "categories", "width", *DECODE_DEFAULTS))
        return TrackingHead(spec, ilfm)

    def _prompt_embeds(self, head: TrackingHead, text: TextEncoder, categories: Sequence[str]) -> torch.Tensor:
        prompts = [category_prompt(c, str(head.spec["template"])) for c in categories]
        return text.embeds(prompts).float()

    def _class_embeds(self, head: TrackingHead, text: TextEncoder, categories: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings ``[C,E]`` a track is named by: per category, the mean of the unit embeddings of
        its prompt and of its synonyms' prompts (``category_synonyms``: CLIP's prompt ensembling over names)."""
        synonyms = head.spec.get("category_synonyms") or {}
        rows = []
        for category in categories:
            names = [category, *synonyms.get(category, [])]
            prompts = [category_prompt(n, str(head.spec["template"])) for n in names]
            rows.append(F.normalize(text.embeds(prompts).float(), dim=-1).mean(0))
        return F.normalize(torch.stack(rows), dim=-1)

    def _class_prior(self, head: TrackingHead, class_embeds: torch.Tensor) -> torch.Tensor:
        """Per category, the mean cosine of the training objects' regions with its text (zero when there is none:
        the zero-shot head, ``prior`` false): how much the name attracts *any* object, subtracted before the
        arg-max so that names every region leans to (here "ring", "crescent") stop absorbing the rest."""
        mean = getattr(head, "region_mean", None)
        if not head.spec.get("prior", False) or mean is None or float(head.region_count) == 0:
            return class_embeds.new_zeros(len(class_embeds))
        return class_embeds @ mean.float().to(class_embeds.device)

    @staticmethod
    def _seen_margin(head: TrackingHead, categories: Sequence[str]) -> torch.Tensor:
        """Calibrated stacking (Chao et al., ECCV 2016): ``seen_margin`` subtracted from the similarity of every
        category the head was adapted on (the training vocabulary less the data's held-out categories), since
        adapting on them alone inflates their scores against names it never saw. Zero for the zero-shot head."""
        # Runs saved before the setting have none in their spec and keep naming without it.
        margin = float(head.spec.get("seen_margin", 0.0)) if head.trained else 0.0
        adapted = set(head.spec["categories"]) - set(head.spec.get("novel") or [])
        seen = [c in adapted for c in categories]
        return margin * torch.tensor(seen, dtype=torch.float32)

    @staticmethod
    def _update_prior(head: TrackingHead, naming: torch.Tensor, ids: torch.Tensor) -> None:
        with torch.no_grad():
            matched = naming.reshape(*ids.shape, -1)[ids >= 0]
            if not len(matched):
                return
            batch_mean = F.normalize(matched.float(), dim=-1).mean(0)
            if float(head.region_count) == 0:
                head.region_mean.copy_(batch_mean)
            else:
                head.region_mean.mul_(PRIOR_MOMENTUM).add_((1 - PRIOR_MOMENTUM) * batch_mean)
            head.region_count.add_(len(matched))

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        assert isinstance(head, TrackingHead)
        if not head.trained:
            raise VideoadaptError("tracking head 'detection' has nothing to train (it is the zero-shot row)")
        out = head(features)
        regions: RegionFeatures = out["regions"]
        b, t = out["shape"]
        if t < 2:
            raise VideoadaptError("tracking learns from pairs of frames: sample at least 2 frames (data.frames)")
        p = regions.boxes.shape[1]
        boxes = regions.boxes.reshape(b, t, p, 4)
        embeds = out["embeds"].reshape(b, t, p, -1)
        ids, gt, assigned = self._region_track_ids(targets, boxes.detach(), t)
        if head.training:
            self._update_prior(head, out["naming"], ids)
        contrastive, auxiliary, pairs = [], [], 0
        for i, gap in enumerate(targets["gaps"]):
            gap = min(gap, t - 1)
            for k in range(t - gap):
                if not bool((ids[i, k] >= 0).any()):
                    continue
                c, a = quasi_dense_loss(embeds[i, k], embeds[i, k + gap], ids[i, k], ids[i, k + gap])
                contrastive.append(c)
                auxiliary.append(a)
                pairs += 1
        zero = embeds.sum() * 0.0
        loss = EMBED_WEIGHT * (torch.stack(contrastive).mean() if pairs else zero)
        loss = loss + AUX_WEIGHT * (torch.stack(auxiliary).mean() if pairs else zero)
        assert head.embedding is not None
        distilled = head.embedding.distilled(out["embeds"])
        loss = loss + float(head.spec["distill_weight"]) * distillation_loss(
            distilled.flatten(0, 1), regions.embeds.flatten(0, 1)
        )
        if out["tokens"].requires_grad and float(head.spec.get("detection_weight", 0.0)) > 0:
            loss = loss + float(head.spec["detection_weight"]) * self._detection_loss(head, regions, gt, text)
        if "refined_cxcywh" in regions.aux:
            keep = ids.flatten() >= 0
            refined = regions.aux["refined_cxcywh"].reshape(-1, 4)[keep]
            truth = box_xyxy_to_cxcywh(assigned.reshape(-1, 4)[keep].to(refined.device))
            loss = loss + float(head.spec["box_weight"]) * box_refinement_loss(refined, truth)
        return loss

    def _region_track_ids(
        self, targets: dict, boxes: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, list[list[tuple[torch.Tensor, list[str]]]], torch.Tensor]:
        """For the items of ``targets``: each region's ground-truth track id ``[B,T,P]`` (-1: background), each
        sampled frame's ground truth ``(boxes [M,4] normalised xyxy, categories)`` and each region's assigned
        ground-truth box ``[B,T,P,4]`` (normalised xyxy; zeros where the id is -1)."""
        b, _, p, _ = boxes.shape
        ids = torch.full((b, t, p), -1, dtype=torch.long)
        assigned_boxes = torch.zeros(b, t, p, 4)
        truth: list[list[tuple[torch.Tensor, list[str]]]] = []
        for i, item in enumerate(targets["items"]):
            scale = torch.tensor([item.width, item.height, item.width, item.height], dtype=torch.float32)
            per_frame = []
            for k, frame in enumerate(frames_of_samples(targets, i, item.num_frames, t)):
                rows, track_ids, names = [], [], []
                for track in item.tracks:
                    if frame in track.frames:
                        rows.append(torch.tensor(track.boxes[track.frames.index(frame)], dtype=torch.float32))
                        track_ids.append(track.track_id)
                        names.append(track.category)
                gt = torch.stack(rows) / scale if rows else torch.zeros(0, 4)
                per_frame.append((gt, names))
                if rows:
                    iou = box_iou_matrix(boxes[i, k].float().cpu(), gt)  # [P,M]
                    best, which = iou.max(1)
                    assigned = torch.where(best >= POSITIVE_IOU, torch.tensor(track_ids)[which], -1)
                    region_best, region = iou.max(0)  # every object keeps its best region when close enough
                    for m in range(len(rows)):
                        if region_best[m] >= BEST_REGION_IOU:
                            assigned[region[m]] = track_ids[m]
                            which[region[m]] = m
                    ids[i, k] = assigned
                    assigned_boxes[i, k] = gt[which]
            truth.append(per_frame)
        return ids.to(boxes.device), truth, assigned_boxes

    def _detection_loss(
        self,
        head: TrackingHead,
        regions: RegionFeatures,
        truth: list[list[tuple[torch.Tensor, list[str]]]],
        text: TextEncoder,
    ) -> torch.Tensor:
        """TinyOWL's set loss on the base categories: the refinement (and an adapted backbone) learns to detect
        and name the objects of the training videos without ever asking for a held-out name."""
        novel = set(head.spec.get("novel", []))
        base = [c for c in head.spec["categories"] if c not in novel]
        device = regions.boxes.device
        logits = head.ilfm.region_logits(regions, self._prompt_embeds(head, text, base).to(device))
        targets = []
        for per_frame in truth:
            for gt, names in per_frame:
                positives = torch.zeros(len(names), len(base), dtype=torch.bool)
                for m, name in enumerate(names):
                    if name in base:
                        positives[m, base.index(name)] = True
                targets.append(Targets(box_xyxy_to_cxcywh(gt).to(device), positives.to(device)))
        if not any(len(tg.boxes) for tg in targets):
            return logits.sum() * 0.0
        total, _ = set_loss(logits, regions.aux["cxcywh"], targets)
        return total

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        from videoadapt.metrics.tracking import TrackedBox

        assert isinstance(head, TrackingHead)
        spec = head.spec
        categories = list(targets.get("categories") or spec["categories"])
        with torch.no_grad():
            out = head(features)
            regions: RegionFeatures = out["regions"]
            b, t = out["shape"]
            logits = head.ilfm.region_logits(
                regions, self._prompt_embeds(head, text, categories).to(regions.boxes.device)
            )
            probabilities = logits.float().sigmoid().reshape(b, t, -1, len(categories)).cpu()
            boxes = regions.boxes.float().reshape(b, t, -1, 4).cpu()
            embeds = out["embeds"].float().reshape(b, t, boxes.shape[2], -1).cpu() if "embeds" in out else None
            region_class = out["naming"].float().reshape(b, t, boxes.shape[2], -1).cpu()
            by_track = str(spec.get("classify", "vote")) == "track"
            if by_track:
                class_text = self._class_embeds(head, text, categories).cpu()
                prior = self._class_prior(head, class_text)
                margin = self._seen_margin(head, categories)
        config = TrackerConfig(
            metric="bisoftmax" if head.trained else "iou",
            init_score=float(spec["init_score"]),
            match_score=float(spec["match_score"] if head.trained else spec["iou_match"]),
            max_age=int(spec["max_age"]),
            momentum=float(spec["momentum"]),
            distractor_iou=float(spec["distractor_iou"]),
            min_cosine=float(spec.get("min_cosine", -1.0)),
        )
        processor = head.ilfm.processor
        predictions = []
        for i, item in enumerate(targets["items"]):
            tracker = Tracker(config)
            frames = frames_of_samples(targets, i, item.num_frames, t)
            detections: list[tuple[int, list[float], float, int]] = []  # frame, box, score, track id
            for k, frame in enumerate(frames):
                if k > 0 and frame == frames[k - 1]:
                    continue  # more samples than video frames: one prediction per video frame
                score, label = probabilities[i, k].max(-1)
                keep = torch.nonzero(score >= float(spec["score_threshold"])).flatten()
                keep = keep[nms(boxes[i, k, keep], score[keep], float(spec["nms_iou"]))]
                pixels = uncropped_pixels(boxes[i, k, keep], item.width, item.height, processor)
                ids = tracker.step(
                    frame,
                    pixels,
                    score[keep],
                    label[keep],
                    embeds[i, k, keep] if embeds is not None else None,
                    region_class[i, k, keep] if by_track else None,
                )
                detections += [
                    (frame, pixels[n].tolist(), float(score[keep[n]]), track_id)
                    for n, track_id in enumerate(ids)
                    if track_id
                ]
            names = {}
            for track in tracker.tracks:
                if by_track and track.class_sum is not None:
                    similarity = F.normalize(track.class_sum, dim=-1) @ class_text.T - prior - margin
                    names[track.track_id] = categories[int(similarity.argmax())]
                else:
                    names[track.track_id] = categories[track.category(len(categories))]
            predictions.append(
                [TrackedBox(frame, track_id, names[track_id], tuple(box), s) for frame, box, s, track_id in detections]
            )
        return predictions

    # --- metrics -------------------------------------------------------------------------------------------------

    @staticmethod
    def _split(data: TaskData) -> tuple[list[str], list[str]]:
        categories = list(data.classes or [])
        novel = [str(c) for c in data.extra.get("novel_categories", []) or []]  # type: ignore[union-attr]
        return categories, novel

    def _by_video(self, predictions: Sequence[Any], data: TaskData) -> dict[str, list[Any]]:
        check_predictions(self, predictions, data)
        by_video: dict[str, list[Any]] = {}
        for p, item in zip(predictions, data.items, strict=True):
            if item.video.video_id in by_video:
                raise VideoadaptError(f"{data.origin}: video {item.video.video_id!r} appears twice in the split")
            by_video[item.video.video_id] = list(p)
        return by_video

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        from videoadapt.metrics.tracking import tracking_metrics

        categories, novel = self._split(data)
        result = tracking_metrics(data.items, self._by_video(predictions, data), categories, novel)
        return {k: float(v) for k, v in result.items()}

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """Per video: the additive statistics of ``videoadapt.metrics.tracking.tracking_statistics``."""
        from videoadapt.metrics.tracking import tracking_statistics

        categories, novel = self._split(data)
        self._scored = (categories, novel)
        rows = [tracking_statistics(item, list(p), categories) for p, item in zip(predictions, data.items, strict=True)]
        check_predictions(self, predictions, data)
        out = {k: np.stack([np.asarray(r[k], dtype=np.float64) for r in rows]) for k in rows[0]}
        # Which categories are novel, per video (constant): the sums say it wherever the statistics are scored, also
        # by a task that never saw the data (the bench scores cells from their saved statistics).
        flags = np.array([c in set(novel) for c in categories], dtype=np.float64)
        out[NOVEL_KEY] = np.tile(flags, (len(rows), 1))
        return out

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from videoadapt.metrics.tracking import tracking_metrics_from_sums

        sums = dict(sums)
        flags = sums.pop(NOVEL_KEY, None)
        if self._scored is not None:
            categories, novel = self._scored
        elif flags is not None:  # categories are positions here: only which of them are novel matters
            novel_at = np.asarray(flags, dtype=np.float64).reshape(-1, np.shape(flags)[-1]).max(0) > 0
            categories = [f"category {i}" for i in range(len(novel_at))]
            novel = [c for c, is_novel in zip(categories, novel_at, strict=True) if is_novel]
        else:
            raise VideoadaptError(
                "tracking: metrics_from_sums needs item_statistics first, or statistics that carry "
                f"{NOVEL_KEY!r} (they name the novel categories)"
            )
        return tracking_metrics_from_sums(sums, categories, novel)

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per video: ``id``, the numbers of ground-truth and predicted tracks and boxes, predicted categories."""
        check_predictions(self, predictions, data)
        records = []
        for p, item in zip(predictions, data.items, strict=True):
            records.append(
                {
                    "id": item.video.video_id,
                    "tracks": len(item.tracks),
                    "boxes": sum(len(tr.frames) for tr in item.tracks),
                    "predicted_tracks": len({b.track_id for b in p}),
                    "predicted_boxes": len(p),
                    "categories": sorted({tr.category for tr in item.tracks}),
                    "predicted_categories": sorted({b.category for b in p}),
                }
            )
        return records

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """TAO jsons both ways (``metrics/tracking_files.py``): the result list of every predicted box and the
        split's ground truth, which ``videoadapt score --task tracking --pred predictions.json --gt
        ground_truth.json`` scores to the figures of :meth:`evaluate`."""
        import json

        from videoadapt.metrics import prediction_files as pf
        from videoadapt.metrics.tracking_files import tracking_ground_truth_document, tracking_predictions_document

        by_video = self._by_video(predictions, data)
        return pf.documents(
            json.dumps(tracking_predictions_document(by_video, data)),
            json.dumps(tracking_ground_truth_document(data)),
        )

    # --- a user's video -------------------------------------------------------------------------------------------

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        categories = [c.strip() for c in request.texts if c.strip()]
        if not categories:
            raise VideoadaptError("tracking: name the categories to track (--text, one per category)")
        if request.duration <= 0 or request.fps <= 0 or request.width <= 0 or request.height <= 0:
            raise VideoadaptError(
                "tracking: the video's duration, frame rate and size are needed (boxes are in pixels)"
            )
        self._user_categories = categories
        frames = max(1, int(round(request.duration * request.fps)))
        return [TrackingItem(video, frames, float(request.fps), int(request.width), int(request.height), ())]

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        fps = item.fps  # type: ignore[union-attr]
        tracks: dict[int, dict[str, Any]] = {}
        for box in prediction:
            entry = tracks.setdefault(box.track_id, {"track_id": box.track_id, "category": box.category, "boxes": {}})
            entry["boxes"][int(box.frame)] = [round(float(v), 1) for v in box.box]
        for entry in tracks.values():
            frames = sorted(entry["boxes"])
            entry["start_s"], entry["end_s"] = frames[0] / fps, (frames[-1] + 1) / fps
        return {"tracks": [tracks[k] for k in sorted(tracks)]}


def uncropped_pixels(boxes: torch.Tensor, width: int, height: int, processor: Any) -> torch.Tensor:
    """Normalised xyxy boxes of the ILFM's input (after its resize and centre crop) as pixels of the original
    ``width`` × ``height`` frame (as ``GroundingModel.detect_frames`` undoes them), clipped to the frame."""
    from videoadapt.data.transforms import crop_in_frame

    top, left, crop_h, crop_w = crop_in_frame(height, width, processor.image_size, processor.resize, processor.crop)
    x = boxes[:, 0::2] * crop_w + left
    y = boxes[:, 1::2] * crop_h + top
    out = torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), -1)
    limit = out.new_tensor([width, height, width, height])
    return torch.minimum(out.clamp(min=0), limit)
