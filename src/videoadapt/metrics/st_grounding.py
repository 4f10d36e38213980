"""Spatio-temporal video grounding metrics (VidSTG, HC-STVG), following TubeDETR's evaluators.

Reference: ``datasets/vidstg_eval.py`` (``VidSTGiouEvaluator.evaluate``) and ``datasets/hcstvg_eval.py`` in
``antoyang/TubeDETR``; box IoU from its ``util/box_ops.py`` (``np_box_iou``). Conventions, as implemented here:

* **Frames.** Each video has a set of *evaluated frames* (TubeDETR: the frames it samples at 5 fps, at most 200;
  any frame ids you evaluate on). The GT tube and the predicted tube are half-open frame intervals
  ``[start, end)`` (``start <= f < end``, TubeDETR's ``tube_start_frame``/``tube_end_frame`` and ``sted``).
* **tIoU** is computed on the interval ends themselves, not on the evaluated frames:
  ``(min(e) - max(s)) / ((e_gt - s_gt) + (e_pred - s_pred) - (min(e) - max(s)))``, 0 when ``min(e) <= max(s)``.
* **Boxes** are ``[x1, y1, x2, y2]`` in continuous coordinates (TubeDETR turns VidSTG's/HC-STVG's ``x, y, w, h``
  into ``x2 = x + w``): area = ``(x2 - x1) * (y2 - y1)``, **no +1**, not inclusive pixels. One box per frame.
* **vIoU** = ``(1 / |S_u|) * sum over f in S_i of IoU(pred box f, GT box f)``, with TubeDETR's (corrected)
  denominator: ``S_u`` = the evaluated frames with ``min(s_gt, s_pred) <= f < max(e_gt, e_pred)`` and ``S_i`` = the
  evaluated frames with ``max(s) <= f < min(e)`` (which all lie in the GT tube). ``S_u`` is the span of the two
  tubes; it equals their union whenever ``S_i`` is non-empty, and otherwise vIoU is 0 anyway. An empty ``S_u``
  gives 0 (TubeDETR divides by ``max(|S_u|, 1)``). Frames in ``S_u`` outside ``S_i`` add 0 to the sum.
* **gt_vIoU** (TubeDETR's ``gt_viou``, spatial grounding given the GT moment): the mean box IoU over the evaluated
  frames of the GT tube (0 if there is none).
* **vIoU@R** = percentage of videos with vIoU **strictly greater** than R (TubeDETR: ``viou > thresh``); same for
  ``gt_vIoU@R``. m_tIoU, m_vIoU, gt_vIoU = means over videos, all in percent (0-100). TubeDETR also splits
  VidSTG by sentence type (declarative / interrogative); call this function once per subset to get those.
* TubeDETR requires a predicted box for every evaluated frame of the GT tube (it raises otherwise); so do we.
  Predicted boxes on other frames are ignored, as are GT boxes outside the GT tube's evaluated frames.

Bad input — a reversed or empty tube, a degenerate box (``x2 <= x1`` or ``y2 <= y1``), NaN, a missing box, a video
id in the predictions that is not in the ground truth or the reverse — raises
:class:`~videoadapt.errors.VideoadaptError` naming the video (and the frame).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from videoadapt.errors import VideoadaptError

CONVENTIONS = {
    "frames": "tubes are half-open frame intervals [start, end); vIoU is over the given evaluated frames",
    "tIoU": "on the interval ends (TubeDETR), 0 when disjoint",
    "boxes": "[x1, y1, x2, y2] continuous, area (x2-x1)*(y2-y1), no +1",
    "vIoU": "sum of box IoUs over evaluated frames in both tubes / evaluated frames in [min start, max end) "
    "(TubeDETR's corrected denominator); vIoU@R counts vIoU > R (strict)",
    "units": "percent",
}

THRESHOLDS = (0.3, 0.5)


def box_iou(box: Sequence[float], other: Sequence[float]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes, continuous coordinates (no +1), as TubeDETR's ``np_box_iou``."""
    a, b = np.asarray(box, dtype=float), np.asarray(other, dtype=float)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def st_grounding_metrics(
    predictions: Mapping[Hashable, Mapping],
    ground_truth: Mapping[Hashable, Mapping],
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, float]:
    """TubeDETR's m_tIoU, m_vIoU, vIoU@R (and gt_vIoU, gt_vIoU@R) in percent; conventions in the module docstring.

    Args:
        predictions: video id -> ``{"start": s, "end": e, "boxes": {frame: [x1, y1, x2, y2]}}`` (tube ``[s, e)``).
        ground_truth: video id -> ``{"frames": [evaluated frame ids], "start": s, "end": e, "boxes": {frame: box}}``
            with a box for every evaluated frame in ``[s, e)``.
        thresholds: the R of vIoU@R (strict ``>``).

    Returns:
        ``m_tIoU, m_vIoU, vIoU@0.3, vIoU@0.5, gt_vIoU, gt_vIoU@0.3, gt_vIoU@0.5``.
    """
    if not isinstance(predictions, Mapping) or not isinstance(ground_truth, Mapping):
        raise VideoadaptError("predictions and ground truth must be mappings from video id to their tubes")
    if not ground_truth:
        raise VideoadaptError("the ground truth has no video")
    for vid in predictions:
        if vid not in ground_truth:
            raise VideoadaptError(f"video {vid!r} is in the predictions but not in the ground truth")
    thresholds = tuple(float(t) for t in thresholds)
    if any(not 0.0 <= t < 1.0 for t in thresholds):
        raise VideoadaptError(f"vIoU thresholds must be in [0, 1), got {thresholds}")
    tious, vious, gt_vious = [], [], []
    for vid, gt in ground_truth.items():
        if vid not in predictions:
            raise VideoadaptError(f"video {vid!r} of the ground truth has no prediction")
        tiou, viou, gt_viou = _video(vid, predictions[vid], gt)
        tious.append(tiou)
        vious.append(viou)
        gt_vious.append(gt_viou)
    vious_arr, gt_arr = np.asarray(vious), np.asarray(gt_vious)
    result = {"m_tIoU": 100.0 * float(np.mean(tious)), "m_vIoU": 100.0 * float(vious_arr.mean())}
    result.update({f"vIoU@{t:g}": 100.0 * float((vious_arr > t).mean()) for t in thresholds})
    result["gt_vIoU"] = 100.0 * float(gt_arr.mean())
    result.update({f"gt_vIoU@{t:g}": 100.0 * float((gt_arr > t).mean()) for t in thresholds})
    return result


def _video(vid: Hashable, pred: Mapping, gt: Mapping) -> tuple[float, float, float]:
    if not isinstance(gt, Mapping) or not {"frames", "start", "end", "boxes"} <= set(gt):
        raise VideoadaptError(f"video {vid!r}: ground truth needs 'frames', 'start', 'end' and 'boxes'")
    if not isinstance(pred, Mapping) or not {"start", "end", "boxes"} <= set(pred):
        raise VideoadaptError(f"video {vid!r}: prediction needs 'start', 'end' and 'boxes'")
    gs, ge = _interval(vid, "ground-truth tube", gt["start"], gt["end"])
    ps, pe = _interval(vid, "predicted tube", pred["start"], pred["end"])
    frames = _frames(vid, gt["frames"])
    inter = min(ge, pe) - max(gs, ps)
    tiou = 0.0 if inter <= 0 else inter / ((ge - gs) + (pe - ps) - inter)
    lo, hi = max(gs, ps), min(ge, pe)
    span = [f for f in frames if min(gs, ps) <= f < max(ge, pe)]
    box_sum = gt_sum = 0.0
    gt_frames = [f for f in frames if gs <= f < ge]
    for f in gt_frames:
        iou = box_iou(_box(vid, "predicted", pred["boxes"], f), _box(vid, "ground-truth", gt["boxes"], f))
        gt_sum += iou
        if lo <= f < hi:
            box_sum += iou
    return tiou, box_sum / max(len(span), 1), gt_sum / max(len(gt_frames), 1)


def _interval(vid: Hashable, what: str, start: object, end: object) -> tuple[float, float]:
    try:
        s, e = float(start), float(end)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VideoadaptError(f"video {vid!r}: {what} start/end must be numbers, got {start!r}, {end!r}") from None
    if not (np.isfinite(s) and np.isfinite(e)):
        raise VideoadaptError(f"video {vid!r}: {what} [{s}, {e}) contains NaN or infinity")
    if s < 0:
        raise VideoadaptError(f"video {vid!r}: {what} [{s}, {e}) starts before frame 0")
    if e <= s:
        raise VideoadaptError(f"video {vid!r}: {what} [{s}, {e}) is reversed or empty (end <= start)")
    return s, e


def _frames(vid: Hashable, frames: object) -> list[float]:
    values = np.asarray(frames)
    if values.ndim != 1 or values.dtype.kind not in "iuf" or not np.isfinite(values).all():
        raise VideoadaptError(f"video {vid!r}: 'frames' must be a list of frame ids")
    if len(np.unique(values)) != len(values):
        raise VideoadaptError(f"video {vid!r}: 'frames' lists a frame twice")
    return values.tolist()


def _box(vid: Hashable, what: str, boxes: Mapping, frame: float) -> np.ndarray:
    key = int(frame) if float(frame).is_integer() else frame
    if not isinstance(boxes, Mapping) or key not in boxes:
        raise VideoadaptError(f"video {vid!r}: no {what} box for evaluated frame {key} of the ground-truth tube")
    box = np.asarray(boxes[key], dtype=float) if np.asarray(boxes[key]).dtype.kind in "iuf" else None
    if box is None or box.shape != (4,):
        raise VideoadaptError(f"video {vid!r}: {what} box of frame {key} must be [x1, y1, x2, y2], got {boxes[key]!r}")
    if not np.isfinite(box).all():
        raise VideoadaptError(f"video {vid!r}: {what} box of frame {key} contains NaN or infinity")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise VideoadaptError(f"video {vid!r}: {what} box of frame {key} is degenerate (needs x1 < x2, y1 < y2)")
    return box
