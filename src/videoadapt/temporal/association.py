"""Cross-frame association: the bi-softmax similarity of QDTrack/OVTrack, one-to-one Hungarian matching under a
threshold, and the box operations a tracker needs (IoU matrix, non-maximum suppression).

Shared by any task that keeps identities across frames (tracking by boxes, video instance segmentation by
queries): :func:`hungarian_match` takes any score matrix where higher is better.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def bisoftmax(detections: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """QDTrack's bi-directional softmax ``[N,M]`` between detection embeddings ``[N,d]`` and track memories
    ``[M,d]``: ``(softmax over tracks + softmax over detections) / 2`` of their dot products. A pair scores high
    only when each is the other's best choice, which a plain cosine cannot say."""
    similarity = detections.float() @ tracks.float().T
    if similarity.numel() == 0:
        return similarity
    return (similarity.softmax(1) + similarity.softmax(0)) / 2


def hungarian_match(scores: torch.Tensor | np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, column)`` maximising the total score (``scipy.optimize.linear_sum_assignment``),
    keeping only pairs whose score is at least ``threshold``; rows in increasing order."""
    matrix = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if matrix.size == 0:
        return []
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if matrix[r, c] >= threshold]


def box_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU ``[A,B]`` of xyxy boxes ``[A,4]`` and ``[B,4]`` (any common unit)."""
    a, b = a.float(), b.float()
    area_a = ((a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0))[:, None]
    area_b = ((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0))[None, :]
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first: a box is dropped when its
    IoU with a kept, better box exceeds ``iou_threshold``."""
    order = scores.argsort(descending=True)
    iou = box_iou_matrix(boxes[order], boxes[order])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)] if keep else order[:0]
