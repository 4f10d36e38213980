"""Tracking metrics: TETA on hand-made cases derived by hand, HOTA/MOTA/IDF1 against trackeval's own TAO evaluation."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videoadapt.data.records import ObjectTrack, TrackingItem, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.metrics.tracking import (
    METRIC_KEYS,
    TrackedBox,
    tracking_metrics,
    tracking_metrics_from_sums,
    tracking_statistics,
)

CATS = ("cat", "dog")
SQUARE = (0.0, 0.0, 10.0, 10.0)


def item(video, tracks, frames=2, annotated=None):
    return TrackingItem(VideoRef(video), frames, 5.0, 100, 100, tuple(tracks), annotated)


def track(tid, category, frames, boxes):
    return ObjectTrack(tid, category, tuple(frames), tuple(boxes))


def test_id_switch_and_wrong_class_by_hand():
    # One cat on frames 0 and 1; predicted as track 1 (cat) on frame 0 and track 2 (dog) on frame 1, exact boxes.
    gt = [item("v", [track(7, "cat", [0, 1], [SQUARE, SQUARE])])]
    pred = {"v": [TrackedBox(0, 1, "cat", SQUARE), TrackedBox(1, 2, "dog", SQUARE)]}
    m = tracking_metrics(gt, pred, CATS)
    # TETA, category cat (dog has no ground truth: not averaged). Both boxes matched at every alpha (IoU 1):
    # LocA = 2 / (2 + 0 + 0) = 1. AssocA: pairs (cat, 1) and (cat, 2) matched once each; |gt| = 2, |track| = 1:
    # A = 1 / (2 + 1 - 1) = 1/2 each, AssocA = (1 * 1/2 + 1 * 1/2) / 2 TP = 1/2.
    # ClsA: TP 1 (frame 0), FN 1 (frame 1 called dog) -> 1 / 2. TETA = (1 + 1/2 + 1/2) / 3 = 2/3.
    assert m["loca"] == pytest.approx(100.0)
    assert m["assoca"] == pytest.approx(50.0)
    assert m["clsa"] == pytest.approx(50.0)
    assert m["teta"] == pytest.approx(200.0 / 3)
    # trackeval, class cat: only track 1 is a cat. TP 1, FN 1, FP 0 -> DetA 1/2; AssA = 1 * 1 / (2 + 1 - 1) / 1
    # = 1/2; HOTA = sqrt(1/4) = 1/2 at every alpha. MOTA = (1 - 0 - 0) / 2. IDF1 = 1 / (1 + 0 + 1/2) = 2/3.
    # The dog box is a false positive of dog, which has no ground truth: not averaged (TAO's class list).
    assert m["deta"] == pytest.approx(50.0)
    assert m["assa"] == pytest.approx(50.0)
    assert m["hota"] == pytest.approx(50.0)
    assert m["hota_loca"] == pytest.approx(100.0)
    assert m["mota"] == pytest.approx(50.0)
    assert m["idf1"] == pytest.approx(200.0 / 3)


def test_prediction_outside_every_cluster_is_not_a_false_positive():
    gt = [item("v", [track(7, "cat", [0, 1], [SQUARE, SQUARE])])]
    far = (50.0, 50.0, 60.0, 60.0)  # IoU 0 with every ground truth box
    perfect = [TrackedBox(0, 1, "cat", SQUARE), TrackedBox(1, 1, "cat", SQUARE)]
    m = tracking_metrics(gt, {"v": [*perfect, TrackedBox(0, 9, "cat", far)]}, CATS)
    # TETA ignores the far box: everything perfect.
    assert m["teta"] == pytest.approx(100.0)
    # trackeval counts it: TP 2, FN 0, FP 1 -> DetA 2/3; AssA 1 (track 1 <-> cat: 2 matches, 2 + 2 - 2 = 2);
    # HOTA = sqrt(2/3); MOTA = (2 - 1) / 2; IDF1 = 2 / (2 + 1/2 * 1 + 0) = 0.8.
    assert m["deta"] == pytest.approx(200.0 / 3)
    assert m["hota"] == pytest.approx(100.0 * np.sqrt(2 / 3))
    assert m["mota"] == pytest.approx(50.0)
    assert m["idf1"] == pytest.approx(80.0)


def test_alpha_grids_by_hand():
    # One frame; ground truth 10 x 20, prediction its top half: IoU = 100 / 200 = 0.5 exactly.
    gt = [item("v", [track(1, "cat", [0], [(0.0, 0.0, 10.0, 20.0)])], frames=1)]
    m = tracking_metrics(gt, {"v": [TrackedBox(0, 1, "cat", SQUARE)]}, CATS)
    # TETA's LocA/AssocA grid 0.0, 0.05, ..., 0.95 (20): matched for alpha <= 0.5 (11 values; LocA 1, AssocA 1),
    # not above (TP 0, FN 1, FP 1: LocA 0, AssocA 0) -> 11/20 = 0.55 each. ClsA grid 0.5 ... 0.95 (10): TP 1 at
    # 0.5, all zero (0 / max(1, 0) = 0) above -> 1/10. TETA = (0.55 + 0.55 + 0.1) / 3 = 0.4.
    assert m["loca"] == pytest.approx(55.0)
    assert m["assoca"] == pytest.approx(55.0)
    assert m["clsa"] == pytest.approx(10.0)
    assert m["teta"] == pytest.approx(40.0)
    # HOTA's grid 0.05 ... 0.95 (19): matched at 0.05 ... 0.5 (10 values, HOTA 1), not above (HOTA 0) -> 10/19.
    assert m["hota"] == pytest.approx(1000.0 / 19)
    # MOTA / IDF1 at IoU >= 0.5: a match.
    assert m["mota"] == pytest.approx(100.0)
    assert m["idf1"] == pytest.approx(100.0)


def test_prediction_matched_to_another_category_leaves_the_cluster():
    # A cat and a dog overlapping (IoU 100 / 120), both predicted exactly. The dog's prediction also overlaps the
    # cat by 0.83 >= 0.5, but it is matched to the dog (all-category matching), so it is not in the cat's cluster:
    # no false positive for the cat. (Without that rule the cat's LocA would be 1 / (1 + 0 + 1) = 1/2.)
    dog_box = (0.0, 0.0, 10.0, 12.0)
    gt = [item("v", [track(1, "cat", [0], [SQUARE]), track(2, "dog", [0], [dog_box])], frames=1)]
    m = tracking_metrics(gt, {"v": [TrackedBox(0, 5, "cat", SQUARE), TrackedBox(0, 6, "dog", dog_box)]}, CATS)
    assert m["loca"] == pytest.approx(100.0)
    assert m["teta"] == pytest.approx(100.0)
    assert m["hota"] == pytest.approx(100.0)


def test_only_evaluated_frames_count():
    gt = [item("v", [track(1, "cat", [0, 1], [SQUARE, SQUARE])], annotated=(0,))]
    exact = TrackedBox(0, 1, "cat", SQUARE)
    wrong = TrackedBox(1, 2, "dog", (50.0, 50.0, 60.0, 60.0))  # frame 1 is not evaluated
    assert tracking_metrics(gt, {"v": [exact, wrong]}, CATS) == tracking_metrics(gt, {"v": [exact]}, CATS)
    assert tracking_metrics(gt, {"v": [exact]}, CATS)["hota"] == pytest.approx(100.0)


def test_base_and_novel_are_means_over_their_categories():
    cat_video = item("a", [track(1, "cat", [0, 1], [SQUARE, SQUARE])])
    dog_video = item("b", [track(1, "dog", [0, 1], [SQUARE, SQUARE])])
    pred = {
        "a": [TrackedBox(0, 1, "cat", SQUARE), TrackedBox(1, 1, "cat", SQUARE)],  # perfect
        "b": [TrackedBox(0, 1, "cat", SQUARE), TrackedBox(1, 1, "cat", SQUARE)],  # dog called cat throughout
    }
    m = tracking_metrics([cat_video, dog_video], pred, CATS, novel={"dog"})
    # dog: LocA 1, AssocA 1, ClsA 0 (TP 0, FN 2) -> TETA 2/3; cat: the dog video's boxes are ClsA FPs of cat:
    # TP 2, FP 2 -> ClsA 1/2, TETA (1 + 1 + 1/2) / 3 = 5/6. Overall: the mean over both categories.
    assert m["teta_novel"] == pytest.approx(200.0 / 3)
    assert m["teta_base"] == pytest.approx(500.0 / 6)
    assert m["teta"] == pytest.approx((200.0 / 3 + 500.0 / 6) / 2)
    assert m["clsa_novel"] == pytest.approx(0.0)
    # trackeval: the dog is never found as a dog (HOTA 0); the cat's predictions in video b are false positives.
    assert m["hota_novel"] == pytest.approx(0.0)
    assert m["deta_base"] == pytest.approx(100.0 * 2 / 4)
    assert set(m) == {k + s for k in METRIC_KEYS for s in ("", "_base", "_novel")}


def test_from_sums_is_vectorised_over_leading_axes():
    gt = item("v", [track(7, "cat", [0, 1], [SQUARE, SQUARE])])
    full = tracking_statistics(gt, [TrackedBox(0, 1, "cat", SQUARE), TrackedBox(1, 2, "dog", SQUARE)], CATS)
    empty = tracking_statistics(gt, [], CATS)
    stacked = {k: np.stack([full[k], empty[k], 2 * full[k]]) for k in full}
    out = tracking_metrics_from_sums(stacked, CATS)
    assert out["teta"].shape == (3,)
    assert out["teta"][0] == pytest.approx(200.0 / 3)
    assert out["teta"][1] == pytest.approx(0.0)
    assert out["teta"][2] == pytest.approx(200.0 / 3)  # the same video twice: the same figures
    # A group without ground truth is NaN, not 0.
    assert np.isnan(tracking_metrics_from_sums(full, CATS, novel={"dog"})["teta_novel"])


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        ([TrackedBox(0, 1, "bird", SQUARE)], "unknown category 'bird'"),
        ([TrackedBox(5, 1, "cat", SQUARE)], "frame 5 is not a frame"),
        ([TrackedBox(0, 1, "cat", SQUARE), TrackedBox(0, 1, "cat", SQUARE)], "two predicted boxes of one track"),
        ([TrackedBox(0, 1, "cat", (5.0, 0.0, 1.0, 3.0))], "x2 < x1"),
        ([TrackedBox(0, 1, "cat", (0.0, 0.0, float("nan"), 3.0))], "finite"),
    ],
)
def test_bad_predictions_name_video_and_item(pred, message):
    gt = [item("clip7", [track(1, "cat", [0], [SQUARE])])]
    with pytest.raises(VideoadaptError, match=message) as error:
        tracking_metrics(gt, {"clip7": pred}, CATS)
    assert "clip7" in str(error.value)


def test_prediction_for_unknown_video_is_an_error():
    gt = [item("v", [track(1, "cat", [0], [SQUARE])])]
    with pytest.raises(VideoadaptError, match="not in the ground truth: 'w'"):
        tracking_metrics(gt, {"w": []}, CATS)


# ------------------------------------------------------------------------------------------------- properties


@st.composite
def videos(draw):
    items, perfect = [], {}
    for v in range(draw(st.integers(1, 3))):
        frames = draw(st.integers(1, 4))
        tracks, boxes = [], []
        for k in range(draw(st.integers(1, 3))):
            present = sorted(draw(st.sets(st.integers(0, frames - 1), min_size=1)))
            # Objects in separate columns so no two tracks share a box.
            track_boxes = [(30.0 * k, draw(st.floats(0, 50)), 30.0 * k + draw(st.floats(5, 25)), 80.0) for _ in present]
            category = draw(st.sampled_from(CATS))
            tracks.append(track(k + 3, category, present, track_boxes))
            boxes += [TrackedBox(f, 10 + k, category, b) for f, b in zip(present, track_boxes, strict=True)]
        items.append(item(f"v{v}", tracks, frames))
        perfect[f"v{v}"] = boxes
    return items, perfect


@settings(max_examples=25, deadline=None)
@given(videos())
def test_perfect_prediction_scores_100_and_empty_scores_0(case):
    items, perfect = case
    best = tracking_metrics(items, perfect, CATS)
    assert all(best[k] == pytest.approx(100.0) for k in METRIC_KEYS), best
    worst = tracking_metrics(items, {}, CATS)
    # HOTA's LocA of no match is 1 in trackeval (max(1e-10, 0) / max(1e-10, 0)); every other figure is 0.
    assert all(worst[k] == pytest.approx(0.0) for k in METRIC_KEYS if k != "hota_loca"), worst


# ------------------------------------------------------------------------------- trackeval's own evaluation


def _random_case(rng, n_videos):
    cats = ("a", "b", "c")
    items, preds = [], {}
    for v in range(n_videos):
        frames = int(rng.integers(3, 7))
        tracks = []
        for k in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0, 60, 2)
            boxes = []
            for _ in range(frames):  # every track on every frame (see _trackeval_tao)
                w, h = rng.uniform(10, 30, 2)
                boxes.append((float(x), float(y), float(x + w), float(y + h)))
                x, y = x + rng.normal(0, 4), y + rng.normal(0, 4)
            tracks.append(track(k + 1, str(rng.choice(cats)), range(frames), boxes))
        items.append(item(f"v{v}", tracks, frames))
        out, tid = [], 1
        for tr in tracks:  # noisy copies with misses, identity switches and wrong classes, plus clutter
            for f, b in zip(tr.frames, tr.boxes, strict=True):
                tid += rng.random() < 0.15
                if rng.random() < 0.2:
                    continue
                j = rng.normal(0, 3, 4)
                box = (b[0] + j[0], b[1] + j[1], max(b[0] + j[0] + 1, b[2] + j[2]), max(b[1] + j[1] + 1, b[3] + j[3]))
                category = tr.category if rng.random() < 0.7 else str(rng.choice(cats))
                out.append(TrackedBox(f, 100 * v + tid, category, tuple(map(float, box)), float(rng.random())))
            tid += 1
        for k in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, 80, 2)
            box = (float(x), float(y), float(x + 15), float(y + 15))
            out.append(TrackedBox(int(rng.integers(0, frames)), 100 * v + 50 + k, str(rng.choice(cats)), box))
        preds[f"v{v}"] = out
    return items, preds, cats


def _trackeval_tao(items, preds, cats, tmp_path):
    """trackeval's TAO evaluation of the same boxes. Every category absent from a video is listed as negative and
    every ground-truth track covers every frame: then TAO's non-exhaustive rules drop nothing, and its
    evaluation is the exhaustive one we compute."""
    import trackeval

    ids = {c: k + 1 for k, c in enumerate(cats)}
    gt = {"videos": [], "images": [], "annotations": [], "tracks": [], "categories": []}
    gt["categories"] = [{"id": ids[c], "name": c} for c in cats]
    results, images, next_track = [], {}, 1
    for v, it in enumerate(items):
        present = {t.category for t in it.tracks}
        gt["videos"].append(
            {
                "id": v + 1,
                "name": it.video.video_id,
                "neg_category_ids": [ids[c] for c in cats if c not in present],
                "not_exhaustive_category_ids": [],
            }
        )
        for f in range(it.num_frames):
            images[v, f] = len(images) + 1
            gt["images"].append({"id": images[v, f], "video_id": v + 1, "frame_index": f})
        for tr in it.tracks:
            gt["tracks"].append({"id": next_track, "video_id": v + 1, "category_id": ids[tr.category]})
            for f, b in zip(tr.frames, tr.boxes, strict=True):
                gt["annotations"].append(
                    {
                        "id": len(gt["annotations"]) + 1,
                        "image_id": images[v, f],
                        "video_id": v + 1,
                        "track_id": next_track,
                        "category_id": ids[tr.category],
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    }
                )
            next_track += 1
        for p in preds[it.video.video_id]:
            b = p.box
            results.append(
                {
                    "image_id": images[v, p.frame],
                    "video_id": v + 1,
                    "category_id": ids[p.category],
                    "track_id": p.track_id,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": p.score,
                }
            )
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "trackers" / "ours" / "data").mkdir(parents=True)
    (tmp_path / "trackers" / "ours" / "data" / "results.json").write_text(json.dumps(results))
    quiet = {"PRINT_CONFIG": False}
    evaluator = trackeval.Evaluator(
        {
            **quiet,
            "USE_PARALLEL": False,
            "PRINT_RESULTS": False,
            "TIME_PROGRESS": False,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
            "LOG_ON_ERROR": None,
        }
    )
    dataset = trackeval.datasets.TAO(
        {**quiet, "GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers")}
    )
    metrics = [trackeval.metrics.HOTA(quiet), trackeval.metrics.CLEAR(quiet), trackeval.metrics.Identity(quiet)]
    with contextlib.redirect_stdout(io.StringIO()):
        results, _ = evaluator.evaluate([dataset], metrics)
    combined = results["TAO"]["ours"]["COMBINED_SEQ"]["cls_comb_cls_av"]
    return {
        "hota": 100 * np.mean(combined["HOTA"]["HOTA"]),
        "deta": 100 * np.mean(combined["HOTA"]["DetA"]),
        "assa": 100 * np.mean(combined["HOTA"]["AssA"]),
        "hota_loca": 100 * np.mean(combined["HOTA"]["LocA"]),
        "mota": 100 * combined["CLEAR"]["MOTA"],
        "idf1": 100 * combined["Identity"]["IDF1"],
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hota_mota_idf1_equal_trackevals_tao_evaluation(seed, tmp_path):
    items, preds, cats = _random_case(np.random.default_rng(seed), n_videos=3)
    expected = _trackeval_tao(items, preds, cats, tmp_path)
    ours = tracking_metrics(items, preds, cats)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    # The sums of per-video statistics are what the bootstrap resamples: the same figures.
    stats = [tracking_statistics(it, preds[it.video.video_id], cats) for it in items]
    summed = {k: sum(s[k] for s in stats) for k in stats[0]}
    assert tracking_metrics_from_sums(summed, cats)["hota"] == pytest.approx(expected["hota"], abs=1e-9)
