"""VidSTG spatio-temporal grounding, from TubeDETR's preprocessed annotation files.

The official release (``Guaranteer/VidSTG-Dataset``) keeps sentences and temporal ground truth apart from the boxes,
which live in VidOR's per-video files; TubeDETR's ``preproc/preproc_vidstg.py`` joins the two into one json per
split, and that is the layout read here (the official files: run TubeDETR's script once).

``vidstg:PATH`` (PATH is the folder or one split's json)::

    PATH/train.json | val.json | test.json
        {"videos": [{"video_id": 0, "original_video_id": "2440175990", "video_path": "0000/2440175990.mp4",
                     "frame_count": 1620, "fps": 29.97, "width": 640, "height": 480,
                     "start_frame": 0, "end_frame": 600,                 (VidOR "used_segment", end excluded)
                     "tube_start_frame": 120, "tube_end_frame": 240,     ("temporal_gt", end excluded)
                     "target_id": 3, "caption": "...", "qtype": "declarative" | "interrogative"}, ...],
         "trajectories": {"2440175990": {"3": {"120": {"bbox": [x, y, w, h], ...}, ...}}}}
    VIDEO_DIR/<video_path>                                 video_dir default PATH/video (TubeDETR), PATH/videos

Conventions (TubeDETR ``datasets/vidstg.py``): frame numbers are **0-based** indices of the VidOR video (its
preprocessing enumerates VidOR's ``trajectories`` list); ``tube_end_frame`` and ``end_frame`` are **excluded**
(TubeDETR keeps frames ``tube_start_frame <= f < tube_end_frame`` and asserts that ``end_fid - 1`` has a box).
STCAT reads ``end_fid`` as inclusive and copies the last box when that frame has none, which is what an excluded
end looks like; we follow TubeDETR. Boxes ``[x, y, w, h]`` become ``(x, y, x + w, y + h)``.

One :class:`GroundingItem` per sentence, query id ``str(video_id)`` (TubeDETR's, the key its evaluator uses).
``tube``: frames ``tube_start_frame .. tube_end_frame - 1`` (inclusive) with their boxes, ``fps`` the video's;
``windows``: the tube's span in seconds (:attr:`Tube.span_s`); ``duration``: ``frame_count / fps`` (the whole VidOR
file, which is what is decoded). The tube is cut to the used segment (TubeDETR only samples frames inside it;
``extra["clipped"]`` counts cut tubes), and ``extra["segments"][query_id] = [first, last]`` gives that segment's
frames (inclusive), ``extra["sentence_types"][query_id]`` the ``qtype`` (TubeDETR reports both separately).
Bad items: a sentence whose target has no trajectory, a frame of the tube without a box, a tube outside the
segment or the video, a box with no positive size or outside the frame, a duplicate ``video_id``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    check_split,
    check_task,
    finish_files,
    read_json,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.formats.grounding_common import frame_size, integer, make_tube, number, xywh_box
from videoadapt.data.records import GroundingItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
FIELDS = ("original_video_id", "video_path", "frame_count", "fps", "width", "height", "start_frame", "end_frame")


@registry.register("format", "vidstg")
def load_vidstg(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """TubeDETR's VidSTG json (see the module docstring) → spatio-temporal grounding items."""
    check_task("vidstg", task, ("st_grounding",))
    check_split("vidstg", split, SPLITS)
    root = Path(path)
    file = annotation_file(root, [f"{split}.json"], f"VidSTG {split} json (TubeDETR's preprocessing)")
    document = read_json(file)
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("videos"), list)
        or not isinstance(document.get("trajectories"), dict)
    ):
        raise InputFileError(file, "expected a json object with a 'videos' list and a 'trajectories' object")
    trajectories = document["trajectories"]
    index = VideoIndex(find_video_dir(root, video_dir, ["video", "videos"]))
    problems = Problems(skip_bad)
    items: list[Item] = []
    segments: dict[str, list[int]] = {}
    types: dict[str, str] = {}
    clipped = 0
    for k, video in enumerate(document["videos"]):
        where = f"videos[{k}]"
        if not isinstance(video, dict):
            problems.bad(file, where, "not a json object")
            continue
        query_id = str(video.get("video_id", ""))
        where = f"videos[{k}] (video_id {query_id})"
        parsed = _sentence(video, trajectories, query_id, segments)
        if isinstance(parsed, str):
            problems.bad(file, where, parsed)
            continue
        item_fields, was_clipped = parsed
        stem = os.path.splitext(str(video["video_path"]))[0]  # the index finds the clip in any container
        clip = index.path_for(stem, skip_missing, problems, file, where)
        if clip is None:
            continue
        clipped += was_clipped
        segments[query_id] = item_fields.pop("segment")
        types[query_id] = str(video.get("qtype", ""))
        items.append(GroundingItem(query_id, VideoRef(str(video["original_video_id"]), clip), **item_fields))
    return finish_files(
        task,
        split,
        items,
        file,
        problems,
        index,
        extra={"clipped": clipped, "segments": segments, "sentence_types": types},
    )


def _sentence(
    video: dict[str, Any], trajectories: dict[str, Any], query_id: str, seen: dict[str, list[int]]
) -> str | tuple[dict[str, Any], bool]:
    """The item's fields (plus its segment) and whether the tube was cut to the segment, or why it is bad."""
    if not query_id or query_id in seen:
        return "missing or repeated video_id"
    missing = [f for f in (*FIELDS, "tube_start_frame", "tube_end_frame", "target_id", "caption") if f not in video]
    if missing:
        return f"missing {', '.join(missing)}"
    caption = video["caption"]
    if not isinstance(caption, str) or not caption.strip():
        return "empty caption"
    size, reason = frame_size(video["width"], video["height"])
    fps, frame_count = number(video["fps"]), integer(video["frame_count"])
    if size is None:
        return reason or "bad frame size"
    if fps is None or fps <= 0 or frame_count is None or frame_count <= 0:
        return f"fps {video['fps']!r} or frame_count {video['frame_count']!r} is not positive"
    bounds = [integer(video[f]) for f in ("start_frame", "end_frame", "tube_start_frame", "tube_end_frame")]
    if any(b is None for b in bounds):
        return "start_frame, end_frame, tube_start_frame and tube_end_frame must be integer frame numbers"
    seg_start, seg_end, tube_start, tube_end = bounds  # type: ignore[misc]
    if not 0 <= seg_start < seg_end <= frame_count:
        return f"used segment [{seg_start}, {seg_end}) is not inside the video's {frame_count} frames (or is empty)"
    if tube_end <= tube_start:
        return f"tube [{tube_start}, {tube_end}) is reversed or empty (end excluded)"
    first, last = max(tube_start, seg_start), min(tube_end, seg_end) - 1
    if first > last:
        return f"tube [{tube_start}, {tube_end}) lies outside the used segment [{seg_start}, {seg_end})"
    track = trajectories.get(str(video["original_video_id"]), {})
    boxes_by_frame = track.get(str(video["target_id"])) if isinstance(track, dict) else None
    if not isinstance(boxes_by_frame, dict) or not boxes_by_frame:
        return f"target {video['target_id']!r} has no trajectory (a sentence with no tube)"
    frames, boxes = [], []
    for frame in range(first, last + 1):
        entry = boxes_by_frame.get(str(frame))
        if not isinstance(entry, dict) or "bbox" not in entry:
            return f"frame {frame} of the tube has no box for target {video['target_id']!r}"
        box, reason = xywh_box(entry["bbox"])
        if box is None:
            return f"frame {frame}: {reason}"
        frames.append(frame)
        boxes.append(box)
    tube, reason = make_tube(frames, boxes, fps, size[0], size[1], frame_count)
    if tube is None:
        return reason or "bad tube"
    fields = {
        "query": caption.strip(),
        "duration": frame_count / fps,
        "windows": (tube.span_s,),
        "tube": tube,
        "segment": [seg_start, seg_end - 1],
    }
    return fields, (first, last + 1) != (tube_start, tube_end)
