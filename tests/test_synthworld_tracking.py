"""SynthWorld tracking scenes (issue 17): objects that cross, occlude, enter and leave, often two of one shape, with
exact tracks and visible masks; the tracking and segmentation items read from them in memory and on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from videoadapt.cli import main
from videoadapt.data.formats.synthworld import load_synthworld
from videoadapt.data.records import TrackingItem
from videoadapt.data.synthworld import SPLITS, SynthWorld, SynthWorldConfig, SynthWorldConfigError
from videoadapt.data.synthworld.vocabulary import DEFAULT_HELD_OUT_SHAPES, SHAPES
from videoadapt.errors import InputFileError

TRACKING = SynthWorldConfig(seed=3, scenes="tracking")
WORLD = SynthWorld(TRACKING)
SMALL = {"seed": 9, "size": 48, "frames": 8}


@pytest.fixture(scope="module")
def scenes():
    return [WORLD.video(split, i) for split in SPLITS for i in range(30)]


def test_tracking_scenes_are_deterministic_random_access_and_take_no_action():
    again = SynthWorld(SynthWorldConfig(seed=3, scenes="tracking"))
    first, second = WORLD.video("val", 7), again.video("val", 7)
    assert first.id == "tracking_val_000007"
    assert np.array_equal(first.frames, second.frames) and first.to_annotation() == second.to_annotation()
    assert np.array_equal(WORLD.frames("val", 7, [6, 0, 3]), first.frames[[6, 0, 3]])
    with pytest.raises(SynthWorldConfigError, match="tracking scenes have none"):
        WORLD.video("val", 7, action="move left")


def test_masks_are_disjoint_visible_pixels_and_boxes_hug_them(scenes):
    for video in scenes:
        assert 2 <= len(video.tracks) <= TRACKING.max_objects
        stack = np.stack([t.masks for t in video.tracks])  # [K,T,H,W]
        assert stack.sum(0).max() <= 1, f"{video.id}: two objects claim one pixel"
        for track in video.tracks:
            for f in np.flatnonzero(track.visible):
                ys, xs = np.nonzero(track.masks[f])
                assert list(track.boxes[f]) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                # Every visible pixel shows the object's own colour: the masks are what the frames show.
                assert (video.frames[f][track.masks[f]] == track.rgb[f]).all()


def test_scenes_have_crossings_occlusions_entries_exits_and_shared_shapes(scenes):
    occluded = shared = entering = crossings = 0
    for video in scenes:
        shapes = [t.category for t in video.tracks]
        shared += len(set(shapes)) < len(shapes)
        for track in video.tracks:
            entering += bool((~track.present).any())
            # Hidden in part by a later object: present, yet fewer pixels than drawn alone would give.
            occluded += bool((track.present & ~track.visible).any()) or any(
                track.masks[f].sum() < track.masks[g].sum() * 0.6
                for f in np.flatnonzero(track.visible)
                for g in np.flatnonzero(track.visible)
            )
        for k, a in enumerate(video.tracks):
            for b in video.tracks[k + 1 :]:
                both = a.present & b.present
                distance = np.hypot(*(a.center - b.center).T)
                crossings += bool((both & (distance < a.radius + b.radius)).any())
    assert shared >= 20 and entering >= 15 and occluded >= 10 and crossings >= 20, (
        shared,
        entering,
        occluded,
        crossings,
    )
    # Same-shape objects always differ in colour, so appearance can tell them apart.
    for video in scenes:
        seen: dict[str, set[str]] = {}
        for track in video.tracks:
            assert track.colour not in seen.setdefault(track.category, set())
            seen[track.category].add(track.colour)


def test_held_out_categories_never_appear_in_training_videos(scenes):
    for video in scenes:
        novel = {t.category for t in video.tracks} & set(DEFAULT_HELD_OUT_SHAPES)
        if video.split == "train":
            assert not novel
        assert video.novel == bool(novel)
    assert any(v.novel for v in scenes if v.split != "train")


@pytest.mark.parametrize("task", ["tracking", "segmentation"])
def test_in_memory_items_carry_every_visible_track_with_boxes_and_rle_masks(task):
    data = load_synthworld(None, "val", task, seed=3, videos=60)
    assert data.origin == "synthworld:seed=3,videos=60,size=64,frames=16,scenes=tracking"
    assert data.classes == list(SHAPES) and data.extra["novel_categories"] == ["hourglass", "heart"]
    assert len(data.items) == 6
    for k, item in enumerate(data.items):
        assert isinstance(item, TrackingItem)
        video = WORLD.video("val", k)
        assert item.video.video_id == video.id and (item.num_frames, item.fps, item.width) == (16, 8.0, 64)
        assert item.evaluated_frames == tuple(range(16))
        expected = [t for t in video.tracks if t.visible.any()]
        assert [t.track_id for t in item.tracks] == [t.track_id for t in expected]
        for track, truth in zip(item.tracks, expected, strict=True):
            assert track.category == truth.category
            assert track.frames == tuple(np.flatnonzero(truth.visible).tolist())
            assert np.array_equal(np.array(track.boxes), truth.boxes[list(track.frames)])
            decoded = mask_utils.decode(list(track.masks)).transpose(2, 0, 1).astype(bool)
            assert np.array_equal(decoded, truth.masks[list(track.frames)])
    assert np.array_equal(data.source.frames(data.items[0].video), WORLD.video("val", 0).frames)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tracking")
    args = ["synth", "--out", str(root), "--videos", "6", "--scenes", "tracking", "--json"]
    args += ["--seed", str(SMALL["seed"]), "--size", str(SMALL["size"]), "--frames", str(SMALL["frames"])]
    assert main(args) == 0
    return root


@pytest.mark.parametrize("task", ["tracking", "segmentation"])
def test_disk_items_equal_the_in_memory_items(written, task):
    from_disk = load_synthworld(str(written), "train", task)
    in_memory = load_synthworld(None, "train", task, videos=6, **SMALL)
    assert [i.tracks for i in from_disk.items] == [i.tracks for i in in_memory.items]
    assert from_disk.extra["novel_categories"] == in_memory.extra["novel_categories"]
    ref = from_disk.items[2].video
    assert np.array_equal(from_disk.source.frames(ref), in_memory.source.frames(in_memory.items[2].video))


def test_a_tracking_set_serves_only_tracking_and_segmentation(written):
    with pytest.raises(InputFileError, match="events scenes.*serves only tracking and segmentation"):
        load_synthworld(str(written), "train", "recognition")
    with pytest.raises(InputFileError, match="needs a set of grounding scenes"):
        load_synthworld(str(written), "train", "st_grounding")
