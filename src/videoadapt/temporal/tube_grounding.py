"""A TubeDETR-style spatio-temporal grounding head: per frame a box, and where the tube starts and ends.

Follows the official TubeDETR code (antoyang/TubeDETR), written anew (no code copied): ``models/tubedetr.py``
(``bbox_embed`` = 3-layer MLP + sigmoid, ``sted_embed`` = 2-layer MLP with dropout 0.5, ``SetCriterion.loss_boxes``
and ``loss_sted``), ``models/postprocessors.py`` (``PostProcessSTVG``: span decoding), ``engine.py`` (boxes kept
only on the annotated frames ``inter_idx[0] .. inter_idx[1]``), ``util/box_ops.py`` (box conversions, gIoU) and
``main.py`` (defaults: ``bbox_loss_coef`` 5, ``giou_loss_coef`` 2, ``sted_loss_coef`` 10, ``sigma`` 1). The
decoder that produces the per-frame queries is out of scope.

Conventions (official unless said otherwise):

* Input of :class:`TubeGroundingHead`: one decoder query state per frame ``[B,T,D]``. Output (dict):
  ``pred_boxes [B,T,4]`` as normalised ``(cx, cy, w, h)`` in [0, 1] (sigmoid), ``pred_sted [B,T,2]`` start / end
  logits per frame. Optional ``time_mask [B,T]`` (True = real frame; real frames first, padding after).
* Ground truth per video: ``spans [B,2]`` = (first, last) frame index of the tube, *both inclusive* (TubeDETR's
  ``inter_idx``), and ``boxes``: a list of B tensors ``[last - first + 1, 4]`` in ``(cx, cy, w, h)``, one box per
  annotated frame in order. Every target box must have ``w > 0`` and ``h > 0``.
* Losses (:class:`TubeGroundingCriterion`), returned unweighted plus the weighted ``loss_total``:

  - ``loss_bbox``: L1 over the 4 coordinates of the annotated frames, summed / number of annotated boxes (weight 5);
  - ``loss_giou``: ``1 - gIoU`` of the aligned (prediction, target) box pairs after conversion to ``(x1, y1, x2,
    y2)``, summed / number of annotated boxes (weight 2);
  - ``loss_sted``: KL divergence *from the prediction to the target*, ``sum p log((p + eps) / q)`` as in
    TubeDETR (eps = 1e-6), for the start and for the end, added. The predicted distribution is the softmax of the
    logits over the real frames (padded logits set to -1e32 first); the target is a Gaussian
    ``exp(-(t - c)^2 / (2 sigma^2))`` centred on the ground-truth start (end) frame, plus eps, normalised to sum 1.
    As in TubeDETR the per-frame terms are zeroed on padded frames and then *averaged over all B x T positions*
    (padding included in the denominator), so weight 10 keeps its official meaning. Deviation: TubeDETR normalises
    the target over all T positions, padding included; we normalise it over the real frames only (target 0 on
    padding), so that the loss is exactly ~0 when the prediction equals the target.

* Decoding (:func:`decode_tube`, per video): ``log_softmax`` of the start and end logits over the real frames;
  the span ``(i, j)`` with the highest ``log p_start(i) + log p_end(j)`` under the *strict* constraint ``i < j``
  (TubeDETR masks ``j <= i`` with ``tril(0)`` of -inf), both inside the real frames. We return ``start`` and ``end``
  as inclusive frame indices and the predicted boxes of frames ``start .. end``; TubeDETR adds 1 to the end (an
  exclusive end frame id) only when it maps indices to frame ids for evaluation. A video needs at least 2 real
  frames.

Other deviations: TubeDETR's ``MLP`` applies its dropout after every layer, the output layer included (so the
start/end logits themselves are dropped out at train time); we apply it only after the hidden layer. TubeDETR's
auxiliary (per decoder layer) losses, the guided-attention loss and its multi-GPU averaging of the box count are
not reproduced here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError

__all__ = [
    "TubeGroundingCriterion",
    "TubeGroundingHead",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "decode_tube",
    "gaussian_frame_target",
    "paired_generalized_box_iou",
    "sted_kl_loss",
]

_EPS = 1e-6


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)`` on the last axis."""
    _check_last4(boxes, "box_cxcywh_to_xyxy")
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)`` on the last axis."""
    _check_last4(boxes, "box_xyxy_to_cxcywh")
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def paired_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """gIoU of aligned pairs of ``(x1, y1, x2, y2)`` boxes ``[..., 4]`` -> ``[...]`` (TubeDETR takes the diagonal
    of the pairwise matrix; this computes only the diagonal). Every box must have ``x2 > x1`` and ``y2 > y1``."""
    _check_last4(boxes1, "generalized box IoU")
    if boxes1.shape != boxes2.shape:
        raise VideoadaptError(
            f"generalized box IoU: both box tensors must have the same shape, got {tuple(boxes1.shape)} and "
            f"{tuple(boxes2.shape)}"
        )
    for name, b in (("first", boxes1), ("second", boxes2)):
        if bool(((b[..., 2] <= b[..., 0]) | (b[..., 3] <= b[..., 1])).any()):
            raise VideoadaptError(
                f"generalized box IoU: the {name} boxes include one with non-positive width or height"
            )
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    iou = inter / union
    hull_wh = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def gaussian_frame_target(
    centres: torch.Tensor, length: int, sigma: float = 1.0, time_mask: torch.Tensor | None = None, eps: float = _EPS
) -> torch.Tensor:
    """Target distribution ``[B, length]`` over frames: ``exp(-(t - c)^2 / (2 sigma^2)) + eps`` on the real frames
    (0 on padding), normalised to sum 1 per video."""
    if sigma <= 0:
        raise VideoadaptError(f"gaussian frame target: sigma must be > 0, got {sigma}")
    if centres.dim() != 1:
        raise VideoadaptError(f"gaussian frame target: centres must be [B], got {tuple(centres.shape)}")
    mask = _time_mask(time_mask, centres.shape[0], length, centres.device, "gaussian frame target")
    t = torch.arange(length, device=centres.device, dtype=torch.float32)
    target = torch.exp(-((t[None, :] - centres.float()[:, None]) ** 2) / (2 * sigma**2)) + eps
    target = target * mask
    return target / target.sum(dim=1, keepdim=True)


def sted_kl_loss(
    logits: torch.Tensor, target: torch.Tensor, time_mask: torch.Tensor | None = None, eps: float = _EPS
) -> torch.Tensor:
    """TubeDETR's KL term for one of start / end: ``p log((p + eps) / q)`` per frame, ``p`` = softmax of
    ``logits [B,T]`` over the real frames, ``q`` = ``target [B,T]``; zero on padding, mean over all B x T."""
    if logits.dim() != 2 or logits.shape != target.shape:
        raise VideoadaptError(
            f"start/end KL loss: logits and target must both be [B,T], got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    mask = _time_mask(time_mask, logits.shape[0], logits.shape[1], logits.device, "start/end KL loss")
    prob = logits.masked_fill(~mask, -1e32).softmax(dim=1)
    # Padded frames: prob is 0 and target is 0; clamp so the log stays finite, the term is zeroed just after.
    terms = prob * ((prob + eps) / target.clamp(min=eps)).log()
    return (terms * mask).mean()


class TubeGroundingHead(nn.Module):
    """Per-frame box (3-layer MLP + sigmoid, ``(cx, cy, w, h)``) and start/end logits (2-layer MLP, dropout)."""

    def __init__(self, dim: int, hidden_dim: int | None = None, sted_dropout: float = 0.5) -> None:
        super().__init__()
        if dim <= 0:
            raise VideoadaptError(f"tube grounding head: dim must be > 0, got {dim}")
        hidden = hidden_dim or dim
        self.bbox_embed = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4)
        )
        self.sted_embed = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(sted_dropout), nn.Linear(hidden, 2)
        )
        self.dim = dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise VideoadaptError(f"tube grounding head: queries must be [B,T,{self.dim}], got {tuple(x.shape)}")
        return {"pred_boxes": self.bbox_embed(x).sigmoid(), "pred_sted": self.sted_embed(x)}


class TubeGroundingCriterion(nn.Module):
    """Box L1 + gIoU on the annotated frames and the start/end KL loss (see the module docstring)."""

    def __init__(
        self, bbox_weight: float = 5.0, giou_weight: float = 2.0, sted_weight: float = 10.0, sigma: float = 1.0
    ) -> None:
        super().__init__()
        if sigma <= 0:
            raise VideoadaptError(f"tube grounding criterion: sigma must be > 0, got {sigma}")
        self.weights = {"loss_bbox": bbox_weight, "loss_giou": giou_weight, "loss_sted": sted_weight}
        self.sigma = sigma

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        spans: torch.Tensor,
        boxes: list[torch.Tensor],
        time_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        pred_boxes, sted = _check_outputs(outputs, "tube grounding criterion")
        b, t = sted.shape[:2]
        mask = _time_mask(time_mask, b, t, sted.device, "tube grounding criterion")
        spans = _check_spans(spans, mask, "tube grounding criterion")
        if len(boxes) != b:
            raise VideoadaptError(f"tube grounding criterion: boxes must be a list of {b} tensors, got {len(boxes)}")
        preds, targets = [], []
        for i, (first, last) in enumerate(spans.tolist()):
            tb = boxes[i]
            if tb.dim() != 2 or tb.shape != (last - first + 1, 4):
                raise VideoadaptError(
                    f"tube grounding criterion: video {i} spans frames {first}..{last}, so its boxes must be "
                    f"[{last - first + 1},4], got {tuple(tb.shape)}"
                )
            if bool((tb[:, 2:] <= 0).any()):
                raise VideoadaptError(
                    f"tube grounding criterion: video {i} has a box with non-positive width or height"
                )
            preds.append(pred_boxes[i, first : last + 1])
            targets.append(tb.to(pred_boxes))
        src, tgt = torch.cat(preds), torch.cat(targets)
        num_boxes = max(src.shape[0], 1)
        losses = {
            "loss_bbox": F.l1_loss(src, tgt, reduction="sum") / num_boxes,
            "loss_giou": (1 - paired_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))).sum()
            / num_boxes,
        }
        start_target = gaussian_frame_target(spans[:, 0], t, self.sigma, mask)
        end_target = gaussian_frame_target(spans[:, 1], t, self.sigma, mask)
        losses["loss_sted"] = sted_kl_loss(sted[..., 0], start_target, mask) + sted_kl_loss(
            sted[..., 1], end_target, mask
        )
        losses["loss_total"] = sum(self.weights[k] * losses[k] for k in self.weights)
        return losses


@torch.no_grad()
def decode_tube(outputs: dict[str, torch.Tensor], time_mask: torch.Tensor | None = None) -> list[dict]:
    """Per video: ``{"start", "end", "score", "boxes"}`` with the span maximising ``p_start(i) * p_end(j)``,
    ``i < j`` (inclusive frame indices), ``score`` = that product, and the ``(cx, cy, w, h)`` boxes ``[end - start
    + 1, 4]`` of frames ``start .. end``."""
    pred_boxes, sted = _check_outputs(outputs, "tube decoding")
    b, t = sted.shape[:2]
    mask = _time_mask(time_mask, b, t, sted.device, "tube decoding")
    lengths = mask.sum(dim=1)
    if bool((lengths < 2).any()):
        raise VideoadaptError(
            f"tube decoding: every video needs at least 2 real frames (start < end), got lengths {lengths.tolist()}"
        )
    logits = sted.float().masked_fill(~mask[..., None], float("-inf"))
    log_start = logits[..., 0].log_softmax(dim=1)
    log_end = logits[..., 1].log_softmax(dim=1)
    allowed = torch.ones(t, t, dtype=torch.bool, device=sted.device).triu(1)  # [i, j] allowed iff i < j
    score = (log_start[:, :, None] + log_end[:, None, :]).masked_fill(~allowed, float("-inf"))
    best, flat = score.view(b, -1).max(dim=1)
    results = []
    for i in range(b):
        start, end = divmod(int(flat[i]), t)
        results.append(
            {"start": start, "end": end, "score": float(best[i].exp()), "boxes": pred_boxes[i, start : end + 1].clone()}
        )
    return results


def _check_last4(boxes: torch.Tensor, where: str) -> None:
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise VideoadaptError(f"{where}: boxes must be [...,4], got {tuple(boxes.shape)}")


def _check_outputs(outputs: dict[str, torch.Tensor], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if "pred_boxes" not in outputs or "pred_sted" not in outputs:
        raise VideoadaptError(f"{where}: outputs must hold 'pred_boxes' and 'pred_sted', got {sorted(outputs)}")
    pred_boxes, sted = outputs["pred_boxes"], outputs["pred_sted"]
    if sted.dim() != 3 or sted.shape[-1] != 2:
        raise VideoadaptError(f"{where}: pred_sted must be [B,T,2], got {tuple(sted.shape)}")
    if pred_boxes.shape != (*sted.shape[:2], 4):
        raise VideoadaptError(
            f"{where}: pred_boxes must be [B,T,4] = {[*sted.shape[:2], 4]}, got {tuple(pred_boxes.shape)}"
        )
    return pred_boxes, sted


def _time_mask(time_mask: torch.Tensor | None, b: int, t: int, device: torch.device, where: str) -> torch.Tensor:
    if time_mask is None:
        return torch.ones(b, t, dtype=torch.bool, device=device)
    if time_mask.shape != (b, t):
        raise VideoadaptError(f"{where}: time_mask must be [B,T] = [{b},{t}], got {tuple(time_mask.shape)}")
    mask = time_mask.to(device=device).bool()
    if bool((mask.sum(dim=1) == 0).any()):
        raise VideoadaptError(f"{where}: every video needs at least one real frame in time_mask")
    return mask


def _check_spans(spans: torch.Tensor, mask: torch.Tensor, where: str) -> torch.Tensor:
    if spans.dim() != 2 or spans.shape != (mask.shape[0], 2):
        raise VideoadaptError(f"{where}: spans must be [B,2] = [{mask.shape[0]},2], got {tuple(spans.shape)}")
    if spans.is_floating_point() and bool((spans != spans.round()).any()):
        raise VideoadaptError(f"{where}: spans must be whole frame indices, got {spans.tolist()}")
    spans = spans.long().to(mask.device)
    lengths = mask.sum(dim=1)
    for i, ((first, last), n) in enumerate(zip(spans.tolist(), lengths.tolist(), strict=True)):
        if last < first:
            raise VideoadaptError(f"{where}: video {i} span ends before it starts ({first}, {last})")
        if first < 0 or last >= n:
            raise VideoadaptError(
                f"{where}: video {i} span frames ({first}, {last}) are out of range: it has {n} real frames"
            )
    return spans
