"""Per-frame detections into tracks by overlap alone: the zero-shot association of Table II's tracking and
segmentation rows (no appearance, no motion model).

Frame by frame, the live tracks' last boxes are matched to the frame's boxes by the Hungarian algorithm on IoU
(``scipy.optimize.linear_sum_assignment``); a pair continues its track when its IoU is at least ``threshold``,
every other detection starts a new track, and a track not continued on a frame ends (no re-identification).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a [N,4]`` with every box of ``b [M,4]`` (xyxy) -> ``[N,M]``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def link_by_iou(boxes: Sequence[np.ndarray], threshold: float = 0.3) -> list[np.ndarray]:
    """``boxes[t]`` ``[N_t,4]`` of each frame -> ``ids[t]`` ``[N_t]``: the track of each detection, numbered from 0
    in order of birth."""
    ids: list[np.ndarray] = []
    live: dict[int, np.ndarray] = {}  # track -> its box on the previous frame
    next_id = 0
    for frame_boxes in boxes:
        frame_boxes = np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4)
        frame_ids = np.full(len(frame_boxes), -1, dtype=np.int64)
        tracks = list(live)
        if tracks and len(frame_boxes):
            iou = box_iou(np.stack([live[k] for k in tracks]), frame_boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= threshold:
                    frame_ids[c] = tracks[r]
        for c in np.flatnonzero(frame_ids < 0):
            frame_ids[c] = next_id
            next_id += 1
        live = {int(k): frame_boxes[c] for c, k in enumerate(frame_ids)}
        ids.append(frame_ids)
    return ids
