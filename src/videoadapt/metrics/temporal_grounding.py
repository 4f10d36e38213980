"""Temporal grounding metrics: Charades-STA R@n,IoU=m and mIoU; QVHighlights moment retrieval and highlight detection.

**Temporal IoU** of windows ``[s1, e1]`` and ``[s2, e2]`` (seconds, or any unit; continuous, no +1) is
``max(0, min(e1, e2) - max(s1, s2)) / (max(e1, e2) - min(s1, s2))``. 2D-TAN and Moment-DETR divide by that hull
(or by ``len1 + len2 - inter``); the two agree whenever the windows overlap, and the IoU is 0 otherwise, so this is
the ordinary IoU. Windows that merely touch have IoU 0.

Charades-STA (:func:`charades_sta_metrics`) follows 2D-TAN (``lib/core/eval.py``, ``eval``):

* Each query has one GT window and a ranked list of candidate windows, **best first** (the list order is the
  ranking; a third element, a score, is ignored — 2D-TAN ranks by score and applies NMS before this step, so give
  the list after your own NMS). R@n,IoU=m = percentage of queries for which **any of the first n candidates has
  IoU strictly greater than m** (2D-TAN: ``(overlap > t)[:r].any()``; an IoU of exactly 0.5 does not count for
  m = 0.5). A query with fewer than n candidates uses those it has.
* mIoU = mean over queries of the **top-1** candidate's IoU (as VSLNet, Moment-DETR and most later papers report
  it). 2D-TAN's own script averages the three largest IoUs among its top-n candidates after NMS; we do *not*
  compute that variant.
* An empty candidate list scores IoU 0 and misses every R@n (2D-TAN would crash).

QVHighlights moment retrieval (:func:`moment_retrieval_metrics`) follows Moment-DETR's standalone evaluator
(``standalone_eval/eval.py`` and ``utils.py`` in ``jayleicn/moment_detr``; its AP is MMAction2's/ActivityNet's
``compute_average_precision_detection``):

* Thresholds are 0.5, 0.55, ..., 0.95 (``np.linspace(0.5, 0.95, 10)`` rounded to 2 decimals), and a prediction
  matches at threshold t when its **IoU >= t (inclusive)** — unlike Charades-STA above.
* **R1@t**: the *first listed* window of a query (Moment-DETR's ``pred_relevant_windows[0]``: the list order, not
  the scores, picks it) is compared with the GT window it overlaps most; a hit when that IoU >= t. With several GT
  windows this is "max IoU over the GT windows >= t".
* **AP per query and threshold**: only the **first 10 listed** windows are kept (``max_pred_windows=10``, cut
  before sorting), then sorted by **descending score, ties keeping list order** (Python's stable ``list.sort``).
  Going down that order, a prediction is a true positive when some not-yet-matched GT window has IoU >= t: it
  takes the one with the highest IoU among those still free. Ties in IoU between GT windows: Moment-DETR walks
  ``argsort()[::-1]`` with NumPy's default sort, whose order on ties is unspecified; we use a stable sort, so
  **among GT windows with equal IoU the higher index is tried first**. Every GT window can be matched once; a
  duplicate of a matched prediction is a false positive. Precision/recall after each prediction (recall's
  denominator = number of GT windows of the query); AP = VOC-2011 all-point interpolation: the sum over true
  positives of ``1/#GT x`` the maximum precision at that rank or later. A query's AP is 0 at a threshold where
  nothing matches.
* **mAP@t** = mean over queries of the AP at t (every query weighs the same, however many GT windows it has);
  **mAP** = mean of the ten mAP@t. Moment-DETR rounds each number to 2 decimals; we do not round.
* Moment-DETR requires the query ids of predictions and GT to be equal; so do we. An **empty prediction list** is
  a miss (R1 0, AP 0). Moment-DETR would crash in R1 and leave the query out of the mAP mean; we count it.
* ``gt_length_range=(lo, hi)`` reproduces its short/middle/long splits: keep only GT windows with
  ``lo < end - start <= hi``, and only queries that keep at least one (Moment-DETR's ``get_data_by_range``; it
  uses (0, 10], (10, 30], (30, 150]).

QVHighlights highlight detection (:func:`highlight_detection_metrics`) follows the same evaluator's
``eval_highlight`` (its AP is video2gif's ``get_ap`` on sklearn's ``precision_recall_curve``):

* GT per query: a ``[num_clips, num_annotators]`` array of saliency labels (QVHighlights: 2-second clips, 3
  annotators, labels 0-4, clips outside ``relevant_clip_ids`` are 0 — :func:`qvhighlights_saliency_labels` builds
  it as Moment-DETR's ``mk_gt_scores`` does, with ``int(duration / 2)`` clips). A clip is positive for an
  annotator when its label is **>= min_score** (Moment-DETR reports min 2 "Fair", 3 "Good" and 4 "VeryGood"; the
  leaderboard's HL numbers are **VeryGood, min_score=4**, our default).
* **HIT@1**: the clip with the highest predicted score (``np.argmax``: ties go to the **earliest** clip) is a hit
  when it is positive for **at least one** annotator (max over annotators); a predicted index beyond the GT clips
  is a miss. Percentage of queries.
* **mAP**: for each (query, annotator) an AP, then the mean over all of them (= mean over queries of the mean over
  annotators when every query has the same annotators). Predicted scores are cut, or padded with zeros, to the
  number of GT clips (as Moment-DETR does). AP: if every clip is positive it is 1, if none is, 0 (whatever the
  scores); otherwise, sweeping a threshold down through the **distinct** predicted scores (clips with tied scores
  enter together), AP = the **unweighted mean over the distinct recall values reached** of the interpolated
  precision (the best precision at that recall or higher). Without ties this is the usual interpolated AP; with
  ties a jump over several positives counts once.
* Values are percentages (0-100); Moment-DETR rounds to 2 decimals, we do not.

Bad input — a reversed, zero-length or negative window, NaN or infinite values, an unknown or missing query id —
raises :class:`~videoadapt.errors.VideoadaptError` naming the query.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from videoadapt.errors import VideoadaptError

CONVENTIONS = {
    "temporal_iou": "intersection / union of continuous windows; touching windows have IoU 0",
    "charades_sta": "2D-TAN eval: R@n,IoU=m = any of the first n listed candidates with IoU > m (strict); "
    "mIoU = mean top-1 IoU; empty candidate list = IoU 0",
    "qvhighlights_mr": "Moment-DETR standalone_eval: IoU >= t (inclusive), t in 0.5:0.05:0.95; R1 = first listed "
    "window vs. its best GT window; AP on the first 10 listed windows sorted by score (stable), greedy matching to "
    "the free GT window of highest IoU, VOC-2011 all-point interpolation, mean over queries; empty list = miss",
    "qvhighlights_hl": "Moment-DETR eval_highlight: positive = label >= min_score (4, VeryGood); HIT@1 = argmax "
    "clip positive for any annotator; mAP = mean over (query, annotator) of the AP averaged over distinct recall "
    "levels",
    "units": "percent",
}

CHARADES_THRESHOLDS = (0.3, 0.5, 0.7)
MR_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95, as Moment-DETR rounds
MAX_PRED_WINDOWS = 10


def temporal_iou(window: Sequence[float], other: Sequence[float]) -> float:
    """The IoU of two ``[start, end]`` windows (continuous; 0 when they do not overlap or only touch)."""
    return float(_iou_matrix(np.asarray([window[:2]], float), np.asarray([other[:2]], float))[0, 0])


def charades_sta_metrics(
    predictions: Mapping[Hashable, Sequence[Sequence[float]]],
    ground_truth: Mapping[Hashable, Sequence[float]],
    thresholds: Sequence[float] = CHARADES_THRESHOLDS,
    ranks: Sequence[int] = (1,),
) -> dict[str, float]:
    """Charades-STA R@n,IoU=m and mIoU with 2D-TAN's conventions (strict ``IoU > m``; see the module docstring).

    Args:
        predictions: query id -> candidate windows ``[start, end]`` or ``[start, end, score]``, best first.
        ground_truth: query id -> the GT window ``[start, end]``. Must have the same query ids as ``predictions``.
        thresholds: the IoU thresholds m.
        ranks: the n of R@n; pass ``(1, 5)`` for R5 when several candidates are given.

    Returns:
        ``{"R1@0.3": ..., "R1@0.5": ..., "R1@0.7": ..., "mIoU": ...}`` (plus ``R5@...`` for n = 5), percent.
    """
    _same_queries(predictions, ground_truth)
    if not ranks or any(int(n) < 1 for n in ranks):
        raise VideoadaptError(f"ranks must be positive integers, got {tuple(ranks)}")
    thresholds = _check_thresholds(thresholds)
    hits = {(n, t): 0 for n in ranks for t in thresholds}
    top1 = []
    for qid, gt in ground_truth.items():
        gt_window = _windows([gt], qid, "ground-truth window", with_score=False)
        candidates = _windows(predictions[qid], qid, "predicted window", with_score=None)
        ious = _iou_matrix(candidates[:, :2], gt_window)[:, 0] if len(candidates) else np.zeros(0)
        top1.append(float(ious[0]) if len(ious) else 0.0)
        for n in ranks:
            for t in thresholds:
                hits[(n, t)] += bool((ious[: int(n)] > t).any())
    count = len(ground_truth)
    result = {f"R{n}@{t:g}": 100.0 * hits[(n, t)] / count for n in ranks for t in thresholds}
    result["mIoU"] = 100.0 * float(np.mean(top1))
    return result


def moment_retrieval_metrics(
    predictions: Mapping[Hashable, Sequence[Sequence[float]]],
    ground_truth: Mapping[Hashable, Sequence[Sequence[float]]],
    max_pred_windows: int | None = MAX_PRED_WINDOWS,
    gt_length_range: tuple[float, float] | None = None,
) -> dict[str, float]:
    """QVHighlights moment retrieval with Moment-DETR's conventions (inclusive ``IoU >= t``; module docstring).

    Args:
        predictions: query id -> windows ``[start, end, score]``, in the model's order (the first is R1's).
        ground_truth: query id -> one or more GT windows ``[start, end]``. Same query ids as ``predictions``.
        max_pred_windows: the AP uses the first this-many listed windows (Moment-DETR: 10; None = all).
        gt_length_range: ``(lo, hi)`` keeps GT windows with ``lo < length <= hi`` and the queries that keep one.

    Returns:
        ``R1@0.5`` ... ``R1@0.95``, ``mAP@0.5`` ... ``mAP@0.95`` and ``mAP`` (their mean), percent. The usual
        table columns are R1@0.5, R1@0.7, mAP@0.5, mAP@0.75 and mAP.
    """
    _same_queries(predictions, ground_truth)
    if max_pred_windows is not None and int(max_pred_windows) < 1:
        raise VideoadaptError(f"max_pred_windows must be a positive integer or None, got {max_pred_windows}")
    thresholds = np.asarray(MR_THRESHOLDS)
    r1_hits, aps = [], []
    for qid, gt in ground_truth.items():
        gt_windows = _windows(gt, qid, "ground-truth window", with_score=False)
        if gt_length_range is not None:
            lo, hi = gt_length_range
            lengths = gt_windows[:, 1] - gt_windows[:, 0]
            gt_windows = gt_windows[(lengths > lo) & (lengths <= hi)]
            if not len(gt_windows):
                continue
        elif not len(gt_windows):
            raise VideoadaptError(f"query {qid!r}: no ground-truth window")
        pred = _windows(predictions[qid], qid, "predicted window", with_score=True)
        if not len(pred):
            r1_hits.append(np.zeros(len(thresholds), bool))
            aps.append(np.zeros(len(thresholds)))
            continue
        best = _iou_matrix(pred[:1, :2], gt_windows).max()
        r1_hits.append(best >= thresholds)
        kept = pred[:max_pred_windows] if max_pred_windows is not None else pred
        aps.append(np.array([_detection_ap(kept, gt_windows, t) for t in thresholds]))
    if not aps:
        raise VideoadaptError(f"no query has a ground-truth window of length in {gt_length_range}")
    recall = 100.0 * np.mean(r1_hits, axis=0)
    mean_ap = 100.0 * np.mean(aps, axis=0)
    result = {f"R1@{t:g}": float(r) for t, r in zip(MR_THRESHOLDS, recall, strict=True)}
    result.update({f"mAP@{t:g}": float(a) for t, a in zip(MR_THRESHOLDS, mean_ap, strict=True)})
    result["mAP"] = float(mean_ap.mean())
    return result


def highlight_detection_metrics(
    predictions: Mapping[Hashable, Sequence[float]],
    ground_truth: Mapping[Hashable, np.ndarray],
    min_score: float = 4,
) -> dict[str, float]:
    """QVHighlights highlight detection ``mAP`` and ``HIT@1`` with Moment-DETR's conventions (module docstring).

    Args:
        predictions: query id -> one saliency score per clip.
        ground_truth: query id -> ``[num_clips, num_annotators]`` labels (see :func:`qvhighlights_saliency_labels`).
        min_score: a clip is positive for an annotator when its label is >= this (4 = "VeryGood").

    Returns:
        ``{"mAP": ..., "HIT@1": ...}`` in percent.
    """
    _same_queries(predictions, ground_truth)
    aps, hits = [], []
    for qid, labels in ground_truth.items():
        labels = np.asarray(labels, dtype=float) if _is_numeric(labels) else None
        if labels is None or labels.ndim != 2 or 0 in labels.shape:
            raise VideoadaptError(f"query {qid!r}: saliency labels must be a non-empty [clips, annotators] array")
        if not np.isfinite(labels).all():
            raise VideoadaptError(f"query {qid!r}: saliency labels contain NaN or infinity")
        scores = np.asarray(predictions[qid], dtype=float) if _is_numeric(predictions[qid]) else None
        if scores is None or scores.ndim != 1 or not len(scores):
            raise VideoadaptError(f"query {qid!r}: predicted saliency must be a non-empty list of per-clip scores")
        if not np.isfinite(scores).all():
            raise VideoadaptError(f"query {qid!r}: predicted saliency scores contain NaN or infinity")
        positive = labels >= min_score
        top = int(np.argmax(scores))
        hits.append(top < len(positive) and bool(positive[top].any()))
        fitted = np.zeros(len(positive))  # cut or zero-pad to the GT clips, as Moment-DETR
        fitted[: min(len(scores), len(positive))] = scores[: len(positive)]
        aps.append([_ranking_ap(positive[:, a], fitted) for a in range(positive.shape[1])])
    return {"mAP": 100.0 * float(np.mean([np.mean(a) for a in aps])), "HIT@1": 100.0 * float(np.mean(hits))}


def qvhighlights_saliency_labels(
    duration: float,
    relevant_clip_ids: Sequence[int],
    saliency_scores: Sequence[Sequence[float]],
    clip_length: float = 2.0,
    query: Hashable = None,
) -> np.ndarray:
    """A QVHighlights annotation's ``[int(duration / clip_length), annotators]`` label array (Moment-DETR's
    ``mk_gt_scores``): zeros, with ``saliency_scores[i]`` at row ``relevant_clip_ids[i]``."""
    ids = np.asarray(relevant_clip_ids, dtype=np.int64).reshape(-1)
    scores = np.asarray(saliency_scores, dtype=float)
    if scores.ndim != 2 or len(scores) != len(ids):
        raise VideoadaptError(f"query {query!r}: need one row of saliency scores per relevant clip id")
    num_clips = int(duration / clip_length)
    bad = ids[(ids < 0) | (ids >= num_clips)]
    if bad.size:
        raise VideoadaptError(f"query {query!r}: relevant clip id {int(bad[0])} is outside the {num_clips} clips")
    labels = np.zeros((num_clips, scores.shape[1]))
    labels[ids] = scores
    return labels


def _detection_ap(pred: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    """One query's AP at one IoU threshold: Moment-DETR's (ActivityNet's) greedy matching + VOC-2011 AP."""
    order = np.argsort(-pred[:, 2], kind="stable")  # descending score, ties keep list order
    ious = _iou_matrix(pred[order, :2], gt)
    taken = np.zeros(len(gt), bool)
    tp = np.zeros(len(order), bool)
    for k, row in enumerate(ious):
        for j in np.argsort(row, kind="stable")[::-1]:  # highest IoU first; equal IoU: higher index first
            if row[j] < threshold:
                break
            if not taken[j]:
                taken[j] = tp[k] = True
                break
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this rank or later
    return float(envelope[tp].sum() / len(gt))


def _ranking_ap(positive: np.ndarray, scores: np.ndarray) -> float:
    """video2gif ``get_ap`` (interpolated, not 11-point): mean over distinct recall levels of interpolated
    precision, thresholds at the distinct scores."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return 0.0
    if n_pos == len(positive):
        return 1.0
    levels = np.unique(scores)[::-1]  # distinct thresholds, high to low
    tp = np.array([(positive & (scores >= t)).sum() for t in levels])
    selected = np.array([(scores >= t).sum() for t in levels])
    precision = tp / selected
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or higher
    new_level = np.diff(np.concatenate([[0], tp])) > 0  # the first threshold reaching each recall value
    return float(envelope[new_level].mean())


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    hull = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return inter / hull


def _same_queries(predictions: Mapping, ground_truth: Mapping) -> None:
    if not isinstance(predictions, Mapping) or not isinstance(ground_truth, Mapping):
        raise VideoadaptError("predictions and ground truth must be mappings from query id to their values")
    if not ground_truth:
        raise VideoadaptError("the ground truth has no query")
    for qid in predictions:
        if qid not in ground_truth:
            raise VideoadaptError(f"query {qid!r} is in the predictions but not in the ground truth")
    for qid in ground_truth:
        if qid not in predictions:
            raise VideoadaptError(f"query {qid!r} of the ground truth has no prediction")


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(t) for t in thresholds)
    if not values or any(not 0.0 <= t < 1.0 for t in values):
        raise VideoadaptError(f"IoU thresholds must be in [0, 1), got {tuple(thresholds)}")
    return values


def _is_numeric(value: object) -> bool:
    try:
        return np.asarray(value).dtype.kind in "iufb"
    except (ValueError, TypeError):  # ragged
        return False


def _windows(items: Sequence, qid: Hashable, what: str, with_score: bool | None) -> np.ndarray:
    """``[N, 2]`` or ``[N, 3]`` float array of checked windows; ``with_score=None`` accepts both (score dropped)."""
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, np.ndarray)):
        raise VideoadaptError(f"query {qid!r}: expected a list of windows, got {type(items).__name__}")
    width = 3 if with_score else 2
    rows = []
    for i, item in enumerate(items):
        values = np.asarray(item, dtype=float) if _is_numeric(item) else None
        ok = (
            values is not None
            and values.ndim == 1
            and (len(values) in (2, 3) if with_score is None else len(values) == width)
        )
        if not ok:
            shape = "[start, end, score]" if with_score else "[start, end]"
            raise VideoadaptError(f"query {qid!r}: {what} {i} must be {shape}, got {item!r}")
        if not np.isfinite(values).all():
            raise VideoadaptError(f"query {qid!r}: {what} {i} {values.tolist()} contains NaN or infinity")
        start, end = values[0], values[1]
        if start < 0:
            raise VideoadaptError(f"query {qid!r}: {what} {i} starts before 0: {values.tolist()}")
        if end <= start:
            raise VideoadaptError(f"query {qid!r}: {what} {i} is reversed or empty (end <= start): {values.tolist()}")
        rows.append(values[:width])
    return np.asarray(rows, dtype=float).reshape(-1, width)
