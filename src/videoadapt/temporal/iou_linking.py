"""Per-frame detections into tracks by overlap alone: the zero-shot association of Table II's tracking and
segmentation rows (no appearance, no motion model).

Frame by frame, the live tracks' last boxes are matched to the frame's boxes by the Hungarian algorithm on IoU
(``scipy.optimize.linear_sum_assignment``); a pair continues its track when its IoU is at least ``threshold``,
every other detection starts a new track, and a track not continued on a frame ends (no re-identification).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from videoadapt.metrics.tracking import box_ious
from videoadapt.temporal.association import hungarian_match


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
            iou = box_ious(np.stack([live[k] for k in tracks]), frame_boxes)
            for r, c in hungarian_match(iou, threshold):
                frame_ids[c] = tracks[r]
        for c in np.flatnonzero(frame_ids < 0):
            frame_ids[c] = next_id
            next_id += 1
        live = {int(k): frame_boxes[c] for c, k in enumerate(frame_ids)}
        ids.append(frame_ids)
    return ids
