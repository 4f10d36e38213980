"""Moment-DETR's span matching and training criterion.

Follows the official code of jayleicn/moment_detr: ``moment_detr/span_utils.py`` (span conversions, temporal IoU
and generalized IoU), ``matcher.py`` (``HungarianMatcher``), ``model.py`` (``SetCriterion`` and the loss weights
of ``build_model``), the defaults of ``config.py`` and the saliency pair sampling of ``start_end_dataset.py``
(``get_saliency_labels``). Written anew for the outputs of :class:`videoadapt.temporal.MomentDETR`.

Conventions (those of the official code unless said otherwise):

* Spans are normalised by the video length. Predictions are (center, width) (``spans`` of the model, sigmoid);
  ground-truth moments are given here as (start, end) with ``0 <= start < end <= 1`` (the official dataset divides
  the windows in seconds by the duration and converts them to (center, width); we validate the (start, end) form
  and convert). A video may have several moments, or none (all its slots are then background).
* ``span_cxw_to_xx`` / ``span_xx_to_cxw``: start = c - w/2, end = c + w/2; c = (s + e)/2, w = e - s.
* ``temporal_iou(a, b)``: pairwise ``[N, M]``; intersection = max(0, min(ends) - max(starts)), union = sum of the
  lengths - intersection, IoU = intersection / union. ``generalized_temporal_iou``: IoU - (C - union) / C with C =
  max(0, max(ends) - min(starts)) the enclosing length. Edge handling is the official one: no epsilon, so two
  zero-length spans at the same point give 0/0 = NaN; touching spans have IoU 0 and gIoU 0; disjoint spans have
  a negative gIoU (down to -1). Against a ground-truth moment (validated to have positive length) union and C are
  positive, so the matcher and the losses never divide by zero.
* Matching (``MomentDETRMatcher``, per video, ``scipy.optimize.linear_sum_assignment`` on the CPU, no gradient):
  cost = ``cost_span`` x L1 distance of the (center, width) pairs + ``cost_giou`` x (-gIoU of the (start, end)
  spans) + ``cost_class`` x (-softmax probability of foreground). Defaults are the official ``set_cost_span`` 10,
  ``set_cost_giou`` 1, ``set_cost_class`` 4 (equal to the loss coefficients, but separate options as officially).
  With Q slots and n moments, min(Q, n) pairs are made. Foreground is logit index 0 (``foreground_label = 0``),
  background index 1.
* Losses (``MomentDETRCriterion``), all unweighted in the returned dict, keys as in the official code:

  - ``loss_span``: L1 between matched (center, width) pairs, averaged over all matched pairs of the batch and the
    two coordinates (``F.l1_loss(reduction='none').mean()``);
  - ``loss_giou``: 1 - gIoU of the matched (start, end) pairs, averaged over the matched pairs;
  - ``loss_label``: cross-entropy of every slot against foreground (matched) / background (unmatched) with class
    weights (1, ``eos_coef``) = (1, 0.1), averaged as officially: the weighted per-slot losses are summed and
    divided by B x Q (``reduction='none'`` then ``.mean()``), not by the sum of the weights as
    ``reduction='mean'`` would;
  - ``loss_saliency``: hinge max(0, margin + s[neg] - s[pos]) over the given positive / negative clip pairs,
    summed and divided by (B x P) then multiplied by 2 (the official "* 2 to keep the loss the same scale"),
    margin 0.2; only for the last layer; zero when no pairs are given (as officially when the targets lack them);
  - with ``aux_loss`` (official default on), ``loss_span_i``, ``loss_giou_i``, ``loss_label_i`` for every earlier
    decoder layer i (0 = first), each layer matched anew;
  - ``loss_total`` = sum of weight x loss with weights ``span_loss_coef`` 10, ``giou_loss_coef`` 1,
    ``label_loss_coef`` 4, ``saliency_loss_coef`` (official ``lw_saliency``) 1, the aux losses weighted as their
    last-layer counterparts (``build_model``'s ``weight_dict``).

  Where a batch has no moment at all, the official means over zero pairs would be NaN; here ``loss_span`` and
  ``loss_giou`` are 0 (still attached to the graph).
* Saliency pairs: the official dataset draws them with Python's ``random`` in the data loader. Here the criterion
  takes them as inputs (``saliency_pos``, ``saliency_neg``: ``[B, P]`` clip indices), and
  :func:`sample_saliency_pairs` reproduces the official ``get_saliency_labels`` (``max_n=1``, easy negatives on)
  with an explicit ``numpy.random.Generator``, so a seed fixes the pairs: the hard positive / negative are the
  relevant clips of highest / lowest summed annotator score (``np.argsort``, stable, so ties keep the earlier
  clip as the negative and the later as the positive), the easy positive is a random relevant clip and the easy
  negative a random clip outside the relevant ones; with no clip outside, the hard pair is repeated.

The contrastive alignment loss (off by default officially) and ``span_loss_type="ce"`` are not implemented.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from videoadapt.errors import VideoadaptError

FOREGROUND = 0
BACKGROUND = 1


def span_cxw_to_xx(spans: torch.Tensor) -> torch.Tensor:
    """(center, width) -> (start, end) on the last dimension."""
    half = 0.5 * spans[..., 1]
    return torch.stack((spans[..., 0] - half, spans[..., 0] + half), dim=-1)


def span_xx_to_cxw(spans: torch.Tensor) -> torch.Tensor:
    """(start, end) -> (center, width) on the last dimension."""
    return torch.stack((0.5 * (spans[..., 0] + spans[..., 1]), spans[..., 1] - spans[..., 0]), dim=-1)


def temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU and union of (start, end) spans ``[N,2]`` x ``[M,2]`` -> two ``[N,M]`` tensors."""
    length1 = spans1[:, 1] - spans1[:, 0]
    length2 = spans2[:, 1] - spans2[:, 0]
    inter = torch.min(spans1[:, None, 1], spans2[None, :, 1]) - torch.max(spans1[:, None, 0], spans2[None, :, 0])
    inter = inter.clamp(min=0)
    union = length1[:, None] + length2[None, :] - inter
    return inter / union, union


def generalized_temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU of (start, end) spans ``[N,2]`` x ``[M,2]`` -> ``[N,M]`` in [-1, 1]."""
    if bool((spans1[:, 1] < spans1[:, 0]).any()) or bool((spans2[:, 1] < spans2[:, 0]).any()):
        raise VideoadaptError("generalized_temporal_iou: every span needs end >= start")
    iou, union = temporal_iou(spans1, spans2)
    enclosing = torch.max(spans1[:, None, 1], spans2[None, :, 1]) - torch.min(spans1[:, None, 0], spans2[None, :, 0])
    enclosing = enclosing.clamp(min=0)
    return iou - (enclosing - union) / enclosing


def _check_predictions(spans: torch.Tensor, logits: torch.Tensor, where: str) -> None:
    if spans.dim() != 3 or spans.shape[-1] != 2:
        raise VideoadaptError(f"{where}: predicted spans must be [B,Q,2] (center, width), got {tuple(spans.shape)}")
    if logits.shape != spans.shape:
        raise VideoadaptError(
            f"{where}: span logits must be [B,Q,2] like the spans {tuple(spans.shape)}, got {tuple(logits.shape)}"
        )


def check_moments(moments: Sequence[torch.Tensor], batch: int, where: str = "moment_detr criterion") -> None:
    """Raise :class:`VideoadaptError` unless ``moments`` holds ``batch`` tensors ``[n_i,2]`` of (start, end) with
    ``0 <= start < end <= 1``."""
    if len(moments) != batch:
        raise VideoadaptError(f"{where}: {batch} videos in the predictions but {len(moments)} ground-truth entries")
    for i, m in enumerate(moments):
        if not isinstance(m, torch.Tensor) or m.dim() != 2 or m.shape[-1] != 2:
            shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise VideoadaptError(f"{where}: moments of video {i} must be a [n,2] tensor of (start, end), got {shape}")
        if not bool(torch.isfinite(m).all()):
            raise VideoadaptError(f"{where}: moments of video {i} hold a non-finite value")
        bad = (m[:, 1] <= m[:, 0]) | (m[:, 0] < 0) | (m[:, 1] > 1)
        if bool(bad.any()):
            j = int(bad.nonzero()[0, 0])
            s, e = (float(v) for v in m[j])
            raise VideoadaptError(
                f"{where}: moment {j} of video {i} is ({s:g}, {e:g}); a moment needs 0 <= start < end <= 1 "
                "(normalised by the video length)"
            )


class MomentDETRMatcher:
    """Official ``HungarianMatcher`` (``span_loss_type="l1"``): one-to-one matching of slots to moments per video.

    ``__call__(spans [B,Q,2] (center, width), logits [B,Q,2], moments: B tensors [n_i,2] (start, end))`` returns
    B pairs ``(slot indices, moment indices)`` (int64, sorted by slot) of length min(Q, n_i).
    """

    def __init__(self, cost_span: float = 10.0, cost_giou: float = 1.0, cost_class: float = 4.0) -> None:
        if cost_span == 0 and cost_giou == 0 and cost_class == 0:
            raise VideoadaptError("moment_detr matcher: the span, gIoU and class costs cannot all be 0")
        self.cost_span, self.cost_giou, self.cost_class = cost_span, cost_giou, cost_class

    def cost(self, spans: torch.Tensor, logits: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
        """Cost ``[Q, n]`` of one video: slots ``spans [Q,2]``, ``logits [Q,2]`` against ``moments [n,2]`` (s, e)."""
        foreground = logits.softmax(-1)[:, FOREGROUND]
        targets = span_xx_to_cxw(moments)
        cost_span = torch.cdist(spans, targets, p=1)
        cost_giou = -generalized_temporal_iou(span_cxw_to_xx(spans), moments)
        return self.cost_span * cost_span + self.cost_giou * cost_giou - self.cost_class * foreground[:, None]

    @torch.no_grad()
    def __call__(
        self, spans: torch.Tensor, logits: torch.Tensor, moments: Sequence[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        _check_predictions(spans, logits, "moment_detr matcher")
        check_moments(moments, spans.shape[0], "moment_detr matcher")
        pairs = []
        for b, m in enumerate(moments):
            if len(m) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                pairs.append((empty, empty.clone()))
                continue
            cost = self.cost(spans[b].float(), logits[b].float(), m.to(spans.device).float()).cpu()
            rows, cols = linear_sum_assignment(cost.numpy())
            pairs.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return pairs


def sample_saliency_pairs(
    relevant_clips: Sequence[int], scores: Sequence[Sequence[float]] | np.ndarray, clips: int, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """Official ``get_saliency_labels(max_n=1, add_easy_negative=True)`` with a seeded ``rng``: returns
    ``([hard positive, easy positive], [hard negative, easy negative])`` clip indices of one video.

    ``relevant_clips``: the clip ids inside the moments; ``scores``: per relevant clip, the annotators' scores
    (summed); ``clips``: the number of clips of the video. Hard indices are clipped to ``clips - 1`` as officially.
    """
    if len(relevant_clips) == 0:
        raise VideoadaptError("sample_saliency_pairs: a video needs at least one relevant clip")
    agg = np.asarray(scores, dtype=np.float64).reshape(len(relevant_clips), -1).sum(1)
    if len(agg) != len(relevant_clips):
        raise VideoadaptError("sample_saliency_pairs: one score row per relevant clip is needed")
    if any(not 0 <= int(c) for c in relevant_clips):
        raise VideoadaptError("sample_saliency_pairs: clip ids must be >= 0")
    order = np.argsort(agg, kind="stable")
    hard_pos = [min(int(relevant_clips[order[-1]]), clips - 1)]
    hard_neg = [min(int(relevant_clips[order[0]]), clips - 1)]
    outside = sorted(set(range(clips)) - {int(c) for c in relevant_clips})
    if outside:
        easy_pos = [int(relevant_clips[int(rng.integers(len(relevant_clips)))])]
        easy_neg = [int(outside[int(rng.integers(len(outside)))])]
    else:
        easy_pos, easy_neg = hard_pos, hard_neg
    return hard_pos + easy_pos, hard_neg + easy_neg


class MomentDETRCriterion(nn.Module):
    """Official ``SetCriterion`` (losses ``spans``, ``labels``, ``saliency``) with ``build_model``'s weights.

    ``forward(outputs, moments, saliency_pos=None, saliency_neg=None)``: ``outputs`` as returned by
    :class:`MomentDETR` (``spans``, ``span_logits``, ``saliency``, ``aux_spans``, ``aux_span_logits``);
    ``moments``: B tensors ``[n_i,2]`` (start, end) in [0,1]; ``saliency_pos`` / ``saliency_neg``: ``[B,P]`` clip
    indices (see :func:`sample_saliency_pairs`). Returns the named unweighted losses and ``loss_total``.
    """

    def __init__(
        self,
        matcher: MomentDETRMatcher | None = None,
        span_loss_coef: float = 10.0,
        giou_loss_coef: float = 1.0,
        label_loss_coef: float = 4.0,
        saliency_loss_coef: float = 1.0,
        eos_coef: float = 0.1,
        saliency_margin: float = 0.2,
        aux_loss: bool = True,
    ) -> None:
        super().__init__()
        self.matcher = matcher if matcher is not None else MomentDETRMatcher()
        self.weight_dict = {
            "loss_span": span_loss_coef,
            "loss_giou": giou_loss_coef,
            "loss_label": label_loss_coef,
            "loss_saliency": saliency_loss_coef,
        }
        self.saliency_margin, self.aux_loss = saliency_margin, aux_loss
        self.register_buffer("empty_weight", torch.tensor([1.0, eos_coef]))  # (foreground, background)

    def _layer_losses(
        self, spans: torch.Tensor, logits: torch.Tensor, moments: Sequence[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        pairs = self.matcher(spans, logits, moments)
        batch_idx = torch.cat([torch.full_like(slots, b) for b, (slots, _) in enumerate(pairs)]).to(spans.device)
        slot_idx = torch.cat([slots for slots, _ in pairs]).to(spans.device)
        matched = spans[batch_idx, slot_idx]
        target = torch.cat([m.to(spans)[cols.to(spans.device)] for m, (_, cols) in zip(moments, pairs, strict=True)])
        if len(matched):
            loss_span = F.l1_loss(matched, span_xx_to_cxw(target), reduction="none").mean()
            loss_giou = (1 - torch.diag(generalized_temporal_iou(span_cxw_to_xx(matched), target))).mean()
        else:  # no moment in the whole batch: zero, not the official NaN
            loss_span = loss_giou = spans.sum() * 0
        classes = torch.full(logits.shape[:2], BACKGROUND, dtype=torch.int64, device=logits.device)
        classes[batch_idx, slot_idx] = FOREGROUND
        weight = self.empty_weight.to(logits.dtype)
        loss_label = F.cross_entropy(logits.transpose(1, 2), classes, weight, reduction="none").mean()
        return {"loss_span": loss_span, "loss_giou": loss_giou, "loss_label": loss_label}

    def saliency_loss(self, saliency: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Official ``loss_saliency``: sum of max(0, margin + s[neg] - s[pos]) / (B x P) x 2."""
        if saliency.dim() != 2:
            raise VideoadaptError(f"moment_detr criterion: saliency must be [B,T], got {tuple(saliency.shape)}")
        b, t = saliency.shape
        for name, idx in (("saliency_pos", pos), ("saliency_neg", neg)):
            if idx.dim() != 2 or idx.shape[0] != b or idx.shape != pos.shape or idx.shape[1] == 0:
                raise VideoadaptError(
                    f"moment_detr criterion: {name} must be [B,P] clip indices with B={b} and P >= 1 the same for "
                    f"positives and negatives, got {tuple(pos.shape)} and {tuple(neg.shape)}"
                )
            if idx.dtype.is_floating_point or bool(((idx < 0) | (idx >= t)).any()):
                raise VideoadaptError(f"moment_detr criterion: {name} must be integer clip indices in [0, {t})")
        pos_scores = saliency.gather(1, pos.to(saliency.device).long())
        neg_scores = saliency.gather(1, neg.to(saliency.device).long())
        hinge = (self.saliency_margin + neg_scores - pos_scores).clamp(min=0)
        return hinge.sum() / pos.numel() * 2

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        moments: Sequence[torch.Tensor],
        saliency_pos: torch.Tensor | None = None,
        saliency_neg: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        spans, logits = outputs["spans"], outputs["span_logits"]
        _check_predictions(spans, logits, "moment_detr criterion")
        check_moments(moments, spans.shape[0])
        losses = self._layer_losses(spans, logits, moments)
        if (saliency_pos is None) != (saliency_neg is None):
            raise VideoadaptError("moment_detr criterion: give both saliency_pos and saliency_neg, or neither")
        if saliency_pos is not None and saliency_neg is not None:
            saliency = outputs["saliency"]
            if saliency.shape[0] != spans.shape[0]:
                raise VideoadaptError(
                    f"moment_detr criterion: saliency has {saliency.shape[0]} videos, spans {spans.shape[0]}"
                )
            losses["loss_saliency"] = self.saliency_loss(saliency, saliency_pos, saliency_neg)
        else:
            losses["loss_saliency"] = spans.sum() * 0
        weights = dict(self.weight_dict)
        if self.aux_loss and "aux_spans" in outputs:
            for i, (aux_spans, aux_logits) in enumerate(
                zip(outputs["aux_spans"], outputs["aux_span_logits"], strict=True)
            ):
                _check_predictions(aux_spans, aux_logits, f"moment_detr criterion (decoder layer {i})")
                if aux_spans.shape != spans.shape:
                    raise VideoadaptError(
                        f"moment_detr criterion: decoder layer {i} spans {tuple(aux_spans.shape)} differ from the "
                        f"last layer's {tuple(spans.shape)}"
                    )
                for name, value in self._layer_losses(aux_spans, aux_logits, moments).items():
                    losses[f"{name}_{i}"] = value
                    weights[f"{name}_{i}"] = self.weight_dict[name]
        losses["loss_total"] = sum(weights[name] * value for name, value in losses.items())
        return losses
