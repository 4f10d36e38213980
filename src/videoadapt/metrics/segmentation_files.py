"""Video instance segmentation files: YouTube-VIS result json (predictions), read and written, and its ground truth
(the data set's own json, read by :mod:`videoadapt.data.formats.youtube_vis`).

**Results** (the YouTube-VIS / LV-VIS challenge format, what ``YTVOS.loadRes`` reads), one json list::

    [{"video_id": 1, "category_id": 3, "score": 0.92,
      "segmentations": [{"size": [h, w], "counts": "..."} | null, ... one per frame of the video]}, ...]

``video_id`` and ``category_id`` are the ground-truth json's ids. A null entry, or an absent one, is an empty mask on
that frame. An empty list, or an empty file, is no prediction at all (every metric 0). Errors (an
:class:`~videoadapt.errors.InputFileError` naming the file and the entry): not a list, an entry without the four
keys, an unknown video or category id, a non-finite score, a segmentation list whose length is not the video's
frame count, a mask of the wrong size, an RLE that does not decode. With ``skip_bad`` a bad entry is dropped and
counted instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from videoadapt.data.formats.common import Problems, parse_json, read_text_file
from videoadapt.data.masks import check_rle, rle_area
from videoadapt.data.records import TaskData, TrackingItem
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.metrics.video_segmentation import VideoInstance


def read_vis_ground_truth(path: str | Path, split: str = "val") -> TaskData:
    """The ground truth of ``videoadapt score --task segmentation``: a YouTube-VIS / LV-VIS json (or its folder,
    with ``split`` choosing the json) read by the ``youtube_vis`` data reader (categories, base/novel partition,
    one item per video)."""
    from videoadapt.data.formats.youtube_vis import load_youtube_vis

    return load_youtube_vis(str(path), split, "segmentation")


def read_vis_results(
    path: str | Path,
    items: Sequence[TrackingItem],
    categories: Mapping[Any, str],
    video_ids: Mapping[str, Any] | None = None,
    problems: Any = None,
) -> dict[str, list[VideoInstance]]:
    """``{video id: [VideoInstance, ...]}`` (every ground-truth video, possibly with none) from a result json.

    Args:
        items: the ground-truth videos (their frame counts and sizes check the masks).
        categories: the json's category id -> name.
        video_ids: our video id -> the json's video id (``TaskData.extra["video_ids"]``); default: the same.
        problems: what to do with a bad entry, ``problems.bad(path, where, reason)`` (raise, or count and skip:
            :class:`~videoadapt.data.formats.common.Problems`, ``prediction_files.Items``); default: raise.
    """
    text = read_text_file(path, kind="prediction")
    document = [] if not text.strip() else parse_json(Path(path), text)
    if not isinstance(document, list):
        raise InputFileError(path, "expected a json list of {video_id, category_id, score, segmentations}")
    by_json_id = {(video_ids or {}).get(i.video.video_id, i.video.video_id): i for i in items}
    by_text = {str(k): v for k, v in by_json_id.items()}
    problems = problems if problems is not None else Problems(skip_bad=False)
    out: dict[str, list[VideoInstance]] = {i.video.video_id: [] for i in items}
    for k, entry in enumerate(document):
        where = f"entry {k}"
        try:
            item, instance = _entry(entry, by_json_id, by_text, categories)
        except VideoadaptError as error:
            problems.bad(path, where, str(error))
            continue
        out[item.video.video_id].append(instance)
    return out


def _entry(
    entry: object, by_id: Mapping[Any, TrackingItem], by_text: Mapping[str, TrackingItem], categories: Mapping[Any, str]
) -> tuple[TrackingItem, VideoInstance]:
    if not isinstance(entry, dict) or not {"video_id", "category_id", "score", "segmentations"} <= set(entry):
        raise VideoadaptError("needs video_id, category_id, score and segmentations")
    vid = entry["video_id"]
    item = by_id.get(vid) if not isinstance(vid, (list, dict)) else None
    if item is None and isinstance(vid, (str, int)) and not isinstance(vid, bool):
        item = by_text.get(str(vid))
    if item is None:
        raise VideoadaptError(f"unknown video_id {vid!r}")
    category = categories.get(entry["category_id"]) if not isinstance(entry["category_id"], (list, dict)) else None
    if category is None:
        raise VideoadaptError(f"unknown category_id {entry['category_id']!r}")
    score = entry["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise VideoadaptError(f"score {score!r} is not a finite number")
    segmentations = entry["segmentations"]
    if not isinstance(segmentations, list) or len(segmentations) != item.num_frames:
        count = len(segmentations) if isinstance(segmentations, list) else "no"
        raise VideoadaptError(f"{count} segmentations for video {vid!r} of {item.num_frames} frames")
    masks = {
        f: check_rle(rle, item.height, item.width, f"frame {f}")
        for f, rle in enumerate(segmentations)
        if rle is not None
    }
    return item, VideoInstance(category, float(score), masks)


def vis_results(
    predictions: Mapping[str, Sequence[VideoInstance]],
    items: Sequence[TrackingItem],
    category_ids: Mapping[str, Any],
    video_ids: Mapping[str, Any] | None = None,
) -> list[dict]:
    """The result json's list: one entry per predicted instance, a mask (or null) on every frame of its video.
    ``category_ids``: name -> the json's category id; ``video_ids``: our video id -> the json's (default: same)."""
    frames = {i.video.video_id: i.num_frames for i in items}
    out = []
    for vid, instances in predictions.items():
        if vid not in frames:
            raise VideoadaptError(f"video {vid!r} is not among the ground-truth videos")
        for instance in instances:
            if instance.category not in category_ids:
                raise VideoadaptError(f"video {vid!r}: category {instance.category!r} has no id")
            out.append(
                {
                    "video_id": (video_ids or {}).get(vid, vid),
                    "category_id": category_ids[instance.category],
                    "score": float(instance.score),
                    "segmentations": [
                        dict(instance.masks[f]) if f in instance.masks else None for f in range(frames[vid])
                    ],
                }
            )
    return out


def vis_ground_truth(items: Sequence[TrackingItem], categories: Sequence[str], novel: Collection[str] = ()) -> dict:
    """The YouTube-VIS / LV-VIS ground-truth json of ``items`` (what :func:`read_vis_ground_truth` reads back to the
    same items' objects): video ``id`` ``k`` (1-based, data order; ``name`` our video id), category ids ``1..C``
    in ``categories`` order with LV-VIS's ``partition`` (``novel`` for ``novel``, else ``base``), one annotation per
    track with a mask (or null) on every frame and its ``bboxes`` (``[x, y, w, h]``) and ``areas``. Result files to
    score against it use the same ids: ``vis_results(..., category_ids={name: k + 1}, video_ids={id: k + 1})``.

    Videos scored on only some frames (``annotated_frames``) have no place in the format and are refused."""
    ids = {c: k + 1 for k, c in enumerate(categories)}
    held_out = set(novel)
    videos, annotations = [], []
    for number, item in enumerate(items, start=1):
        vid = item.video.video_id
        if item.annotated_frames is not None:
            raise VideoadaptError(
                f"video {vid!r}: scored on some frames only (annotated_frames); YouTube-VIS json has every frame"
            )
        videos.append(
            {
                "id": number,
                "name": vid,
                "width": item.width,
                "height": item.height,
                "length": item.num_frames,
                "file_names": [f"{number}/{f:05d}.jpg" for f in range(item.num_frames)],
            }
        )
        for track in item.tracks:
            if track.category not in ids:
                raise VideoadaptError(f"video {vid!r}, track {track.track_id}: category {track.category!r} has no id")
            if track.masks is None:
                raise VideoadaptError(f"video {vid!r}, track {track.track_id}: no masks")
            masks = dict(zip(track.frames, track.masks, strict=True))
            boxes = dict(zip(track.frames, track.boxes, strict=True))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": number,
                    "category_id": ids[track.category],
                    "iscrowd": int(track.iscrowd),
                    "segmentations": [dict(masks[f]) if f in masks else None for f in range(item.num_frames)],
                    "bboxes": [
                        None
                        if f not in boxes
                        else [boxes[f][0], boxes[f][1], boxes[f][2] - boxes[f][0], boxes[f][3] - boxes[f][1]]
                        for f in range(item.num_frames)
                    ],
                    "areas": [None if f not in masks else float(rle_area(masks[f])) for f in range(item.num_frames)],
                }
            )
    return {
        "videos": videos,
        "categories": [{"id": k, "name": c, "partition": "novel" if c in held_out else "base"} for c, k in ids.items()],
        "annotations": annotations,
    }


def write_vis_results(path: str | Path, results: list[dict]) -> None:
    """Write :func:`vis_results` as json."""
    Path(path).write_text(json.dumps(results))
