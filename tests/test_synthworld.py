"""SynthWorld in memory: determinism, ground-truth consistency, the reversal property, balance, image twins."""

from __future__ import annotations

import difflib
import json
from collections import Counter

import numpy as np
import pytest

from videoadapt.data.synthworld import (
    ACTION_CLASSES,
    ACTION_GROUPS,
    ACTIONS,
    ANSWER_VOCAB,
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SynthWorld,
    SynthWorldConfig,
    SynthWorldConfigError,
    action_from_states,
    partner,
    rle,
)
from videoadapt.data.synthworld.render import boxes_from_masks
from videoadapt.data.synthworld.samples import SynthVideo
from videoadapt.data.synthworld.vocabulary import POSITION_PHRASES, position_of

WORLD = SynthWorld(SynthWorldConfig(seed=7))


def _videos(split: str, n: int) -> list[SynthVideo]:
    return list(WORLD.videos(split, n))


# --- determinism -------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_samples_and_access_order_does_not_matter():
    other = SynthWorld(SynthWorldConfig(seed=7))
    for split in ("train", "test"):
        streamed = _videos(split, 6)
        for index in (5, 0, 3):  # random access, out of order, from a fresh world
            again = other.video(split, index)
            assert np.array_equal(again.frames, streamed[index].frames)
            assert json.dumps(again.to_annotation()) == json.dumps(streamed[index].to_annotation())


def test_different_seed_or_split_gives_different_samples():
    a = WORLD.video("train", 0)
    b = SynthWorld(SynthWorldConfig(seed=8)).video("train", 0)
    c = WORLD.video("val", 0)
    assert not np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_configurable_geometry_and_rate():
    world = SynthWorld(SynthWorldConfig(size=48, frames=10, fps=5.0, seed=1))
    video = world.video("train", 3)
    assert video.frames.shape == (10, 48, 48, 3) and video.frames.dtype == np.uint8
    assert video.fps == 5.0
    for event in video.events:
        assert event.start_s == event.start_frame / 5.0 and event.end_s == event.end_frame / 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 16},
        {"frames": 4},
        {"fps": 0.0},
        {"min_objects": 3, "max_objects": 2},
        {"held_out_shapes": ("dodecahedron",)},
        {"held_out_shapes": ("square", "triangle", "star", "cross", "heart", "hourglass")},
    ],
)
def test_invalid_config_is_rejected_with_a_reason(kwargs):
    with pytest.raises(SynthWorldConfigError):
        SynthWorldConfig(**kwargs)


# --- ground truth consistency ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_videos() -> list[SynthVideo]:
    return _videos("train", 40) + _videos("val", 20) + _videos("test", 20)


def test_masks_boxes_and_pixels_agree(mixed_videos):
    for video in mixed_videos:
        T, H, W, _ = video.frames.shape
        union = np.zeros((T, H, W), dtype=np.int64)
        for track in video.tracks:
            assert track.masks.shape == (T, H, W) and track.boxes.shape == (T, 4)
            union += track.masks
            # Box = tight box of the visible mask, NaN exactly where nothing is visible.
            np.testing.assert_array_equal(track.boxes, boxes_from_masks(track.masks))
            assert np.array_equal(track.visible, track.masks.any(axis=(1, 2)))
            assert np.isnan(track.boxes[~track.visible]).all()
            for t in np.flatnonzero(track.visible):
                x1, y1, x2, y2 = track.boxes[t].astype(int)
                inside = np.zeros((H, W), bool)
                inside[y1:y2, x1:x2] = True
                assert not (track.masks[t] & ~inside).any()
                assert track.masks[t, y1, :].any() and track.masks[t, y2 - 1, :].any()
                assert track.masks[t, :, x1].any() and track.masks[t, :, x2 - 1].any()
                # Every visible pixel has exactly the object's colour for that frame.
                assert (video.frames[t][track.masks[t]] == track.rgb[t]).all()
            # Invisible means absent or fully hidden behind objects drawn later.
            assert not (track.visible & ~track.present).any()
        assert union.max() <= 1, "visible masks overlap"


def test_annotations_are_well_formed(mixed_videos):
    for video in mixed_videos:
        T = video.num_frames
        ids = [t.track_id for t in video.tracks]
        assert ids == sorted(set(ids))
        assert video.action_id == ACTIONS.index(video.action)
        assert len(video.captions) >= 3 and len(set(video.captions)) >= 2
        for event in video.events:
            assert 0 <= event.start_frame < event.end_frame <= T - 1
            assert 0.0 <= event.start_s < event.end_s <= (T - 1) / video.fps
            assert event.query and set(event.track_ids) <= set(ids)
            assert len(event.track_ids) == ACTION_CLASSES[event.action].actors
        # Every object has its own shape, so "the star" is unambiguous.
        assert len({t.category for t in video.tracks}) == len(video.tracks)
        for q in video.qa["multiple_choice"]:
            assert len(q["options"]) == 5 and len(set(q["options"])) == 5
            assert 0 <= q["answer_index"] < 5
        for q in video.qa["open_ended"]:
            assert q["answer"] in ANSWER_VOCAB, q
        assert video.novel == any(t.novel for t in video.tracks)
        # Distractors never change, so the label is about the actors only.
        for t in video.tracks:
            if t.role == "distractor":
                assert (t.center == t.center[0]).all() and (t.rgb == t.rgb[0]).all()


def test_train_split_never_shows_a_held_out_category():
    held_out = set(WORLD.config.held_out_shapes)
    for video in WORLD.videos("train", 60):
        assert not video.novel
        assert not {t.category for t in video.tracks} & held_out
    novel = [v.novel for v in WORLD.videos("test", 40)]
    assert any(novel) and not all(novel)


def test_track_ids_are_stable_across_frames(mixed_videos):
    # A track's state moves continuously: consecutive centres never jump further than the event's speed allows.
    for video in mixed_videos:
        for t in video.tracks:
            assert np.abs(np.diff(t.center, axis=0)).max(initial=0) < video.frames.shape[1] / 2


def test_multiple_choice_offers_the_temporal_partner_as_hard_negative():
    for video in WORLD.videos("train", 30):
        q = video.qa["multiple_choice"][0]
        answer = q["options"][q["answer_index"]]
        if partner(video.action) != video.action:
            reverse = WORLD.video("train", video.index, action=partner(video.action))
            q2 = reverse.qa["multiple_choice"][0]
            assert q2["options"][q2["answer_index"]] in q["options"] and q2["options"][q2["answer_index"]] != answer


# --- labels and the reversal property -----------------------------------------------------------------------------


def test_action_from_states_recovers_every_label(mixed_videos):
    for video in mixed_videos:
        assert action_from_states(video.tracks) == video.action, video.id


class _Reversed:
    def __init__(self, track):
        self.center, self.radius = track.center[::-1], track.radius[::-1]
        self.angle, self.rgb = track.angle[::-1], track.rgb[::-1]


@pytest.mark.parametrize("action", ACTIONS)
def test_reversing_a_video_gives_a_valid_video_of_its_partner(action):
    for index in range(3):
        video = WORLD.video("train", index, action=action)
        assert video.action == action
        assert action_from_states(video.tracks) == action
        assert action_from_states([_Reversed(t) for t in video.tracks]) == partner(action)
        if partner(action) != action:
            # The partner is generated by playing the same script backwards: frames and states match exactly.
            other = WORLD.video("train", index, action=partner(action))
            assert np.array_equal(other.frames, video.frames[::-1])
            for a, b in zip(video.tracks, other.tracks, strict=True):
                np.testing.assert_array_equal(a.center[::-1], b.center)
                np.testing.assert_array_equal(a.masks[::-1], b.masks)
                np.testing.assert_array_equal(a.boxes[::-1], b.boxes)
            T, fps = video.num_frames, video.fps
            assert other.events[0].start_s == pytest.approx((T - 1) / fps - video.events[0].end_s)
            assert other.events[0].end_s == pytest.approx((T - 1) / fps - video.events[0].start_s)


def test_pairs_and_their_members_are_drawn_evenly():
    draws = Counter(WORLD.video("train", i).action for i in range(480))
    groups = Counter()
    for group in ACTION_GROUPS:
        groups[group] = sum(draws[a] for a in group)
    expected = 480 / len(ACTION_GROUPS)
    for count in groups.values():
        assert abs(count - expected) < 5 * np.sqrt(expected)
    for group in ACTION_GROUPS:
        if len(group) == 2:
            a, b = draws[group[0]], draws[group[1]]
            n = a + b
            assert abs(a - n / 2) <= 3 * np.sqrt(n / 4) + 1, (group, a, b)
    assert set(draws) == set(ACTIONS)


# --- images ------------------------------------------------------------------------------------------------------


def test_images_cover_every_category_and_expose_labels():
    seen = set()
    for image in WORLD.images(60):
        assert image.image.shape == (64, 64, 3)
        labels = image.labels()
        assert all(len(v) == len(image.objects) for v in labels.values())
        for obj in image.objects:
            seen.add(obj.shape)
            assert obj.position == position_of(*obj.center, 64)
            assert obj.position in POSITIONS
            if obj.mask.any():
                assert (image.image[obj.mask] == COLOURS[obj.colour]).all()
        assert image.caption == image.captions[0] and len(image.captions) >= 3
    assert seen >= set(WORLD.config.held_out_shapes)


def _changed_words(a: str, b: str) -> tuple[list[str], list[str]]:
    wa, wb = a.replace(",", " ,").split(), b.replace(",", " ,").split()
    old, new = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if tag != "equal":
            old += wa[i1:i2]
            new += wb[j1:j2]
    return old, new


def _phrase(attribute: str, value: str) -> str:
    return POSITION_PHRASES[value] if attribute == "position" else value


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_twins_differ_in_exactly_one_attribute_and_its_words(attribute):
    for index in range(15):
        image = WORLD.image(index)
        twin = WORLD.twin(image, attribute)
        assert twin.edit["attribute"] == attribute
        k = twin.edit["object"]
        for j, (a, b) in enumerate(zip(image.objects, twin.objects, strict=True)):
            for attr in ATTRIBUTES:
                same = getattr(a, attr) == getattr(b, attr)
                assert same == (j != k or attr != attribute), (attr, j, k)
        old, new = _changed_words(image.caption, twin.caption)
        assert old or new  # "at the top left" → "at the top" only deletes a word
        assert set(old) <= set(_phrase(attribute, twin.edit["from"]).split()), (old, twin.edit)
        assert set(new) <= set(_phrase(attribute, twin.edit["to"]).split()), (new, twin.edit)
        # Paraphrases are drawn with the same words too, so only this attribute's (synonym) words change.
        for c1, c2 in zip(image.captions[1:], twin.captions[1:], strict=True):
            o, n = _changed_words(c1, c2)
            assert 0 < len(o) + len(n) and len(o) <= 3 and len(n) <= 3
        assert not np.array_equal(image.image, twin.image)


# --- RLE ----------------------------------------------------------------------------------------------------------


def test_rle_is_coco_uncompressed_and_round_trips():
    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[1, 0] = mask[2, 3] = True
    encoded = rle.encode(mask)
    # Column-major: column 0 is (1,1,0), then zeros until the last pixel.
    assert encoded == {"size": [3, 4], "counts": [0, 2, 9, 1]}
    assert np.array_equal(rle.decode(encoded), mask)
    empty = np.zeros((5, 6), bool)
    assert rle.encode(empty)["counts"] == [30]
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((7, 9)) < 0.4
        assert np.array_equal(rle.decode(rle.encode(m)), m)


def test_annotation_round_trip_is_exact(mixed_videos):
    for video in mixed_videos[:10]:
        ann = json.loads(json.dumps(video.to_annotation()))  # through real JSON text
        back = SynthVideo.from_annotation(ann, video.frames)
        assert back.to_annotation() == video.to_annotation()
        for a, b in zip(video.tracks, back.tracks, strict=True):
            assert np.array_equal(a.masks, b.masks)
            np.testing.assert_array_equal(a.boxes, b.boxes)
            assert np.array_equal(a.center, b.center) and np.array_equal(a.angle, b.angle)


def test_drawing_only_some_frames_gives_exactly_those_frames_of_the_video():
    """SynthWorld.frames draws only the frames a sampler picks (what a training step reads) and skips the
    annotations; the pixels are the full video's, byte for byte, in any order, for played-backwards videos too."""
    world = SynthWorld(SynthWorldConfig(seed=5, frames=8))
    rng = np.random.default_rng(1)
    flipped = 0
    for split in ("train", "val", "test"):
        for index in range(12):
            video = world.video(split, index)
            flipped += video.reversed
            picks = rng.integers(0, 8, size=int(rng.integers(1, 9)))
            assert np.array_equal(world.frames(split, index, picks), video.frames[picks])
            assert np.array_equal(world.frames(split, index), video.frames)
    assert flipped  # the reversed path was exercised
    with pytest.raises(SynthWorldConfigError, match="outside the video's 8 frames"):
        world.frames("train", 0, [8])
