"""Spatio-temporal video grounding (STVG): the tube — one box per frame inside a span — that a sentence describes.

The head is TubeDETR's in shape (``temporal/tube_grounding.py``: one state per frame; a box MLP trained with L1 +
gIoU on the ground-truth frames; start/end distributions trained with KL to Gaussian targets; the span decoded as
the arg-max of ``p_start(i) * p_end(j)``, ``i < j``) over the encoder's **patch tokens** ``[B,T,P,D]`` (the ILFM's
region tokens; a grounding ILFM's boxes are what its patches predict) and the query's token states:

1. every patch token (projected, plus a learnt position in the patch grid) attends once to the query's words, and
   a small MLP scores it; a softmax over the patches of a frame gives where the sentence points in that frame
   (trained directly too: ``loss_attention`` = -log of the attention mass inside the ground-truth box, weight 1,
   in the spirit of TubeDETR's guided attention);
2. a frame's state is the attended content plus an embedding of the attention's mean position and spread, the
   frame's time position and the pooled query; ``layers`` transformer layers mix the states over time (the
   event's start and end are temporal facts);
3. the tube head reads the states; its box centre is an offset *from the attention's mean position* (in logit
   space, zero at the start), so localisation does not have to be re-learnt from a vector.

Frames: the ``T`` sampled frames cover the video evenly (frame k stands for video frames ``[k, k+1) * N / T``,
``N = duration * fps``); ground truth is mapped onto them, and a prediction back to every video frame of its span
(each takes the box of the sampled frame that covers it). Predictions (one per query): ``{"start": first frame,
"end": last frame (inclusive), "boxes": {frame: [x1, y1, x2, y2] pixels}}`` in the video's own frame numbering,
a box on every frame (as TubeDETR); every frame of the video is an evaluated frame of the metric.
Metrics: TubeDETR's m_tIoU, m_vIoU, vIoU@0.3, vIoU@0.5 (``metrics/st_grounding.py``; the vIoU denominator is the
union of the two spans).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from videoadapt.data.records import GroundingItem, Item, TaskData, Tube, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import GroundingModel, ImageLanguageModel, TextFeatures
from videoadapt.metrics import st_grounding as stm
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
    head_device,
    percent,
)
from videoadapt.tasks.temporal_grounding import (
    check_grounding_item,
    contiguous_runs,
    grounding_query_texts,
    grounding_user_items,
    query_text_features,
)
from videoadapt.temporal.query_regions import QueryRegionReader
from videoadapt.temporal.tube_grounding import (
    TubeGroundingCriterion,
    TubeGroundingHead,
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    decode_tube,
)

THRESHOLDS = stm.THRESHOLDS
ATTENTION_WEIGHT = 1.0
HEADS = ("tube", "detection")


class TubeHead(TaskHead):
    def __init__(self, spec: dict[str, Any], width: int, text_width: int) -> None:
        super().__init__(spec)
        hidden = int(spec["hidden"])
        self.rows, self.cols = int(spec["grid"][0]), int(spec["grid"][1])
        self.regions = QueryRegionReader(width, text_width, hidden, (self.rows, self.cols))
        layer = nn.TransformerEncoderLayer(
            hidden, max(1, hidden // 64), 4 * hidden, dropout=0.1, activation="gelu", batch_first=True, norm_first=True
        )
        self.temporal = nn.TransformerEncoder(layer, int(spec["layers"]), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.tube = TubeGroundingHead(hidden)
        self.criterion = TubeGroundingCriterion()

    def forward(self, patches: torch.Tensor, query: TextFeatures) -> dict[str, torch.Tensor]:
        regions = self.regions(patches, query.tokens, query.mask)
        out = self.tube(self.norm(self.temporal(regions["states"])))
        boxes = out["pred_boxes"]
        # The box centre is an offset from where the attention points (zero offset at the start).
        centre = torch.sigmoid(torch.logit(boxes[..., :2], eps=1e-4) + torch.logit(regions["mean"], eps=1e-4))
        out["pred_boxes"] = torch.cat((centre, boxes[..., 2:]), -1)
        out["patch_logits"] = regions["logits"]
        return out


class DetectionTubeHead(TaskHead):
    """No parameters: the zero-shot STVG predictor of a grounding ILFM. Every frame's regions (from the cached
    CLS and patch tokens) are scored against the sentence; the best region is the frame's box, and the tube's span
    is the run of frames whose best score is highest relative to the rest (mean inside minus mean outside)."""

    def __init__(self, spec: dict[str, Any], ilfm: ImageLanguageModel) -> None:
        super().__init__(spec)
        if not isinstance(ilfm, GroundingModel):
            raise VideoadaptError(
                f"st_grounding head 'detection' needs a grounding ILFM (tiny-owl, hf-grounding:ID), not "
                f"{type(ilfm).__name__}: a contrastive model has no boxes"
            )
        self.__dict__["ilfm"] = ilfm  # used, not owned: its weights are the backbone's, never the head's

    def forward(self, features: VideoFeatures, text: TextEncoder, queries: Sequence[str]) -> dict[str, torch.Tensor]:
        if features.cls is None or features.patches is None:
            raise VideoadaptError(
                "st_grounding head 'detection' reads the backbone's CLS and patch tokens; use post_network "
                "(the zero-shot row's encoder)"
            )
        b, t = features.patches.shape[:2]
        ilfm: GroundingModel = self.__dict__["ilfm"]
        regions = ilfm.regions_from_frame_features(features.cls.flatten(0, 1), features.patches.flatten(0, 1))
        logits = ilfm.region_logits(regions, text.embeds(queries).to(regions.embeds.device))  # [B*T,R,B]
        logits = logits.reshape(b, t, logits.shape[1], b)
        own = logits[torch.arange(b), :, :, torch.arange(b)]  # [B,T,R]: each clip against its own sentence
        scores, best = own.max(-1)
        boxes = regions.boxes.reshape(b, t, -1, 4)
        chosen = boxes.gather(2, best[..., None, None].expand(b, t, 1, 4)).squeeze(2)
        return {"boxes_xyxy": chosen.float(), "scores": scores.float().sigmoid()}


def best_run(scores: torch.Tensor) -> tuple[int, int]:
    """The run of frames ``[i, j]`` (at least two, as a tube head decodes) that :func:`contiguous_runs` scores
    highest."""
    i, j, _ = max(contiguous_runs(scores, shortest=2), key=lambda run: run[2])
    return i, j


@registry.register("task", "st_grounding")
class SpatioTemporalGrounding(Task):
    name = "st_grounding"
    monitor = "m_vIoU"
    needs_patches = True
    survey = (
        SurveyTable(
            "st_grounding",
            "Table II: spatio-temporal video grounding",
            (("m_tIoU", "m_tIoU"), ("m_vIoU", "m_vIoU"), ("vIoU@0.3", "vIoU@0.3"), ("vIoU@0.5", "vIoU@0.5")),
            primary="m_vIoU",
            zero_shot_head={"head": "detection"},
        ),
    )

    def check_item(self, item: Item, data: TaskData) -> str | None:
        reason = check_grounding_item(item)
        if reason is not None:
            return reason
        tube = item.tube  # type: ignore[union-attr]
        return "the sentence has no tube" if tube is None else tube_problem(tube)

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        grounding: list[GroundingItem] = list(items)  # type: ignore[arg-type]
        return {
            "queries": [g.query for g in grounding],
            "tubes": [g.tube for g in grounding],
            "durations": [g.duration for g in grounding],
        }

    def query_texts(self, targets: dict) -> list[str] | None:
        return grounding_query_texts(targets)

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> TaskHead:
        kind = str((spec or {}).get("head", self.option("head", "tube")))
        if kind not in HEADS:
            raise VideoadaptError(f"model.head.head: unknown st_grounding head {kind!r}; known: {HEADS}")
        if kind == "detection":
            return DetectionTubeHead({"head": "detection"}, ilfm)
        if spec is None:
            spec = {
                "head": "tube",
                "hidden": int(self.option("hidden", 192)),
                "layers": int(self.option("layers", 2)),
                "grid": list(ilfm.dims.patch_grid),
                "width": int(ilfm.dims.width),
            }
        check_spec(spec, self.name, ("hidden", "layers", "grid", "width"))
        return TubeHead(spec, int(spec["width"]), int(ilfm.dims.text_width))

    def _outputs(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> dict:
        if isinstance(head, DetectionTubeHead):
            return head(features, text, targets["queries"])
        if features.patches is None:
            raise VideoadaptError(
                "st_grounding reads patch tokens, and this encoder gave none (its head drops them); use a paradigm "
                "that keeps the backbone's patches (post_network, adapter, lora, ...)"
            )
        return head(features.patches, query_text_features(text, targets["queries"]))

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        if isinstance(head, DetectionTubeHead):
            raise VideoadaptError("st_grounding head 'detection' has nothing to train (it is the zero-shot row)")
        out = self._outputs(head, features, targets, text)
        b, t = out["pred_sted"].shape[:2]
        device = head_device(head)
        spans, boxes, inside = [], [], []
        for tube, duration in zip(targets["tubes"], targets["durations"], strict=True):
            first, last, frame_boxes = sampled_tube(tube, duration, t)
            spans.append([first, last])
            boxes.append(box_xyxy_to_cxcywh(frame_boxes).to(device))
            inside.append(patches_inside(frame_boxes, head.rows, head.cols))  # type: ignore[arg-type]
        spans_t = torch.tensor(spans, device=device)
        losses = head.criterion(out, spans_t, boxes)  # type: ignore[operator]
        # Attention mass inside the ground-truth box on the tube's frames.
        terms = []
        for i, (first, last) in enumerate(spans):
            log_attention = out["patch_logits"][i, first : last + 1].log_softmax(-1)
            mask = inside[i].to(device)
            terms.append(-(log_attention.masked_fill(~mask, -math.inf).logsumexp(-1)).mean())
        return losses["loss_total"] + ATTENTION_WEIGHT * torch.stack(terms).mean()

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        out = self._outputs(head, features, targets, text)
        if isinstance(head, DetectionTubeHead):
            t = out["scores"].shape[1]
            decoded = [dict(zip(("start", "end"), best_run(s), strict=True)) for s in out["scores"]]
            frame_boxes = out["boxes_xyxy"].cpu()
        else:
            t = out["pred_sted"].shape[1]
            decoded = decode_tube(out)
            frame_boxes = box_cxcywh_to_xyxy(out["pred_boxes"].float()).cpu()
        predictions = []
        for span, tube, duration in zip(decoded, targets["tubes"], targets["durations"], strict=True):
            n = video_frames(tube, duration)
            boxes_xyxy = frame_boxes[len(predictions)]
            scale = torch.tensor([tube.width, tube.height, tube.width, tube.height], dtype=torch.float32)
            first = int(span["start"] * n // t)
            last = max(first, int(math.ceil((span["end"] + 1) * n / t)) - 1)
            frames = {}
            # A box on every frame, as TubeDETR predicts: the metric reads the GT tube's frames even where the
            # predicted span misses them.
            for f in range(n):
                k = min(t - 1, f * t // n)
                box = (boxes_xyxy[k] * scale).clamp(min=0)
                box[0::2] = box[0::2].clamp(max=tube.width)
                box[1::2] = box[1::2].clamp(max=tube.height)
                frames[f] = [float(v) for v in box]
            predictions.append({"start": first, "end": last, "boxes": frames})
        return predictions

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        items = grounding_user_items(self.name, video, request)
        if any(item.tube is None for item in items):  # type: ignore[union-attr]
            raise VideoadaptError(f"{self.name}: the video's frame size and rate are unknown; boxes are in its pixels")
        return items

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        fps = item.tube.fps  # type: ignore[union-attr]
        boxes = {int(f): [round(v, 1) for v in box] for f, box in prediction["boxes"].items()}
        inside = {f: b for f, b in boxes.items() if prediction["start"] <= f <= prediction["end"]}
        return {
            "query": item.query,  # type: ignore[union-attr]
            "start_s": prediction["start"] / fps,
            "end_s": (prediction["end"] + 1) / fps,
            "boxes_xyxy": inside,  # frame index -> box in pixels, over the predicted span
        }

    # --- metrics -------------------------------------------------------------------------------------------------

    def _per_item(self, predictions: Sequence[Any], data: TaskData) -> list[tuple[float, float]]:
        check_predictions(self, predictions, data)
        out = []
        for p, item in zip(predictions, data.items, strict=True):
            pred, gt = metric_inputs(p, item)  # type: ignore[arg-type]
            result = stm.st_grounding_metrics({0: pred}, {0: gt})
            out.append((result["m_tIoU"] / 100.0, result["m_vIoU"] / 100.0))
        return out

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        check_predictions(self, predictions, data)
        preds, gts = {}, {}
        for i, (p, item) in enumerate(zip(predictions, data.items, strict=True)):
            preds[i], gts[i] = metric_inputs(p, item)  # type: ignore[arg-type]
        result = stm.st_grounding_metrics(preds, gts)
        return {k: float(result[k]) for k in ("m_tIoU", "m_vIoU", *[f"vIoU@{t:g}" for t in THRESHOLDS])}

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """Per query: ``items``, ``tiou``, ``viou`` and the hits ``viou > 0.3`` / ``> 0.5``."""
        rows = self._per_item(predictions, data)
        tiou = np.asarray([[r[0]] for r in rows])
        viou = np.asarray([[r[1]] for r in rows])
        hits = np.concatenate([(viou > t).astype(np.float64) for t in THRESHOLDS], axis=1)
        return {"items": np.ones_like(tiou), "tiou": tiou, "viou": viou, "hits": hits}

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = sums["items"][..., 0]
        out = {"m_tIoU": percent(sums["tiou"][..., 0], n), "m_vIoU": percent(sums["viou"][..., 0], n)}
        out.update({f"vIoU@{t:g}": percent(sums["hits"][..., k], n) for k, t in enumerate(THRESHOLDS)})
        return out

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """Our STVG json both ways: each query's predicted tube (span and a box on every frame) and its
        ground-truth tube, which ``score --task st_grounding --gt ground_truth.json`` reads."""
        from videoadapt.metrics import prediction_files as pf

        check_predictions(self, predictions, data)
        ids = pf.unique_ids([item.query_id for item in data.items])  # type: ignore[union-attr]
        tubes = {i: _tube_of(p) for i, p in zip(ids, predictions, strict=True)}
        truths = {i: pf.stvg_tube_of(item) for i, item in zip(ids, data.items, strict=True)}  # type: ignore[arg-type]
        return pf.documents(pf.stvg_predictions_text(tubes), pf.stvg_ground_truth_text(truths))

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per query: ``id``, ``video``, ``query``, the predicted span, the ground-truth span, ``tiou``, ``viou`` and
        ``correct`` (vIoU > 0.5)."""
        rows = self._per_item(predictions, data)
        records = []
        for p, item, (tiou, viou) in zip(predictions, data.items, rows, strict=True):
            tube: Tube = item.tube  # type: ignore[union-attr,assignment]
            records.append(
                {
                    "id": item.query_id,  # type: ignore[union-attr]
                    "video": item.video.video_id,
                    "query": item.query,  # type: ignore[union-attr]
                    "predicted": [p["start"], p["end"]],
                    "span": [tube.frames[0], tube.frames[-1]],
                    "tiou": tiou,
                    "viou": viou,
                    "correct": viou > 0.5,
                }
            )
        return records


def tube_problem(tube: Tube) -> str | None:
    """Why a tube is unusable (None when it is fine)."""
    if not tube.frames or len(tube.frames) != len(tube.boxes):
        return "the tube needs one box per frame and at least one frame"
    if any(b <= a for a, b in zip(tube.frames, tube.frames[1:], strict=False)) or tube.frames[0] < 0:
        return "tube frames must be non-negative and strictly increasing"
    if not (tube.fps > 0 and tube.width > 0 and tube.height > 0):
        return f"tube fps {tube.fps}, width {tube.width} and height {tube.height} must be positive"
    for frame, (x1, y1, x2, y2) in zip(tube.frames, tube.boxes, strict=True):
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            return f"frame {frame}: box is not finite"
        if x2 <= x1 or y2 <= y1:
            return f"frame {frame}: box ({x1}, {y1}, {x2}, {y2}) has non-positive size"
        if x1 < 0 or y1 < 0 or x2 > tube.width or y2 > tube.height:
            return f"frame {frame}: box ({x1}, {y1}, {x2}, {y2}) lies outside the {tube.width}x{tube.height} frame"
    return None


def video_frames(tube: Tube, duration: float) -> int:
    """Frames of the video the tube belongs to (at least one past its last frame)."""
    return max(int(round(duration * tube.fps)), tube.frames[-1] + 1)


def sampled_tube(tube: Tube, duration: float, t: int) -> tuple[int, int, torch.Tensor]:
    """The tube on ``t`` sampled frames covering the video evenly: ``(first, last, boxes [last-first+1, 4])``
    normalised ``x1, y1, x2, y2``; each sampled frame takes the annotated box nearest to its centre."""
    n = video_frames(tube, duration)
    frames = np.asarray(tube.frames)
    first, last = min(t - 1, tube.frames[0] * t // n), min(t - 1, tube.frames[-1] * t // n)
    scale = np.array([tube.width, tube.height, tube.width, tube.height], dtype=np.float64)
    rows = []
    for k in range(first, last + 1):
        centre = (k + 0.5) * n / t - 0.5
        nearest = int(np.abs(frames - centre).argmin())
        rows.append(np.asarray(tube.boxes[nearest], dtype=np.float64) / scale)
    return first, last, torch.tensor(np.stack(rows), dtype=torch.float32)


def patches_inside(boxes: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``[F,P]`` patches whose centre lies inside each normalised box (at least the patch holding its centre)."""
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    cx, cy = (xs.flatten() + 0.5) / cols, (ys.flatten() + 0.5) / rows
    inside = (
        (cx[None] >= boxes[:, 0:1])
        & (cx[None] <= boxes[:, 2:3])
        & (cy[None] >= boxes[:, 1:2])
        & (cy[None] <= boxes[:, 3:4])
    )
    mx = ((boxes[:, 0] + boxes[:, 2]) / 2 * cols).long().clamp(0, cols - 1)
    my = ((boxes[:, 1] + boxes[:, 3]) / 2 * rows).long().clamp(0, rows - 1)
    inside[torch.arange(len(boxes)), my * cols + mx] = True
    return inside


def metric_inputs(prediction: dict[str, Any], item: GroundingItem) -> tuple[dict, dict]:
    """A prediction and an item's tube as :func:`videoadapt.metrics.st_grounding.st_grounding_metrics` takes them
    (:func:`~videoadapt.metrics.prediction_files.stvg_metric_pair`: half-open spans, every frame of the video up to
    both tubes' ends evaluated)."""
    from videoadapt.metrics.prediction_files import stvg_metric_pair, stvg_tube_of

    if item.tube is None:
        raise VideoadaptError(f"st_grounding: query {item.query_id!r} has no tube and cannot be scored")
    return stvg_metric_pair(_tube_of(prediction), stvg_tube_of(item))


def _tube_of(prediction: dict[str, Any]) -> dict[str, Any]:
    """A prediction (``start`` and ``end`` both included) as the STVG files hold a tube."""
    return {"span": (int(prediction["start"]), int(prediction["end"])), "boxes": prediction["boxes"]}
