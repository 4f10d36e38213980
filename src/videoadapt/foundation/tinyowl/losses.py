"""DETR-style set loss of TinyOWL's detection training: Hungarian matching with class + L1 + gIoU costs, sigmoid
focal class loss over the query set, L1 + gIoU box losses on the matched regions.

Weights and focal parameters follow Deformable DETR (Zhu et al., ICLR 2021), which OWL-ViT's training also uses:
costs and losses class 2, L1 5, gIoU 2; focal alpha 0.25, gamma 2. An object can be positive for several queries
("a star" and "a red star"); its class cost is the mean focal cost over its positive queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from videoadapt.foundation.base import cxcywh_to_xyxy


@dataclass(frozen=True)
class LossWeights:
    cls: float = 2.0
    l1: float = 5.0
    giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0


@dataclass
class Targets:
    """One image's objects: ``boxes`` ``[M,4]`` normalised cxcywh; ``positives`` ``[M,Q]`` bool (query q names
    object m)."""

    boxes: torch.Tensor
    positives: torch.Tensor


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU (Rezatofighi et al., CVPR 2019) of xyxy boxes ``[A,4]`` × ``[B,4]`` → ``[A,B]``."""
    area_a, area_b = box_area(a)[:, None], box_area(b)[None, :]
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2])).prod(-1)
    return iou, iou - (hull - union) / hull.clamp(min=1e-9)


def match(
    logits: torch.Tensor, boxes: torch.Tensor, targets: Targets, weights: LossWeights = LossWeights()
) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment of one image's regions (``logits`` ``[R,Q]``, ``boxes`` ``[R,4]`` cxcywh) to its
    objects: ``(region indices, object indices)``, one region per object."""
    if len(targets.boxes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    with torch.no_grad():
        prob = logits.float().sigmoid()
        neg = (1 - weights.alpha) * prob**weights.gamma * -(1 - prob + 1e-8).log()
        pos = weights.alpha * (1 - prob) ** weights.gamma * -(prob + 1e-8).log()
        per_query = pos - neg  # [R,Q]
        positives = targets.positives.float()  # [M,Q]
        cost_class = per_query @ positives.T / positives.sum(1).clamp(min=1)  # [R,M]
        cost_l1 = torch.cdist(boxes.float(), targets.boxes.float(), p=1)
        _, giou = pairwise_giou(cxcywh_to_xyxy(boxes.float()), cxcywh_to_xyxy(targets.boxes.float()))
        cost = weights.cls * cost_class + weights.l1 * cost_l1 - weights.giou * giou
        rows, cols = linear_sum_assignment(cost.float().cpu().numpy())  # autocast may leave it bf16
    return rows.astype(np.int64), cols.astype(np.int64)


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed sigmoid focal loss (Lin et al., ICCV 2017)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (loss * (alpha * targets + (1 - alpha) * (1 - targets))).sum()


def set_loss(
    logits: torch.Tensor, boxes: torch.Tensor, targets: list[Targets], weights: LossWeights = LossWeights()
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts for a batch: ``logits`` ``[N,R,Q]``, ``boxes`` ``[N,R,4]`` cxcywh. Every part is
    normalised by the number of objects in the batch (DETR)."""
    logits, boxes = logits.float(), boxes.float()
    labels = torch.zeros_like(logits)
    matched_pred, matched_true = [], []
    for i, target in enumerate(targets):
        rows, cols = match(logits[i], boxes[i], target, weights)
        labels[i, rows] = target.positives[cols].float()
        matched_pred.append(boxes[i, rows])
        matched_true.append(target.boxes[cols].float())
    count = max(1, sum(len(t.boxes) for t in targets))
    cls = sigmoid_focal(logits, labels, weights.alpha, weights.gamma) / count
    pred, true = torch.cat(matched_pred), torch.cat(matched_true)
    l1 = F.l1_loss(pred, true, reduction="sum") / count
    _, giou = pairwise_giou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(true))
    giou_loss = (1 - giou.diagonal()).sum() / count
    total = weights.cls * cls + weights.l1 * l1 + weights.giou * giou_loss
    return total, {"cls": cls.item(), "l1": l1.item(), "giou": giou_loss.item()}
