"""Per-frame set loss of a query mask head (Mask2Former's, on whole masks instead of sampled points).

Each frame's queries are matched one-to-one to its ground-truth instances by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on ``cost_class * (-p(class)) + cost_mask * BCE + cost_dice * dice``
(Mask2Former's 2 / 5 / 5). The loss is then a cross-entropy over the ``C + 1`` classes of every query (unmatched
ones target the no-object class, weighted ``no_object_weight`` = 0.1 as Mask2Former's ``eos_coef``), and sigmoid BCE
plus dice on the matched masks, each averaged over the instances of the batch. Mask2Former weighs them 2 / 5 / 5;
here ``class_weight`` 0.4, ``mask_weight`` 1, ``dice_weight`` 1 (the same ratios, scaled down by 5: one decoder
output instead of ten deeply supervised ones, and a learning rate tuned for heads of this size).

Inputs: ``class_logits [N,Q,C+1]`` (last = no object), ``mask_logits [N,Q,h,w]``, per frame ``labels [G]`` (long)
and ``masks [G,h,w]`` (float in [0, 1]: area-downsampled ground truth).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - dice`` of every prediction ``[Q,M]`` (logits) with every target ``[G,M]`` -> ``[Q,G]``."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE of every prediction ``[Q,M]`` with every target ``[G,M]`` -> ``[Q,G]``."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[-1]


class MaskSetCriterion:
    def __init__(
        self,
        class_weight: float = 0.4,
        mask_weight: float = 1.0,
        dice_weight: float = 1.0,
        no_object_weight: float = 0.1,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
    ) -> None:
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.no_object_weight = no_object_weight
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice

    @torch.no_grad()
    def match(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: ``(query indices, target indices)`` of the optimal assignment (``min(Q, G)`` pairs)."""
        if len(labels) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        probs = class_logits.float().softmax(-1)[:, labels]  # [Q,G]
        flat, target = mask_logits.float().flatten(1), masks.float().flatten(1)
        cost = (
            -self.cost_class * probs
            + self.cost_mask * bce_cost(flat, target)
            + self.cost_dice * dice_cost(flat, target)
        )
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)

    def __call__(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        labels: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        n, q, classes = class_logits.shape
        no_object = classes - 1
        target_classes = torch.full((n, q), no_object, dtype=torch.long, device=class_logits.device)
        predicted, wanted = [], []
        for i in range(n):
            rows, cols = self.match(class_logits[i], mask_logits[i], labels[i], masks[i])
            if len(rows):
                target_classes[i, rows.to(class_logits.device)] = labels[i][cols].to(class_logits.device)
                predicted.append(mask_logits[i, rows.to(mask_logits.device)])
                wanted.append(masks[i][cols].to(mask_logits.device))
        weight = torch.ones(classes, device=class_logits.device)
        weight[no_object] = self.no_object_weight
        loss_class = F.cross_entropy(class_logits.float().flatten(0, 1), target_classes.flatten(), weight=weight)
        if predicted:
            pred = torch.cat(predicted).float().flatten(1)
            target = torch.cat(wanted).float().flatten(1)
            count = max(len(pred), 1)
            loss_mask = F.binary_cross_entropy_with_logits(pred, target, reduction="none").mean(1).sum() / count
            probs = pred.sigmoid()
            dice = 1 - (2 * (probs * target).sum(1) + 1) / (probs.sum(1) + target.sum(1) + 1)
            loss_dice = dice.sum() / count
        else:
            loss_mask = loss_dice = mask_logits.sum() * 0.0
        total = self.class_weight * loss_class + self.mask_weight * loss_mask + self.dice_weight * loss_dice
        return {"loss_class": loss_class, "loss_mask": loss_mask, "loss_dice": loss_dice, "loss_total": total}
