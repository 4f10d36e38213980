"""Moment-DETR's span utilities, Hungarian matcher and criterion (after jayleicn/moment_detr), checked by hand,
against brute force, and by training the model a few steps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import TextFeatures
from videoadapt.temporal import (
    MomentDETR,
    MomentDETRCriterion,
    MomentDETRMatcher,
    generalized_temporal_iou,
    sample_saliency_pairs,
    span_cxw_to_xx,
    span_xx_to_cxw,
    temporal_iou,
)

BIG = 30.0  # a logit margin that makes a softmax probability 1 to float precision


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- span utilities


def test_span_conversions_by_hand():
    # (c=0.3, w=0.2) -> (0.3 - 0.1, 0.3 + 0.1) = (0.2, 0.4); (c=0.5, w=1) -> (0, 1)
    xx = span_cxw_to_xx(_t([[0.3, 0.2], [0.5, 1.0]]))
    assert torch.allclose(xx, _t([[0.2, 0.4], [0.0, 1.0]]))
    # (0.2, 0.4) -> c = 0.6 / 2 = 0.3, w = 0.4 - 0.2 = 0.2
    assert torch.allclose(span_xx_to_cxw(_t([[0.2, 0.4], [0.0, 1.0]])), _t([[0.3, 0.2], [0.5, 1.0]]))
    batched = torch.rand(3, 4, 2)
    assert torch.allclose(span_xx_to_cxw(span_cxw_to_xx(batched)), batched, atol=1e-6)


def test_iou_and_giou_by_hand():
    a = _t([[0.0, 0.2], [0.2, 0.8], [0.0, 0.5], [0.0, 0.3]])
    b = _t([[0.5, 1.0], [0.4, 0.6], [0.5, 1.0], [0.2, 0.5]])
    iou, union = temporal_iou(a, b)
    giou = generalized_temporal_iou(a, b).diagonal()
    # disjoint [0,.2] vs [.5,1]: inter 0, union .2 + .5 = .7, enclosing 1 -> gIoU = 0 - (1 - .7)/1 = -.3
    # nested [.2,.8] vs [.4,.6]: inter .2, union .6, IoU 1/3, enclosing .6 -> gIoU = 1/3 - 0 = 1/3
    # touching [0,.5] vs [.5,1]: inter 0, union 1, enclosing 1 -> IoU 0, gIoU 0
    # overlapping [0,.3] vs [.2,.5]: inter .1, union .5, IoU .2, enclosing .5 -> gIoU .2
    assert torch.allclose(iou.diagonal(), _t([0.0, 1 / 3, 0.0, 0.2]), atol=1e-6)
    assert torch.allclose(union.diagonal(), _t([0.7, 0.6, 1.0, 0.5]), atol=1e-6)
    assert torch.allclose(giou, _t([-0.3, 1 / 3, 0.0, 0.2]), atol=1e-6)
    # official doctest of span_utils.generalized_temporal_iou (pairwise, not only the diagonal)
    official = generalized_temporal_iou(_t([[0, 0.2], [0.5, 1.0]]), _t([[0, 0.3], [0.0, 1.0]]))
    assert torch.allclose(official, _t([[2 / 3, 0.2], [-0.2, 0.5]]), atol=1e-4)
    # official edge handling: no epsilon, two zero-length spans at one point are 0/0
    assert torch.isnan(generalized_temporal_iou(_t([[0.4, 0.4]]), _t([[0.4, 0.4]]))).all()
    with pytest.raises(VideoadaptError, match="end >= start"):
        generalized_temporal_iou(_t([[0.5, 0.4]]), _t([[0.0, 1.0]]))


# ---------------------------------------------------------------- matcher


def test_matcher_cost_by_hand():
    matcher = MomentDETRMatcher()  # official defaults 10 / 1 / 4
    spans = _t([[0.5, 0.2], [0.3, 0.2]])  # (0.4, 0.6) and (0.2, 0.4)
    logits = _t([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(foreground) = 0.5 and 3/4
    cost = matcher.cost(spans, logits, _t([[0.4, 0.6]]))  # target (c, w) = (0.5, 0.2)
    # slot 0: L1 0, gIoU 1 -> 10*0 - 1 - 4*0.5 = -3
    # slot 1: L1 |0.3-0.5| + 0 = 0.2, touching so gIoU 0 -> 10*0.2 - 0 - 4*0.75 = -1
    assert torch.allclose(cost[:, 0], _t([-3.0, -1.0]), atol=1e-5)
    pairs = matcher(spans[None], logits[None], [_t([[0.4, 0.6]])])
    assert pairs[0][0].tolist() == [0] and pairs[0][1].tolist() == [0]


def _brute_force(cost: torch.Tensor) -> float:
    q, n = cost.shape
    if n <= q:
        return min(sum(float(cost[s, j]) for j, s in enumerate(p)) for p in itertools.permutations(range(q), n))
    return min(sum(float(cost[i, m]) for i, m in enumerate(p)) for p in itertools.permutations(range(n), q))


@pytest.mark.parametrize("seed", range(6))
def test_matcher_agrees_with_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    queries = 5 if seed < 4 else 2  # seeds 4, 5: more moments than slots
    counts = [1, 2, 3, 4] if seed < 4 else [3, 4]
    spans = torch.rand(len(counts), queries, 2, generator=gen) * 0.5 + 0.05
    logits = torch.randn(len(counts), queries, 2, generator=gen)
    moments = []
    for n in counts:
        start = torch.rand(n, generator=gen) * 0.6
        moments.append(torch.stack((start, start + 0.05 + torch.rand(n, generator=gen) * 0.35), dim=1))
    matcher = MomentDETRMatcher()
    pairs = matcher(spans, logits, moments)
    for b, (slots, cols) in enumerate(pairs):
        cost = matcher.cost(spans[b], logits[b], moments[b])
        assert len(slots) == len(cols) == min(queries, counts[b])
        assert len(set(slots.tolist())) == len(slots) and len(set(cols.tolist())) == len(cols)
        assert float(cost[slots, cols].sum()) == pytest.approx(_brute_force(cost), abs=1e-5)


# ---------------------------------------------------------------- criterion


def _outputs(spans, logits, saliency=None, aux_spans=None, aux_logits=None):
    out = {"spans": spans, "span_logits": logits, "saliency": saliency if saliency is not None else torch.zeros(1, 4)}
    if aux_spans is not None:
        out["aux_spans"], out["aux_span_logits"] = aux_spans, aux_logits
    return out


def _perfect(moments_xx: torch.Tensor, queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots 0..n-1 predict the moments exactly and are sure of foreground; the rest are sure of background."""
    n = len(moments_xx)
    spans = torch.full((1, queries, 2), 0.5)
    spans[0, :n] = span_xx_to_cxw(moments_xx)
    logits = torch.zeros(1, queries, 2)
    logits[0, :n, 0] = BIG
    logits[0, n:, 1] = BIG
    return spans, logits


def test_perfect_predictions_give_zero_losses():
    moments = _t([[0.1, 0.3], [0.6, 0.9]])
    spans, logits = _perfect(moments, queries=4)
    saliency = _t([[1.0, 0.0, 0.5, 0.2]])
    crit = MomentDETRCriterion()
    # positives beat negatives by >= margin 0.2: 1.0 vs 0.5 and 0.5 vs 0.2 (0.3 > 0.2) -> hinge 0
    losses = crit(_outputs(spans, logits, saliency), [moments], torch.tensor([[0, 2]]), torch.tensor([[2, 3]]))
    for name in ("loss_span", "loss_giou", "loss_label", "loss_saliency", "loss_total"):
        assert float(losses[name]) == pytest.approx(0.0, abs=1e-6), name
    # moving one predicted span by 0.05 makes the span loss 0.05 / (2 pairs x 2 coordinates) = 0.0125
    spans[0, 1, 0] += 0.05
    losses = crit(_outputs(spans, logits, saliency), [moments], torch.tensor([[0, 2]]), torch.tensor([[2, 3]]))
    assert float(losses["loss_span"]) == pytest.approx(0.0125, abs=1e-6)
    assert float(losses["loss_giou"]) > 0


def test_label_loss_class_weighting_by_hand():
    # one video, 3 slots, logits all 0: cross-entropy ln 2 per slot; one moment -> one slot foreground (weight 1),
    # two background (eos weight 0.1); official mean over the B*Q = 3 slots: (1 + 0.1 + 0.1) ln2 / 3 = 0.4 ln2
    # (reduction='mean' would divide by the weight sum 1.2 and give ln 2; weights swapped would give 0.7 ln2)
    logits = torch.zeros(1, 3, 2)
    spans = _t([[[0.5, 0.2], [0.2, 0.1], [0.8, 0.1]]])
    losses = MomentDETRCriterion(aux_loss=False)(_outputs(spans, logits), [_t([[0.4, 0.6]])])
    assert float(losses["loss_label"]) == pytest.approx(0.4 * math.log(2), abs=1e-6)
    # eos_coef 1: plain mean ln 2
    losses = MomentDETRCriterion(eos_coef=1.0, aux_loss=False)(_outputs(spans, logits), [_t([[0.4, 0.6]])])
    assert float(losses["loss_label"]) == pytest.approx(math.log(2), abs=1e-6)


def test_saliency_hinge_by_hand():
    crit = MomentDETRCriterion()
    saliency = _t([[0.5, 0.1, 0.9, 0.0], [0.0, 0.0, 0.0, 0.0]])
    pos = torch.tensor([[1, 2], [0, 1]])
    neg = torch.tensor([[0, 3], [2, 3]])
    # video 0: max(0, .2 + s0 - s1) = .2 + .5 - .1 = .6; max(0, .2 + s3 - s2) = max(0, .2 - .9) = 0
    # video 1: all scores 0 -> .2 and .2
    # sum 1.0 / (B=2 x P=2) x 2 = 0.5
    assert float(crit.saliency_loss(saliency, pos, neg)) == pytest.approx(0.5, abs=1e-6)
    # a different margin changes it: margin 0 -> (.4 + 0 + 0 + 0) / 4 * 2 = 0.2
    crit0 = MomentDETRCriterion(saliency_margin=0.0)
    assert float(crit0.saliency_loss(saliency, pos, neg)) == pytest.approx(0.2, abs=1e-6)


def test_total_weights_and_aux_layers():
    moments = _t([[0.1, 0.3]])
    good_spans, good_logits = _perfect(moments, queries=3)
    bad_spans = torch.full((1, 3, 2), 0.5)
    bad_logits = torch.zeros(1, 3, 2)
    saliency = _t([[0.0, 0.0, 0.0, 0.0]])
    pos, neg = torch.tensor([[0]]), torch.tensor([[1]])
    # last layer perfect, the one earlier layer poor: the aux losses carry the error, matched on their own
    out = _outputs(good_spans, good_logits, saliency, bad_spans[None], bad_logits[None])
    losses = MomentDETRCriterion()(out, [moments], pos, neg)
    assert set(losses) == {
        "loss_span",
        "loss_giou",
        "loss_label",
        "loss_saliency",
        "loss_span_0",
        "loss_giou_0",
        "loss_label_0",
        "loss_total",
    }
    assert float(losses["loss_span"]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses["loss_span_0"]) > 0 and float(losses["loss_label_0"]) > 0
    weights = {"loss_span": 10, "loss_giou": 1, "loss_label": 4, "loss_saliency": 1}
    expected = sum(w * float(losses[k]) for k, w in weights.items())
    expected += sum(weights[k] * float(losses[f"{k}_0"]) for k in ("loss_span", "loss_giou", "loss_label"))
    assert float(losses["loss_total"]) == pytest.approx(expected, rel=1e-6)
    # saliency 0.2 hinge (all scores equal): 0.2 / 1 * 2 = 0.4
    assert float(losses["loss_saliency"]) == pytest.approx(0.4, abs=1e-6)
    no_aux = MomentDETRCriterion(aux_loss=False)(out, [moments], pos, neg)
    assert "loss_span_0" not in no_aux
    assert float(no_aux["loss_total"]) == pytest.approx(0.4, abs=1e-5)


def test_videos_without_moments_are_all_background():
    logits = torch.zeros(2, 3, 2)
    logits[..., 1] = BIG  # every slot sure of background
    spans = torch.rand(2, 3, 2, requires_grad=True)
    empty = torch.zeros(0, 2)
    losses = MomentDETRCriterion()(_outputs(spans, logits), [empty, empty])
    assert float(losses["loss_label"]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses["loss_span"].detach()) == 0.0 and float(losses["loss_giou"].detach()) == 0.0
    losses["loss_total"].backward()  # still part of the graph
    assert spans.grad is not None


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = MomentDETR(16, 12, hidden=32, heads=4, ffn=64, queries=5, dropout=0.0, input_dropout=0.0)
    frames = torch.randn(3, 8, 16)
    text = TextFeatures(torch.randn(3, 4, 12), torch.ones(3, 4), torch.randn(3, 12))
    moments = [_t([[0.0, 0.25]]), _t([[0.5, 0.75], [0.125, 0.375]]), _t([[0.25, 1.0]])]
    rng = np.random.default_rng(0)
    pairs = [
        sample_saliency_pairs([0, 1], [[2, 2, 2], [1, 1, 1]], 8, rng),
        sample_saliency_pairs([1, 2, 4, 5], [[1], [3], [4], [0]], 8, rng),
        sample_saliency_pairs([2, 3, 4, 5, 6, 7], [[1]] * 6, 8, rng),
    ]
    pos = torch.tensor([p for p, _ in pairs])
    neg = torch.tensor([n for _, n in pairs])
    crit = MomentDETRCriterion()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(40):
        losses = crit(model(frames, None, text)[2], moments, pos, neg)
        opt.zero_grad()
        losses["loss_total"].backward()
        opt.step()
        totals.append(float(losses["loss_total"].detach()))
    assert totals[-1] < 0.6 * totals[0], totals


# ---------------------------------------------------------------- saliency pair sampling


def test_sample_saliency_pairs():
    relevant = [3, 4, 5]
    scores = [[1, 1, 1], [2, 2, 2], [0, 0, 1]]  # sums 3, 6, 1 -> hardest positive clip 4, hardest negative 5
    pos, neg = sample_saliency_pairs(relevant, scores, 8, np.random.default_rng(7))
    assert pos[0] == 4 and neg[0] == 5
    assert pos[1] in relevant and neg[1] not in relevant and 0 <= neg[1] < 8
    assert (pos, neg) == sample_saliency_pairs(relevant, scores, 8, np.random.default_rng(7))  # seeded
    draws = {tuple(sample_saliency_pairs(relevant, scores, 8, np.random.default_rng(s))[1]) for s in range(20)}
    assert len(draws) > 1  # the easy negative is random
    # every clip relevant: the hard pair is repeated (official fallback)
    assert sample_saliency_pairs([0, 1], [[1], [2]], 2, np.random.default_rng(0)) == ([1, 1], [0, 0])
    with pytest.raises(VideoadaptError, match="relevant clip"):
        sample_saliency_pairs([], [], 4, np.random.default_rng(0))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("moment", "message"),
    [
        ([[0.5, 0.5]], r"moment 0 of video 0 is \(0.5, 0.5\)"),
        ([[0.1, 0.2], [0.6, 0.4]], r"moment 1 of video 0 is \(0.6, 0.4\).*start < end"),
        ([[-0.1, 0.2]], r"0 <= start < end <= 1"),
        ([[0.5, 1.2]], r"0 <= start < end <= 1"),
    ],
)
def test_bad_moments_raise(moment, message):
    spans, logits = torch.rand(1, 3, 2), torch.zeros(1, 3, 2)
    with pytest.raises(VideoadaptError, match=message):
        MomentDETRCriterion()(_outputs(spans, logits), [_t(moment)])
    with pytest.raises(VideoadaptError, match=message):
        MomentDETRMatcher()(spans, logits, [_t(moment)])


def test_mismatched_shapes_raise():
    crit = MomentDETRCriterion()
    spans, logits = torch.rand(2, 3, 2), torch.zeros(2, 3, 2)
    good = [_t([[0.1, 0.2]]), _t([[0.3, 0.4]])]
    with pytest.raises(VideoadaptError, match="2 videos in the predictions but 1 ground-truth"):
        crit(_outputs(spans, logits), good[:1])
    with pytest.raises(VideoadaptError, match="span logits must be"):
        crit(_outputs(spans, torch.zeros(2, 4, 2)), good)
    with pytest.raises(VideoadaptError, match="saliency has 1 videos"):
        crit(_outputs(spans, logits, torch.zeros(1, 4)), good, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1))
    sal = torch.zeros(2, 4)
    with pytest.raises(VideoadaptError, match="saliency_pos must be"):
        crit(_outputs(spans, logits, sal), good, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2).long())
    with pytest.raises(VideoadaptError, match=r"clip indices in \[0, 4\)"):
        crit(_outputs(spans, logits, sal), good, torch.full((2, 1), 4), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(VideoadaptError, match="both saliency_pos and saliency_neg"):
        crit(_outputs(spans, logits, sal), good, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(VideoadaptError, match="cannot all be 0"):
        MomentDETRMatcher(0, 0, 0)
