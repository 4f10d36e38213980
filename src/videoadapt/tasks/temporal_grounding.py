"""Temporal grounding (moment retrieval + highlight detection): the span of a clip that a sentence describes.

The head reads any paradigm's per-frame features ``[B,T,W]`` and the query's text; the ``T`` sampled frames are
taken to cover the clip evenly (frame k stands for ``[k, k+1) * duration / T`` seconds, the convention of the
dense head and of uniform segment sampling). Three heads (``model.head.head``):

* ``dense`` (default): R2-Tuning's / UniVTG's dense head (``temporal/dense_grounding.py``: per time step a
  foreground score and the distances to the span's ends over a pyramid of strides 1, 2, 4; no matching) on
  query-aware frame states: the frames (projected, with learnt positions, plus their cosine similarity to the
  query in the joint space, raw and standardised over the clip, plus — with ``regions: true``, the default — the
  state of ``temporal/query_regions.py``: where the sentence points in the frame's patch tokens, and how that
  place moves and grows from frame to frame) and the query's token states go through ``layers`` transformer
  layers together (Moment-DETR's encoder layout: one sequence of [frames; words]).
* ``moment_detr``: Moment-DETR (``temporal/moment_detr.py``) over the frames and the query's token states,
  trained with its official criterion (Hungarian matching on span L1, gIoU and class; saliency hinge on pairs of
  inside/outside frames drawn per item from the training seed).
* ``similarity``: no parameters: the zero-shot predictor of an image-text model. Each frame's cosine similarity
  to the query; every contiguous run of frames is a candidate window scored by the mean similarity inside minus
  the mean outside; the best 10 after NMS (> 0.7). This is the bench's zero-shot row.

Predictions (one per query): ``{"windows": [[start, end, score], ...] best first (seconds), "saliency": [T]}``.
Metrics: Charades-STA's R1@{0.3,0.5,0.7} (IoU strictly greater) and mIoU of the first window; QVHighlights' moment
retrieval (``MR-R1@0.5``/``0.7``, ``MR-mAP@0.5``/``0.75``, ``MR-mAP``, IoU >= t, first 10 windows) and, when the
items carry saliency labels, highlight detection (``HL-mAP``, ``HL-HIT@1``, VeryGood = 4) — the conventions are
those of ``metrics/temporal_grounding.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.data.records import GroundingItem, Item, TaskData, Tube, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel, TextFeatures
from videoadapt.metrics import temporal_grounding as tg
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
    feature_widths,
    head_device,
    percent,
    projection,
)
from videoadapt.temporal.dense_grounding import (
    NMS_THRESHOLD,
    TOP_K,
    DenseGroundingCriterion,
    DenseGroundingHead,
    decode_dense_grounding,
    temporal_nms,
)
from videoadapt.temporal.moment_detr import MomentDETR
from videoadapt.temporal.moment_detr_criterion import MomentDETRCriterion, sample_saliency_pairs, span_cxw_to_xx
from videoadapt.temporal.query_regions import MAX_FRAMES, QueryRegionReader

HEADS = ("dense", "moment_detr", "similarity")
# Charades-STA thresholds (strict) and the moment-retrieval thresholds (inclusive) whose hits are kept per item.
STRICT = tg.CHARADES_THRESHOLDS
MR = tg.MR_THRESHOLDS


def grounding_query_texts(targets: dict) -> list[str]:
    return list(targets["queries"])


def query_text_features(text: TextEncoder, queries: Sequence[str]) -> TextFeatures:
    """The queries' token states and mask and their pooled embeddings (memoised where the tower is frozen)."""
    tokens, mask = text.token_states(queries)
    return TextFeatures(tokens=tokens, mask=mask, embeds=text.embeds(queries))


class QueryFrameFusion(nn.Module):
    """Frames ``[B,T,W]`` and query tokens ``[B,L,Dt]`` -> query-aware frame states ``[B,T,H]``."""

    def __init__(self, width: int, text_width: int, embed_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.to_joint = projection(width, embed_dim)
        self.frame_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.text_in = nn.Sequential(nn.LayerNorm(text_width), nn.Linear(text_width, hidden))
        self.similarity_in = nn.Linear(2, hidden)
        self.positions = nn.Parameter(torch.zeros(MAX_FRAMES, hidden))
        self.kinds = nn.Parameter(torch.zeros(2, hidden))  # frame / word
        nn.init.normal_(self.positions, std=0.02)
        nn.init.normal_(self.kinds, std=0.02)
        layer = nn.TransformerEncoderLayer(
            hidden, max(1, hidden // 64), 4 * hidden, dropout=0.1, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, frames: torch.Tensor, query: TextFeatures, regions: torch.Tensor | None = None) -> torch.Tensor:
        b, t = frames.shape[:2]
        if t > MAX_FRAMES:
            raise VideoadaptError(f"temporal grounding: {t} frames per clip; at most {MAX_FRAMES}")
        frames = frames.float()
        similarity = frame_query_similarity(self.to_joint(frames), query.embeds.float().to(frames.device))
        standard = (similarity - similarity.mean(1, keepdim=True)) / similarity.std(1, keepdim=True).clamp(min=1e-4)
        x = self.frame_in(frames) + self.similarity_in(torch.stack((similarity, standard), -1))
        x = x + self.positions[:t] + self.kinds[0]
        if regions is not None:
            x = x + regions
        words = self.text_in(query.tokens.float().to(frames.device)) + self.kinds[1]
        valid = torch.cat((torch.ones(b, t, dtype=torch.bool, device=x.device), query.mask.to(x.device).bool()), 1)
        out = self.encoder(torch.cat((x, words), 1), src_key_padding_mask=~valid)
        return self.norm(out[:, :t])


def frame_query_similarity(frames: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[B,T]`` of each frame ``[B,T,E]`` with its clip's query ``[B,E]``."""
    return torch.einsum("bte,be->bt", F.normalize(frames.float(), dim=-1), F.normalize(queries.float(), dim=-1))


class TemporalGroundingHead(TaskHead):
    def __init__(self, spec: dict[str, Any], width: int, text_width: int, embed_dim: int) -> None:
        super().__init__(spec)
        kind = spec["head"]
        if kind == "dense":
            hidden = int(spec["hidden"])
            self.fusion = QueryFrameFusion(width, text_width, embed_dim, hidden, int(spec["layers"]))
            if spec.get("regions"):
                self.regions = QueryRegionReader(int(spec["patch_width"]), text_width, hidden, tuple(spec["grid"]))
            self.dense = DenseGroundingHead(hidden, tuple(spec["strides"]))
            self.criterion = DenseGroundingCriterion(tuple(spec["strides"]))
        elif kind == "moment_detr":
            self.detr = MomentDETR(width, text_width, hidden=int(spec["hidden"]), queries=int(spec["queries"]))
            self.criterion = MomentDETRCriterion()
        else:
            self.to_joint = projection(width, embed_dim)
            if not isinstance(self.to_joint, nn.Identity):
                raise VideoadaptError(
                    "temporal grounding head 'similarity' scores frames against the query in the joint space, but "
                    f"this encoder's frame features are {width}-d, not the joint space's {embed_dim}; it is the "
                    "zero-shot head of encoders that keep the ILFM's frame embeddings"
                )

    def outputs(
        self, frames: torch.Tensor, query: TextFeatures, patches: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        kind = self.spec["head"]
        if kind == "dense":
            regions = None
            if self.spec.get("regions"):
                if patches is None:
                    raise VideoadaptError(
                        "temporal grounding head with regions: true reads patch tokens, and this encoder gave none; "
                        "use a paradigm that keeps the backbone's patches or set model.head.regions=false"
                    )
                regions = self.regions(patches, query.tokens, query.mask)["states"]
            return self.dense(self.fusion(frames, query, regions))
        if kind == "moment_detr":
            _, _, out = self.detr(frames.float(), None, _to(query, frames.device))
            return out
        return {"saliency": frame_query_similarity(frames, query.embeds.to(frames.device))}


def _to(query: TextFeatures, device: torch.device) -> TextFeatures:
    return TextFeatures(query.tokens.float().to(device), query.mask.to(device), query.embeds.float().to(device))


def contiguous_runs(scores: torch.Tensor, shortest: int = 1) -> list[tuple[int, int, float]]:
    """Every run of frames ``[i, j]`` at least ``shortest`` long, scored by the mean of ``scores [T]`` inside
    minus the mean outside (the whole clip: the mean inside): how a parameter-free grounder picks a span."""
    s = scores.double().cpu()
    t = len(s)
    prefix = torch.cat((torch.zeros(1, dtype=s.dtype), s.cumsum(0)))
    total = float(prefix[-1])
    runs = []
    for i in range(t):
        for j in range(i + shortest - 1, t):
            inside = float(prefix[j + 1] - prefix[i])
            n_in = j - i + 1
            outside = (total - inside) / (t - n_in) if t > n_in else 0.0
            runs.append((i, j, inside / n_in - outside))
    return runs


def similarity_windows(
    scores: torch.Tensor, duration: float, top_k: int = TOP_K, nms: float = NMS_THRESHOLD
) -> list[list[float]]:
    """Zero-shot windows from per-frame similarities ``[T]``: every run (:func:`contiguous_runs`), best ``top_k``
    after NMS, in seconds."""
    t = len(scores)
    runs = contiguous_runs(scores)
    spans_t = torch.tensor([(i * duration / t, (j + 1) * duration / t) for i, j, _ in runs], dtype=torch.float32)
    values_t = torch.tensor([v for _, _, v in runs], dtype=torch.float32)
    keep = temporal_nms(spans_t, values_t, nms)[:top_k]
    return [[float(spans_t[k, 0]), float(spans_t[k, 1]), float(values_t[k])] for k in keep.tolist()]


@registry.register("task", "temporal_grounding")
class TemporalGrounding(Task):
    name = "temporal_grounding"
    monitor = "R1@0.5"
    needs_patches = True  # the dense head's query-region reader (model.head.regions, default on)
    survey = (
        SurveyTable(
            "temporal_grounding",
            "Table II: temporal grounding (moment retrieval)",
            (
                ("R1@0.5", "R1@0.5"),
                ("R1@0.7", "R1@0.7"),
                ("mIoU", "mIoU"),
                ("MR mAP", "MR-mAP"),
            ),
            zero_shot_head={"head": "similarity"},
        ),
    )

    def check_item(self, item: Item, data: TaskData) -> str | None:
        return check_grounding_item(item)

    def targets(
        self, items: Sequence[Item], data: TaskData, rngs: Sequence[np.random.Generator] | None, train: bool
    ) -> dict:
        grounding: list[GroundingItem] = list(items)  # type: ignore[arg-type]
        out: dict[str, Any] = {
            "queries": [g.query for g in grounding],
            "durations": torch.tensor([g.duration for g in grounding], dtype=torch.float32),
            "windows": [torch.tensor(g.windows, dtype=torch.float32).reshape(-1, 2) for g in grounding],
        }
        if train:
            out["seeds"] = [
                int((r if r is not None else np.random.default_rng(i)).integers(2**31))
                for i, r in enumerate(rngs if rngs is not None else [None] * len(grounding))
            ]
        return out

    def query_texts(self, targets: dict) -> list[str] | None:
        return grounding_query_texts(targets)

    def build_head(
        self,
        ilfm: ImageLanguageModel,
        encoder: VideoEncoder,
        data: TaskData,
        spec: dict[str, Any] | None = None,
    ) -> TemporalGroundingHead:
        width, _ = feature_widths(encoder)
        if spec is None:
            kind = str(self.option("head", "dense"))
            if kind not in HEADS:
                raise VideoadaptError(f"model.head.head: unknown temporal grounding head {kind!r}; known: {HEADS}")
            spec = {"head": kind}
            if kind == "dense":
                spec.update(
                    hidden=int(self.option("hidden", 256)),
                    layers=int(self.option("layers", 2)),
                    strides=[int(s) for s in self.option("strides", [1, 2, 4])],
                    regions=bool(self.option("regions", True)),
                    grid=list(ilfm.dims.patch_grid),
                    patch_width=int(ilfm.dims.width),
                )
            elif kind == "moment_detr":
                spec.update(hidden=int(self.option("hidden", 256)), queries=int(self.option("queries", 10)))
        check_spec(spec, self.name, ("head",))
        if spec["head"] not in HEADS:
            raise VideoadaptError(f"{self.name}: saved head {spec['head']!r} is not one of {HEADS}")
        return TemporalGroundingHead(spec, width, int(ilfm.dims.text_width), int(ilfm.dims.embed_dim))

    def _outputs(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> dict:
        query = query_text_features(text, targets["queries"])
        return head.outputs(features.frames, query, features.patches)  # type: ignore[operator]

    def loss(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> torch.Tensor:
        kind = head.spec["head"]
        if kind == "similarity":
            raise VideoadaptError("temporal grounding head 'similarity' has nothing to train (it is the zero-shot row)")
        outputs = self._outputs(head, features, targets, text)
        device = head_device(head)
        durations = targets["durations"].float()
        if kind == "dense":
            windows = [w.to(device) for w in targets["windows"]]
            return head.criterion(outputs, windows, durations)["loss_total"]  # type: ignore[operator]
        moments = [
            (w / float(d)).clamp(0.0, 1.0).to(device) for w, d in zip(targets["windows"], durations, strict=True)
        ]
        t = outputs["saliency"].shape[1]
        pos, neg = [], []
        for w, d, seed in zip(targets["windows"], durations, targets.get("seeds", [0] * len(moments)), strict=True):
            inside = frames_inside(w, float(d), t)
            p, n = sample_saliency_pairs(inside, np.ones((len(inside), 1)), t, np.random.default_rng(seed))
            pos.append(p)
            neg.append(n)
        return head.criterion(  # type: ignore[operator]
            outputs, moments, torch.tensor(pos, device=device), torch.tensor(neg, device=device)
        )["loss_total"]

    def predict(self, head: TaskHead, features: VideoFeatures, targets: dict, text: TextEncoder) -> list[Any]:
        outputs = self._outputs(head, features, targets, text)
        durations = targets["durations"].float()
        kind = head.spec["head"]
        if kind == "dense":
            windows = decode_dense_grounding(outputs, durations)
        elif kind == "moment_detr":
            windows = []
            probs = outputs["span_logits"].float().softmax(-1)[..., 0]
            spans = span_cxw_to_xx(outputs["spans"].float()).clamp(0.0, 1.0)
            for b, d in enumerate(durations.tolist()):
                order = torch.argsort(probs[b], descending=True, stable=True)
                windows.append(
                    [[float(spans[b, k, 0]) * d, float(spans[b, k, 1]) * d, float(probs[b, k])] for k in order]
                )
        else:
            windows = [similarity_windows(s, float(d)) for s, d in zip(outputs["saliency"], durations, strict=True)]
        saliency = outputs["saliency"].float().cpu().tolist()
        return [{"windows": w, "saliency": s} for w, s in zip(windows, saliency, strict=True)]

    def user_items(self, video: VideoRef, request: Request, spec: dict[str, Any]) -> list[Item]:
        return grounding_user_items(self.name, video, request)

    def describe(self, prediction: Any, item: Item, spec: dict[str, Any], top_k: int = 5) -> dict[str, Any]:
        moments = [{"start_s": float(s), "end_s": float(e), "score": float(c)} for s, e, c in prediction["windows"]]
        return {"query": item.query, "moments": moments[: max(1, top_k)]}  # type: ignore[union-attr]

    # --- metrics -------------------------------------------------------------------------------------------------

    def evaluate(self, predictions: Sequence[Any], data: TaskData) -> dict[str, float]:
        check_predictions(self, predictions, data)
        items: list[GroundingItem] = list(data.items)  # type: ignore[arg-type]
        preds = {i: _windows_of(p) for i, p in enumerate(predictions)}
        first_gt = {i: list(item.windows[0]) for i, item in enumerate(items)}
        result = tg.charades_sta_metrics(preds, first_gt)
        mr = tg.moment_retrieval_metrics(preds, {i: [list(w) for w in item.windows] for i, item in enumerate(items)})
        result.update({f"MR-{k}": v for k, v in mr.items()})
        labelled = [i for i, item in enumerate(items) if item.saliency is not None]
        if labelled:
            hl = tg.highlight_detection_metrics(
                {i: clip_saliency(predictions[i], items[i]) for i in labelled},
                {i: saliency_labels(items[i], data.extra.get("saliency_annotators")) for i in labelled},
            )
            result.update({f"HL-{k}": v for k, v in hl.items()})
        return {k: float(v) for k, v in result.items()}

    def item_statistics(self, predictions: Sequence[Any], data: TaskData) -> dict[str, np.ndarray]:
        """Per query: ``items``; ``strict`` hits of the first window at IoU > 0.3/0.5/0.7 and its ``iou``; ``mr``
        hits at IoU >= 0.5..0.95 and the per-query ``ap`` at each (QVHighlights' mAP is their mean)."""
        check_predictions(self, predictions, data)
        items: list[GroundingItem] = list(data.items)  # type: ignore[arg-type]
        rows: dict[str, list] = {"items": [], "strict": [], "iou": [], "mr": [], "ap": []}
        for p, item in zip(predictions, items, strict=True):
            windows = _windows_of(p)
            gt = [list(w) for w in item.windows]
            first = tg.temporal_iou(windows[0], gt[0]) if windows else 0.0
            best = max((tg.temporal_iou(windows[0], g) for g in gt), default=0.0) if windows else 0.0
            single = tg.moment_retrieval_metrics({0: windows}, {0: gt})
            rows["items"].append([1.0])
            rows["strict"].append([float(first > t) for t in STRICT])
            rows["iou"].append([first])
            rows["mr"].append([float(best >= t) for t in MR])
            rows["ap"].append([single[f"mAP@{t:g}"] / 100.0 for t in MR])
        return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}

    def metrics_from_sums(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = sums["items"][..., 0]
        out = {f"R1@{t:g}": percent(sums["strict"][..., k], n) for k, t in enumerate(STRICT)}
        out["mIoU"] = percent(sums["iou"][..., 0], n)
        for k, t in enumerate(MR):
            out[f"MR-R1@{t:g}"] = percent(sums["mr"][..., k], n)
            out[f"MR-mAP@{t:g}"] = percent(sums["ap"][..., k], n)
        out["MR-mAP"] = percent(sums["ap"].sum(-1), n * len(MR))
        return out

    def score_documents(self, predictions: Sequence[Any], data: TaskData) -> dict[str, str]:
        """QVHighlights-style jsonl both ways: the submission (``pred_relevant_windows``, and per-clip
        ``pred_saliency_scores`` when the items carry saliency labels) and the ground truth (``relevant_windows``,
        with the annotators' clip scores when the reader kept them) that ``score --gt FILE`` reads."""
        from videoadapt.metrics import prediction_files as pf

        check_predictions(self, predictions, data)
        items: list[GroundingItem] = list(data.items)  # type: ignore[arg-type]
        annotators = data.extra.get("saliency_annotators") or {}
        moments = {}
        for p, item in zip(predictions, items, strict=True):
            moments[item.query_id] = {
                "query": item.query,
                "vid": item.video.video_id,
                "windows": _windows_of(p),
                "saliency": clip_saliency(p, item) if item.query_id in annotators else None,
            }
        return pf.documents(
            pf.moment_predictions_text(moments), pf.moment_ground_truth_text(items, annotators), suffix="jsonl"
        )

    def item_records(self, predictions: Sequence[Any], data: TaskData) -> list[dict[str, Any]]:
        """Per query: ``id``, ``video``, ``query``, ``predicted`` (the windows, best first), ``windows`` (ground
        truth), ``iou`` of the first predicted window with the first GT window, ``correct`` (IoU > 0.5)."""
        check_predictions(self, predictions, data)
        records = []
        for p, item in zip(predictions, data.items, strict=True):
            windows = _windows_of(p)
            iou = tg.temporal_iou(windows[0], item.windows[0]) if windows else 0.0  # type: ignore[union-attr]
            records.append(
                {
                    "id": item.query_id,  # type: ignore[union-attr]
                    "video": item.video.video_id,
                    "query": item.query,  # type: ignore[union-attr]
                    "predicted": windows,
                    "windows": [list(w) for w in item.windows],  # type: ignore[union-attr]
                    "iou": iou,
                    "correct": iou > 0.5,
                }
            )
        return records


def grounding_user_items(task: str, video: VideoRef, request: Request) -> list[Item]:
    """One item per query sentence on a user's video, without ground truth: the whole video as the window, and a
    one-box tube that only carries the frame size and rate (spatio-temporal answers come out in its pixels)."""
    queries = [q.strip() for q in request.texts if q.strip()]
    if not queries:
        raise VideoadaptError(f"{task}: give the sentence to ground (--text, texts=)")
    if request.duration <= 0:
        raise VideoadaptError(f"{task}: the video's duration is unknown; grounding answers are in seconds")
    tube = None
    if request.fps > 0 and request.width > 0 and request.height > 0:
        whole = (0.0, 0.0, float(request.width), float(request.height))
        tube = Tube((0,), (whole,), float(request.fps), int(request.width), int(request.height))
    window = ((0.0, float(request.duration)),)
    return [
        GroundingItem(f"query_{i}", video, q, float(request.duration), window, tube=tube) for i, q in enumerate(queries)
    ]


def check_grounding_item(item: Item) -> str | None:
    """Why ``item`` cannot be a grounding task's item (None when it can)."""
    if not isinstance(item, GroundingItem):
        return f"not a grounding item ({type(item).__name__})"
    return grounding_item_problem(item)


def grounding_item_problem(item: GroundingItem) -> str | None:
    """Why a grounding item's span annotation is unusable (None when it is fine)."""
    if not item.query.strip():
        return "empty query"
    if not (math.isfinite(item.duration) and item.duration > 0):
        return f"duration {item.duration} is not a positive number of seconds"
    if not item.windows:
        return "no ground-truth window"
    for start, end in item.windows:
        if not (math.isfinite(start) and math.isfinite(end)):
            return f"window ({start}, {end}) is not finite"
        if end <= start:
            return f"window ({start}, {end}) is reversed or has zero length"
        if start < 0 or end > item.duration + 1e-6:
            return f"window ({start}, {end}) lies outside the video's [0, {item.duration}] seconds"
    return None


def frames_inside(windows: torch.Tensor, duration: float, frames: int) -> list[int]:
    """Frames (of ``frames`` covering ``duration`` evenly) whose interval overlaps a window; at least one."""
    inside = []
    for k in range(frames):
        a, b = k * duration / frames, (k + 1) * duration / frames
        if any(float(s) < b and float(e) > a for s, e in windows.tolist()):
            inside.append(k)
    if not inside:
        centre = float(windows[0].mean()) / duration * frames
        inside = [min(frames - 1, max(0, int(centre)))]
    return inside


def clip_saliency(prediction: dict[str, Any], item: GroundingItem) -> list[float]:
    """Per-frame saliency resampled onto the item's clips (QVHighlights: 2 s): the frame whose interval holds the
    clip's centre."""
    frames = list(prediction["saliency"])
    length = float(item.clip_length or 2.0)
    clips = max(1, int(item.duration / length))
    if len(frames) == clips:  # already one score per clip (a QVHighlights submission read by `videoadapt score`)
        return frames
    return [frames[min(len(frames) - 1, int((c + 0.5) * length / item.duration * len(frames)))] for c in range(clips)]


def saliency_labels(item: GroundingItem, annotators: dict | None = None) -> np.ndarray:
    """``[clips, annotators]`` saliency labels of a QVHighlights item (clips outside the labelled ones are 0): each
    annotator's own scores when the reader kept them (``extra["saliency_annotators"]``, as Moment-DETR's evaluator
    reads them), else the item's one score per clip."""
    length = float(item.clip_length or 2.0)
    raw = (annotators or {}).get(item.query_id)
    if raw is not None:
        return tg.qvhighlights_saliency_labels(item.duration, raw["relevant_clip_ids"], raw["saliency_scores"])
    clips = max(1, int(item.duration / length))
    labelled = item.saliency or ()
    width = max((len(_scores(s)) for _, s in labelled), default=1)
    out = np.zeros((clips, width))
    for clip, scores in labelled:
        if 0 <= int(clip) < clips:
            out[int(clip), : len(_scores(scores))] = _scores(scores)
    return out


def _scores(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def _windows_of(prediction: Any) -> list[list[float]]:
    if isinstance(prediction, dict):
        prediction = prediction.get("windows", [])
    return [list(map(float, w)) for w in prediction]
