"""Tracking predictions as a TAO result json: read (scored by ``videoadapt score --task tracking``) and written (by
the tracking task), against a ground truth read by a data reader (``tao:``, ``mot:``, ``synth:`` ...).

The file is TAO's (and trackeval's and SysCV teta's) result format, one json list of boxes::

    [{"video_id": 1, "image_id": 10, "category_id": 95, "track_id": 3, "bbox": [x, y, w, h], "score": 0.9}, ...]

``image_id`` names the frame; ``video_id`` may be left out (it is the image's video); ``score`` defaults to 1;
``bbox`` is ``[x, y, w, h]`` pixels (``x2 = x + w``, no +1, width and height >= 0); ``track_id`` is an integer,
unique within its video. An empty list (or an empty file) means nothing was predicted: every figure is 0.

**Ids.** With a TAO json as ground truth the ids are that json's (``tao`` reader: ``extra["video_ids"]``,
``extra["image_ids"]``, ``extra["category_ids"]``). For any other ground truth (MOTChallenge, SynthWorld) they
are numbered from the data itself (:func:`tracking_ids`): videos 1, 2, ... in item order, categories 1, 2, ... in
``TaskData.classes`` order, images 1, 2, ... over every frame of every video in item order (video 1's frames 0 ..
n-1, then video 2's). The writer uses the same numbering, so what it writes the reader scores.

An unknown ``video_id``, ``image_id`` or ``category_id``, an image of another video than ``video_id``, a bad box,
or a track with two boxes on one frame is an error naming the file and the entry (``[k]``), or a skipped, counted
entry with ``--skip-bad``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from videoadapt.data.formats.common import parse_json, read_text_file
from videoadapt.data.formats.grounding_common import integer, number, xywh_box
from videoadapt.data.records import TaskData, TrackingItem
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.metrics.prediction_files import Items
from videoadapt.metrics.tracking import TrackedBox


@dataclass(frozen=True)
class TrackingIds:
    """The ids a TAO result json uses for the videos, frames and categories of a ground truth."""

    videos: dict[str, int]  # video id (name) -> json video id
    images: dict[str, dict[int, int]]  # video id -> {frame: image id}
    categories: dict[str, int]  # category name -> json category id

    def image_frames(self) -> dict[int, tuple[str, int]]:
        """image id -> (video id, frame)."""
        return {image: (video, frame) for video, frames in self.images.items() for frame, image in frames.items()}


def tracking_items(data: TaskData) -> list[TrackingItem]:
    items = [item for item in data.items if isinstance(item, TrackingItem)]
    if len(items) != len(data.items) or not data.classes:
        raise VideoadaptError(f"{data.origin}: not tracking data (TrackingItems with a category list)")
    return items


def tracking_ids(data: TaskData) -> TrackingIds:
    """The ids of ``data``'s videos, frames and categories: a TAO json's own, else numbered (module docstring)."""
    items = tracking_items(data)
    classes = list(data.classes or [])
    extra = data.extra
    if all(isinstance(extra.get(k), dict) for k in ("video_ids", "image_ids", "category_ids")):
        names = {item.video.video_id for item in items}
        return TrackingIds(
            {v: int(i) for v, i in extra["video_ids"].items() if v in names},  # type: ignore[union-attr]
            {v: dict(f) for v, f in extra["image_ids"].items() if v in names},  # type: ignore[union-attr]
            {c: int(i) for c, i in extra["category_ids"].items() if c in classes},  # type: ignore[union-attr]
        )
    videos, images, next_image = {}, {}, 1
    for k, item in enumerate(items):
        videos[item.video.video_id] = k + 1
        images[item.video.video_id] = {frame: next_image + frame for frame in range(item.num_frames)}
        next_image += item.num_frames
    return TrackingIds(videos, images, {name: k + 1 for k, name in enumerate(classes)})


def write_tracking_predictions(
    path: str | Path, predictions: Mapping[str, Sequence[TrackedBox]], data: TaskData
) -> int:
    """Write ``predictions`` (video id → boxes) as a TAO result json with ``data``'s ids; returns the number of
    boxes written. Boxes on frames without an image id or not evaluated (a TAO video's frames that are not
    annotated, which are not scored) are left out. Written to a temporary file and renamed, so a reader never
    sees half a file."""
    entries = tracking_predictions_document(predictions, data)
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(entries))
    os.replace(temporary, path)
    return len(entries)


def tracking_ground_truth_document(data: TaskData) -> dict[str, list[dict]]:
    """``data``'s tracks as a TAO json (the ``tao`` reader's format) with the ids of :func:`tracking_ids`, so that
    a result json written by :func:`write_tracking_predictions` for ``data`` is scored against it unchanged:
    one image per evaluated frame, one annotation per box, track ids renumbered 1, 2, ... across the file (TAO's
    are unique across videos), novel categories (``extra["novel_categories"]``) with LVIS frequency ``"r"`` (what
    the reader's default ``novel=rare`` reads back), the others ``"f"``. TAO has no crowd regions: a crowd track
    is an error naming its video."""
    items = tracking_items(data)
    ids = tracking_ids(data)
    novel = set(data.extra.get("novel_categories") or [])  # type: ignore[call-overload]
    categories = [
        {"id": cid, "name": name, "frequency": "r" if name in novel else "f"} for name, cid in ids.categories.items()
    ]
    videos, images, annotations, tracks = [], [], [], []
    for item in items:
        name = item.video.video_id
        video_id, frames = ids.videos[name], ids.images[name]
        videos.append(
            {
                "id": video_id,
                "name": name,
                "width": item.width,
                "height": item.height,
                "fps": item.fps,
                "num_frames": item.num_frames,
            }
        )
        evaluated = set(item.evaluated_frames)
        for frame in item.evaluated_frames:
            if frame in frames:
                images.append(
                    {
                        "id": frames[frame],
                        "video_id": video_id,
                        "frame_index": frame,
                        "width": item.width,
                        "height": item.height,
                    }
                )
        for track in item.tracks:
            if track.iscrowd:
                raise VideoadaptError(
                    f"{data.origin}: video {name!r}, track {track.track_id} is a crowd region, which a TAO json "
                    "cannot hold"
                )
            track_id = len(tracks) + 1
            category_id = ids.categories[track.category]
            tracks.append({"id": track_id, "video_id": video_id, "category_id": category_id})
            for frame, (x1, y1, x2, y2) in zip(track.frames, track.boxes, strict=True):
                if frame not in frames or frame not in evaluated:
                    continue
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": frames[frame],
                        "video_id": video_id,
                        "track_id": track_id,
                        "category_id": category_id,
                        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                        "area": float((x2 - x1) * (y2 - y1)),
                        "iscrowd": 0,
                    }
                )
    return {
        "videos": videos,
        "images": images,
        "annotations": annotations,
        "tracks": tracks,
        "categories": categories,
    }


def tracking_predictions_document(predictions: Mapping[str, Sequence[TrackedBox]], data: TaskData) -> list[dict]:
    """``predictions`` (video id → boxes) as TAO result entries with ``data``'s ids (:func:`write_tracking_predictions`
    writes this list); boxes on frames that are not evaluated (``TrackingItem.evaluated_frames``) are left out,
    as they are from the ground-truth json."""
    ids = tracking_ids(data)
    evaluated = {item.video.video_id: set(item.evaluated_frames) for item in tracking_items(data)}
    entries = []
    for video, boxes in predictions.items():
        if video not in ids.videos:
            raise VideoadaptError(f"predictions for video {video!r}, which is not in {data.origin}")
        frames = ids.images[video]
        for box in boxes:
            if box.category not in ids.categories:
                raise VideoadaptError(f"video {video!r}, track {box.track_id}: unknown category {box.category!r}")
            if box.frame not in frames or box.frame not in evaluated[video]:
                continue
            x1, y1, x2, y2 = (float(v) for v in box.box)
            entries.append(
                {
                    "video_id": ids.videos[video],
                    "image_id": frames[box.frame],
                    "category_id": ids.categories[box.category],
                    "track_id": int(box.track_id),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(box.score),
                }
            )
    return entries


def read_tracking_predictions(
    path: str | Path, data: TaskData, problems: Items | None = None
) -> dict[str, list[TrackedBox]]:
    """The boxes of a TAO result json, keyed by ``data``'s video ids (videos without a box are absent). A bad
    entry raises naming the file and entry, or is skipped and recorded when ``problems`` skips."""
    path = Path(path)
    problems = problems if problems is not None else Items()
    text = read_text_file(path, "prediction")
    document = parse_json(path, text) if text.strip() else []
    if not isinstance(document, list):
        raise InputFileError(path, "expected a json list of boxes (TAO's result format)")
    ids = tracking_ids(data)
    video_names = {i: v for v, i in ids.videos.items()}
    category_names = {i: c for c, i in ids.categories.items()}
    images = ids.image_frames()
    out: dict[str, list[TrackedBox]] = {}
    seen: set[tuple[str, int, int]] = set()
    for k, entry in enumerate(document):
        read = _entry(entry, video_names, category_names, images)
        if isinstance(read, str):
            problems.bad(path, f"[{k}]", read)
            continue
        video, box = read
        key = (video, box.frame, box.track_id)
        if key in seen:
            problems.bad(path, f"[{k}]", f"track {box.track_id} has a second box on image {entry['image_id']}")
            continue
        seen.add(key)
        out.setdefault(video, []).append(box)
    return out


def _entry(
    entry: object,
    video_names: dict[int, str],
    category_names: dict[int, str],
    images: dict[int, tuple[str, int]],
) -> tuple[str, TrackedBox] | str:
    """``(video id, box)`` of one result entry, or why it is bad."""
    if not isinstance(entry, dict):
        return "not a json object"
    missing = [f for f in ("image_id", "category_id", "track_id", "bbox") if f not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    image = integer(entry["image_id"])
    if image not in images:
        return f"unknown image_id {entry['image_id']!r} (not a frame of a ground-truth video)"
    video, frame = images[image]
    if "video_id" in entry:
        declared = integer(entry["video_id"])
        if declared not in video_names:
            return f"unknown video_id {entry['video_id']!r}"
        if video_names[declared] != video:
            return f"image_id {image} is a frame of video {video!r}, not of video_id {declared}"
    category = integer(entry["category_id"])
    if category not in category_names:
        return f"unknown category_id {entry['category_id']!r}"
    track = integer(entry["track_id"])
    if track is None:
        return f"track_id {entry['track_id']!r} is not an integer"
    box, reason = xywh_box(entry["bbox"])
    if box is None:
        return reason or "bad bbox"
    if box[2] < box[0] or box[3] < box[1]:
        return f"bbox {entry['bbox']!r} has a negative width or height"
    score = number(entry.get("score", 1.0))
    if score is None:
        return f"score {entry.get('score')!r} is not a finite number"
    return video, TrackedBox(frame, track, category_names[category], box, score)
