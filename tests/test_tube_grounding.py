"""TubeDETR-style tube grounding head: box conversions, gIoU, Gaussian targets, KL, decoding, losses, bad input."""

import math

import pytest
import torch

from videoadapt.errors import VideoadaptError
from videoadapt.temporal import (
    TubeGroundingCriterion,
    TubeGroundingHead,
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    decode_tube,
    gaussian_frame_target,
    paired_generalized_box_iou,
    sted_kl_loss,
)


def test_box_conversions_by_hand():
    cxcywh = torch.tensor([0.5, 0.4, 0.2, 0.6])
    xyxy = box_cxcywh_to_xyxy(cxcywh)
    assert torch.allclose(xyxy, torch.tensor([0.4, 0.1, 0.6, 0.7]))
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), cxcywh)


def test_giou_by_hand_identical_nested_disjoint():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 3)
    b = torch.tensor(
        [
            [0.0, 0.0, 2.0, 2.0],  # identical: 1
            [0.5, 0.5, 1.5, 1.5],  # nested: iou 1/4, hull = a -> 0.25
            [3.0, 0.0, 4.0, 1.0],  # disjoint: iou 0, hull 4x2=8, union 5 -> -3/8
        ]
    )
    g = paired_generalized_box_iou(a, b)
    assert torch.allclose(g, torch.tensor([1.0, 0.25, -3.0 / 8.0]))


def test_gaussian_target_by_hand_and_masked():
    target = gaussian_frame_target(torch.tensor([1]), 3, sigma=1.0, eps=0.0)
    w = [math.exp(-0.5), 1.0, math.exp(-0.5)]
    assert torch.allclose(target[0], torch.tensor(w) / sum(w))
    target = gaussian_frame_target(
        torch.tensor([0]), 3, sigma=2.0, time_mask=torch.tensor([[True, True, False]]), eps=0
    )
    w = [1.0, math.exp(-1.0 / 8.0)]
    assert torch.allclose(target[0], torch.tensor([w[0], w[1], 0.0]) / sum(w))


def test_kl_zero_when_prediction_equals_target_and_positive_otherwise():
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    target = gaussian_frame_target(torch.tensor([2, 1]), 5, time_mask=mask)
    logits = target.clamp(min=1e-12).log()
    logits[1, 3:] = 123.0  # padded logits must not matter
    assert sted_kl_loss(logits, target, mask).abs() < 1e-5
    assert sted_kl_loss(torch.zeros(2, 5), target, mask) > 1e-2


def test_decoding_hand_table_strict_start_before_end():
    # p_start peaks at 2, p_end peaks at 1: the unconstrained best (2, 1) and (2, 2) are forbidden.
    p_start = torch.tensor([0.1, 0.2, 0.6, 0.1])
    p_end = torch.tensor([0.1, 0.5, 0.1, 0.3])
    sted = torch.stack([p_start.log(), p_end.log()], -1)[None]
    boxes = torch.rand(1, 4, 4)
    (out,) = decode_tube({"pred_boxes": boxes, "pred_sted": sted})
    # candidates: (0,1)=.05 (0,3)=.03 (1,3)=.06 (2,3)=.18 (1,2)=.02 ... -> (2,3)
    assert (out["start"], out["end"]) == (2, 3)
    assert out["score"] == pytest.approx(0.18, rel=1e-5)
    assert torch.equal(out["boxes"], boxes[0, 2:4])
    # with the last frame padded, (2,3) is gone; best is (0,1)=.05 over (1,2)=.02, (0,2)=.01
    (out,) = decode_tube({"pred_boxes": boxes, "pred_sted": sted}, torch.tensor([[True, True, True, False]]))
    assert (out["start"], out["end"]) == (0, 1)


def _perfect_outputs(spans, boxes, t, mask=None):
    b = len(boxes)
    pred = torch.full((b, t, 4), 0.5)
    for i, (s, e) in enumerate(spans):
        pred[i, s : e + 1] = boxes[i]
    crit = TubeGroundingCriterion()
    mask = mask if mask is not None else torch.ones(b, t, dtype=torch.bool)
    st = gaussian_frame_target(torch.tensor([s for s, _ in spans]), t, crit.sigma, mask)
    en = gaussian_frame_target(torch.tensor([e for _, e in spans]), t, crit.sigma, mask)
    sted = torch.stack([st.clamp(min=1e-12).log(), en.clamp(min=1e-12).log()], -1)
    return {"pred_boxes": pred, "pred_sted": sted}


def test_losses_near_zero_when_perfect_and_weights_official():
    spans = [(1, 3), (0, 1)]
    boxes = [
        torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.4, 0.5, 0.2, 0.3], [0.3, 0.5, 0.2, 0.3]]),
        torch.rand(2, 4) * 0.3 + 0.2,
    ]
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    crit = TubeGroundingCriterion()
    losses = crit(_perfect_outputs(spans, boxes, 5, mask), torch.tensor(spans), boxes, mask)
    for k in ("loss_bbox", "loss_giou", "loss_sted", "loss_total"):
        assert losses[k].abs() < 1e-4, (k, losses[k])  # eps = 1e-6 leaves a tiny residual
    assert crit.weights == {"loss_bbox": 5.0, "loss_giou": 2.0, "loss_sted": 10.0}
    wrong = _perfect_outputs(spans, boxes, 5, mask)
    wrong["pred_boxes"] = wrong["pred_boxes"] + 0.1
    losses = crit(wrong, torch.tensor(spans), boxes, mask)
    assert losses["loss_bbox"] == pytest.approx(0.4, rel=1e-4)  # 4 coords x 0.1, per box
    expected = 5 * losses["loss_bbox"] + 2 * losses["loss_giou"] + 10 * losses["loss_sted"]
    assert torch.allclose(losses["loss_total"], expected)


def test_adam_steps_reduce_loss():
    torch.manual_seed(0)
    head = TubeGroundingHead(16, sted_dropout=0.0)
    crit = TubeGroundingCriterion()
    x = torch.randn(2, 6, 16)
    spans = torch.tensor([[1, 3], [2, 5]])
    boxes = [torch.tensor([[0.3, 0.3, 0.2, 0.2]] * 3), torch.tensor([[0.7, 0.6, 0.3, 0.4]] * 4)]
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = crit(head(x), spans, boxes)["loss_total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert crit(head(x), spans, boxes)["loss_total"].item() < 0.5 * first


def test_head_shapes_and_ranges():
    out = TubeGroundingHead(8).eval()(torch.randn(3, 5, 8))
    assert out["pred_boxes"].shape == (3, 5, 4) and out["pred_sted"].shape == (3, 5, 2)
    assert bool(((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all())


def _good():
    outputs = {"pred_boxes": torch.full((1, 4, 4), 0.5), "pred_sted": torch.zeros(1, 4, 2)}
    return outputs, torch.tensor([[1, 2]]), [torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 2)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o, s, b: (o, s, [torch.tensor([[0.5, 0.5, 0.0, 0.2]] * 2)]), "non-positive width or height"),
        (lambda o, s, b: (o, torch.tensor([[2, 1]]), b), "ends before it starts"),
        (lambda o, s, b: (o, torch.tensor([[3, 4]]), b), "out of range"),
        (lambda o, s, b: (o, torch.tensor([[-1, 0]]), b), "out of range"),
        (lambda o, s, b: (o, s, [torch.rand(3, 4)]), "boxes must be [2,4]"),
        (lambda o, s, b: ({**o, "pred_boxes": torch.rand(1, 3, 4)}, s, b), "pred_boxes must be [B,T,4]"),
        (lambda o, s, b: (o, torch.tensor([1, 2]), b), "spans must be [B,2]"),
    ],
)
def test_bad_criterion_input_raises(change, message):
    outputs, spans, boxes = change(*_good())
    with pytest.raises(VideoadaptError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TubeGroundingCriterion()(outputs, spans, boxes)


def test_bad_other_input_raises():
    with pytest.raises(VideoadaptError, match=r"queries must be \[B,T,8\]"):
        TubeGroundingHead(8)(torch.randn(2, 5, 7))
    with pytest.raises(VideoadaptError, match="non-positive width or height"):
        paired_generalized_box_iou(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[1.0, 0, 0.5, 1]]))
    with pytest.raises(VideoadaptError, match="same shape"):
        paired_generalized_box_iou(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 1, 1]] * 2))
    outputs, _, _ = _good()
    with pytest.raises(VideoadaptError, match="time_mask must be"):
        decode_tube(outputs, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(VideoadaptError, match="at least 2 real frames"):
        decode_tube(outputs, torch.tensor([[True, False, False, False]]))
    with pytest.raises(VideoadaptError, match="sigma must be > 0"):
        TubeGroundingCriterion(sigma=0)


def test_decoding_rejects_start_equal_to_end():
    # (1, 1) would score .56 if i <= j were allowed; with i < j the best is (1, 2) = .16.
    sted = torch.stack([torch.tensor([0.1, 0.8, 0.1]).log(), torch.tensor([0.1, 0.7, 0.2]).log()], -1)[None]
    (out,) = decode_tube({"pred_boxes": torch.rand(1, 3, 4), "pred_sted": sted})
    assert (out["start"], out["end"]) == (1, 2)
    assert out["score"] == pytest.approx(0.16, rel=1e-5)
