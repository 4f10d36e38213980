"""Box refinement: a residual correction of a per-patch detector's boxes from the patch's neighbourhood.

A grounding ILFM such as TinyOWL predicts one box per patch token from that token alone (an MLP), so an object
whose edges fall in neighbouring patches is placed within about a patch's precision. This module reads each
token with its 3 × 3 neighbours on the patch grid (a linear map down to ``hidden``, one 3 × 3 convolution, GELU)
together with the box itself, and adds a correction to the box's logits: ``cxcywh' = sigmoid(logit(cxcywh) +
delta)``. The last layer starts at zero, so an untrained refinement returns the detector's boxes unchanged.
Trained with L1 + gIoU (DETR's weights 5 and 2) on every region assigned to a ground-truth box, not only one per
object as a set loss matches: whichever region survives NMS at inference gets a trained correction.

Conventions: tokens ``[N, P, D]`` with ``P = rows × cols`` in row-major order (the ILFM's patch order); boxes
normalised ``cx, cy, w, h`` in ``(0, 1)`` ``[N, P, 4]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.temporal.tube_grounding import paired_generalized_box_iou

L1_WEIGHT = 5.0
GIOU_WEIGHT = 2.0
_EPS = 1e-4


class BoxRefinement(nn.Module):
    """Residual box correction from each patch token, its 3 × 3 neighbourhood and its current box."""

    def __init__(self, width: int, grid: tuple[int, int], hidden: int = 128) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.norm = nn.LayerNorm(width)
        self.down = nn.Linear(width, hidden)
        self.context = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = nn.Linear(hidden + 4, 4)
        nn.init.zeros_(self.out.weight)  # starts at the detector's own boxes
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, cxcywh: torch.Tensor) -> torch.Tensor:
        """Refined ``cxcywh`` ``[N,P,4]`` of boxes ``cxcywh`` predicted from ``tokens`` ``[N,P,D]``."""
        n, p, _ = tokens.shape
        rows, cols = self.grid
        if p != rows * cols:
            raise VideoadaptError(f"box refinement: {p} patch tokens do not make the {rows}x{cols} patch grid")
        x = self.down(self.norm(tokens.float()))  # [N,P,h]
        x = x.transpose(1, 2).reshape(n, -1, rows, cols)
        x = F.gelu(self.context(x)).flatten(2).transpose(1, 2)  # [N,P,h]
        logit = torch.logit(cxcywh.float().clamp(_EPS, 1 - _EPS))
        return torch.sigmoid(logit + self.out(torch.cat([x, logit], -1)))


def box_refinement_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 (×5) + gIoU (×2) between aligned normalised ``cxcywh`` boxes ``[M,4]``; zero (keeping the graph) for
    none."""
    if not len(predicted):
        return predicted.sum() * 0.0

    def corners(b: torch.Tensor) -> torch.Tensor:
        cx, cy, w, h = b.unbind(-1)
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)

    l1 = F.l1_loss(predicted, target, reduction="none").sum(-1).mean()
    giou = paired_generalized_box_iou(corners(predicted), corners(target))
    return L1_WEIGHT * l1 + GIOU_WEIGHT * (1 - giou).mean()
