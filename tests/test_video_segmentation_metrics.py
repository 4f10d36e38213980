"""YouTube-VIS AP/AR (videoadapt.metrics.video_segmentation) against the youtubevos cocoapi convention.

Three opinions on seeded random videos: ours; a plain reference written here from ``ytvoseval.py``'s description
(numpy masks, rank-by-rank precision, no shared code); and trackeval's ``TrackMAP`` with YouTube-VIS's area ranges
(no crowd objects there: TrackMAP does not let a crowd absorb several predictions). Then hand-made cases and the
per-video statistics for the bootstrap.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from videoadapt.data.masks import check_rle, decode_mask, encode_mask, rle_area
from videoadapt.data.records import ObjectTrack, TrackingItem, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.metrics import video_segmentation as vs
from videoadapt.metrics.video_segmentation import VideoInstance, vis_metrics

CATEGORIES = ["cat", "dog", "bird"]
AREAS = {"all": (0, 1e10), "s": (0, 128**2), "m": (128**2, 256**2), "l": (256**2, 1e10)}


def _rect(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _random_data(seed: int, videos: int = 6, crowd: bool = True, big: bool = True):
    """Videos of 5 frames (300x400 when ``big``, so every area range occurs) with 0-3 objects, and predictions:
    noisy copies of the objects (some of another category), spurious ones, missing frames."""
    rng = np.random.default_rng(seed)
    h, w = (300, 400) if big else (24, 32)
    items, preds = [], {}
    for v in range(videos):
        frames = 5
        tracks = []
        for k in range(int(rng.integers(0, 4))):
            side = int(rng.choice([40, 140, 290])) if big else int(rng.integers(4, 16))
            side_h, side_w = min(side, h - 2), min(side, w - 2)
            y, x = int(rng.integers(0, h - side_h)), int(rng.integers(0, w - side_w))
            present = [f for f in range(frames) if rng.random() < 0.8] or [0]
            masks = []
            for _ in present:
                dy, dx = int(rng.integers(-3, 4)), int(rng.integers(-3, 4))
                y0, x0 = max(0, y + dy), max(0, x + dx)
                masks.append(encode_mask(_rect(h, w, y0, x0, y0 + side_h, x0 + side_w)))
            boxes = tuple((0.0, 0.0, 1.0, 1.0) for _ in present)
            is_crowd = crowd and rng.random() < 0.15
            tracks.append(
                ObjectTrack(k + 1, str(rng.choice(CATEGORIES)), tuple(present), boxes, tuple(masks), iscrowd=is_crowd)
            )
        items.append(TrackingItem(VideoRef(f"v{v}"), frames, 6.0, w, h, tuple(tracks)))
        instances = []
        for track in tracks:
            for _ in range(int(rng.integers(0, 3))):
                category = track.category if rng.random() < 0.8 else str(rng.choice(CATEGORIES))
                masks = {}
                for f, rle in zip(track.frames, track.masks, strict=True):
                    if rng.random() < 0.15:
                        continue  # a missed frame
                    base = decode_mask(rle)
                    shift = int(rng.integers(-6, 7)) if big else int(rng.integers(-2, 3))
                    masks[f] = encode_mask(np.roll(base, shift, axis=int(rng.integers(0, 2))))
                instances.append(VideoInstance(category, float(rng.random()), masks))
        for _ in range(int(rng.integers(0, 3))):
            side = int(rng.integers(5, 120)) if big else int(rng.integers(2, 10))
            y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            mask = encode_mask(_rect(h, w, y, x, y + side, x + side))
            instances.append(
                VideoInstance(str(rng.choice(CATEGORIES)), float(rng.random()), dict.fromkeys(range(2), mask))
            )
        preds[f"v{v}"] = instances
    return items, preds


# --- an independent reference written from ytvoseval.py's description -------------------------------------------


def _plain_reference(items, preds, categories, members=None):
    """ytvoseval's evaluate/accumulate/summarize, plainly: decoded masks, per-rank precision, dict bookkeeping."""
    thresholds = [0.5 + 0.05 * i for i in range(10)]
    recalls = [i / 100 for i in range(101)]

    def stack(masks_by_frame, n, h, w):
        out = np.zeros((n, h, w), dtype=bool)
        for f, rle in masks_by_frame.items():
            out[f] = decode_mask(rle)
        return out

    def mean_area(volume):
        areas = [a for a in volume.reshape(len(volume), -1).sum(1) if a > 0]
        return float(np.mean(areas)) if areas else 0.0

    # per (category, area): list of (score, video index, outcome per threshold) and counted GT
    ranked = {(c, a): [] for c in categories for a in AREAS}
    counted = {(c, a): 0 for c in categories for a in AREAS}
    hits = {(c, m): np.zeros(10) for c in categories for m in (1, 10)}
    for vi, item in enumerate(items):
        n, h, w = item.num_frames, item.height, item.width
        for c in categories:
            gts = [t for t in item.tracks if t.category == c]
            dets = sorted((p for p in preds.get(item.video.video_id, []) if p.category == c), key=lambda p: -p.score)
            dets = dets[:100]
            gv = [stack(dict(zip(t.frames, t.masks, strict=True)), n, h, w) for t in gts]
            dv = [stack(dict(p.masks), n, h, w) for p in dets]
            iou = np.zeros((len(dv), len(gv)))
            for i, d in enumerate(dv):
                for j, g in enumerate(gv):
                    union = np.logical_or(d, g).sum()
                    iou[i, j] = np.logical_and(d, g).sum() / union if union else 0.0
            for a, (lo, hi) in AREAS.items():
                g_ignore = [t.iscrowd or not lo <= mean_area(g) <= hi for t, g in zip(gts, gv, strict=True)]
                counted[c, a] += sum(not x for x in g_ignore)
                order = sorted(range(len(gts)), key=lambda j: g_ignore[j])
                outcomes = []
                for thr in thresholds:
                    used = set()
                    row = []
                    for i in range(len(dv)):
                        best, m = min(thr, 1 - 1e-10), None
                        for j in order:
                            if j in used and not gts[j].iscrowd:
                                continue
                            if m is not None and not g_ignore[m] and g_ignore[j]:
                                break
                            if iou[i, j] >= best:
                                best, m = iou[i, j], j
                        if m is None:
                            row.append("ig" if not lo <= mean_area(dv[i]) <= hi else "fp")
                        else:
                            used.add(m)
                            row.append("ig" if g_ignore[m] else "tp")
                    outcomes.append(row)
                for i, p in enumerate(dets):
                    ranked[c, a].append((p.score, vi, i, [outcomes[t][i] for t in range(10)]))
                if a == "all":
                    for m in (1, 10):
                        hits[c, m] += [sum(o == "tp" for o in outcomes[t][:m]) for t in range(10)]
    ap = {}
    for c in categories:
        for a in AREAS:
            if counted[c, a] == 0:
                continue
            entries = sorted(ranked[c, a], key=lambda e: (-e[0], e[1], e[2]))
            per_thr = []
            for t in range(10):
                tp = fp = 0
                prec, rec = [], []
                for entry in entries:
                    tp += entry[3][t] == "tp"
                    fp += entry[3][t] == "fp"
                    prec.append(tp / (tp + fp + np.spacing(1)))
                    rec.append(tp / counted[c, a])
                values = []
                for r in recalls:
                    reach = [k for k in range(len(rec)) if rec[k] >= r]
                    values.append(max(prec[reach[0] :]) if reach else 0.0)
                per_thr.append(values)
            ap[c, a] = np.array(per_thr)  # [T, R]

    def mean(values):
        return 100 * float(np.mean(values)) if values else float("nan")

    members = categories if members is None else members
    out = {
        "ap": mean([ap[c, "all"].mean() for c in members if (c, "all") in ap]),
        "ap50": mean([ap[c, "all"][0].mean() for c in members if (c, "all") in ap]),
        "ap75": mean([ap[c, "all"][5].mean() for c in members if (c, "all") in ap]),
        "aps": mean([ap[c, "s"].mean() for c in members if (c, "s") in ap]),
        "apm": mean([ap[c, "m"].mean() for c in members if (c, "m") in ap]),
        "apl": mean([ap[c, "l"].mean() for c in members if (c, "l") in ap]),
        "ar1": mean([(hits[c, 1] / counted[c, "all"]).mean() for c in members if counted[c, "all"]]),
        "ar10": mean([(hits[c, 10] / counted[c, "all"]).mean() for c in members if counted[c, "all"]]),
    }
    return out


def _close(ours: dict, theirs: dict, keys) -> None:
    for key in keys:
        a, b = ours[key], theirs[key]
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9), (key, a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_a_plain_reference_on_seeded_videos(seed: int) -> None:
    items, preds = _random_data(seed)
    ours = vis_metrics(items, preds, CATEGORIES)
    theirs = _plain_reference(items, preds, CATEGORIES)
    _close(ours, theirs, vs.KEYS)
    assert 0 < ours["ap"] < 100  # the seeded data exercises both hits and misses
    assert sum(np.isfinite(ours[k]) for k in ("aps", "apm", "apl")) >= 2


def test_base_and_novel_are_the_reference_over_each_group() -> None:
    items, preds = _random_data(3)
    ours = vis_metrics(items, preds, CATEGORIES, novel=["bird"])
    assert ours["ap_base"] == pytest.approx(_plain_reference(items, preds, CATEGORIES, ["cat", "dog"])["ap"])
    assert ours["ap_novel"] == pytest.approx(_plain_reference(items, preds, CATEGORIES, ["bird"])["ap"])
    assert "ap_base" not in vis_metrics(items, preds, CATEGORIES)


def _trackeval(items, preds, categories) -> dict[str, float]:
    """trackeval's TrackMAP with YouTube-VIS's area ranges, per class then averaged over classes."""
    from trackeval.metrics import TrackMAP

    config = {
        "USE_AREA_RANGES": True,
        "AREA_RANGES": [[0, 128**2], [128**2, 256**2], [256**2, 1e5**2]],
        "AREA_RANGE_LABELS": ["area_s", "area_m", "area_l"],
        "USE_TIME_RANGES": False,
        "PRINT_CONFIG": False,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        metric = TrackMAP(config)
    per_class = {}
    for c in categories:
        results = {}
        for item in items:
            gts = [t for t in item.tracks if t.category == c]
            dets = sorted((p for p in preds.get(item.video.video_id, []) if p.category == c), key=lambda p: -p.score)
            if not gts and not dets:
                continue
            gt_tracks = [dict(zip(t.frames, t.masks, strict=True)) for t in gts]
            dt_tracks = [dict(p.masks) for p in dets]

            def area(track):
                areas = [rle_area(m) for m in track.values() if rle_area(m)]
                return float(np.mean(areas)) if areas else 0.0

            data = {
                "gt_track_ids": list(range(1, len(gts) + 1)),
                "dt_track_ids": list(range(1, len(dets) + 1)),
                "gt_tracks": gt_tracks,
                "dt_tracks": dt_tracks,
                "gt_track_areas": [area(t) for t in gt_tracks],
                "dt_track_areas": [area(t) for t in dt_tracks],
                "gt_track_iscrowd": [0] * len(gts),
                "dt_track_scores": [p.score for p in dets],
                "iou_type": "mask",
            }
            results[item.video.video_id] = metric.eval_sequence(data)
        if results:
            per_class[c] = metric.combine_sequences(results)
    out = {}
    for key, field in (("ap", "AP_all"), ("aps", "AP_area_s"), ("apm", "AP_area_m"), ("apl", "AP_area_l")):
        stacked = np.array([per_class[c][field] for c in per_class])  # [classes, thresholds]
        values = [np.mean(col[col > -1]) if np.any(col > -1) else -1 for col in stacked.T]
        out[key] = 100 * float(np.mean(values)) if min(values) > -1 else float("nan")
    stacked = np.array([per_class[c]["AR_all"] for c in per_class])
    out["ar10"] = 100 * float(np.mean([np.mean(col[col > -1]) for col in stacked.T]))
    return out


@pytest.mark.parametrize("seed", [4, 5])
def test_agrees_with_trackeval_track_map(seed: int) -> None:
    items, preds = _random_data(seed, crowd=False)
    ours = vis_metrics(items, preds, CATEGORIES)
    # At most 10 predictions per video and category here, so TrackMAP's unlimited recall is AR@10.
    assert max(len(v) for v in preds.values()) <= 10
    _close(ours, _trackeval(items, preds, CATEGORIES), ("ap", "aps", "apm", "apl", "ar10"))


# --- hand-made cases -------------------------------------------------------------------------------------------


def _object(track_id: int, category: str, mask: np.ndarray, frames=(0, 1), iscrowd: bool = False) -> ObjectTrack:
    rle = encode_mask(mask)
    return ObjectTrack(
        track_id, category, tuple(frames), tuple((0, 0, 1, 1) for _ in frames), (rle,) * len(frames), iscrowd
    )


def _video(vid: str, *tracks: ObjectTrack, frames: int = 3) -> TrackingItem:
    return TrackingItem(VideoRef(vid), frames, 5.0, 8, 6, tuple(tracks))


SQUARE = _rect(6, 8, 1, 1, 4, 4)  # 9 pixels
OTHER = _rect(6, 8, 0, 5, 2, 8)  # 6 pixels


def test_perfect_predictions_score_100_and_none_score_0() -> None:
    items = [_video("a", _object(1, "cat", SQUARE), _object(2, "dog", OTHER)), _video("b", _object(1, "cat", OTHER))]
    perfect = {
        item.video.video_id: [
            VideoInstance(t.category, 0.9, dict(zip(t.frames, t.masks, strict=True))) for t in item.tracks
        ]
        for item in items
    }
    result = vis_metrics(items, perfect, ["cat", "dog", "bird"], novel=["dog", "bird"])
    for key in ("ap", "ap50", "ap75", "aps", "ar1", "ar10", "ap_base", "ap_novel"):
        assert result[key] == pytest.approx(100.0), key
    assert np.isnan(result["apm"]) and np.isnan(result["apl"])  # no object of those sizes (reference: -1)
    empty = vis_metrics(items, {}, ["cat", "dog", "bird"])
    assert empty["ap"] == 0.0 and empty["ar10"] == 0.0


def test_video_iou_sums_intersections_and_unions_over_frames() -> None:
    # GT: the square on frames 0 and 1 (18 px). Prediction: the square on frame 0 only, plus 9 px on frame 2
    # where the object is absent: I = 9, U = 9 + 9 + 9 = 27, IoU 1/3 -> no match at 0.5; on frames 0-1 only
    # (frame 2 outside the evaluated frames) I = 9, U = 18: IoU 0.5 -> a match at 0.5 and nowhere above.
    pred = {"a": [VideoInstance("cat", 0.5, {0: encode_mask(SQUARE), 2: encode_mask(SQUARE)})]}
    assert vis_metrics([_video("a", _object(1, "cat", SQUARE))], pred, ["cat"])["ap50"] == 0.0
    limited = TrackingItem(VideoRef("a"), 3, 5.0, 8, 6, (_object(1, "cat", SQUARE),), annotated_frames=(0, 1))
    result = vis_metrics([limited], pred, ["cat"])
    assert result["ap50"] == pytest.approx(100.0)
    assert result["ap"] == pytest.approx(10.0)  # one of ten thresholds


def test_a_false_positive_ranked_first_halves_precision_at_full_recall() -> None:
    # Two videos, one cat each, found; a spurious cat with the top score in video a.
    # Ranked: FP, TP, TP -> precision 1/2 then 2/3 at recalls 0.5 and 1: monotone envelope 2/3 everywhere.
    items = [_video("a", _object(1, "cat", SQUARE)), _video("b", _object(1, "cat", SQUARE))]
    hit = dict.fromkeys((0, 1), encode_mask(SQUARE))
    preds = {
        "a": [VideoInstance("cat", 0.9, {0: encode_mask(OTHER)}), VideoInstance("cat", 0.5, hit)],
        "b": [VideoInstance("cat", 0.4, hit)],
    }
    result = vis_metrics(items, preds, ["cat"])
    assert result["ap"] == pytest.approx(100 * 2 / 3)
    assert result["ar1"] == pytest.approx(50.0)  # the top prediction per video: a's is the false positive
    assert result["ar10"] == pytest.approx(100.0)


def test_a_crowd_object_absorbs_predictions_without_counting() -> None:
    items = [_video("a", _object(1, "cat", SQUARE), _object(2, "cat", OTHER, iscrowd=True))]
    on_crowd = dict.fromkeys((0, 1), encode_mask(OTHER))
    preds = {
        "a": [
            VideoInstance("cat", 0.9, on_crowd),
            VideoInstance("cat", 0.8, on_crowd),
            VideoInstance("cat", 0.7, dict.fromkeys((0, 1), encode_mask(SQUARE))),
        ]
    }
    assert vis_metrics(items, preds, ["cat"])["ap"] == pytest.approx(100.0)


def test_more_than_100_predictions_per_video_and_category_are_cut() -> None:
    items = [_video("a", _object(1, "cat", SQUARE))]
    junk = [VideoInstance("cat", 0.9, {0: encode_mask(OTHER)}) for _ in range(100)]
    found = VideoInstance("cat", 0.1, dict.fromkeys((0, 1), encode_mask(SQUARE)))
    assert vis_metrics(items, {"a": [*junk, found]}, ["cat"])["ar10"] == 0.0
    assert vis_metrics(items, {"a": [*junk[:99], found]}, ["cat"])["ap"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        (VideoInstance("cow", 0.5, {}), "unknown category 'cow'"),
        (VideoInstance("cat", float("nan"), {}), "finite"),
        (VideoInstance("cat", 0.5, {7: encode_mask(SQUARE)}), "frame 7"),
        (VideoInstance("cat", 0.5, {0: encode_mask(np.zeros((5, 5), bool))}), "size [5, 5]"),
        (VideoInstance("cat", 0.5, {0: {"size": [6, 8], "counts": "zz!"}}), "does not decode"),
        (VideoInstance("cat", 0.5, {0: {"size": [6, 8], "counts": "0"}}), "does not decode"),
    ],
)
def test_bad_predictions_name_the_video_and_instance(prediction: VideoInstance, message: str) -> None:
    items = [_video("a", _object(1, "cat", SQUARE))]
    with pytest.raises(VideoadaptError, match="video 'a'") as caught:
        vis_metrics(items, {"a": [prediction]}, ["cat"])
    assert message in str(caught.value)


def test_bad_ground_truth_and_ids_are_errors() -> None:
    with pytest.raises(VideoadaptError, match="'z' is in the predictions but not in the ground truth"):
        vis_metrics([_video("a")], {"z": []}, ["cat"])
    with pytest.raises(VideoadaptError, match="unknown category 'cow'"):
        vis_metrics([_video("a", _object(1, "cow", SQUARE))], {}, ["cat"])
    with pytest.raises(VideoadaptError, match="appears twice"):
        vis_metrics([_video("a"), _video("a")], {}, ["cat"])
    with pytest.raises(VideoadaptError, match="novel categories"):
        vis_metrics([_video("a")], {}, ["cat"], novel=["cow"])


def test_rle_checks() -> None:
    rle = encode_mask(SQUARE)
    assert check_rle(rle, 6, 8, "x") == rle and rle_area(rle) == 9
    uncompressed = {"size": [6, 8], "counts": [6, 3, 3, 3, 3, 3, 27]}  # column-major runs
    runs = check_rle(uncompressed, 6, 8, "x")
    assert rle_area(runs) == 9 and decode_mask(runs).sum() == 9
    with pytest.raises(VideoadaptError, match="add up"):
        check_rle({"size": [6, 8], "counts": [1, 2]}, 6, 8, "x")


# --- per-video statistics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 6])
def test_sums_give_the_exact_metrics_when_no_runs_are_merged(seed: int) -> None:
    items, preds = _random_data(seed)
    exact = vis_metrics(items, preds, CATEGORIES, novel=["dog"])
    stats = vs.vis_statistics(items, preds, CATEGORIES, novel=["dog"], area_ranges=True)  # bins: as needed
    assert {v.shape[0] for v in stats.values()} == {len(items)}
    from_sums = vs.vis_metrics_from_sums({k: v.sum(0) for k, v in stats.items()})
    _close({k: float(v) for k, v in from_sums.items()}, exact, [*vs.KEYS, "ap_base", "ap_novel"])


def test_a_resample_from_sums_is_the_metric_of_the_resampled_videos() -> None:
    items, preds = _random_data(7, crowd=False)
    stats = vs.vis_statistics(items, preds, CATEGORIES, bins=200)
    weights = np.array([2.0, 0.0, 1.0, 0.0, 3.0, 0.0])
    resampled = vs.vis_metrics_from_sums({k: weights @ v for k, v in stats.items()})
    # The same videos repeated, under new ids (scores are distinct, so the ranking is unambiguous).
    picked, picked_preds = [], {}
    for i, times in enumerate(weights.astype(int)):
        for copy in range(times):
            vid = f"{items[i].video.video_id}-{copy}"
            picked.append(
                TrackingItem(VideoRef(vid), items[i].num_frames, 6.0, items[i].width, items[i].height, items[i].tracks)
            )
            picked_preds[vid] = preds[items[i].video.video_id]
    _close(
        {k: float(v) for k, v in resampled.items()},
        vis_metrics(picked, picked_preds, CATEGORIES),
        ("ap", "ap50", "ap75", "ar1", "ar10"),
    )
    batch = vs.vis_metrics_from_sums({k: np.stack([weights @ v, v.sum(0)]) for k, v in stats.items()})
    assert batch["ap"].shape == (2,) and batch["ap"][0] == pytest.approx(float(resampled["ap"]))


def test_merged_runs_bracket_the_exact_ap() -> None:
    items, preds = _random_data(8, videos=12)
    exact = vis_metrics(items, preds, CATEGORIES)
    stats = vs.vis_statistics(items, preds, CATEGORIES, bins=2)
    lower, upper = vs.vis_ap_bounds_from_sums({k: v.sum(0) for k, v in stats.items()})
    for key in ("ap", "ap50", "ap75"):
        assert lower[key] - 1e-9 <= exact[key] <= upper[key] + 1e-9, key
    assert lower["ap"] < upper["ap"]  # two intervals are too few here: the bound is not trivially tight
    assert float(lower["ar10"]) == pytest.approx(exact["ar10"])  # AR is exact whatever the bins


def test_area_range_ends_are_inclusive() -> None:
    # Mean area exactly 128² lies in both the small and the medium range (ytvoseval ignores < lo or > hi).
    mask = _rect(130, 130, 0, 0, 128, 128)
    rle = encode_mask(mask)
    track = ObjectTrack(1, "cat", (0,), ((0, 0, 128, 128),), (rle,))
    items = [TrackingItem(VideoRef("a"), 1, 5.0, 130, 130, (track,))]
    result = vis_metrics(items, {"a": [VideoInstance("cat", 1.0, {0: rle})]}, ["cat"])
    assert result["aps"] == pytest.approx(100.0) and result["apm"] == pytest.approx(100.0)
    assert np.isnan(result["apl"])
