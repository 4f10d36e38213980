"""COCO box AP through our pycocotools wrapper agrees with hand-computed cases."""

from __future__ import annotations

import math

import pytest

from videoadapt.metrics.detection import Box, box_ap

GT = [[Box((10, 10, 20, 20), "star")]]


def test_one_perfect_box_is_100() -> None:
    result = box_ap(GT, [[Box((10, 10, 20, 20), "star", 0.9)]], ["star", "heart"])
    assert result["all"]["AP"] == pytest.approx(100) and result["all"]["AP50"] == pytest.approx(100)


def test_a_box_at_iou_0_6_counts_at_50_but_not_at_strict_thresholds() -> None:
    # Shifted by 2.5 px: intersection 75, union 125, IoU 0.6 → a hit at IoU 0.50, 0.55, 0.60 of the ten.
    result = box_ap(GT, [[Box((12.5, 10, 22.5, 20), "star", 0.9)]], ["star"])
    assert result["all"]["AP50"] == pytest.approx(100)
    assert result["all"]["AP"] == pytest.approx(30)


def test_half_recall_at_full_precision_is_coco_101_point_interpolation() -> None:
    gt = [[Box((10, 10, 20, 20), "star")], [Box((30, 30, 40, 40), "star")]]
    dt = [[Box((10, 10, 20, 20), "star", 0.9)], []]
    # Precision 1 at recall 0..0.5 (51 of the 101 recall points), 0 beyond.
    assert box_ap(gt, dt, ["star"])["all"]["AP"] == pytest.approx(100 * 51 / 101)


def test_a_higher_scored_false_positive_halves_precision() -> None:
    dt = [[Box((40, 40, 50, 50), "star", 0.95), Box((10, 10, 20, 20), "star", 0.9)]]
    # The true positive comes second: precision 1/2 at recall 1 (and, interpolated, at every recall point).
    assert box_ap(GT, dt, ["star"])["all"]["AP50"] == pytest.approx(50)


def test_wrong_category_is_a_miss() -> None:
    assert box_ap(GT, [[Box((10, 10, 20, 20), "heart", 0.9)]], ["star", "heart"])["all"]["AP"] == pytest.approx(0)


def test_groups_average_apart_and_a_group_without_ground_truth_is_nan() -> None:
    gt = [[Box((10, 10, 20, 20), "star"), Box((30, 30, 40, 40), "heart")]]
    dt = [[Box((10, 10, 20, 20), "star", 0.9), Box((0, 0, 5, 5), "heart", 0.8)]]
    groups = {"seen": ["star"], "held_out": ["heart"], "empty": ["circle"]}
    result = box_ap(gt, dt, ["star", "heart", "circle"], groups)
    assert result["seen"]["AP"] == pytest.approx(100)
    assert result["held_out"]["AP"] == pytest.approx(0)
    assert math.isnan(result["empty"]["AP"]) and result["empty"]["categories"] == 0
    assert result["per_category"]["star"] == pytest.approx(100)


def test_no_detections_at_all_is_zero_and_mismatched_lengths_are_refused() -> None:
    assert box_ap(GT, [[]], ["star"])["all"]["AP"] == pytest.approx(0)
    with pytest.raises(ValueError, match="ground-truth images"):
        box_ap(GT, [], ["star"])
