"""Video instance segmentation AP and AR, following YouTube-VIS's evaluator (``youtubevos/cocoapi``,
``PythonAPI/pycocotools/ytvoseval.py``, ``YTVOSeval``), and LV-VIS's AP of base and novel categories apart.

Conventions, as implemented here (ours, read from the reference, not copied):

* **Video mask IoU** of a predicted instance and a ground-truth object: the sum over the video's evaluated frames of
  the intersections divided by the sum of the unions (``iou_seq``). A frame where one of the two has no mask adds
  the other's area to the union; a frame where both are empty adds nothing; a union of 0 over the whole video gives
  IoU 0. Evaluated frames are :attr:`TrackingItem.evaluated_frames` (YouTube-VIS: every annotated frame of the
  json, i.e. all of them); masks on other frames are ignored.
* **Area** of an object or a prediction (for the area ranges): the mean of its mask areas over the evaluated frames
  where the mask is non-empty (``avg_area``; 0 when it never is). The reference reads the ground truth's ``areas``
  field of the json, which YouTube-VIS computes from the same masks; we compute it from the masks.
* **Area ranges** (YouTube-VIS's, not COCO's): all ``[0, 1e10]``, small ``[0, 128²]``, medium ``[128², 256²]``,
  large ``[256², 1e10]``, both ends inclusive. A ground-truth object outside the range is ignored; so is a
  prediction outside it that matched nothing.
* **Matching**, per video and category, at each of COCO's ten IoU thresholds 0.50:0.05:0.95: predictions by
  descending score (stable sort), at most 100 per video and category; each takes the unmatched ground truth of
  highest IoU ``>= threshold`` (ignored objects last: a prediction that can match a regular object never takes an
  ignored one); a crowd object (``iscrowd``) is always ignored and may absorb several predictions. Matching an
  ignored object makes the prediction ignored (neither TP nor FP).
* **AP**: per category, all videos' predictions ranked by score (stable: ties in video order, then in score order
  within a video), precision made monotone from the right, read at 101 recall points 0:0.01:1 (first rank whose
  recall reaches the point; 0 beyond the last recall), averaged over the 101 points and the 10 thresholds; then over
  the categories with at least one ground-truth object in the area range (others skipped, as the reference's -1).
  ``maxDets`` (1, 10, 100) counts predictions per video *and category* (COCO's behaviour).
* **AR@m**: per category and threshold the recall of the first m predictions per video and category; averaged
  over thresholds and categories with ground truth.
* **LV-VIS**: ``ap_base`` / ``ap_novel`` average the same per-category AP over the base / novel categories with
  ground truth (LV-VIS's APb / APn).

Every value is in percent (0-100); a value the reference reports as -1 (no ground truth in that area range or
category group) is NaN here. Bad input (unknown category or video, a mask of the wrong size, an RLE that does not
decode, a mask on a frame the video lacks, a non-finite score) raises :class:`~videoadapt.errors.VideoadaptError`
naming the video and the instance.

**Per-video statistics for the bootstrap** (:func:`vis_statistics`, :func:`vis_metrics_from_sums`). COCO AP is not
a sum over videos, but everything it needs is: a prediction's outcome (TP, FP or ignored, at each threshold and
area range) depends only on its own video, and a resample of videos keeps every prediction's score, so the global
ranking of a resample is the full data's ranking with predictions repeated or dropped. Per category, threshold and
area range we cut the full data's ranking into at most ``bins`` score intervals and give each video the count of
its TPs and FPs in each interval; the precision/recall curve of any resample is then known at the interval ends.
Intervals are cut at the ends of *runs* (maximal stretches of TPs only or FPs only): within a TP run the
monotone precision at every rank equals the one at the run's end, and recall never grows inside an FP run, so
when a category, threshold and area range has at most ``bins`` runs its AP from sums is **exact** (on the full data
and on every resample, except for the order of equal scores in different videos). With more runs, consecutive
runs are merged into ``bins`` intervals of about equal size and the AP from sums is a **lower bound** of the exact
one: it reads the curve only at interval ends. :func:`vis_ap_bounds_from_sums` also gives the matching upper
bound (every TP of an interval ranked before its FPs), so the exact AP is bracketed and the gap is measurable.
AR is exact from sums always. By default ``bins`` is the largest number of runs (exact), capped at
:data:`MAX_BINS`. Size: ``N × C × 10 × bins × 2`` floats (``× 4`` with the area ranges)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from videoadapt.data.masks import check_rle, rle_area
from videoadapt.data.records import TrackingItem
from videoadapt.errors import VideoadaptError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
# YouTube-VIS's area ranges in pixels (mean mask area over frames), both ends inclusive.
AREA_RANGES = {"all": (0.0, 1e5**2), "s": (0.0, 128.0**2), "m": (128.0**2, 256.0**2), "l": (256.0**2, 1e5**2)}
KEYS = ("ap", "ap50", "ap75", "aps", "apm", "apl", "ar1", "ar10")
MAX_BINS = 128  # score intervals per category and threshold when vis_statistics chooses

CONVENTIONS = {
    "reference": "youtubevos/cocoapi ytvoseval.py (YTVOSeval); LV-VIS APb/APn for base/novel",
    "video IoU": "sum over frames of mask intersections / sum of unions; both empty on a frame adds nothing",
    "thresholds": "IoU 0.50:0.05:0.95, 101 recall points, precision made monotone; maxDets 1/10/100 per video "
    "and category",
    "areas": "mean non-empty mask area over frames; s [0, 128^2], m [128^2, 256^2], l [256^2, 1e10], inclusive",
    "crowd": "iscrowd objects ignored, may absorb several predictions",
    "averaging": "over categories with ground truth; NaN where the reference reports -1",
    "units": "percent",
}

_EPS = np.spacing(1)  # the reference's precision denominator guard
_IGNORED, _FP, _TP = -1, 0, 1


@dataclass(frozen=True)
class VideoInstance:
    """One predicted object instance through a video: its category name, confidence and, per frame of the video,
    a COCO RLE mask ``{"size": [height, width], "counts": str}``; a frame that is absent has an empty mask."""

    category: str
    score: float
    masks: Mapping[int, dict]


# --- per video and category: IoUs and matching ------------------------------------------------------------------


@dataclass
class _Cell:
    """The predictions and ground truth of one category in one video, matched at every threshold and area range."""

    scores: np.ndarray  # [D] descending (at most 100)
    outcome: np.ndarray  # [A, T, D] _TP / _FP / _IGNORED
    gt_counted: np.ndarray  # [A] ground-truth objects not ignored


def _video_iou(
    dets: Sequence[Mapping[int, dict]], gts: Sequence[Mapping[int, dict]], frames: Sequence[int]
) -> np.ndarray:
    """``[D, G]`` video IoU: summed intersections over summed unions across ``frames``."""
    from pycocotools import mask as mask_utils

    inter = np.zeros((len(dets), len(gts)))
    area_d = np.zeros(len(dets))
    area_g = np.zeros(len(gts))
    for frame in frames:
        di = [i for i, d in enumerate(dets) if frame in d]
        gi = [j for j, g in enumerate(gts) if frame in g]
        ad = np.array([rle_area(dets[i][frame]) for i in di], dtype=float)
        ag = np.array([rle_area(gts[j][frame]) for j in gi], dtype=float)
        area_d[di] += ad
        area_g[gi] += ag
        if di and gi:
            rd = [_coco(dets[i][frame]) for i in di]
            rg = [_coco(gts[j][frame]) for j in gi]
            iou = np.asarray(mask_utils.iou(rd, rg, [0] * len(gi)), dtype=float).reshape(len(di), len(gi))
            # iou = I / (a + b - I), so I = iou (a + b) / (1 + iou): exact integers once rounded.
            frame_inter = np.rint(iou * (ad[:, None] + ag[None, :]) / (1.0 + iou))
            inter[np.ix_(di, gi)] += frame_inter
    union = area_d[:, None] + area_g[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _coco(rle: dict) -> dict:
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


def _mean_area(masks: Mapping[int, dict], frames: Sequence[int]) -> float:
    areas = [a for a in (rle_area(masks[f]) for f in frames if f in masks) if a]
    return float(np.mean(areas)) if areas else 0.0


def _match(
    ious: np.ndarray, gt_area: np.ndarray, gt_crowd: np.ndarray, det_area: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(outcome [A, T, D], counted ground truth [A])`` for predictions already in descending score order."""
    n_det, n_gt = ious.shape
    areas = list(AREA_RANGES.values())
    outcome = np.full((len(areas), len(IOU_THRESHOLDS), n_det), _FP, dtype=np.int8)
    counted = np.zeros(len(areas))
    for a, (lo, hi) in enumerate(areas):
        ignore = gt_crowd | (gt_area < lo) | (gt_area > hi)
        counted[a] = float(np.sum(~ignore))
        order = np.argsort(ignore, kind="mergesort")  # regular objects first
        ig = ignore[order]
        crowd = gt_crowd[order]
        sub = ious[:, order]
        det_out = (det_area < lo) | (det_area > hi)
        for t, threshold in enumerate(IOU_THRESHOLDS):
            taken = np.zeros(n_gt, dtype=bool)
            for d in range(n_det):
                best, m = min(threshold, 1 - 1e-10), -1
                for g in range(n_gt):
                    if taken[g] and not crowd[g]:
                        continue
                    if m > -1 and not ig[m] and ig[g]:
                        break
                    if sub[d, g] < best:
                        continue
                    best, m = sub[d, g], g
                if m == -1:
                    if det_out[d]:
                        outcome[a, t, d] = _IGNORED
                    continue
                taken[m] = True
                outcome[a, t, d] = _IGNORED if ig[m] else _TP
    return outcome, counted


# --- input checks -----------------------------------------------------------------------------------------------


def _check_inputs(
    ground_truth: Sequence[TrackingItem],
    predictions: Mapping[str, Sequence[VideoInstance]],
    categories: Sequence[str],
    novel: Collection[str],
) -> tuple[list[str], set[str]]:
    names = list(categories)
    if len(set(names)) != len(names):
        raise VideoadaptError("video segmentation: the category list names a category twice")
    known = set(names)
    novel_set = set(novel)
    unknown = sorted(novel_set - known)
    if unknown:
        raise VideoadaptError(f"video segmentation: novel categories {unknown} are not among the categories")
    videos: set[str] = set()
    for item in ground_truth:
        vid = item.video.video_id
        if vid in videos:
            raise VideoadaptError(f"video {vid!r} appears twice in the ground truth")
        videos.add(vid)
        for track in item.tracks:
            where = f"video {vid!r}, object {track.track_id}"
            if track.category not in known:
                raise VideoadaptError(f"{where}: unknown category {track.category!r}")
            if track.masks is None:
                raise VideoadaptError(f"{where}: no masks (video instance segmentation needs them)")
            if len(track.masks) != len(track.frames):
                raise VideoadaptError(f"{where}: {len(track.masks)} masks for {len(track.frames)} frames")
            for frame in track.frames:
                if not 0 <= frame < item.num_frames:
                    raise VideoadaptError(f"{where}: a mask on frame {frame}; the video has {item.num_frames}")
    for vid in predictions:
        if vid not in videos:
            raise VideoadaptError(f"video {vid!r} is in the predictions but not in the ground truth")
    for item in ground_truth:
        vid = item.video.video_id
        for k, inst in enumerate(predictions.get(vid, ())):
            where = f"video {vid!r}, predicted instance {k}"
            if not isinstance(inst, VideoInstance):
                raise VideoadaptError(f"{where}: expected a VideoInstance, got {type(inst).__name__}")
            if inst.category not in known:
                raise VideoadaptError(f"{where}: unknown category {inst.category!r}")
            if not isinstance(inst.score, (int, float)) or not np.isfinite(inst.score):
                raise VideoadaptError(f"{where}: score must be a finite number, got {inst.score!r}")
            if not isinstance(inst.masks, Mapping):
                raise VideoadaptError(f"{where}: masks must map frame numbers to RLEs")
            for frame in inst.masks:
                if not isinstance(frame, (int, np.integer)) or not 0 <= frame < item.num_frames:
                    raise VideoadaptError(f"{where}: a mask on frame {frame!r}; the video has {item.num_frames}")
    return names, novel_set


def _cells(
    ground_truth: Sequence[TrackingItem],
    predictions: Mapping[str, Sequence[VideoInstance]],
    categories: Sequence[str],
) -> list[dict[str, _Cell]]:
    """Per video (ground-truth order), per category present in it: the matched :class:`_Cell`."""
    out = []
    for item in ground_truth:
        frames = item.evaluated_frames
        frame_set = set(frames)
        cells: dict[str, _Cell] = {}
        for category in categories:
            gts = [t for t in item.tracks if t.category == category]
            indexed = [(k, p) for k, p in enumerate(predictions.get(item.video.video_id, ())) if p.category == category]
            if not gts and not indexed:
                continue
            order = np.argsort([-float(p.score) for _, p in indexed], kind="mergesort")[: MAX_DETECTIONS[-1]]
            dets = [indexed[i][1] for i in order]
            numbers = [indexed[i][0] for i in order]
            vid, size = item.video.video_id, (item.height, item.width)
            # Masks outside the evaluated frames are never read (nor checked).
            det_masks = [
                {
                    int(f): check_rle(m, *size, f"video {vid!r}, predicted instance {k}, frame {f}")
                    for f, m in d.masks.items()
                    if f in frame_set
                }
                for k, d in zip(numbers, dets, strict=True)
            ]
            gt_masks = [
                {
                    f: check_rle(m, *size, f"video {vid!r}, object {t.track_id}, frame {f}")
                    for f, m in zip(t.frames, t.masks or (), strict=True)
                    if f in frame_set
                }
                for t in gts
            ]
            ious = _video_iou(det_masks, gt_masks, frames)
            gt_area = np.array([_mean_area(m, frames) for m in gt_masks])
            det_area = np.array([_mean_area(m, frames) for m in det_masks])
            crowd = np.array([t.iscrowd for t in gts], dtype=bool)
            outcome, counted = _match(ious, gt_area, crowd, det_area)
            scores = np.array([float(d.score) for d in dets])
            cells[category] = _Cell(scores, outcome, counted)
        out.append(cells)
    return out


# --- the exact evaluation ---------------------------------------------------------------------------------------


def _pr_at_recalls(tp: np.ndarray, fp: np.ndarray, counted: float) -> np.ndarray:
    """101-point interpolated precision of one ranked list (cumulative TP/FP per rank), as ``accumulate``."""
    q = np.zeros(len(RECALL_THRESHOLDS))
    if len(tp) == 0:
        return q
    rc = tp / counted
    pr = tp / (fp + tp + _EPS)
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
    inside = idx < len(pr)
    q[inside] = pr[idx[inside]]
    return q


def _category_curves(cells: list[dict[str, _Cell]], category: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``precision [A, T, R]``, ``recall [A, T, M]`` (NaN where no ground truth counts) and ``counted [A]``."""
    present = [c[category] for c in cells if category in c]
    n_area, n_thr = len(AREA_RANGES), len(IOU_THRESHOLDS)
    precision = np.full((n_area, n_thr, len(RECALL_THRESHOLDS)), np.nan)
    recall = np.full((n_area, n_thr, len(MAX_DETECTIONS)), np.nan)
    counted = np.sum([c.gt_counted for c in present], axis=0) if present else np.zeros(n_area)
    for m, max_det in enumerate(MAX_DETECTIONS):
        scores = np.concatenate([c.scores[:max_det] for c in present]) if present else np.zeros(0)
        rank = np.argsort(-scores, kind="mergesort")
        outcome = (
            np.concatenate([c.outcome[:, :, :max_det] for c in present], axis=2)[:, :, rank]
            if present
            else np.zeros((n_area, n_thr, 0))
        )
        tps = np.cumsum(outcome == _TP, axis=2).astype(float)
        fps = np.cumsum(outcome == _FP, axis=2).astype(float)
        for a in range(n_area):
            if counted[a] == 0:
                continue
            for t in range(n_thr):
                recall[a, t, m] = tps[a, t, -1] / counted[a] if tps.shape[2] else 0.0
                if max_det == MAX_DETECTIONS[-1]:
                    precision[a, t] = _pr_at_recalls(tps[a, t], fps[a, t], counted[a])
    return precision, recall, counted


def _mean_valid(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return 100.0 * float(np.mean(finite)) if finite else float("nan")


def vis_metrics(
    ground_truth: Sequence[TrackingItem],
    predictions: Mapping[str, Sequence[VideoInstance]],
    categories: Sequence[str],
    novel: Collection[str] = (),
) -> dict[str, float]:
    """YouTube-VIS ``ap, ap50, ap75, aps, apm, apl, ar1, ar10`` (percent; NaN where the reference gives -1), and
    with ``novel`` categories LV-VIS's ``ap_base`` / ``ap_novel``. Conventions in the module docstring.

    Args:
        ground_truth: one :class:`TrackingItem` per video, with masks on its tracks.
        predictions: video id -> that video's predicted instances (a video left out has none).
        categories: every category name (``TaskData.classes``); those without ground truth are skipped.
        novel: the categories held out of adaptation.
    """
    names, novel_set = _check_inputs(ground_truth, predictions, categories, novel)
    cells = _cells(ground_truth, predictions, names)
    per_category = {c: _category_curves(cells, c) for c in names}
    area_index = {k: i for i, k in enumerate(AREA_RANGES)}

    def ap(area: str = "all", threshold: int | None = None, members: Collection[str] | None = None) -> float:
        values = []
        for c in names if members is None else [c for c in names if c in members]:
            p = per_category[c][0][area_index[area]]
            values.append(float(np.mean(p if threshold is None else p[threshold])))
        return _mean_valid(values)

    def ar(m: int) -> float:
        return _mean_valid([float(np.mean(per_category[c][1][0, :, m])) for c in names])

    out = {
        "ap": ap(),
        "ap50": ap(threshold=0),
        "ap75": ap(threshold=5),
        "aps": ap("s"),
        "apm": ap("m"),
        "apl": ap("l"),
        "ar1": ar(0),
        "ar10": ar(1),
    }
    if novel_set:
        out["ap_base"] = ap(members=[c for c in names if c not in novel_set])
        out["ap_novel"] = ap(members=novel_set)
    return out


# --- additive per-video statistics ------------------------------------------------------------------------------


def vis_statistics(
    ground_truth: Sequence[TrackingItem],
    predictions: Mapping[str, Sequence[VideoInstance]],
    categories: Sequence[str],
    novel: Collection[str] = (),
    bins: int | None = None,
    area_ranges: bool = False,
) -> dict[str, np.ndarray]:
    """Per-video additive statistics, one row per video in ``ground_truth`` order (see the module docstring):

    * ``videos`` ``[N, 1]``: ones; ``novel`` ``[N, C]``: each row the novel flag of every category (constant, so
      the sums say which categories are novel);
    * ``gt`` ``[N, A, C]`` flattened: ground-truth objects counted (not ignored) per area range and category;
    * ``hits`` ``[N, C, T, 3]`` flattened: TPs among the first 1 / 10 / 100 predictions (area all), for AR;
    * ``tp``, ``fp`` ``[N, A, C, T, B]`` flattened: TPs and FPs per score interval of the full ranking.

    ``A`` is 1 (area all) unless ``area_ranges`` (then 4: all, s, m, l, and ``aps/apm/apl`` come from sums too).
    ``B`` is ``bins`` when given, else the largest number of runs of any category and threshold (every AP from
    sums exact) capped at :data:`MAX_BINS`.
    """
    if bins is not None and int(bins) < 1:
        raise VideoadaptError(f"video segmentation statistics: bins must be at least 1, got {bins}")
    names, novel_set = _check_inputs(ground_truth, predictions, categories, novel)
    cells = _cells(ground_truth, predictions, names)
    n, n_cat, n_thr = len(ground_truth), len(names), len(IOU_THRESHOLDS)
    n_area = len(AREA_RANGES) if area_ranges else 1
    gt = np.zeros((n, n_area, n_cat))
    hits = np.zeros((n, n_cat, n_thr, len(MAX_DETECTIONS)))
    ranked: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
    for c, category in enumerate(names):
        rows = [(i, cell[category]) for i, cell in enumerate(cells) if category in cell]
        for i, cell in rows:
            gt[i, :, c] = cell.gt_counted[:n_area]
            for m, max_det in enumerate(MAX_DETECTIONS):
                hits[i, c, :, m] = np.sum(cell.outcome[0, :, :max_det] == _TP, axis=-1)
        if not rows:
            continue
        video = np.concatenate([np.full(len(cell.scores), i) for i, cell in rows])
        scores = np.concatenate([cell.scores for _, cell in rows])
        rank = np.argsort(-scores, kind="mergesort")
        outcome = np.concatenate([cell.outcome for _, cell in rows], axis=2)[:, :, rank]
        video = video[rank]
        for a in range(n_area):
            for t in range(n_thr):
                kept = outcome[a, t] != _IGNORED
                if np.any(kept):
                    ranked[a, c, t] = outcome[a, t][kept], video[kept]
    if bins is None:
        runs = [int(np.sum(kinds[1:] != kinds[:-1])) + 1 for kinds, _ in ranked.values()]
        bins = min(max(runs, default=1), MAX_BINS)
    tp = np.zeros((n, n_area, n_cat, n_thr, int(bins)))
    fp = np.zeros_like(tp)
    for (a, c, t), (kinds, owners) in ranked.items():
        where = _bin_of_ranks(kinds, int(bins))
        np.add.at(tp[:, a, c, t], (owners[kinds == _TP], where[kinds == _TP]), 1.0)
        np.add.at(fp[:, a, c, t], (owners[kinds == _FP], where[kinds == _FP]), 1.0)
    novel_row = np.array([[float(c in novel_set) for c in names]])
    return {
        "videos": np.ones((n, 1)),
        "novel": np.repeat(novel_row, n, axis=0),
        "gt": gt.reshape(n, -1),
        "hits": hits.reshape(n, -1),
        "tp": tp.reshape(n, -1),
        "fp": fp.reshape(n, -1),
    }


def _bin_of_ranks(kinds: np.ndarray, bins: int) -> np.ndarray:
    """The score interval of each ranked (non-ignored) prediction: one per run of equal outcomes when there are at
    most ``bins`` runs, else runs merged into ``bins`` groups of about equal size."""
    run = np.concatenate([[0], np.cumsum(kinds[1:] != kinds[:-1])])
    runs = int(run[-1]) + 1
    if runs <= bins:
        return run
    starts = np.flatnonzero(np.concatenate([[True], kinds[1:] != kinds[:-1]]))
    group = np.minimum(bins - 1, (bins * starts) // len(kinds))
    return group[run]


def _layout(sums: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
    n_cat = sums["novel"].shape[-1]
    n_area = sums["gt"].shape[-1] // max(n_cat, 1)
    bins = sums["tp"].shape[-1] // max(n_area * n_cat * len(IOU_THRESHOLDS), 1)
    return n_cat, n_area, bins


def _interpolated(tp: np.ndarray, fp: np.ndarray, counted: np.ndarray, tp_first: bool) -> np.ndarray:
    """Mean 101-point precision over recall points ``[..., A, C, T]`` from interval counts ``[..., A, C, T, B]``.
    ``tp_first``: also put a point after each interval's TPs and before its FPs (the upper bound)."""
    ctp, cfp = np.cumsum(tp, axis=-1), np.cumsum(fp, axis=-1)
    if tp_first:
        before = cfp - fp  # FPs before the interval
        ctp = np.stack([ctp, ctp], axis=-1).reshape(*ctp.shape[:-1], -1)
        cfp = np.stack([before, cfp], axis=-1).reshape(*cfp.shape[:-1], -1)
    denominator = counted[..., None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = ctp / np.where(denominator > 0, denominator, 1.0)
    pr = ctp / (cfp + ctp + _EPS)
    env = np.flip(np.maximum.accumulate(np.flip(pr, -1), axis=-1), -1)
    total = np.zeros(pr.shape[:-1])
    points = pr.shape[-1]
    for r in RECALL_THRESHOLDS:
        idx = np.sum(rc < r, axis=-1)  # first point whose recall reaches r (searchsorted 'left')
        value = np.take_along_axis(env, np.minimum(idx, points - 1)[..., None], axis=-1)[..., 0]
        total += np.where(idx < points, value, 0.0)
    return total / len(RECALL_THRESHOLDS)


def _class_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * np.sum(np.where(valid, values, 0.0), axis=-1) / np.sum(valid, axis=-1)


def _from_sums(sums: Mapping[str, np.ndarray], tp_first: bool) -> dict[str, np.ndarray]:
    n_cat, n_area, bins = _layout(sums)
    n_thr = len(IOU_THRESHOLDS)
    lead = sums["videos"].shape[:-1]
    counted = sums["gt"].reshape(*lead, n_area, n_cat)
    tp = sums["tp"].reshape(*lead, n_area, n_cat, n_thr, bins)
    fp = sums["fp"].reshape(*lead, n_area, n_cat, n_thr, bins)
    hits = sums["hits"].reshape(*lead, n_cat, n_thr, len(MAX_DETECTIONS))
    per_threshold = _interpolated(tp, fp, counted, tp_first)  # [..., A, C, T]
    valid = counted > 0  # [..., A, C]
    out = {
        "ap": _class_mean(per_threshold.mean(-1)[..., 0, :], valid[..., 0, :]),
        "ap50": _class_mean(per_threshold[..., 0, :, 0], valid[..., 0, :]),
        "ap75": _class_mean(per_threshold[..., 0, :, 5], valid[..., 0, :]),
    }
    if n_area == len(AREA_RANGES):
        for a, key in ((1, "aps"), (2, "apm"), (3, "apl")):
            out[key] = _class_mean(per_threshold.mean(-1)[..., a, :], valid[..., a, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = hits / np.where(counted[..., 0, :, None, None] > 0, counted[..., 0, :, None, None], 1.0)
    for m, key in ((0, "ar1"), (1, "ar10")):
        out[key] = _class_mean(recall[..., m].mean(-1), valid[..., 0, :])
    novel = sums["novel"] > 0.5 * sums["videos"]
    if np.any(novel):
        ap_c = per_threshold.mean(-1)[..., 0, :]
        out["ap_base"] = _class_mean(ap_c, valid[..., 0, :] & ~novel)
        out["ap_novel"] = _class_mean(ap_c, valid[..., 0, :] & novel)
    return out


def vis_metrics_from_sums(sums: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The metrics from column sums of :func:`vis_statistics`, vectorised over leading axes (``[..., K] ->
    [...]``). ``ar1``, ``ar10`` are exact; the APs are exact while every category, threshold (and area range) has
    at most ``bins`` runs of TPs and FPs in its ranking, else lower bounds (module docstring). ``aps/apm/apl`` only
    with ``area_ranges=True``; ``ap_base``/``ap_novel`` when some category is novel."""
    return _from_sums(sums, tp_first=False)


def vis_ap_bounds_from_sums(sums: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(lower, upper)``: the AP keys of :func:`vis_metrics_from_sums` read at interval ends (lower) and with every
    interval's TPs ranked before its FPs (upper); the exact AP lies between them (equal when no runs were merged)."""
    return _from_sums(sums, tp_first=False), _from_sums(sums, tp_first=True)
