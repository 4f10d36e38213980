"""Temporal and spatio-temporal grounding metrics: hand-derived cases, threshold boundaries, and brute-force
re-derivations on seeded random inputs (see the module docstrings for the conventions being tested)."""

from __future__ import annotations

import numpy as np
import pytest

from videoadapt.errors import VideoadaptError
from videoadapt.metrics import (
    box_iou,
    charades_sta_metrics,
    highlight_detection_metrics,
    moment_retrieval_metrics,
    qvhighlights_saliency_labels,
    st_grounding_metrics,
    temporal_iou,
)

# ---------------------------------------------------------------- temporal IoU


def test_temporal_iou_by_hand():
    assert temporal_iou([0, 2], [0, 4]) == 0.5  # inter 2 / union 4
    assert temporal_iou([1, 3], [2, 6]) == pytest.approx(1 / 5)  # inter [2,3] = 1, union [1,6] = 5
    assert temporal_iou([0, 2], [2, 4]) == 0.0  # touching
    assert temporal_iou([0, 1], [5, 9]) == 0.0  # disjoint: the hull (9) must not matter


# ---------------------------------------------------------------- Charades-STA (2D-TAN: strict >)


def test_charades_strict_threshold_and_miou():
    gt = {"q1": [0, 4], "q2": [0, 4], "q3": [10, 20]}
    pred = {
        "q1": [[0, 2]],  # IoU 2/4 = 0.5 exactly: not > 0.5, but > 0.3
        "q2": [[0, 3.5, 0.1]],  # IoU 3.5/4 = 0.875: counts everywhere; score ignored
        "q3": [],  # empty: IoU 0, a miss
    }
    m = charades_sta_metrics(pred, gt)
    assert m["R1@0.3"] == pytest.approx(200 / 3)  # q1, q2
    assert m["R1@0.5"] == pytest.approx(100 / 3)  # q2 only: 0.5 is not > 0.5
    assert m["R1@0.7"] == pytest.approx(100 / 3)
    assert m["mIoU"] == pytest.approx(100 * (0.5 + 0.875 + 0) / 3)
    assert "R5@0.5" not in m


def test_charades_r5_uses_first_five_listed():
    gt = {"q": [0, 10]}
    # list order is the ranking: the good window is 6th, so R5 misses it; top-1 IoU = [0,1] vs [0,10] = 0.1
    pred = {"q": [[0, 1]] * 5 + [[0, 10]]}
    m = charades_sta_metrics(pred, gt, ranks=(1, 5))
    assert m["R5@0.3"] == 0.0 and m["mIoU"] == pytest.approx(10.0)
    pred = {"q": [[0, 1]] * 4 + [[0, 10]]}  # 5th: hit
    m = charades_sta_metrics(pred, gt, ranks=(1, 5))
    assert (m["R1@0.3"], m["R5@0.3"], m["R5@0.7"]) == (0.0, 100.0, 100.0)


def _charades_brute(pred, gt, thresholds, ranks):
    # integer endpoints: IoU by counting unit cells
    def iou(a, b):
        ca, cb = set(range(int(a[0]), int(a[1]))), set(range(int(b[0]), int(b[1])))
        return len(ca & cb) / len(ca | cb)

    out = {}
    for n in ranks:
        for t in thresholds:
            out[f"R{n}@{t:g}"] = 100 * np.mean([any(iou(w, gt[q]) > t for w in pred[q][:n]) for q in gt])
    out["mIoU"] = 100 * np.mean([iou(pred[q][0], gt[q]) if pred[q] else 0.0 for q in gt])
    return out


def test_charades_matches_brute_force():
    rng = np.random.default_rng(0)
    gt, pred = {}, {}
    for q in range(60):
        s = int(rng.integers(0, 20))
        gt[q] = [s, s + int(rng.integers(1, 12))]
        pred[q] = []
        for _ in range(int(rng.integers(0, 7))):
            s = int(rng.integers(0, 20))
            pred[q].append([s, s + int(rng.integers(1, 12))])
    got = charades_sta_metrics(pred, gt, ranks=(1, 5))
    want = _charades_brute(pred, gt, (0.3, 0.5, 0.7), (1, 5))
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


# ---------------------------------------------------------------- QVHighlights MR (Moment-DETR: inclusive >=)


def test_mr_by_hand_several_gt_windows():
    gt = {"a": [[0, 4], [10, 12]], "b": [[0, 4]]}
    pred = {"a": [[0, 2, 0.9], [0, 4, 0.8]], "b": [[1, 3, 0.5]]}
    m = moment_retrieval_metrics(pred, gt)
    # R1: a's first window [0,2] has IoU 0.5 with [0,4] (its best GT) -> counts at 0.5 (inclusive), not at 0.55.
    # b: [1,3] vs [0,4] = 2/4 = 0.5 -> same.
    assert m["R1@0.5"] == 100.0 and m["R1@0.55"] == 0.0 and m["R1@0.7"] == 0.0
    # AP@0.5, a: sorted by score [0,2] (IoU .5 -> TP on [0,4]), [0,4] (IoU 1 with [0,4] but taken; 0 with [10,12] -> FP)
    #   precision [1, 1/2]; TPs at rank 1 -> AP = (1/2 GT) * 1 = 0.5.  b: TP -> AP 1.  mAP@0.5 = 75.
    assert m["mAP@0.5"] == pytest.approx(75.0)
    # AP@0.75, a: [0,2] FP, [0,4] TP -> precision [0, 1/2]; AP = 1/2 * 1/2 = 0.25.  b: 0.  mAP@0.75 = 12.5
    assert m["mAP@0.75"] == pytest.approx(12.5)
    # thresholds 0.55..0.95 all like 0.75 -> mAP = (75 + 9 * 12.5) / 10
    assert m["mAP"] == pytest.approx((75 + 9 * 12.5) / 10)


def test_mr_interpolation_and_score_sort():
    # one GT [0,10]; listed order is not score order: AP sorts by score, R1 takes the first listed window.
    gt = {"q": [[0, 10], [20, 30]]}
    pred = {"q": [[0, 1, 0.1], [40, 50, 0.9], [0, 10, 0.5], [20, 30, 0.3]]}
    m = moment_retrieval_metrics(pred, gt)
    assert m["R1@0.5"] == 0.0  # first listed [0,1] has IoU 0.1
    # score order: [40,50] FP, [0,10] TP, [20,30] TP, [0,1] FP -> precision 0, 1/2, 2/3, 2/4
    # interpolated at the TPs: max(1/2, 2/3, 1/2) = 2/3 and max(2/3, 1/2) = 2/3 -> AP = (2/3 + 2/3) / 2 = 2/3
    assert m["mAP@0.5"] == pytest.approx(200 / 3)
    assert m["mAP@0.95"] == pytest.approx(200 / 3)  # all IoUs are 1 or < 0.5


def test_mr_only_first_ten_listed_windows():
    gt = {"q": [[0, 10]]}
    pred = {"q": [[50, 60, 0.1]] * 10 + [[0, 10, 1.0]]}  # the perfect window is 11th listed
    assert moment_retrieval_metrics(pred, gt)["mAP"] == 0.0
    assert moment_retrieval_metrics(pred, gt, max_pred_windows=None)["mAP"] == 100.0


def test_mr_score_ties_keep_list_order():
    gt = {"q": [[0, 10]]}
    # equal scores: list order decides -> FP then TP: precision [0, 1/2] -> AP 0.5; reversed list -> AP 1
    assert moment_retrieval_metrics({"q": [[50, 60, 0.5], [0, 10, 0.5]]}, gt)["mAP@0.5"] == 50.0
    assert moment_retrieval_metrics({"q": [[0, 10, 0.5], [50, 60, 0.5]]}, gt)["mAP@0.5"] == 100.0


def test_mr_gt_iou_ties_try_higher_index_first():
    # p1 = [2,4] has IoU 2/4 = 0.5 with both [2,6] and [0,4]; p2 = [0,2] has IoU 0.5 with [0,4] only.
    pred = {"q": [[2, 4, 0.9], [0, 2, 0.8]]}
    # GT 0 = [0,4], GT 1 = [2,6]: p1's tie goes to the higher index, GT 1; p2 then takes GT 0 -> 2 TPs, AP 1
    # (lower index first would leave p2 without a free GT: AP 0.5).
    assert moment_retrieval_metrics(pred, {"q": [[0, 4], [2, 6]]})["mAP@0.5"] == 100.0
    # mirrored GT order: p1 takes GT 1 = [0,4]; p2 only matches [0,4], taken -> FP: precision [1, 1/2],
    # AP = 1/2 GT x 1 = 0.5 (lower index first would give 1).
    assert moment_retrieval_metrics(pred, {"q": [[2, 6], [0, 4]]})["mAP@0.5"] == 50.0


def test_mr_empty_predictions_count_as_miss():
    gt = {"a": [[0, 4]], "b": [[0, 4]]}
    m = moment_retrieval_metrics({"a": [[0, 4, 1.0]], "b": []}, gt)
    assert m["R1@0.5"] == 50.0 and m["mAP"] == 50.0


def test_mr_gt_length_range():
    gt = {"a": [[0, 4], [10, 30]], "b": [[0, 40]]}
    pred = {"a": [[10, 30, 0.9]], "b": [[0, 40, 0.9]]}
    # (0, 10]: only a's [0,4] remains, b is dropped; a's prediction misses it
    assert moment_retrieval_metrics(pred, gt, gt_length_range=(0, 10))["mAP"] == 0.0
    # (10, 30]: [10,30] has length 20 -> kept; b (40) dropped
    assert moment_retrieval_metrics(pred, gt, gt_length_range=(10, 30))["mAP"] == 100.0
    with pytest.raises(VideoadaptError, match="no query"):
        moment_retrieval_metrics(pred, gt, gt_length_range=(100, 150))


def _mr_brute(pred, gt, thresholds):
    """A straight transcription of the reference's procedure, written independently: dicts, sentinel recall
    and precision arrays, right-to-left envelope, sum over recall changes."""
    r1, aps = [], []
    for q in gt:
        windows = pred[q]
        ious_first = [temporal_iou(windows[0], g) for g in gt[q]] if windows else []
        best = gt[q][int(np.argmax(ious_first))] if windows else None
        r1.append([bool(windows) and temporal_iou(windows[0], best) >= t for t in thresholds])
        ranked = sorted(windows[:10], key=lambda w: -w[2])
        row = []
        for t in thresholds:
            lock, tp, fp = {}, [], []
            for w in ranked:
                ious = [temporal_iou(w, g) for g in gt[q]]
                order = sorted(range(len(ious)), key=lambda j: (-ious[j], -j))
                hit = False
                for j in order:
                    if ious[j] < t:
                        break
                    if j in lock:
                        continue
                    lock[j] = True
                    hit = True
                    break
                tp.append(int(hit))
                fp.append(int(not hit))
            if not ranked:
                row.append(0.0)
                continue
            tpc, fpc = np.cumsum(tp), np.cumsum(fp)
            rec = list(tpc / len(gt[q]))
            prec = list(tpc / (tpc + fpc))
            mprec, mrec = [0.0, *prec, 0.0], [0.0, *rec, 1.0]
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            row.append(sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))
        aps.append(row)
    r1m, apm = 100 * np.mean(r1, axis=0), 100 * np.mean(aps, axis=0)
    return r1m, apm


def test_mr_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    gt, pred = {}, {}
    for q in range(80):
        gt[q] = []
        for _ in range(int(rng.integers(1, 4))):
            s = int(rng.integers(0, 30))
            gt[q].append([s, s + int(rng.integers(1, 12))])
        pred[q] = []
        for _ in range(int(rng.integers(0, 14))):
            s = int(rng.integers(0, 30))
            # few score values -> many ties; integer ends -> many exact IoU ties and boundary IoUs
            pred[q].append([s, s + int(rng.integers(1, 12)), float(rng.integers(0, 4))])
    thresholds = [round(0.5 + 0.05 * i, 2) for i in range(10)]
    got = moment_retrieval_metrics(pred, gt)
    r1, ap = _mr_brute(pred, gt, thresholds)
    for i, t in enumerate(thresholds):
        assert got[f"R1@{t:g}"] == pytest.approx(r1[i]), t
        assert got[f"mAP@{t:g}"] == pytest.approx(ap[i]), t
    assert got["mAP"] == pytest.approx(np.mean(ap))
    assert 0 < got["mAP"] < 100


# ---------------------------------------------------------------- QVHighlights HL


def test_hl_by_hand():
    labels = np.array([[0, 4, 2], [4, 4, 4], [0, 0, 0]])  # 3 clips x 3 annotators
    # min 4: annotator 0 positive {1}, annotator 1 {0, 1}, annotator 2 {1}
    m = highlight_detection_metrics({"q": [0.1, 0.9, 0.3]}, {"q": labels})
    # HIT@1: argmax = clip 1, positive for some annotator -> 100
    # AP a0: clip 1 ranked first -> 1. a2: same -> 1.
    # AP a1: thresholds 0.9 (clip1+, P 1/1, R 1/2), 0.3 (clip2-, P 1/2, R 1/2), 0.1 (clip0+, P 2/3, R 1)
    #   recall levels 1/2 -> max(1, 1/2, 2/3) = 1; 1 -> 2/3; mean = 5/6
    assert m["HIT@1"] == 100.0
    assert m["mAP"] == pytest.approx(100 * (1 + 5 / 6 + 1) / 3)
    # min 2 ("Fair"): a0 {1}, a1 {0,1}, a2 {0,1}: (1 + 5/6 + 5/6) / 3
    assert highlight_detection_metrics({"q": [0.1, 0.9, 0.3]}, {"q": labels}, min_score=2)["mAP"] == pytest.approx(
        100 * (1 + 5 / 3) / 3
    )


def test_hl_hit1_tie_earliest_clip_and_out_of_range():
    labels = np.array([[0, 0, 0], [4, 0, 0]])
    assert highlight_detection_metrics({"q": [0.5, 0.5]}, {"q": labels})["HIT@1"] == 0.0  # tie -> clip 0
    assert highlight_detection_metrics({"q": [0.4, 0.5]}, {"q": labels})["HIT@1"] == 100.0  # clip 1, one annotator
    # the predicted top clip (index 2) is beyond the 2 GT clips: a miss
    assert highlight_detection_metrics({"q": [0.4, 0.5, 0.9]}, {"q": labels})["HIT@1"] == 0.0


def test_hl_ties_count_one_recall_level_and_all_or_none_labels():
    # 4 clips, positives {0, 1}; scores: clip0 and clip2 tie at 0.9, clip1 0.5, clip3 0.1.
    # threshold 0.9: {0,2} -> P 1/2, R 1/2; 0.5: {0,1,2} -> P 2/3, R 1; recall levels 1/2 -> max(1/2, 2/3) and 1 -> 2/3
    labels = np.array([[4], [4], [0], [0]])
    m = highlight_detection_metrics({"q": [0.9, 0.5, 0.9, 0.1]}, {"q": labels})
    assert m["mAP"] == pytest.approx(100 * 2 / 3)
    # both positives tied at the top with a negative: one threshold, P 2/3, R 1: a single level -> AP 2/3
    m = highlight_detection_metrics({"q": [0.9, 0.9, 0.9, 0.1]}, {"q": labels})
    assert m["mAP"] == pytest.approx(100 * 2 / 3)
    # every clip positive -> 1 whatever the scores; none -> 0
    assert highlight_detection_metrics({"q": [0.0, 1.0]}, {"q": np.array([[4], [4]])})["mAP"] == 100.0
    assert highlight_detection_metrics({"q": [0.0, 1.0]}, {"q": np.array([[3], [1]])})["mAP"] == 0.0


def test_hl_predictions_padded_or_cut_to_gt_clips():
    labels = np.array([[0], [0], [4]])
    # 2 scores for 3 clips: padded with 0 -> clip 2 scores 0 < 0.1, 0.2: P at R=1 is 1/3
    assert highlight_detection_metrics({"q": [0.1, 0.2]}, {"q": labels})["mAP"] == pytest.approx(100 / 3)
    # 4 scores: the 4th (0.9) is cut for the AP -> clip 2 (0.8) first: AP 1
    assert highlight_detection_metrics({"q": [0.1, 0.2, 0.8, 0.9]}, {"q": labels})["mAP"] == 100.0


def test_qvhighlights_saliency_labels():
    labels = qvhighlights_saliency_labels(7, [1, 2], [[4, 3, 2], [1, 0, 4]])  # int(7/2) = 3 clips
    assert labels.tolist() == [[0, 0, 0], [4, 3, 2], [1, 0, 4]]
    with pytest.raises(VideoadaptError, match="query 'x'.*clip id 3"):
        qvhighlights_saliency_labels(7, [3], [[4, 4, 4]], query="x")


def _hl_ap_brute(y, s):
    """video2gif get_ap on sklearn's precision_recall_curve, emulated: reversed curve with the (1, 0) end point."""
    if len(set(y.tolist())) == 1:
        return float(y[0])
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0].astype(np.float32)
    for i in range(1, len(precision)):
        precision[i] = max(precision[i - 1], precision[i])
    return float(np.mean(precision[np.where(np.diff(recall))]))


def test_hl_matches_brute_force_with_ties():
    rng = np.random.default_rng(2)
    preds, gts, aps, hits = {}, {}, [], []
    for q in range(70):
        n = int(rng.integers(1, 12))
        labels = rng.integers(0, 5, size=(n, 3))
        scores = rng.integers(0, 4, size=int(rng.integers(1, 14))).astype(float)  # ties, length mismatches
        preds[q], gts[q] = scores.tolist(), labels
        fitted = np.zeros(n)
        fitted[: min(n, len(scores))] = scores[:n]
        binary = (labels >= 4).astype(int)
        aps.append(np.mean([_hl_ap_brute(binary[:, a], fitted) for a in range(3)]))
        top = int(np.argmax(scores))
        hits.append(top < n and binary[top].max() == 1)
    m = highlight_detection_metrics(preds, gts)
    assert m["mAP"] == pytest.approx(100 * np.mean(aps))
    assert m["HIT@1"] == pytest.approx(100 * np.mean(hits))


# ---------------------------------------------------------------- bad input (temporal)


@pytest.mark.parametrize(
    ("pred", "match"),
    [
        ({"q7": [[5, 3, 0.1]]}, "q7.*reversed"),
        ({"q7": [[3, 3, 0.1]]}, "q7.*reversed or empty"),
        ({"q7": [[float("nan"), 3, 0.1]]}, "q7.*NaN"),
        ({"q7": [[0, 3, float("nan")]]}, "q7.*NaN"),
        ({"q7": [[-1, 3, 0.1]]}, "q7.*before 0"),
        ({"q7": [[0, 3]]}, r"q7.*\[start, end, score\]"),
        ({"q7": [[0, 3, 0.1]], "zz": [[0, 3, 0.1]]}, "'zz' is in the predictions but not in the ground truth"),
        ({}, "'q7' of the ground truth has no prediction"),
    ],
)
def test_mr_bad_input(pred, match):
    with pytest.raises(VideoadaptError, match=match):
        moment_retrieval_metrics(pred, {"q7": [[0, 4]]})


def test_bad_ground_truth_and_charades_input():
    with pytest.raises(VideoadaptError, match="q1.*ground-truth window 0.*reversed"):
        moment_retrieval_metrics({"q1": []}, {"q1": [[4, 0]]})
    with pytest.raises(VideoadaptError, match="q1.*no ground-truth window"):
        moment_retrieval_metrics({"q1": []}, {"q1": []})
    with pytest.raises(VideoadaptError, match="q2.*reversed"):
        charades_sta_metrics({"q2": [[2, 1]]}, {"q2": [0, 4]})
    with pytest.raises(VideoadaptError, match="'x' is in the predictions"):
        charades_sta_metrics({"q2": [[0, 1]], "x": []}, {"q2": [0, 4]})
    with pytest.raises(VideoadaptError, match="q3.*NaN"):
        highlight_detection_metrics({"q3": [float("nan")]}, {"q3": np.array([[4]])})
    with pytest.raises(VideoadaptError, match="q3.*non-empty"):
        highlight_detection_metrics({"q3": []}, {"q3": np.array([[4]])})
    with pytest.raises(VideoadaptError, match="q3.*clips, annotators"):
        highlight_detection_metrics({"q3": [1.0]}, {"q3": np.array([4])})


# ---------------------------------------------------------------- spatio-temporal (TubeDETR)


def test_box_iou_no_plus_one():
    assert box_iou([0, 0, 2, 2], [0, 0, 2, 1]) == 0.5  # areas 4 and 2, inter 2
    assert box_iou([0, 0, 1, 1], [1, 0, 2, 1]) == 0.0  # touching: 0 (inclusive pixels, +1, would share a column: 2/6)
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)


def test_st_by_hand():
    gt = {"v": {"frames": list(range(10)), "start": 2, "end": 6, "boxes": {f: [0, 0, 2, 1] for f in range(2, 6)}}}
    pred = {"v": {"start": 0, "end": 4, "boxes": {f: [0, 0, 2, 2] for f in range(10)}}}
    m = st_grounding_metrics(pred, gt)
    # tIoU: [2,6) vs [0,4): inter 2, union 4 + 4 - 2 = 6 -> 1/3
    # box IoU 0.5 on every frame; S_i = {2, 3}, S_u = {0..5} (6 frames): vIoU = (0.5 + 0.5) / 6 = 1/6
    # gt_vIoU = mean IoU over GT frames {2..5} = 0.5 -> gt_vIoU@0.5 is 0 (strict >), @0.3 is 100
    assert m["m_tIoU"] == pytest.approx(100 / 3)
    assert m["m_vIoU"] == pytest.approx(100 / 6)
    assert (m["vIoU@0.3"], m["vIoU@0.5"]) == (0.0, 0.0)
    assert (m["gt_vIoU"], m["gt_vIoU@0.3"], m["gt_vIoU@0.5"]) == (50.0, 100.0, 0.0)


def test_st_sampled_frames_and_threshold_boundary():
    # evaluated frames are every other frame; GT [0, 8) -> {0,2,4,6}; pred [0, 8) with perfect boxes except frame 6
    boxes = {f: [0, 0, 4, 4] for f in range(0, 8, 2)}
    gt = {"v": {"frames": [0, 2, 4, 6, 8, 10], "start": 0, "end": 8, "boxes": boxes}}
    pb = dict(boxes)
    pb[6] = [0, 0, 4, 2]  # IoU 1/2; frames 1, 3, ... are not evaluated and need no box
    m = st_grounding_metrics({"v": {"start": 0, "end": 8, "boxes": pb}}, gt)
    # tIoU 1; vIoU = (1 + 1 + 1 + 0.5) / 4 = 0.875
    assert m["m_tIoU"] == 100.0 and m["m_vIoU"] == pytest.approx(87.5)
    # vIoU exactly 0.5: (1 + 0 + ...) construct: two GT frames, IoUs 1 and 0 -> 0.5, not > 0.5
    gt2 = {"w": {"frames": [0, 1], "start": 0, "end": 2, "boxes": {0: [0, 0, 1, 1], 1: [0, 0, 1, 1]}}}
    p2 = {"w": {"start": 0, "end": 2, "boxes": {0: [0, 0, 1, 1], 1: [5, 5, 6, 6]}}}
    m2 = st_grounding_metrics(p2, gt2)
    assert m2["m_vIoU"] == 50.0 and m2["vIoU@0.5"] == 0.0 and m2["vIoU@0.3"] == 100.0


def test_st_disjoint_tubes_and_no_gt_frames():
    gt = {"v": {"frames": list(range(10)), "start": 0, "end": 3, "boxes": {f: [0, 0, 1, 1] for f in range(3)}}}
    m = st_grounding_metrics({"v": {"start": 5, "end": 9, "boxes": {f: [0, 0, 1, 1] for f in range(10)}}}, gt)
    assert m["m_tIoU"] == 0.0 and m["m_vIoU"] == 0.0 and m["gt_vIoU"] == 100.0
    # no evaluated frame inside the GT tube: vIoU and gt_vIoU are 0 (divided by max(|S|, 1))
    gt = {"v": {"frames": [0, 10], "start": 3, "end": 6, "boxes": {}}}
    m = st_grounding_metrics({"v": {"start": 3, "end": 6, "boxes": {}}}, gt)
    assert (m["m_tIoU"], m["m_vIoU"], m["gt_vIoU"]) == (100.0, 0.0, 0.0)


def _pixel_iou(a, b):
    grid_a = np.zeros((20, 20), bool)
    grid_b = np.zeros((20, 20), bool)
    grid_a[a[1] : a[3], a[0] : a[2]] = True
    grid_b[b[1] : b[3], b[0] : b[2]] = True
    return (grid_a & grid_b).sum() / (grid_a | grid_b).sum()


def test_st_matches_brute_force():
    rng = np.random.default_rng(3)

    def rand_box():
        x1, y1 = rng.integers(0, 15, size=2)
        return [int(x1), int(y1), int(x1 + rng.integers(1, 6)), int(y1 + rng.integers(1, 6))]

    gt, pred, want = {}, {}, {"t": [], "v": [], "g": []}
    for v in range(50):
        frames = sorted(rng.choice(40, size=int(rng.integers(1, 25)), replace=False).tolist())
        gs = int(rng.integers(0, 30))
        ge = gs + int(rng.integers(1, 12))
        ps = int(rng.integers(0, 30))
        pe = ps + int(rng.integers(1, 12))
        gboxes = {f: rand_box() for f in frames if gs <= f < ge}
        pboxes = {f: rand_box() for f in frames}
        gt[v] = {"frames": frames, "start": gs, "end": ge, "boxes": gboxes}
        pred[v] = {"start": ps, "end": pe, "boxes": pboxes}
        g_set, p_set = set(range(gs, ge)), set(range(ps, pe))
        want["t"].append(len(g_set & p_set) / len(g_set | p_set))
        inter = [f for f in frames if f in g_set and f in p_set]
        union = [f for f in frames if f in g_set or f in p_set]  # the true union: differs from the span only
        viou = sum(_pixel_iou(pboxes[f], gboxes[f]) for f in inter) / len(union) if inter else 0.0  # if S_i empty
        want["v"].append(viou)
        in_gt = [f for f in frames if f in g_set]
        want["g"].append(np.mean([_pixel_iou(pboxes[f], gboxes[f]) for f in in_gt]) if in_gt else 0.0)
    m = st_grounding_metrics(pred, gt)
    assert m["m_tIoU"] == pytest.approx(100 * np.mean(want["t"]))
    assert m["m_vIoU"] == pytest.approx(100 * np.mean(want["v"]))
    assert m["gt_vIoU"] == pytest.approx(100 * np.mean(want["g"]))
    for t in (0.3, 0.5):
        assert m[f"vIoU@{t}"] == pytest.approx(100 * np.mean(np.array(want["v"]) > t))
    assert m["m_vIoU"] > 0


@pytest.mark.parametrize(
    ("pred", "gt_change", "match"),
    [
        ({"start": 4, "end": 2}, {}, "'v9'.*predicted tube.*reversed"),
        ({"start": float("nan")}, {}, "'v9'.*NaN"),
        ({"start": -1}, {}, "'v9'.*before frame 0"),
        ({}, {"start": 3, "end": 3}, "'v9'.*ground-truth tube.*empty"),
        ({"boxes": {0: [0, 0, 1, 1]}}, {}, "'v9'.*no predicted box for evaluated frame 1"),
        ({"boxes": {0: [0, 0, 1, 1], 1: [2, 0, 1, 1]}}, {}, "'v9'.*predicted box of frame 1 is degenerate"),
        ({}, {"boxes": {0: [0, 0, 1, 1], 1: [0, 0, float("nan"), 1]}}, "'v9'.*ground-truth box of frame 1.*NaN"),
    ],
)
def test_st_bad_input(pred, gt_change, match):
    g = {"frames": [0, 1], "start": 0, "end": 2, "boxes": {0: [0, 0, 1, 1], 1: [0, 0, 1, 1]}}
    p = {"start": 0, "end": 2, "boxes": {0: [0, 0, 1, 1], 1: [0, 0, 1, 1]}}
    with pytest.raises(VideoadaptError, match=match):
        st_grounding_metrics({"v9": {**p, **pred}}, {"v9": {**g, **gt_change}})


def test_st_query_sets_must_match():
    g = {"frames": [0], "start": 0, "end": 1, "boxes": {0: [0, 0, 1, 1]}}
    p = {"start": 0, "end": 1, "boxes": {0: [0, 0, 1, 1]}}
    with pytest.raises(VideoadaptError, match="'extra' is in the predictions"):
        st_grounding_metrics({"v": p, "extra": p}, {"v": g})
    with pytest.raises(VideoadaptError, match="'v' of the ground truth has no prediction"):
        st_grounding_metrics({}, {"v": g})
