"""Dense grounding head (R2-Tuning / UniVTG manner): targets, NMS, decoding, losses and bad input, by hand."""

import math

import pytest
import torch

from videoadapt.errors import VideoadaptError
from videoadapt.temporal import (
    DenseGroundingCriterion,
    DenseGroundingHead,
    assign_targets,
    decode_dense_grounding,
    temporal_nms,
)
from videoadapt.temporal.dense_grounding import default_regress_ranges


def _level(n, stride=1):
    return torch.arange(n, dtype=torch.float32) * stride, torch.full((n,), float(stride))


def test_regress_ranges_follow_r2_tuning():
    assert default_regress_ranges((1, 2, 4)) == [(0.0, 2.0), (2.0, 4.0), (4.0, math.inf)]
    assert default_regress_ranges((1,)) == [(0.0, math.inf)]


def test_targets_boundary_steps_are_inclusive():
    points, strides = _level(6)
    fg, reg = assign_targets(points, strides, torch.tensor([[1.0, 3.0]]), [(0.0, math.inf)])
    # points 0..5 against span [1, 3]: 1 <= p <= 3 -> steps 1, 2, 3 (both ends inclusive)
    assert fg.tolist() == [0, 1, 1, 1, 0, 0]
    # distances (p - 1, 3 - p): p=1 -> (0, 2), p=2 -> (1, 1), p=3 -> (2, 0); background 0
    assert reg.tolist() == [[0, 0], [0, 2], [1, 1], [2, 0], [0, 0], [0, 0]]


def test_targets_overlapping_spans_take_the_shortest():
    points, strides = _level(6)
    spans = torch.tensor([[0.0, 4.0], [2.0, 3.0]])
    fg, reg = assign_targets(points, strides, spans, [(0.0, math.inf)])
    assert fg.tolist() == [1, 1, 1, 1, 1, 0]
    # p=1: only [0,4] -> (1, 3); p=2: both, [2,3] (length 1) beats [0,4] (length 4) -> (0, 1); p=3: (1, 0)
    assert reg[1].tolist() == [1, 3]
    assert reg[2].tolist() == [0, 1]
    assert reg[3].tolist() == [1, 0]
    # p=4: only [0,4] (end inclusive) -> (4, 0)
    assert reg[4].tolist() == [4, 0]


def test_targets_pyramid_levels_use_regress_ranges_and_stride_units():
    p0, s0 = _level(4, 1)  # points 0, 1, 2, 3
    p1, s1 = _level(2, 2)  # points 0, 2
    points, strides = torch.cat((p0, p1)), torch.cat((s0, s1))
    fg, reg = assign_targets(points, strides, torch.tensor([[0.0, 4.0]]), default_regress_ranges((1, 2)))
    # ranges: level 0 (0, 2), level 1 (2, inf) on max(p - s, e - p), inclusive.
    # level 0: p=0 -> max(0,4)=4 no; p=1 -> 3 no; p=2 -> 2 yes; p=3 -> 3 no
    # level 1: p=0 -> 4 yes; p=2 -> 2 yes
    assert fg.tolist() == [0, 0, 1, 0, 1, 1]
    # level 1 distances in its steps (stride 2): p=0 -> (0, 4)/2 = (0, 2); p=2 -> (2, 2)/2 = (1, 1)
    assert reg[4].tolist() == [0, 2]
    assert reg[5].tolist() == [1, 1]
    assert reg[2].tolist() == [2, 2]


def test_nms_threshold_is_strict():
    spans = torch.tensor([[0.0, 10.0], [0.0, 6.0], [0.0, 5.0], [0.0, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # IoU with [0, 10]: 6/10 = 0.6 (above 0.5: dropped), 5/10 = 0.5 (at: kept), 4/10 = 0.4 (below: kept)
    # then [0,5] vs [0,4]: 4/5 = 0.8 > 0.5 -> [0,4] dropped
    assert temporal_nms(spans, scores, 0.5).tolist() == [0, 2]
    # at 0.85 nothing overlaps that much ([0,6] vs [0,5] = 5/6 = 0.83)
    assert temporal_nms(spans, scores, 0.85).tolist() == [0, 1, 2, 3]


def _hand_outputs():
    points, strides = _level(4)
    return {
        "fg_logits": torch.tensor([[5.0, -5.0, 0.0, -6.0]]),
        "distances": torch.tensor([[[0.0, 2.0], [1.0, 1.0], [1.0, 1.0], [0.0, 5.0]]]),
        "step_mask": torch.ones(1, 4, dtype=torch.bool),
        "points": points,
        "strides": strides,
        "saliency": torch.zeros(1, 4),
        "frame_mask": torch.ones(1, 4, dtype=torch.bool),
    }


def test_decoding_hand_made_output():
    # 4 frames over 8 s -> 2 s a frame. step 0: frames [0, 2] -> [0, 4] s; step 1: [0, 2] -> [0, 4] s (IoU 1 with
    # step 0: suppressed); step 2: [1, 3] -> [2, 6] s (IoU 2/6 with [0,4]: kept); step 3: [3, 8] -> [6, 16] s,
    # clipped to [6, 8].
    out = decode_dense_grounding(_hand_outputs(), [8.0])
    expected = [[0.0, 4.0, torch.sigmoid(torch.tensor(5.0)).item()], [2.0, 6.0, 0.5]]
    expected.append([6.0, 8.0, torch.sigmoid(torch.tensor(-6.0)).item()])
    assert len(out) == 1
    torch.testing.assert_close(torch.tensor(out[0]), torch.tensor(expected))
    top2 = decode_dense_grounding(_hand_outputs(), [8.0], top_k=2)[0]
    torch.testing.assert_close(torch.tensor(top2), torch.tensor(expected[:2]))


def _perfect_outputs(criterion, spans, durations, t=8, strides=(1, 2, 4)):
    head = DenseGroundingHead(4, strides)
    out = head(torch.randn(len(spans), t, 4))
    fg, reg = criterion.targets(out, spans, torch.tensor(durations))
    out = {k: v.detach() for k, v in out.items()}
    out["fg_logits"] = (2 * fg - 1) * 30.0
    out["distances"] = reg.clone()
    frames = torch.arange(t, dtype=torch.float32)
    sal = []
    for sp, dur in zip(spans, durations, strict=True):
        f = sp * t / dur
        sal.append(((frames[:, None] >= f[:, 0]) & (frames[:, None] <= f[:, 1])).any(1).float() * 2 - 1)
    out["saliency"] = torch.stack(sal)
    return out


def test_losses_near_zero_when_perfect_and_larger_when_wrong():
    crit = DenseGroundingCriterion()
    spans = [torch.tensor([[2.0, 6.0]]), torch.tensor([[0.0, 3.0], [4.0, 8.0]])]
    durations = [8.0, 8.0]
    out = _perfect_outputs(crit, spans, durations)
    losses = crit(out, spans, durations)
    for k in ("loss_cls", "loss_reg", "loss_giou", "loss_sal", "loss_total"):
        assert losses[k].item() < 1e-4, k
    wrong = dict(out)
    wrong["fg_logits"] = -out["fg_logits"]
    wrong["distances"] = out["distances"] + 1.0
    wrong["saliency"] = -out["saliency"]
    bad = crit(wrong, spans, durations)
    for k in ("loss_cls", "loss_reg", "loss_giou", "loss_sal"):
        assert bad[k].item() > 0.1, k
    assert bad["loss_reg"].item() == pytest.approx(1.0)  # every foreground distance off by exactly 1
    total = sum(w * bad[k] for k, w in {"loss_cls": 1.0, "loss_reg": 0.2, "loss_giou": 1.0, "loss_sal": 0.1}.items())
    assert bad["loss_total"].item() == pytest.approx(total.item())


def test_adam_steps_reduce_loss_on_toy_problem():
    torch.manual_seed(0)
    t, d = 16, 8
    spans = [torch.tensor([[4.0, 9.0]]), torch.tensor([[1.0, 5.0]])]
    durations = [16.0, 16.0]
    x = torch.randn(2, t, d) * 0.1
    for b, sp in enumerate(spans):
        s, e = (int(v) for v in sp[0])
        x[b, s : e + 1, 0] += 1.0  # a feature that marks the moment
    head = DenseGroundingHead(d)
    crit = DenseGroundingCriterion()
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = crit(head(x), spans, durations)["loss_total"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert crit(head(x), spans, durations)["loss_total"].item() < 0.7 * first


def test_head_shapes_and_masked_steps():
    head = DenseGroundingHead(4)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    out = head(torch.randn(2, 10, 4), mask)
    # levels of 10, 5 and 3 steps
    assert out["fg_logits"].shape == (2, 18)
    assert out["strides"].tolist() == [1.0] * 10 + [2.0] * 5 + [4.0] * 3
    assert out["points"][10:15].tolist() == [0, 2, 4, 6, 8]
    assert bool((out["distances"] >= 0).all())
    # video 1 has 6 valid frames -> level 1 steps 0..2 and level 2 steps 0..1 valid
    assert out["step_mask"][1].tolist() == [True] * 6 + [False] * 4 + [True] * 3 + [False] * 2 + [True] * 2 + [False]


@pytest.mark.parametrize(
    ("spans", "durations", "needle"),
    [
        ([torch.tensor([[3.0, 3.0]])], [8.0], "end must be > start"),
        ([torch.tensor([[5.0, 2.0]])], [8.0], "end must be > start"),
        ([torch.tensor([[2.0, 9.0]])], [8.0], "outside the video"),
        ([torch.tensor([[-1.0, 2.0]])], [8.0], "outside the video"),
        ([torch.tensor([2.0, 3.0])], [8.0], "must be a [n,2] tensor"),
        ([torch.tensor([[2.0, 3.0]]), torch.tensor([[2.0, 3.0]])], [8.0], "1 videos but 2 span entries"),
        ([torch.tensor([[2.0, 3.0]])], [8.0, 8.0], "durations must be [B]"),
        ([torch.tensor([[2.0, 3.0]])], [0.0], "duration must be finite and > 0"),
    ],
)
def test_bad_spans_raise(spans, durations, needle):
    out = DenseGroundingHead(4)(torch.randn(1, 8, 4))
    with pytest.raises(VideoadaptError) as err:
        DenseGroundingCriterion()(out, spans, durations)
    assert needle in str(err.value)


def test_bad_shapes_raise():
    head = DenseGroundingHead(4)
    with pytest.raises(VideoadaptError, match=r"mask must be \[B,T\]"):
        head(torch.randn(2, 8, 4), torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(VideoadaptError, match=r"features must be \[B,T,D\]"):
        head(torch.randn(8, 4))
    with pytest.raises(VideoadaptError, match="strides must be 1, 2, 4"):
        DenseGroundingHead(4, strides=(1, 3))
    out = head(torch.randn(1, 8, 4))
    out["distances"] = out["distances"][:, :-1]
    with pytest.raises(VideoadaptError, match="distances must be"):
        DenseGroundingCriterion()(out, [torch.tensor([[1.0, 2.0]])], [8.0])
    with pytest.raises(VideoadaptError, match="durations must be"):
        decode_dense_grounding(_hand_outputs(), [8.0, 8.0])
    with pytest.raises(VideoadaptError, match="temporal_nms"):
        temporal_nms(torch.zeros(3, 2), torch.zeros(2))
    out = head(torch.randn(1, 8, 4))
    with pytest.raises(VideoadaptError, match="saliency targets must be"):
        DenseGroundingCriterion()(out, [torch.tensor([[1.0, 2.0]])], [8.0], saliency=torch.zeros(1, 5))
