"""SynthWorld grounding scenes (issue 15): two same-shape actors that only the sentence tells apart, their events
at different times, and the temporal / spatio-temporal grounding items read from them in memory and on disk."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from videoadapt.cli import main
from videoadapt.data.formats.synthworld import load_synthworld
from videoadapt.data.records import GroundingItem
from videoadapt.data.synthworld import (
    SPLITS,
    SynthWorld,
    SynthWorldConfig,
    SynthWorldConfigError,
    action_from_states,
)
from videoadapt.data.synthworld.disk import annotation_path, load_split, read_annotations
from videoadapt.data.synthworld.script import GROUNDING_ACTIONS, span_iou
from videoadapt.data.synthworld.vocabulary import COLOUR_SYNONYMS, ROUND_SHAPES
from videoadapt.errors import InputFileError

GROUNDING = SynthWorldConfig(seed=4, scenes="grounding")
WORLD = SynthWorld(GROUNDING)
SMALL = {"seed": 9, "size": 48, "frames": 8}
"""The in-memory reader's options matching the small set written on disk (fps 8 is the reader's default)."""


def _fingerprint(video) -> str:
    digest = hashlib.sha256(video.frames.tobytes())
    digest.update(json.dumps(video.to_annotation(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def scenes():
    return [WORLD.video(split, i) for split in SPLITS for i in range(20)]


def _actors(video):
    return [video.track(e.track_ids[0]) for e in video.events]


# --- config -------------------------------------------------------------------------------------------------


def test_scenes_is_part_of_the_config_and_unknown_values_are_refused():
    assert SynthWorldConfig().scenes == "events"
    assert SynthWorldConfig.from_dict(GROUNDING.to_dict()) == GROUNDING
    assert GROUNDING.to_dict()["scenes"] == "grounding"
    with pytest.raises(SynthWorldConfigError, match="unknown scenes 'tubes'; known: events, grounding"):
        SynthWorldConfig(scenes="tubes")
    with pytest.raises(SynthWorldConfigError, match="action="):
        WORLD.video("train", 0, action="grow")


def test_events_scenes_are_bit_identical_to_before_grounding_scenes():
    """Fingerprints (frames + annotation) taken from the code before grounding scenes existed: shipped results
    and the other tests depend on events videos never changing."""
    expected = {
        (0, "train", 0): "16fc5079f5d88c8f",
        (0, "train", 7): "4c3324a5c1b1ff04",
        (0, "val", 1): "8bf339771d95cb1e",
        (0, "test", 4): "372b1560f277eeae",
        (3, "train", 0): "d993f6e1132ee736",
        (3, "train", 7): "6deffdc6c3d06a86",
        (3, "val", 1): "8437fbcbe7dbe240",
        (3, "test", 4): "5207455fac0c0adf",
    }
    worlds = {
        0: SynthWorld(SynthWorldConfig()),
        3: SynthWorld(SynthWorldConfig(seed=3, size=48, frames=10, fps=5.0, scenes="events")),
    }
    for (seed, split, index), fingerprint in expected.items():
        assert _fingerprint(worlds[seed].video(split, index)) == fingerprint, (seed, split, index)
    # The in-memory reader's non-grounding items too.
    data = load_synthworld(None, "val", "qa", seed=2, videos=60, size=48, frames=8)
    items = repr([(it.question_id, it.question, it.answer) for it in data.items]).encode()
    assert hashlib.sha256(items).hexdigest()[:16] == "6ac5711bdb69ed32"
    assert "scenes" not in data.origin


# --- the scenes ---------------------------------------------------------------------------------------------


def test_grounding_scenes_are_deterministic_and_random_access():
    again = SynthWorld(SynthWorldConfig(seed=4, scenes="grounding"))
    for split, index in (("test", 3), ("train", 5), ("val", 0)):
        assert _fingerprint(again.video(split, index)) == _fingerprint(WORLD.video(split, index))
    other = SynthWorld(dataclasses.replace(GROUNDING, seed=5))
    assert _fingerprint(other.video("train", 5)) != _fingerprint(WORLD.video("train", 5))
    events = SynthWorld(dataclasses.replace(GROUNDING, scenes="events"))
    assert _fingerprint(events.video("train", 5)) != _fingerprint(WORLD.video("train", 5))


def test_two_actors_share_a_shape_and_differ_in_colour(scenes):
    held_out = set(GROUNDING.held_out_shapes)
    counts = set()
    for video in scenes:
        actors = [t for t in video.tracks if t.role == "actor"]
        assert sorted(t.track_id for t in actors) == sorted(t.track_id for t in _actors(video))
        assert len(actors) == 2 and len(video.events) == 2
        a, b = actors
        assert a.category == b.category
        assert len(a.colours) == len(b.colours) == 1 and a.colour != b.colour
        distractors = [t for t in video.tracks if t.role == "distractor"]
        assert len(distractors) <= 2 and all(d.category != a.category for d in distractors)
        counts.add(len(distractors))
        if video.split == "train":
            assert not {t.category for t in video.tracks} & held_out
    assert counts == {0, 1, 2}


def test_each_event_is_its_actors_own_single_object_action_within_its_span(scenes):
    seen = set()
    for video in scenes:
        for event, actor in zip(video.events, _actors(video), strict=True):
            seen.add(event.action)
            assert event.action in GROUNDING_ACTIONS
            if actor.category in ROUND_SHAPES:
                assert not event.action.startswith("rotate")
            # Independently re-derived from the actor's states alone.
            assert action_from_states([actor]) == event.action
            # The actor is still before its span and after it, so the span is exactly when it acts.
            changed = False
            for states in (actor.center, actor.radius, actor.angle):
                before, after = states[: event.start_frame + 1], states[event.end_frame :]
                assert (before == before[:1]).all() and (after == after[:1]).all()
                changed |= not (states[event.start_frame] == states[event.end_frame]).all()
            assert changed or event.action == "bounce"  # a bounce may come back to where it started
    assert len(seen) >= 10


@pytest.mark.parametrize("frames", [8, 16, 32])
def test_spans_are_short_apart_in_time_and_in_order(frames):
    world = SynthWorld(SynthWorldConfig(seed=1, frames=frames, scenes="grounding"))
    shortest, longest = max(3, round(3 * frames / 16)), max(3, round(frames / 2))
    first_actions = set()
    for index in range(30):
        video = world.video("val", index)
        spans = [(e.start_frame, e.end_frame) for e in video.events]
        assert spans == sorted(spans)
        for event in video.events:
            assert shortest <= event.end_frame - event.start_frame + 1 <= longest
            assert 0 <= event.start_frame < event.end_frame < frames
            assert event.start_s == event.start_frame / world.config.fps
            assert event.end_s == event.end_frame / world.config.fps
        assert span_iou(*spans) <= 0.2
        windows = [(e.start_s, e.end_s) for e in video.events]
        inter = max(0.0, min(windows[0][1], windows[1][1]) - max(windows[0][0], windows[1][0]))
        union = max(windows[0][1], windows[1][1]) - min(windows[0][0], windows[1][0])
        assert inter / union <= 0.2
        first_actions.add(video.events[0].action)
    assert len(first_actions) > 3


def test_queries_name_colour_and_shape_and_are_the_only_language(scenes):
    for video in scenes:
        queries = [e.query for e in video.events]
        assert queries[0] != queries[1]
        for event, actor in zip(video.events, _actors(video), strict=True):
            assert event.query.startswith(f"the {actor.colour} {actor.category} ")
            assert event.track_ids == [actor.track_id]
            other_colour = next(a.colour for a in _actors(video) if a is not actor)
            assert other_colour not in event.query.split()
            assert not set(COLOUR_SYNONYMS[other_colour]) & set(event.query.split())
        assert video.captions == queries
        assert video.qa == {"multiple_choice": [], "open_ended": []}
        assert video.action == video.events[0].action
        assert not video.reversed and video.novel == any(t.novel for t in video.tracks)


def test_actors_are_whole_and_visible_throughout_their_spans(scenes):
    for video in scenes:
        size = video.frames.shape[1]
        for event, actor in zip(video.events, _actors(video), strict=True):
            boxes = actor.boxes[event.start_frame : event.end_frame + 1]
            assert np.isfinite(boxes).all()
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= size).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        # Neither actor ever hides any pixel of the other: the visible mask of each is its full shape.
        a, b = _actors(video)
        assert not (a.masks & b.masks).any()
        assert a.visible.all() and b.visible.all()


def test_drawing_only_some_frames_gives_exactly_those_frames_of_a_grounding_video():
    world = SynthWorld(SynthWorldConfig(seed=5, frames=8, scenes="grounding"))
    rng = np.random.default_rng(0)
    for split in SPLITS:
        for index in range(5):
            video = world.video(split, index)
            picks = rng.integers(0, 8, size=int(rng.integers(1, 9)))
            assert np.array_equal(world.frames(split, index, picks), video.frames[picks])
            assert np.array_equal(world.frames(split, index), video.frames)


# --- the reader ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["temporal_grounding", "st_grounding"])
def test_in_memory_items_are_one_per_event_with_the_actors_tube(task):
    data = load_synthworld(None, "val", task, seed=4, videos=40)
    assert data.origin == "synthworld:seed=4,videos=40,size=64,frames=16,scenes=grounding"
    assert data.extra["config"] == GROUNDING.to_dict()
    assert len(data.items) == 2 * 4 == len(data.extra["novel"])
    for k, item in enumerate(data.items):
        assert isinstance(item, GroundingItem)
        video = WORLD.video("val", k // 2)
        event = video.events[k % 2]
        assert item.query_id == f"{video.id}/g{k % 2}" and item.video.video_id == video.id
        assert item.query == event.query and item.duration == 16 / 8
        assert item.windows == ((event.start_s, event.end_s),)
        tube = item.tube
        assert tube is not None and (tube.fps, tube.width, tube.height) == (8.0, 64, 64)
        assert tube.frames == tuple(range(event.start_frame, event.end_frame + 1))
        expected = video.track(event.track_ids[0]).boxes[event.start_frame : event.end_frame + 1]
        assert np.array_equal(np.array(tube.boxes), expected)
        assert all(isinstance(v, float) for box in tube.boxes for v in box)
        assert data.extra["novel"][k] == video.novel
    # The source draws the grounding scene's pixels.
    ref = data.items[0].video
    assert np.array_equal(data.source.frames(ref), WORLD.video("val", 0).frames)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """Six grounding videos (all in train: 6 · 0.1 rounds down) written by the CLI."""
    root = tmp_path_factory.mktemp("grounding")
    args = ["synth", "--out", str(root), "--videos", "6", "--scenes", "grounding", "--json"]
    args += ["--seed", str(SMALL["seed"]), "--size", str(SMALL["size"]), "--frames", str(SMALL["frames"])]
    assert main(args) == 0
    return root


def test_cli_writes_grounding_scenes_and_counts_their_events(written, capsys):
    doc = read_annotations(written, "train")
    assert doc["info"]["config"]["scenes"] == "grounding" and len(doc["videos"]) == 6
    world = SynthWorld(SynthWorldConfig(**SMALL, scenes="grounding"))
    for from_disk, in_memory in zip(load_split(written, "train"), world.videos("train", 6), strict=True):
        assert np.array_equal(from_disk.frames, in_memory.frames)
        assert from_disk.to_annotation() == in_memory.to_annotation()
    out = written.parent / "again"
    assert main(["synth", "--out", str(out), "--videos", "6", "--scenes", "grounding", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["splits"]["train"]
    assert summary["temporal_grounding"] == summary["st_grounding"] == 12
    assert summary["recognition"] == summary["retrieval"] == summary["qa_multiple_choice"] == 0


@pytest.mark.parametrize("task", ["temporal_grounding", "st_grounding"])
def test_disk_items_equal_the_in_memory_items(written, task):
    from_disk = load_synthworld(str(written), "train", task)
    in_memory = load_synthworld(None, "train", task, videos=6, **SMALL)
    assert len(from_disk.items) == 12
    for a, b in zip(from_disk.items, in_memory.items, strict=True):
        assert a.video.path == written / "videos" / "train" / f"{a.video.video_id}.mp4"
        assert dataclasses.replace(a, video=b.video) == b
    assert from_disk.extra["novel"] == in_memory.extra["novel"]
    assert from_disk.extra["config"] == in_memory.extra["config"]


def _corrupt(written: Path, tmp_path: Path, change) -> Path:
    """A copy of the written set's annotations (videos are not read by the item reader) with video 2 changed."""
    doc = read_annotations(written, "train")
    change(doc["videos"][2])
    root = tmp_path / "corrupt"
    path = annotation_path(root, "train")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return root


def _reverse_span(video):
    event = video["events"][0]
    event["start_frame"], event["end_frame"] = event["end_frame"], event["start_frame"]


def _empty_span(video):
    event = video["events"][1]
    event["end_frame"], event["end_s"] = event["start_frame"], event["start_s"]


def _box_outside(video):
    event = video["events"][0]
    track = next(t for t in video["tracks"] if t["track_id"] == event["track_ids"][0])
    track["boxes"][event["start_frame"]] = [40.0, 40.0, 60.0, 60.0]  # the frame is 48 px


def _no_box_in_span(video):
    event = video["events"][1]
    track = next(t for t in video["tracks"] if t["track_id"] == event["track_ids"][0])
    track["boxes"][event["end_frame"]] = None


def _two_actors(video):
    video["events"][0]["track_ids"].append(video["events"][1]["track_ids"][0])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_reverse_span, "inverted"),
        (_empty_span, "reversed, empty or outside"),
        (_box_outside, "not inside the 48x48 frame"),
        (_no_box_in_span, "no box on frame"),
        (_two_actors, "exactly one actor"),
    ],
)
def test_bad_grounding_annotations_are_errors_or_counted_skips(written, tmp_path, change, reason):
    root = _corrupt(written, tmp_path, change)
    with pytest.raises(InputFileError, match=reason) as error:
        load_synthworld(str(root), "train", "st_grounding")
    assert "train.json" in str(error.value) and "grounding_train_000002" in str(error.value)
    data = load_synthworld(str(root), "train", "temporal_grounding", skip_bad=True)
    assert data.extra["skipped"]["count"] == 1 and "grounding_train_000002" in data.extra["skipped"]["reasons"][0]
    assert len(data.items) == 10 and not any(i.video.video_id == "grounding_train_000002" for i in data.items)


def test_tasks_refuse_the_other_kind_of_scenes(written, tmp_path):
    for task in ("recognition", "retrieval", "qa", "captioning"):
        with pytest.raises(InputFileError, match="scenes='grounding'"):
            load_synthworld(str(written), "train", task)
    events = tmp_path / "events"
    assert main(["synth", "--out", str(events), "--videos", "3", "--size", "32", "--frames", "8", "--json"]) == 0
    with pytest.raises(InputFileError, match="--scenes grounding"):
        load_synthworld(str(events), "train", "temporal_grounding")
    # In memory the task picks the scenes: recognition still reads events videos.
    assert load_synthworld(None, "val", "recognition", videos=20).extra["config"]["scenes"] == "events"
