"""HC-STVG v1 and v2 spatio-temporal grounding (human-centric) from the release's json files.

``hcstvg:PATH`` (PATH is the folder or one split's json)::

    v1: PATH/train.json | test.json            v2: PATH/trainv2.json | valv2.json  (also train_v2.json, val_v2.json)
        {"<name>.mp4": {"st_frame": 61, "ed_frame": 170, "st_time": 2.4, "ed_time": 6.8,
                        "bbox": [[x, y, w, h], ...],          one per frame from st_frame on
                        "img_num": 500, "width": 640, "height": 360,       v2: "img_size": [height, width]
                        "caption": "..."},                                 v2: "English": "..."
         ...}
    VIDEO_DIR/**/<name>.<ext>                  video_dir default PATH/video (TubeDETR), PATH/v1_video, PATH/videos

Splits: v1 has ``train`` and ``test`` (papers report test), v2 ``train`` and ``val`` (its test labels are not
public; papers report val). ``version`` picks the file names (default: v1's where they exist, else v2's).

Conventions. ``st_frame`` is **1-based** (TubeDETR's ``preproc_hcstvg.py`` says "starts with 1"; STCAT subtracts
one), and ``bbox`` holds one ``[x, y, w, h]`` box per frame from ``st_frame`` on, so the tube is the 0-based frames
``st_frame - 1 .. st_frame - 1 + len(bbox) - 1`` (inclusive; STCAT's reading; TubeDETR uses ``st_frame`` unshifted
as a 0-based index, one frame later). ``ed_frame`` is not used: both references take the tube's length from
``bbox``. Boxes become ``(x, y, x + w, y + h)``. The clips are 20 s long (TubeDETR: ``fps = img_num / 20``), so
``fps = img_num / clip_seconds`` with ``clip_seconds=20`` and ``duration = clip_seconds``; ``windows`` is the
tube's span in seconds (:attr:`Tube.span_s`). One sentence per video: the query id is the file name without its
extension, and so is the video id. Bad items: no boxes (a sentence with no tube), ``st_frame < 1``, a tube past
``img_num`` frames, a box with no positive size or outside the frame.
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
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
FILES = {
    ("v1", "train"): ["train.json"],
    ("v1", "test"): ["test.json"],
    ("v2", "train"): ["trainv2.json", "train_v2.json"],
    ("v2", "val"): ["valv2.json", "val_v2.json"],
}
CLIP_SECONDS = 20.0


@registry.register("format", "hcstvg")
def load_hcstvg(
    path: str,
    split: str,
    task: str,
    *,
    version: str | None = None,
    clip_seconds: float = CLIP_SECONDS,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """HC-STVG v1/v2 json (see the module docstring) → spatio-temporal grounding items."""
    check_task("hcstvg", task, ("st_grounding",))
    check_split("hcstvg", split, SPLITS)
    if version not in (None, "v1", "v2"):
        raise VideoadaptError(f"hcstvg version must be v1 or v2, got {version!r}")
    seconds = number(_float(clip_seconds))
    if seconds is None or seconds <= 0:
        raise VideoadaptError(f"hcstvg clip_seconds must be a positive number, got {clip_seconds!r}")
    root = Path(path)
    names = FILES.get((version, split), []) if version else _any_version(split)
    if not names and not root.is_file():
        raise VideoadaptError(
            f"hcstvg {version or 'v1/v2'} has no {split!r} split: v1 has train and test, v2 train and val (its test "
            "labels are not public); validate on a part of the training videos instead (split holdout, with fit)"
        )
    file = annotation_file(root, names, f"HC-STVG {split} json")
    document = read_json(file)
    if not isinstance(document, dict):
        raise InputFileError(file, 'expected a json object {"<video name>": {"st_frame", "bbox", ...}}')
    index = VideoIndex(find_video_dir(root, video_dir, ["video", "v1_video", "v2_video", "videos"]))
    problems = Problems(skip_bad)
    items: list[Item] = []
    for name, entry in document.items():
        where = f"video {name!r}"
        stem = os.path.splitext(name)[0]
        parsed = _entry(entry, seconds)
        if isinstance(parsed, str):
            problems.bad(file, where, parsed)
            continue
        clip = index.path_for(stem, skip_missing, problems, file, where)
        if clip is None:
            continue
        items.append(GroundingItem(stem, VideoRef(stem, clip), **parsed))
    return finish_files(task, split, items, file, problems, index, extra={"clip_seconds": seconds})


def _any_version(split: str) -> list[str]:
    return FILES.get(("v1", split), []) + FILES.get(("v2", split), [])


def _entry(entry: object, seconds: float) -> str | dict[str, Any]:
    """The item's fields, or why the entry is bad."""
    if not isinstance(entry, dict):
        return "not a json object"
    caption = entry.get("caption", entry.get("English"))
    if not isinstance(caption, str) or not caption.strip():
        return "no caption (v1 'caption', v2 'English')"
    if "img_size" in entry:
        shape = entry["img_size"]
        ok = isinstance(shape, list) and len(shape) == 2
        size, reason = frame_size(shape[1], shape[0]) if ok else (None, f"img_size {shape!r} is not [height, width]")
    else:
        size, reason = frame_size(entry.get("width"), entry.get("height"))
    if size is None:
        return reason or "bad frame size"
    frame_count, start = integer(entry.get("img_num")), integer(entry.get("st_frame"))
    if frame_count is None or frame_count <= 0:
        return f"img_num {entry.get('img_num')!r} is not a positive frame count"
    if start is None or start < 1:
        return f"st_frame {entry.get('st_frame')!r} is not a 1-based frame number"
    raw_boxes = entry.get("bbox")
    if not isinstance(raw_boxes, list) or not raw_boxes:
        return "no boxes: a sentence with no tube"
    boxes = []
    for k, raw in enumerate(raw_boxes):
        box, reason = xywh_box(raw)
        if box is None:
            return f"bbox[{k}]: {reason}"
        boxes.append(box)
    frames = [start - 1 + k for k in range(len(boxes))]
    tube, reason = make_tube(frames, boxes, frame_count / seconds, size[0], size[1], frame_count)
    if tube is None:
        return reason or "bad tube"
    return {"query": caption.strip(), "duration": seconds, "windows": (tube.span_s,), "tube": tube}


def _float(value: object) -> object:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value
