"""Open-vocabulary multi-object tracking metrics: TETA (LocA, AssocA, ClsA), HOTA (DetA, AssA, LocA), MOTA, IDF1.

**TETA** is written here to the definition of SysCV's ``teta`` (``SysCV/tet``, ``teta/teta/metrics/teta.py`` and
``teta/teta/datasets/tao.py``; Li et al., *Tracking Every Thing in the Wild*, ECCV 2022); no package computes it.
Conventions, as the official code has them:

* **Frames.** Only each video's evaluated frames count (``TrackingItem.evaluated_frames``; TAO: its annotated
  frames); predicted boxes on other frames are ignored. At most 300 boxes per frame are kept, the highest scores
  (TAO's ``MAX_DETECTIONS``). Boxes are ``x1, y1, x2, y2`` pixels, IoU without +1 (a zero-area box has IoU 0).
* **Clusters.** Localisation is class-agnostic: for ground-truth category ``c``, a predicted box is a candidate
  (of the cluster of a ``c`` box) when its IoU with some ``c`` box of its frame is ≥ 0.5, whatever its predicted
  class; a prediction that overlaps no ground truth of any class by 0.5 is **ignored, not a false positive**. A
  candidate already matched (all classes together, α = 0.5, below) to a box of another category is removed from
  ``c``'s cluster. The tracks with a candidate anywhere in the video take part in ``c``'s matching, with all
  their boxes.
* **Matching** (per category, per frame): Hungarian on ``global alignment × IoU`` (HOTA's Jaccard alignment of
  track ids over the video), a pair counts at threshold α when its IoU ≥ α. The α grid is the official
  ``np.arange(0.0, 0.99, 0.05)`` — **0.0, 0.05, …, 0.95 (20 values) for LocA and AssocA**, and 0.5, …, 0.95
  (10 values) for ClsA.
* **LocA** = TP / (TP + FN + FP): FN = ground-truth boxes not matched, FP = candidates not matched.
  **AssocA** = HOTA's AssA of the matches. **ClsA** = TP / (TP + FN + FP) over matched pairs: TP = matched with
  the right predicted class, FN = matched with a wrong class, and each wrong pair is an FP of the class it was
  given. ClsA is averaged over its α grid first; **TETA** = (LocA + AssocA + ClsA) / 3.
* **Combining.** Videos combine by summing TP/FN/FP and weighting AssocA by TP; categories combine by the plain
  mean over the categories that have ground truth on an evaluated frame (TETA's ``combine_classes_class_averaged``
  with ``ignore_empty``; TAO evaluates only categories present in its ground truth). Each figure is averaged over
  its α grid.

**HOTA, DetA, AssA, HOTA's LocA, MOTA, IDF1** are trackeval's (``trackeval.metrics.HOTA``, ``CLEAR`` and
``Identity``, run per category and video). Per category, the ground truth boxes of that category are matched with
the predicted boxes *given* that category (a wrong class is a miss and a false positive). Annotation is taken as
exhaustive on evaluated frames (as MOTChallenge, SynthWorld): every predicted box of a category on an evaluated
frame takes part (trackeval's TAO dataset also drops unmatched boxes of a category on frames where the category
has no ground truth, because TAO's labels are not exhaustive; we do not). HOTA over α = 0.05, …, 0.95 (19 values),
MOTA and IDF1 at IoU 0.5. Videos combine as trackeval's ``combine_sequences`` (sums; AssA and LocA weighted by
TP); categories combine by trackeval's class average (``combine_classes_class_averaged``: the plain mean of the
per-category figures) over the categories with ground truth on an evaluated frame, as trackeval's TAO evaluation
(its class list is the categories present in the ground truth).

**Base and novel** (OVTrack's split): with ``novel`` given, every figure is also reported over the novel
categories (``_novel``) and the others (``_base``) apart: the same mean, over fewer categories. A group without any
category with ground truth gives NaN. All figures are percentages (0-100).

The per-video statistics (:func:`tracking_statistics`) are additive: their sums over videos give every figure
(:func:`tracking_metrics_from_sums`), which is how the bootstrap resamples videos.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from videoadapt.data.records import TrackingItem
from videoadapt.errors import VideoadaptError

EPS = float(np.finfo(float).eps)
LOC_ALPHAS = np.arange(0.0, 0.99, 0.05)
"""TETA's α grid for LocA and AssocA (official ``array_labels``): 0.0 … 0.95."""
CLS_FIRST = 10
"""ClsA's α grid is ``LOC_ALPHAS[CLS_FIRST:]`` = 0.5 … 0.95 (official ``cls_array_labels``)."""
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
"""trackeval's HOTA α grid: 0.05 … 0.95."""
CLUSTER_IOU = 0.5
"""IoU with a ground-truth box that puts a prediction in its cluster (TETA) and that CLEAR and Identity need."""
MAX_BOXES_PER_FRAME = 300
"""TAO's ``MAX_DETECTIONS``: the highest-scoring boxes kept per frame."""

METRIC_KEYS = ("teta", "loca", "assoca", "clsa", "hota", "deta", "assa", "hota_loca", "mota", "idf1")

CONVENTIONS = {
    "teta": "SysCV teta: class-agnostic clusters (IoU >= 0.5 with a ground-truth box; predictions outside every "
    "cluster ignored), LocA and AssocA over alpha 0.0:0.05:0.95, ClsA over 0.5:0.05:0.95, TETA = mean of the three",
    "hota": "trackeval HOTA over alpha 0.05:0.05:0.95, MOTA (CLEAR) and IDF1 (Identity) at IoU 0.5, per category "
    "with the predicted class; annotation exhaustive on evaluated frames",
    "averaging": "sums over videos (AssA, AssocA, LocA weighted by TP), then the plain mean over categories with "
    "ground truth; _base / _novel: the same mean over those categories only",
    "frames": "evaluated frames only (TAO: annotated frames); at most 300 boxes per frame, highest scores",
    "boxes": "x1, y1, x2, y2 pixels, IoU without +1",
    "units": "percent",
}


@dataclass(frozen=True)
class TrackedBox:
    """One predicted box of one track on one frame.

    ``frame``: 0-based frame of the video; ``track_id``: unique within the video; ``category``: the class name
    given to the box (a tracker gives its track's class); ``box``: ``x1, y1, x2, y2`` pixels; ``score``: confidence
    (only used to keep the 300 best boxes of a frame)."""

    frame: int
    track_id: int
    category: str
    box: tuple[float, float, float, float]
    score: float = 1.0


@dataclass
class _Frame:
    ids: np.ndarray  # int64 [n] track ids
    classes: np.ndarray  # int64 [n] category indices
    boxes: np.ndarray  # float64 [n, 4]


def box_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of ``x1, y1, x2, y2`` boxes, no +1 (trackeval's ``_calculate_box_ious``): a box of
    zero area has IoU 0 with everything."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter_w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter_h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(inter_w, 0.0) * np.maximum(inter_h, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter[area_a <= EPS, :] = 0.0
    inter[:, area_b <= EPS] = 0.0
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > EPS, inter / np.where(union > EPS, union, 1.0), 0.0)


# --------------------------------------------------------------------------------------------- input checking


def _check_box(box: Any, where: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise VideoadaptError(f"{where}: box {box!r} is not four numbers") from None
    if len(values) != 4 or not all(np.isfinite(values)):
        raise VideoadaptError(f"{where}: box {box!r} is not four finite numbers x1, y1, x2, y2")
    if values[2] < values[0] or values[3] < values[1]:
        raise VideoadaptError(f"{where}: box {box!r} has x2 < x1 or y2 < y1")
    return values  # type: ignore[return-value]


def _frames(
    item: TrackingItem, predicted: Sequence[TrackedBox], index: Mapping[str, int]
) -> tuple[list[_Frame], list[_Frame]]:
    """Ground truth and predictions on each evaluated frame, checked (names the video, frame and track)."""
    video = item.video.video_id
    frames = item.evaluated_frames
    position = {frame: t for t, frame in enumerate(frames)}
    gt: list[list[tuple[int, int, tuple]]] = [[] for _ in frames]
    for track in item.tracks:
        if track.category not in index:
            raise VideoadaptError(f"video {video!r}: track {track.track_id} has unknown category {track.category!r}")
        for frame, box in zip(track.frames, track.boxes, strict=True):
            if frame in position:
                gt[position[frame]].append((int(track.track_id), index[track.category], box))
    pred: list[list[tuple[float, int, int, tuple]]] = [[] for _ in frames]
    for k, entry in enumerate(predicted):
        where = f"video {video!r}, prediction {k} (frame {entry.frame}, track {entry.track_id})"
        if not isinstance(entry, TrackedBox):
            raise VideoadaptError(f"video {video!r}, prediction {k}: expected a TrackedBox, got {type(entry).__name__}")
        if not 0 <= int(entry.frame) < item.num_frames:
            raise VideoadaptError(f"{where}: frame {entry.frame} is not a frame of the video's {item.num_frames}")
        if entry.category not in index:
            raise VideoadaptError(f"{where}: unknown category {entry.category!r}")
        box = _check_box(entry.box, where)
        score = float(entry.score)
        if not np.isfinite(score):
            raise VideoadaptError(f"{where}: score {entry.score!r} is not a finite number")
        t = position.get(int(entry.frame))
        if t is not None:
            pred[t].append((score, int(entry.track_id), index[entry.category], box))
    out_gt, out_pred = [], []
    for t, frame in enumerate(frames):
        boxes = pred[t]
        if len(boxes) > MAX_BOXES_PER_FRAME:  # stable: equal scores keep their order
            boxes = sorted(boxes, key=lambda b: -b[0])[:MAX_BOXES_PER_FRAME]
        for kind, rows, out in (("ground-truth", [(0.0, *g) for g in gt[t]], out_gt), ("predicted", boxes, out_pred)):
            ids = np.array([r[1] for r in rows], dtype=np.int64)
            if len(np.unique(ids)) != len(ids):
                raise VideoadaptError(f"video {video!r}, frame {frame}: two {kind} boxes of one track id")
            out.append(
                _Frame(
                    ids,
                    np.array([r[2] for r in rows], dtype=np.int64),
                    np.array([r[3] for r in rows], dtype=np.float64).reshape(-1, 4),
                )
            )
    return out_gt, out_pred


# ---------------------------------------------------------------------------------------------------- TETA


def _alignment(
    gt_ids: list[np.ndarray], tk_ids: list[np.ndarray], sims: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HOTA's global alignment of ids over the video: ``(score [G, K], gt ids, tk ids, gt counts [G, 1], tk
    counts [1, K])``; ids are looked up with ``np.searchsorted`` in the sorted id arrays."""
    gts = np.unique(np.concatenate([np.zeros(0, np.int64), *gt_ids]))
    tks = np.unique(np.concatenate([np.zeros(0, np.int64), *tk_ids]))
    potential = np.zeros((len(gts), len(tks)))
    gt_count = np.zeros((len(gts), 1))
    tk_count = np.zeros((1, len(tks)))
    for g, k, sim in zip(gt_ids, tk_ids, sims, strict=True):
        gi, ki = np.searchsorted(gts, g), np.searchsorted(tks, k)
        denominator = sim.sum(0, keepdims=True) + sim.sum(1, keepdims=True) - sim
        normalised = np.zeros_like(sim)
        mask = denominator > EPS
        normalised[mask] = sim[mask] / denominator[mask]
        potential[gi[:, None], ki[None, :]] += normalised
        gt_count[gi] += 1
        tk_count[0, ki] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        score = potential / (gt_count + tk_count - potential)
    return np.nan_to_num(score), gts, tks, gt_count, tk_count


def _hungarian(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if score.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return linear_sum_assignment(-score)


def _global_assignment(gt: list[_Frame], pred: list[_Frame], ious: list[np.ndarray]) -> list[dict[int, int]]:
    """TETA's all-category matching at α = 0.5 (``compute_global_assignment``): per frame, ground-truth track id →
    predicted track id; empty when no prediction overlaps any ground truth."""
    overlap = [(iou >= CLUSTER_IOU).any(axis=0) for iou in ious]
    assignment: list[dict[int, int]] = [{} for _ in gt]
    if sum(int(o.sum()) for o in overlap) == 0 or sum(len(f.ids) for f in gt) == 0:
        return assignment
    kept = np.unique(np.concatenate([p.ids[o] for p, o in zip(pred, overlap, strict=True)]))
    cols = [np.isin(p.ids, kept) for p in pred]
    sims = [iou[:, c] for iou, c in zip(ious, cols, strict=True)]
    tk_ids = [p.ids[c] for p, c in zip(pred, cols, strict=True)]
    score, gts, tks, _, _ = _alignment([f.ids for f in gt], tk_ids, sims)
    for t, (frame, ids, sim) in enumerate(zip(gt, tk_ids, sims, strict=True)):
        gi, ki = np.searchsorted(gts, frame.ids), np.searchsorted(tks, ids)
        rows, cols_t = _hungarian(score[gi[:, None], ki[None, :]] * sim)
        keep = sim[rows, cols_t] >= CLUSTER_IOU - EPS
        assignment[t] = dict(zip(frame.ids[rows[keep]].tolist(), ids[cols_t[keep]].tolist(), strict=True))
    return assignment


def _teta_video(gt: list[_Frame], pred: list[_Frame], ious: list[np.ndarray], n_cls: int) -> dict[str, np.ndarray]:
    n_a, n_c = len(LOC_ALPHAS), len(LOC_ALPHAS) - CLS_FIRST
    out = {k: np.zeros((n_cls, n_a)) for k in ("teta_loc_tp", "teta_loc_fn", "teta_loc_fp", "teta_assoc")}
    out.update({k: np.zeros((n_cls, n_c)) for k in ("teta_cls_tp", "teta_cls_fn", "teta_cls_fp")})
    assignment = _global_assignment(gt, pred, ious)
    present = np.unique(np.concatenate([np.zeros(0, np.int64), *(f.classes for f in gt)]))
    for c in present.tolist():
        gmask = [f.classes == c for f in gt]
        overlap = []
        for frame, p, iou, m, assigned in zip(gt, pred, ious, gmask, assignment, strict=True):
            own = set(frame.ids[m].tolist())
            taken = [tk for g, tk in assigned.items() if g not in own]  # matched to another category's box
            overlap.append((iou[m] >= CLUSTER_IOU).any(axis=0) & ~np.isin(p.ids, taken))
        n_gt = sum(int(m.sum()) for m in gmask)
        if sum(int(o.sum()) for o in overlap) == 0:
            out["teta_loc_fn"][c] = n_gt
            continue
        kept = np.unique(np.concatenate([p.ids[o] for p, o in zip(pred, overlap, strict=True)]))
        cols = [np.isin(p.ids, kept) for p in pred]
        gt_ids = [f.ids[m] for f, m in zip(gt, gmask, strict=True)]
        tk_ids = [p.ids[k] for p, k in zip(pred, cols, strict=True)]
        sims = [iou[m][:, k] for iou, m, k in zip(ious, gmask, cols, strict=True)]
        score, gts, tks, gt_count, tk_count = _alignment(gt_ids, tk_ids, sims)
        matches = np.zeros((n_a, len(gts), len(tks)))
        for t in range(len(gt)):
            if len(gt_ids[t]) == 0:
                continue
            gi, ki = np.searchsorted(gts, gt_ids[t]), np.searchsorted(tks, tk_ids[t])
            sim = sims[t]
            rows, cols_t = _hungarian(score[gi[:, None], ki[None, :]] * sim)
            # Every alpha at once: keep[a, p] says whether matched pair p counts at threshold alpha a.
            keep = sim[rows, cols_t][None, :] >= LOC_ALPHAS[:, None] - EPS
            n = keep.sum(axis=1)
            candidate = overlap[t][cols[t]][cols_t]  # each pair's track is a candidate of this frame
            out["teta_loc_tp"][c] += n
            out["teta_loc_fn"][c] += len(gt_ids[t]) - n
            # Unmatched candidates; a track has at most one pair per frame.
            out["teta_loc_fp"][c] += int(overlap[t].sum()) - (keep & candidate[None, :]).sum(axis=1)
            given = pred[t].classes[cols[t]][cols_t]
            kept_cls = keep[CLS_FIRST:]
            right = (kept_cls & (given == c)[None, :]).sum(axis=1)
            out["teta_cls_tp"][c] += right
            out["teta_cls_fn"][c] += kept_cls.sum(axis=1) - right
            for p in np.flatnonzero(given != c):  # each wrong pair is a false positive of the class given
                out["teta_cls_fp"][given[p]] += kept_cls[:, p]
            matches[:, gi[rows], ki[cols_t]] += keep  # (row, col) pairs are distinct within a frame
        # AssocA's numerator: AssocA x TP, what combining over videos sums (the official divides by max(1, TP)).
        out["teta_assoc"][c] = (matches * matches / np.maximum(1, gt_count + tk_count - matches)).sum(axis=(1, 2))
    return out


# ------------------------------------------------------------------------------------ HOTA, CLEAR, Identity


_TRACKEVAL: dict[str, Any] = {}


def _trackeval_metrics() -> tuple[Any, Any, Any]:
    if not _TRACKEVAL:
        try:
            from trackeval.metrics import CLEAR, HOTA, Identity
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise VideoadaptError(f"HOTA, MOTA and IDF1 need the trackeval package ({error})") from None
        _TRACKEVAL["metrics"] = (
            HOTA(),
            CLEAR({"THRESHOLD": CLUSTER_IOU, "PRINT_CONFIG": False}),
            Identity({"THRESHOLD": CLUSTER_IOU, "PRINT_CONFIG": False}),
        )
    return _TRACKEVAL["metrics"]


def trackeval_sequence(gt_ids: list[np.ndarray], tk_ids: list[np.ndarray], sims: list[np.ndarray]) -> dict[str, Any]:
    """trackeval's per-sequence input for one category (ids relabelled 0..n-1 as its datasets do)."""
    gts = np.unique(np.concatenate([np.zeros(0, np.int64), *gt_ids]))
    tks = np.unique(np.concatenate([np.zeros(0, np.int64), *tk_ids]))
    return {
        "num_timesteps": len(gt_ids),
        "gt_ids": [np.searchsorted(gts, g).astype(int) for g in gt_ids],
        "tracker_ids": [np.searchsorted(tks, k).astype(int) for k in tk_ids],
        "similarity_scores": sims,
        "num_gt_dets": int(sum(len(g) for g in gt_ids)),
        "num_tracker_dets": int(sum(len(k) for k in tk_ids)),
        "num_gt_ids": len(gts),
        "num_tracker_ids": len(tks),
    }


def _trackeval_video(gt: list[_Frame], pred: list[_Frame], ious: list[np.ndarray], n_cls: int) -> dict[str, np.ndarray]:
    n_h = len(HOTA_ALPHAS)
    out = {k: np.zeros((n_cls, n_h)) for k in ("hota_tp", "hota_fn", "hota_fp", "hota_assoc", "hota_loc")}
    out.update({k: np.zeros(n_cls) for k in ("clear_tp", "clear_fn", "clear_fp", "clear_idsw")})
    out.update({k: np.zeros(n_cls) for k in ("id_tp", "id_fn", "id_fp")})
    hota, clear, identity = _trackeval_metrics()
    for c in range(n_cls):
        gmask = [f.classes == c for f in gt]
        pmask = [p.classes == c for p in pred]
        if not any(m.any() for m in gmask) and not any(m.any() for m in pmask):
            continue
        data = trackeval_sequence(
            [f.ids[m] for f, m in zip(gt, gmask, strict=True)],
            [p.ids[m] for p, m in zip(pred, pmask, strict=True)],
            [iou[g][:, p] for iou, g, p in zip(ious, gmask, pmask, strict=True)],
        )
        h, cl, ident = hota.eval_sequence(data), clear.eval_sequence(data), identity.eval_sequence(data)
        out["hota_tp"][c], out["hota_fn"][c], out["hota_fp"][c] = h["HOTA_TP"], h["HOTA_FN"], h["HOTA_FP"]
        # What trackeval's combine_sequences weights by TP: AssA x TP and LocA x TP.
        out["hota_assoc"][c] = h["AssA"] * h["HOTA_TP"]
        out["hota_loc"][c] = h["LocA"] * h["HOTA_TP"]
        out["clear_tp"][c], out["clear_fn"][c] = cl["CLR_TP"], cl["CLR_FN"]
        out["clear_fp"][c], out["clear_idsw"][c] = cl["CLR_FP"], cl["IDSW"]
        out["id_tp"][c], out["id_fn"][c], out["id_fp"][c] = ident["IDTP"], ident["IDFN"], ident["IDFP"]
    return out


# ------------------------------------------------------------------------------------------------- public


def _category_index(categories: Sequence[str]) -> dict[str, int]:
    names = [str(c) for c in categories]
    if not names:
        raise VideoadaptError("tracking metrics need at least one category")
    if len(set(names)) != len(names):
        raise VideoadaptError("tracking metrics: a category name appears twice in the category list")
    return {name: k for k, name in enumerate(names)}


def tracking_statistics(
    item: TrackingItem, predicted: Sequence[TrackedBox], categories: Sequence[str]
) -> dict[str, np.ndarray]:
    """Additive statistics of one video: ``{name: 1-D float64 array}`` whose sums over videos give every figure
    (:func:`tracking_metrics_from_sums`). Per category (in ``categories`` order) and threshold: TETA's LocA
    TP/FN/FP, AssocA x TP, ClsA TP/FN/FP; trackeval's HOTA TP/FN/FP, AssA x TP, LocA x TP; CLEAR TP/FN/FP/IDSW;
    Identity IDTP/IDFN/IDFP; and ``gt_boxes``, the ground-truth boxes of each category on evaluated frames.

    A predicted category not in ``categories``, a frame outside the video, a bad box or two boxes of one track on
    one frame raise :class:`VideoadaptError` naming the video, prediction and frame."""
    index = _category_index(categories)
    gt, pred = _frames(item, predicted, index)
    ious = [box_ious(g.boxes, p.boxes) for g, p in zip(gt, pred, strict=True)]
    n_cls = len(index)
    out = {**_teta_video(gt, pred, ious, n_cls), **_trackeval_video(gt, pred, ious, n_cls)}
    stats = {key: np.asarray(value, dtype=np.float64).reshape(-1) for key, value in out.items()}
    gt_boxes = np.zeros(n_cls)
    for frame in gt:
        np.add.at(gt_boxes, frame.classes, 1.0)
    stats["gt_boxes"] = gt_boxes
    return stats


def _per_category(sums: Mapping[str, np.ndarray], n_cls: int) -> dict[str, np.ndarray]:
    """Each figure per category ``[..., C]`` (fractions) from summed statistics ``[..., K]``."""

    def get(key: str, width: int) -> np.ndarray:
        value = np.asarray(sums[key], dtype=np.float64)
        if value.shape[-1] != n_cls * width:
            raise VideoadaptError(
                f"tracking statistics {key!r} have {value.shape[-1]} columns, expected {n_cls} categories x {width}"
            )
        return value.reshape(*value.shape[:-1], n_cls, width)

    n_a, n_c, n_h = len(LOC_ALPHAS), len(LOC_ALPHAS) - CLS_FIRST, len(HOTA_ALPHAS)
    tp, fn, fp = (get(f"teta_loc_{k}", n_a) for k in ("tp", "fn", "fp"))
    loca = tp / np.maximum(1.0, tp + fn + fp)
    assoca = get("teta_assoc", n_a) / np.maximum(1.0, tp)
    ctp, cfn, cfp = (get(f"teta_cls_{k}", n_c) for k in ("tp", "fn", "fp"))
    clsa = (ctp / np.maximum(1.0, ctp + cfn + cfp)).mean(-1)
    loca, assoca = loca.mean(-1), assoca.mean(-1)
    htp, hfn, hfp = (get(f"hota_{k}", n_h) for k in ("tp", "fn", "fp"))
    deta = htp / np.maximum(1.0, htp + hfn + hfp)
    assa = get("hota_assoc", n_h) / np.maximum(1.0, htp)
    hota_loca = np.maximum(1e-10, get("hota_loc", n_h)) / np.maximum(1e-10, htp)
    tp1, fn1, fp1, idsw = (get(f"clear_{k}", 1)[..., 0] for k in ("tp", "fn", "fp", "idsw"))
    idtp, idfn, idfp = (get(f"id_{k}", 1)[..., 0] for k in ("tp", "fn", "fp"))
    return {
        "teta": (loca + assoca + clsa) / 3.0,
        "loca": loca,
        "assoca": assoca,
        "clsa": clsa,
        "hota": np.sqrt(deta * assa).mean(-1),
        "deta": deta.mean(-1),
        "assa": assa.mean(-1),
        "hota_loca": hota_loca.mean(-1),
        "mota": (tp1 - fp1 - idsw) / np.maximum(1.0, tp1 + fn1),
        "idf1": idtp / np.maximum(1.0, idtp + 0.5 * idfp + 0.5 * idfn),
    }


def tracking_metrics_from_sums(
    sums: Mapping[str, np.ndarray], categories: Sequence[str], novel: Collection[str] = ()
) -> dict[str, np.ndarray]:
    """Every figure (percent) from statistics summed over videos, vectorised over leading axes (``[..., K] ->
    [...]``, the bootstrap's resamples): the keys of :data:`METRIC_KEYS`, and with ``novel`` the same with
    ``_base`` and ``_novel``. Categories enter the mean only where they have ground truth; a group with none
    gives NaN."""
    index = _category_index(categories)
    unknown = sorted(set(novel) - set(index))
    if unknown:
        raise VideoadaptError(f"novel categories {', '.join(map(repr, unknown))} are not among the categories")
    n_cls = len(index)
    if "gt_boxes" not in sums:
        raise VideoadaptError("tracking statistics lack 'gt_boxes' (made by tracking_statistics?)")
    present = np.asarray(sums["gt_boxes"], dtype=np.float64) > 0
    per_category = _per_category(sums, n_cls)
    is_novel = np.array([name in set(novel) for name in index])
    groups = {"": np.ones(n_cls, dtype=bool)}
    if len(novel):
        groups.update({"_base": ~is_novel, "_novel": is_novel})
    out: dict[str, np.ndarray] = {}
    for suffix, group in groups.items():
        mask = present & group
        count = mask.sum(-1)
        for key in METRIC_KEYS:
            total = np.where(mask, per_category[key], 0.0).sum(-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[key + suffix] = np.where(count > 0, 100.0 * total / np.maximum(count, 1), np.nan)
    return out


def tracking_metrics(
    ground_truth: Sequence[TrackingItem],
    predictions: Mapping[str, Sequence[TrackedBox]],
    categories: Sequence[str],
    novel: Collection[str] = (),
) -> dict[str, float]:
    """Every figure (percent, module docstring) of ``predictions`` (video id → its boxes; a video without an entry
    has no prediction) against ``ground_truth``. A prediction for a video not in the ground truth, or a video twice
    in the ground truth, is an error naming it."""
    if not ground_truth:
        raise VideoadaptError("tracking metrics: the ground truth has no video")
    videos = [item.video.video_id for item in ground_truth]
    if len(set(videos)) != len(videos):
        repeated = sorted({v for v in videos if videos.count(v) > 1})
        raise VideoadaptError(
            f"tracking metrics: video(s) {', '.join(map(repr, repeated[:5]))} twice in the ground truth"
        )
    extra = sorted(set(predictions) - set(videos))
    if extra:
        raise VideoadaptError(
            f"tracking metrics: predictions for video(s) not in the ground truth: {', '.join(map(repr, extra[:5]))}"
        )
    total: dict[str, np.ndarray] = {}
    for item in ground_truth:
        stats = tracking_statistics(item, predictions.get(item.video.video_id, ()), categories)
        for key, value in stats.items():
            total[key] = total[key] + value if key in total else value
    return {key: float(value) for key, value in tracking_metrics_from_sums(total, categories, novel).items()}
