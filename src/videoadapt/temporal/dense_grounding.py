"""A dense temporal-grounding head: every time step predicts "am I inside the moment, and how far are its ends".

Follows two official codes, written anew (no code copied):

* R2-Tuning (yeliudev/R2-Tuning): ``models/model.py`` (pyramid -> shared ``ConvHead`` for the class logit and the
  boundary distances, ``exp() * coef[level]``, decoding), ``models/generator.py`` (``PointGenerator``: the points
  and per-level regression ranges), ``models/loss.py`` (``BundleLoss.get_target_single``: targets, shortest span
  wins; focal loss, L1 loss) and ``configs/_base_/models/model.py`` (loss weights).
* UniVTG (showlab/UniVTG): ``model/univtg.py`` (``Model``: per-clip foreground + (start, end) offsets over the fused
  clip features; ``SetCriterion``: gIoU on foreground clips, intra-video contrastive saliency loss with
  temperature 0.07), ``main/config.py`` (coefficients, ``max_after_nms`` 10) and ``utils/temporal_nms.py``.

Conventions (official unless said otherwise):

* Input: frame features ``[B,T,D]`` already fused with the query, optional mask ``[B,T]`` (1 = valid frame, the
  valid frames come first). Pyramid strides ``(1, 2, 4)`` by default (R2-Tuning uses ``(1, 2, 4, 8)``); level k+1
  is a stride-2 ``Conv1d`` (kernel 3, padding 1) + ReLU of level k, so level k has ``ceil(T / stride_k)`` steps;
  a step is valid when any frame it covers is valid (max-pooling of the mask, ``ceil_mode``).
* Time axis in *frame units*: frame i covers ``[i, i+1)``. Step j of a level with stride s sits at the point
  ``p = j * s`` (R2-Tuning's ``PointGenerator(offset=False)``: the start of the step, not its centre). A span in
  seconds is converted with ``frames = seconds * T_b / duration_b`` (T_b = valid frames of video b; R2-Tuning
  multiplies by the fps).
* Outputs of :class:`DenseGroundingHead` (dict): ``fg_logits [B,N]`` (N = steps of all levels concatenated, level
  0 first), ``distances [B,N,2]`` = (distance to start, distance to end) >= 0 *in steps of that level*
  (``exp(conv) * scale[level]``, learnable scale initialised to 1, as R2-Tuning's ``coef``), ``step_mask [B,N]``,
  ``points [N]`` and ``strides [N]`` in frame units, ``saliency [B,T]`` (level-0 score in [-1, 1]: ``tanh`` of a
  linear map; UniVTG uses the cosine of clip and pooled query embeddings, which this head does not see — deviation)
  and ``frame_mask [B,T]``. The heads are shared by all levels, as in R2-Tuning.
* Targets (:func:`assign_targets`, R2-Tuning's rule without centre sampling): step p is foreground for span
  ``(s, e)`` when ``s <= p <= e`` (both ends *inclusive*) and ``max(p - s, e - p)`` lies in the level's regression
  range ``[lo, hi]`` (inclusive; for strides ``(s_0, ..., s_L)`` the ranges are ``(0, s_1), (s_1, s_2), ...,
  (s_L, inf)``, R2-Tuning's generator; one level gives ``(0, inf)``). When several spans qualify, the shortest wins
  (the first given on a tie). Regression targets are ``((p - s) / stride, (e - p) / stride)``. R2-Tuning also uses
  centre sampling (radius 1.5) for the class target; here foreground is simply "inside the span" as in UniVTG
  (deviation).
* Losses (:class:`DenseGroundingCriterion`), returned unweighted plus ``loss_total``:

  - ``loss_cls``: sigmoid focal loss (alpha 0.25, gamma 2) over valid steps, summed / number of valid steps
    (R2-Tuning's ``FocalLoss`` with ``avg_factor = msk.sum()``), weight 1.0;
  - ``loss_reg``: L1 on the two distances of foreground steps, summed / (2 x foreground steps), weight 0.2
    (R2-Tuning);
  - ``loss_giou``: 1 - gIoU of predicted and target spans (frame units) of foreground steps, mean, weight 1.0
    (UniVTG's ``g_loss_coef``; R2-Tuning has no gIoU loss). UniVTG's boundary loss is a smooth L1 on normalised
    spans with weight 10; we use R2-Tuning's L1 on step distances instead;
  - ``loss_sal``: UniVTG's intra-video contrastive saliency loss: per video the positive frame is the first frame
    of highest saliency target, the candidates are it and the valid frames of strictly lower target;
    ``-log_softmax(score / 0.07)`` of the positive, averaged over videos whose targets are not all zero.
    UniVTG picks a random positive and adds the symmetric column term across the batch; we do neither
    (deviation). Weight 0.1 (R2-Tuning's ``SampledNCELoss``; UniVTG's intra weight is 1). Saliency targets default
    to "frame inside a span" (frame i at point i, inclusive as above).

  With no foreground step in the batch ``loss_reg`` and ``loss_giou`` are 0 (attached to the graph).
* Decoding (:func:`decode_dense_grounding`): every valid step of every level gives the span
  ``(p - d_s * stride, p + d_e * stride)`` converted to seconds and clipped to ``[0, duration]``, score = sigmoid
  of its foreground logit; greedy 1-D NMS (:func:`temporal_nms`) removes a span whose IoU with a kept,
  higher-scored one is *strictly above* the threshold (``> 0.7``, as UniVTG's ``temporal_nms``; its default
  ``nms_thd`` is -1 = off; 0.7 is our default, a common choice in moment retrieval that we did not find set in
  UniVTG's own scripts) and the best ``top_k`` = 10
  (``max_after_nms``) are returned as ``[start, end, score]`` lists. IoU here is the true IoU
  (:func:`temporal_iou`); UniVTG's NMS divides by the hull instead of the union (deviation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.temporal.moment_detr_criterion import generalized_temporal_iou, temporal_iou

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
SALIENCY_TEMPERATURE = 0.07
NMS_THRESHOLD = 0.7
TOP_K = 10


def default_regress_ranges(strides: Sequence[int]) -> list[tuple[float, float]]:
    """R2-Tuning's per-level regression ranges: ``(0, s_1), (s_1, s_2), ..., (s_L, inf)`` in frame units."""
    ranges, last = [], 0.0
    for s in list(strides)[1:]:
        ranges.append((last, float(s)))
        last = float(s)
    ranges.append((last, math.inf))
    return ranges


def _check_strides(strides: Sequence[int]) -> tuple[int, ...]:
    strides = tuple(int(s) for s in strides)
    if not strides or strides[0] != 1 or any(b != 2 * a for a, b in zip(strides[:-1], strides[1:], strict=True)):
        raise VideoadaptError(f"dense grounding: strides must be 1, 2, 4, ... (each twice the last), got {strides}")
    return strides


class _ConvHead(nn.Module):
    """Conv1d(D,D,k) + ReLU + Conv1d(D,out,k) over ``[B,L,D]`` -> ``[B,L,out]`` (R2-Tuning's ``ConvHead``)."""

    def __init__(self, dim: int, out: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(dim, out, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)


class DenseGroundingHead(nn.Module):
    """Per-step foreground logit and (start, end) distances over a small temporal pyramid, plus frame saliency."""

    def __init__(self, dim: int, strides: Sequence[int] = (1, 2, 4), kernel_size: int = 3) -> None:
        super().__init__()
        self.strides = _check_strides(strides)
        self.downsample = nn.ModuleList(
            nn.Conv1d(dim, dim, 3, stride=2, padding=1) for _ in range(len(self.strides) - 1)
        )
        self.class_head = _ConvHead(dim, 1, kernel_size)
        self.coord_head = _ConvHead(dim, 2, kernel_size)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))
        self.saliency_head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if x.dim() != 3:
            raise VideoadaptError(f"dense grounding head: features must be [B,T,D], got {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise VideoadaptError(
                f"dense grounding head: mask must be [B,T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}"
            )
        mask = mask.bool()
        feats, masks = [x * mask.unsqueeze(-1)], [mask]
        for conv in self.downsample:
            prev = feats[-1] * masks[-1].unsqueeze(-1)
            feats.append(F.relu(conv(prev.transpose(1, 2))).transpose(1, 2))
            pooled = F.max_pool1d(masks[-1].float().unsqueeze(1), 2, 2, ceil_mode=True).squeeze(1)
            masks.append(pooled.bool())
        logits, dists, points, strides = [], [], [], []
        for level, (f, stride) in enumerate(zip(feats, self.strides, strict=True)):
            logits.append(self.class_head(f).squeeze(-1))
            dists.append(self.coord_head(f).clamp(max=20.0).exp() * self.scales[level])
            n = f.shape[1]
            points.append(torch.arange(n, device=x.device, dtype=x.dtype) * stride)
            strides.append(torch.full((n,), float(stride), device=x.device, dtype=x.dtype))
        saliency = torch.tanh(self.saliency_head(x).squeeze(-1)).masked_fill(~mask, 0.0)
        return {
            "fg_logits": torch.cat(logits, dim=1),
            "distances": torch.cat(dists, dim=1),
            "step_mask": torch.cat(masks, dim=1),
            "points": torch.cat(points),
            "strides": torch.cat(strides),
            "saliency": saliency,
            "frame_mask": mask,
        }


def check_spans(spans: Sequence[torch.Tensor], durations: torch.Tensor, batch: int, where: str) -> None:
    """Raise :class:`VideoadaptError` unless there are ``batch`` tensors ``[n,2]`` of (start, end) seconds with
    ``0 <= start < end <= duration`` and ``batch`` positive durations."""
    if durations.dim() != 1 or durations.shape[0] != batch:
        raise VideoadaptError(f"{where}: durations must be [B] = [{batch}], got {tuple(durations.shape)}")
    if not bool(torch.isfinite(durations).all()) or bool((durations <= 0).any()):
        raise VideoadaptError(f"{where}: every duration must be finite and > 0, got {durations.tolist()}")
    if len(spans) != batch:
        raise VideoadaptError(f"{where}: {batch} videos but {len(spans)} span entries")
    for i, m in enumerate(spans):
        if not isinstance(m, torch.Tensor) or m.dim() != 2 or m.shape[-1] != 2:
            shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise VideoadaptError(f"{where}: spans of video {i} must be a [n,2] tensor of (start, end), got {shape}")
        if not bool(torch.isfinite(m).all()):
            raise VideoadaptError(f"{where}: spans of video {i} hold a non-finite value")
        dur = float(durations[i])
        for j, (s, e) in enumerate(m.tolist()):
            if e <= s:
                raise VideoadaptError(f"{where}: span {j} of video {i} is ({s:g}, {e:g}); its end must be > start")
            if s < 0 or e > dur:
                raise VideoadaptError(
                    f"{where}: span {j} of video {i} is ({s:g}, {e:g}), outside the video [0, {dur:g}] seconds"
                )


def assign_targets(
    points: torch.Tensor,
    strides: torch.Tensor,
    spans: torch.Tensor,
    regress_ranges: Sequence[tuple[float, float]] | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of one video. ``points``/``strides`` ``[N]`` and ``spans`` ``[M,2]`` in frame units;
    ``regress_ranges`` per step ``[N,2]`` (or per level, then matched to the steps by their stride order).
    Returns foreground ``[N]`` (0/1 float) and distances ``[N,2]`` in steps (0 on background)."""
    n = points.shape[0]
    if not isinstance(regress_ranges, torch.Tensor):
        levels = sorted(set(strides.tolist()))
        if len(levels) != len(regress_ranges):
            raise VideoadaptError(f"dense grounding: {len(levels)} levels but {len(regress_ranges)} regress ranges")
        table = torch.tensor(regress_ranges, dtype=points.dtype, device=points.device)
        level_of = torch.tensor([levels.index(s) for s in strides.tolist()], device=points.device, dtype=torch.long)
        regress_ranges = table[level_of]
    fg = points.new_zeros(n)
    reg = points.new_zeros(n, 2)
    if spans.shape[0] == 0 or n == 0:
        return fg, reg
    to_start = points[:, None] - spans[None, :, 0]  # [N,M]
    to_end = spans[None, :, 1] - points[:, None]
    inside = (to_start >= 0) & (to_end >= 0)
    far = torch.maximum(to_start, to_end)
    in_range = (far >= regress_ranges[:, 0:1]) & (far <= regress_ranges[:, 1:2])
    lengths = (spans[:, 1] - spans[:, 0])[None, :].expand(n, -1)
    lengths = lengths.masked_fill(~(inside & in_range), math.inf)
    best_len, best = lengths.min(dim=1)  # first of the shortest on a tie
    fg = torch.isfinite(best_len).to(points.dtype)
    idx = torch.arange(n, device=points.device)
    reg = torch.stack((to_start[idx, best], to_end[idx, best]), dim=-1) / strides[:, None]
    reg = reg * fg[:, None]
    return fg, reg


def spans_to_frames(spans: torch.Tensor, duration: float, num_frames: int) -> torch.Tensor:
    """Seconds -> frame units: ``spans * num_frames / duration``."""
    return spans * (num_frames / duration)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Element-wise sigmoid focal loss (alpha 0.25, gamma 2), no reduction."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA


class DenseGroundingCriterion(nn.Module):
    """Focal foreground loss, L1 + gIoU on foreground steps and a contrastive saliency loss (see module doc)."""

    def __init__(
        self,
        strides: Sequence[int] = (1, 2, 4),
        cls_weight: float = 1.0,
        reg_weight: float = 0.2,
        giou_weight: float = 1.0,
        saliency_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.strides = _check_strides(strides)
        self.regress_ranges = default_regress_ranges(self.strides)
        self.weights = {"loss_cls": cls_weight, "loss_reg": reg_weight, "loss_giou": giou_weight}
        self.weights["loss_sal"] = saliency_weight

    def targets(
        self, outputs: dict[str, torch.Tensor], spans: Sequence[torch.Tensor], durations: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground ``[B,N]`` and distance ``[B,N,2]`` targets from spans in seconds."""
        frame_mask = outputs["frame_mask"]
        fgs, regs = [], []
        for b, sp in enumerate(spans):
            frames = spans_to_frames(sp.to(outputs["points"]), float(durations[b]), int(frame_mask[b].sum()))
            fg, reg = assign_targets(outputs["points"], outputs["strides"], frames, self.regress_ranges)
            fgs.append(fg * outputs["step_mask"][b])
            regs.append(reg * outputs["step_mask"][b, :, None])
        return torch.stack(fgs), torch.stack(regs)

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        spans: Sequence[torch.Tensor],
        durations: torch.Tensor,
        saliency: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        logits, dists = outputs["fg_logits"], outputs["distances"]
        batch = logits.shape[0]
        durations = torch.as_tensor(durations, dtype=torch.float32)
        check_spans(spans, durations, batch, "dense grounding criterion")
        if dists.shape != (*logits.shape, 2):
            raise VideoadaptError(
                f"dense grounding criterion: distances must be [B,N,2] = {(*logits.shape, 2)}, got {tuple(dists.shape)}"
            )
        step_mask = outputs["step_mask"].to(logits.dtype)
        fg, reg = self.targets(outputs, spans, durations)
        losses = {"loss_cls": (sigmoid_focal_loss(logits, fg) * step_mask).sum() / step_mask.sum().clamp(min=1)}
        pos = fg > 0
        if bool(pos.any()):
            losses["loss_reg"] = (dists[pos] - reg[pos]).abs().sum() / (2 * pos.sum())
            pts = outputs["points"].expand_as(logits)[pos]
            st = outputs["strides"].expand_as(logits)[pos]
            pred = torch.stack((pts - dists[pos][:, 0] * st, pts + dists[pos][:, 1] * st), dim=-1)
            gt = torch.stack((pts - reg[pos][:, 0] * st, pts + reg[pos][:, 1] * st), dim=-1)
            losses["loss_giou"] = (1 - torch.diag(generalized_temporal_iou(pred, gt))).mean()
        else:
            losses["loss_reg"] = dists.sum() * 0.0
            losses["loss_giou"] = dists.sum() * 0.0
        losses["loss_sal"] = self.saliency_loss(outputs, spans, durations, saliency)
        losses["loss_total"] = sum(self.weights[k] * losses[k] for k in self.weights)
        return losses

    def saliency_loss(
        self,
        outputs: dict[str, torch.Tensor],
        spans: Sequence[torch.Tensor],
        durations: torch.Tensor,
        saliency: torch.Tensor | None,
    ) -> torch.Tensor:
        scores, frame_mask = outputs["saliency"], outputs["frame_mask"]
        if saliency is None:
            frames = torch.arange(scores.shape[1], dtype=scores.dtype, device=scores.device)
            rows = []
            for b, sp in enumerate(spans):
                sp = spans_to_frames(sp.to(scores), float(durations[b]), int(frame_mask[b].sum()))
                inside = (frames[:, None] >= sp[None, :, 0]) & (frames[:, None] <= sp[None, :, 1])
                rows.append(inside.any(dim=1).to(scores.dtype))
            saliency = torch.stack(rows)
        if saliency.shape != scores.shape:
            raise VideoadaptError(
                f"dense grounding criterion: saliency targets must be [B,T] = {tuple(scores.shape)}, "
                f"got {tuple(saliency.shape)}"
            )
        saliency = saliency.to(scores).masked_fill(~frame_mask, 0.0)
        terms = []
        for b in range(scores.shape[0]):
            if float(saliency[b].sum()) == 0:
                continue
            pos = int(saliency[b].argmax())
            keep = (saliency[b] < saliency[b, pos]) & frame_mask[b]
            keep[pos] = True
            logits = (scores[b] / SALIENCY_TEMPERATURE).masked_fill(~keep, -math.inf)
            terms.append(-F.log_softmax(logits, dim=0)[pos])
        if not terms:
            return scores.sum() * 0.0
        return torch.stack(terms).mean()


def temporal_nms(spans: torch.Tensor, scores: torch.Tensor, threshold: float = NMS_THRESHOLD) -> torch.Tensor:
    """Greedy 1-D NMS: indices (best first) of the spans kept; a span is dropped when its IoU with a kept,
    higher-scored span is strictly above ``threshold``."""
    if spans.dim() != 2 or spans.shape[-1] != 2 or scores.shape != spans.shape[:1]:
        raise VideoadaptError(
            f"temporal_nms: spans must be [N,2] and scores [N], got {tuple(spans.shape)} and {tuple(scores.shape)}"
        )
    order = torch.argsort(scores, descending=True, stable=True)
    iou = temporal_iou(spans, spans)[0]
    removed = torch.zeros(spans.shape[0], dtype=torch.bool)
    kept = []
    for i in order.tolist():
        if removed[i]:
            continue
        kept.append(i)
        removed |= (iou[i] > threshold).cpu()
    return torch.tensor(kept, dtype=torch.long)


@torch.no_grad()
def decode_dense_grounding(
    outputs: dict[str, torch.Tensor],
    durations: torch.Tensor | Sequence[float],
    nms_threshold: float = NMS_THRESHOLD,
    top_k: int = TOP_K,
) -> list[list[list[float]]]:
    """Per video a list of ``[start, end, score]`` in seconds, best first (see module doc)."""
    logits, dists = outputs["fg_logits"], outputs["distances"]
    durations = torch.as_tensor(durations, dtype=torch.float32)
    if durations.dim() != 1 or durations.shape[0] != logits.shape[0]:
        raise VideoadaptError(
            f"decode_dense_grounding: durations must be [B] = [{logits.shape[0]}], got {tuple(durations.shape)}"
        )
    if bool((durations <= 0).any()):
        raise VideoadaptError(f"decode_dense_grounding: every duration must be > 0, got {durations.tolist()}")
    if dists.shape != (*logits.shape, 2):
        raise VideoadaptError(
            f"decode_dense_grounding: distances must be [B,N,2] = {(*logits.shape, 2)}, got {tuple(dists.shape)}"
        )
    results = []
    for b in range(logits.shape[0]):
        valid = outputs["step_mask"][b].bool().cpu()
        dur = float(durations[b])
        seconds_per_frame = dur / int(outputs["frame_mask"][b].sum())
        pts, st = outputs["points"].float().cpu(), outputs["strides"].float().cpu()
        d = dists[b].float().cpu()
        spans = torch.stack((pts - d[:, 0] * st, pts + d[:, 1] * st), dim=-1) * seconds_per_frame
        spans = spans.clamp(0.0, dur)[valid]
        scores = torch.sigmoid(logits[b].float().cpu())[valid]
        keep = temporal_nms(spans, scores, nms_threshold)[:top_k]
        results.append([[float(spans[i, 0]), float(spans[i, 1]), float(scores[i])] for i in keep.tolist()])
    return results
