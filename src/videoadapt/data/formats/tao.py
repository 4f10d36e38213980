"""TAO (Tracking Any Object) and TAO-style json (OVTrack's TAO splits, BURST boxes, SynthWorld exports) for
open-vocabulary multi-object tracking.

``tao:PATH`` (PATH is the folder or one split's json)::

    PATH/train.json | validation.json (val.json) | test.json     also under PATH/annotations/
        {"videos": [{"id": 1, "name": "val/YFCC100M/v_abc", "width": 640, "height": 480,
                     "fps": 30, "num_frames": 900}, ...],                  (fps, num_frames optional)
         "images": [{"id": 10, "video_id": 1, "frame_index": 0, "width": 640, "height": 480}, ...],
         "annotations": [{"id": 5, "image_id": 10, "video_id": 1, "track_id": 3, "category_id": 95,
                          "bbox": [x, y, w, h]}, ...],
         "tracks": [{"id": 3, "video_id": 1, "category_id": 95}, ...],      (optional)
         "categories": [{"id": 95, "name": "bus", "frequency": "c"}, ...]}   (frequency: LVIS r / c / f)
    VIDEO_DIR/<video name>.<any video extension>                  video_dir default PATH/videos, else PATH

TAO ships the frames as JPEG folders; make one video file per video ``name`` (``ffmpeg -i frame%04d.jpg``) at
the frame rate its ``frame_index`` counts in (the option ``fps``, default 30, unless the video gives ``fps``).

One :class:`TrackingItem` per video: ``annotated_frames`` = the ``frame_index`` of the video's images (TAO
annotates about one frame per second; only these frames are scored), ``num_frames`` = the video's ``num_frames``
(or ``frame_count``) when given, else its last image's ``frame_index`` + 1, the size from the video (else its first
image). Tracks gather the annotations by ``track_id``; boxes ``[x, y, w, h]`` become ``(x, y, x + w, y + h)``.
``TaskData.classes`` = every category name (in category-id order); ``extra["novel_categories"]`` = the option
``novel``: ``"rare"`` (default: the LVIS-rare categories, frequency ``r``, OVTrack's novel split), ``"none"``, or
names separated by commas. ``extra["category_ids"]`` (name → id), ``extra["video_ids"]`` (video name → id) and
``extra["image_ids"]`` (video name → ``{frame_index: image id}``) keep the json's ids for the prediction file.

Bad annotations (an error naming the file and ``annotations[k]``, or skipped and counted with ``skip_bad``): an
unknown ``category_id``, an ``image_id`` that is not an image of its video (a box on a frame the video lacks), a
``track_id`` already used in another video (TAO's ids are unique across the set), a second box of a track on one
frame, a track whose category changes, a box of no positive size. A video without width, height or images is a bad
video (``videos[k]``).
"""

from __future__ import annotations

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
from videoadapt.data.formats.grounding_common import frame_size, integer, number
from videoadapt.data.formats.tracking_common import TrackBuilder, novel_categories, positive_box
from videoadapt.data.records import Item, TaskData, TrackingItem, VideoRef
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
FILES = {
    "train": ["train.json", "annotations/train.json"],
    "val": ["validation.json", "val.json", "annotations/validation.json", "annotations/val.json"],
    "test": ["test.json", "annotations/test.json"],
}
DEFAULT_FPS = 30.0


@registry.register("format", "tao")
def load_tao(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    novel: str = "rare",
    fps: float = DEFAULT_FPS,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """A TAO-style json (see the module docstring) → tracking items, one per video."""
    check_task("tao", task, ("tracking",))
    check_split("tao", split, SPLITS)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise VideoadaptError(f"option fps={fps!r} of format 'tao' must be a number") from None
    root = Path(path)
    file = annotation_file(root, FILES[split], f"TAO {split} json")
    document = read_json(file)
    keys = ("videos", "images", "annotations", "categories")
    if not isinstance(document, dict) or not all(isinstance(document.get(k), list) for k in keys):
        raise InputFileError(file, f"expected a json object with lists {', '.join(keys)}")
    categories: dict[int, str] = {}
    rare: list[str] = []
    for k, category in enumerate(document["categories"]):
        cid = integer(category.get("id")) if isinstance(category, dict) else None
        name = category.get("name") if isinstance(category, dict) else None
        if cid is None or not isinstance(name, str) or not name.strip() or cid in categories:
            raise InputFileError(file, f"categories[{k}]: needs a unique integer id and a name")
        if name.strip() in categories.values():
            raise InputFileError(file, f"categories[{k}]: the name {name.strip()!r} appears twice")
        categories[cid] = name.strip()
        if category.get("frequency") == "r":
            rare.append(name.strip())
    names = [categories[c] for c in sorted(categories)]
    problems = Problems(skip_bad)
    videos: dict[int, dict[str, Any]] = {}
    for k, video in enumerate(document["videos"]):
        vid = integer(video.get("id")) if isinstance(video, dict) else None
        if vid is None or vid in videos or not isinstance(video.get("name"), str) or not video["name"].strip():
            problems.bad(file, f"videos[{k}]", "needs a unique integer id and a name")
            continue
        videos[vid] = {"where": f"videos[{k}] ({video['name']!r})", "video": video, "images": {}, "tracks": None}
    images: dict[int, tuple[int, int]] = {}  # image id -> (video id, frame index)
    for k, image in enumerate(document["images"]):
        iid = integer(image.get("id")) if isinstance(image, dict) else None
        vid = integer(image.get("video_id")) if isinstance(image, dict) else None
        frame = integer(image.get("frame_index")) if isinstance(image, dict) else None
        if iid is None or iid in images or frame is None or frame < 0:
            problems.bad(file, f"images[{k}]", "needs a unique integer id and a frame_index >= 0")
            continue
        if vid not in videos:
            problems.bad(file, f"images[{k}] (id {iid})", f"video_id {image.get('video_id')!r} is not a video")
            continue
        images[iid] = (vid, frame)
        videos[vid]["images"].setdefault(frame, image)
    builders = {vid: TrackBuilder() for vid in videos}
    track_video: dict[int, int] = {}
    track_category = _track_categories(document.get("tracks"), categories)
    for k, annotation in enumerate(document["annotations"]):
        where = f"annotations[{k}]"
        reason = _add_annotation(annotation, images, categories, track_video, track_category, builders)
        if reason is not None:
            if isinstance(annotation, dict) and "id" in annotation:
                where += f" (id {annotation['id']!r})"
            problems.bad(file, where, reason)
    index = VideoIndex(find_video_dir(root, video_dir, ["videos", "frames"]))
    items: list[Item] = []
    video_ids: dict[str, int] = {}
    image_ids: dict[str, dict[int, int]] = {}
    for vid, entry in videos.items():
        made = _video_item(entry, builders[vid].tracks(), fps)
        if isinstance(made, str):
            problems.bad(file, entry["where"], made)
            continue
        clip = index.path_for(entry["video"]["name"].strip(), skip_missing, problems, file, entry["where"])
        if clip is None:
            continue
        name = made.pop("video_id")
        items.append(TrackingItem(video=VideoRef(name, clip), **made))
        video_ids[name] = vid
        image_ids[name] = {frame: integer(image["id"]) for frame, image in entry["images"].items()}
    extra = {
        "novel_categories": novel_categories(novel, names, rare),
        "category_ids": {name: cid for cid, name in categories.items()},
        "video_ids": video_ids,
        "image_ids": image_ids,
    }
    return finish_files(task, split, items, file, problems, index, classes=names, extra=extra)


def _track_categories(tracks: object, categories: dict[int, str]) -> dict[int, int]:
    """``track id -> category id`` from the optional ``tracks`` list (an annotation must agree with its track)."""
    out: dict[int, int] = {}
    if isinstance(tracks, list):
        for track in tracks:
            if isinstance(track, dict):
                tid, cid = integer(track.get("id")), integer(track.get("category_id"))
                if tid is not None and cid is not None:
                    out[tid] = cid
    return out


def _add_annotation(
    annotation: object,
    images: dict[int, tuple[int, int]],
    categories: dict[int, str],
    track_video: dict[int, int],
    track_category: dict[int, int],
    builders: dict[int, TrackBuilder],
) -> str | None:
    """Add one annotation's box to its video's tracks; the reason it is bad, else None."""
    if not isinstance(annotation, dict):
        return "not a json object"
    image_id, track_id = integer(annotation.get("image_id")), integer(annotation.get("track_id"))
    category_id = integer(annotation.get("category_id"))
    if track_id is None:
        return f"track_id {annotation.get('track_id')!r} is not an integer"
    if category_id not in categories:
        return f"unknown category_id {annotation.get('category_id')!r}"
    if track_id in track_category and track_category[track_id] != category_id:
        return f"category_id {category_id} differs from its track's {track_category[track_id]}"
    if image_id not in images:
        return f"image_id {annotation.get('image_id')!r} is not an image of the file (a frame the video lacks)"
    video_id, frame = images[image_id]
    declared = annotation.get("video_id", video_id)
    if integer(declared) != video_id:
        return f"image {image_id} is a frame of video {video_id}, not of video_id {declared!r}"
    first = track_video.setdefault(track_id, video_id)
    if first != video_id:
        return f"track_id {track_id} is already used in video {first} (track ids must be unique across videos)"
    box, reason = positive_box(annotation.get("bbox"))
    if box is None:
        return reason
    return builders[video_id].add(track_id, categories[category_id], frame, box)


def _video_item(entry: dict[str, Any], tracks: tuple, default_fps: float) -> dict[str, Any] | str:
    """The fields of a video's item (``video_id`` apart), or why the video cannot be one."""
    video, images = entry["video"], entry["images"]
    if not images:
        return "no image (annotated frame) of this video in the file"
    first = images[min(images)]
    size, reason = frame_size(video.get("width", first.get("width")), video.get("height", first.get("height")))
    if size is None:
        return reason or "no frame size"
    fps = number(video.get("fps", default_fps))
    if fps is None or fps <= 0:
        return f"fps {video.get('fps', default_fps)!r} is not a positive number"
    last = max(images)
    declared = video.get("num_frames", video.get("frame_count"))
    num_frames = last + 1 if declared is None else integer(declared)
    if num_frames is None or num_frames <= last:
        return f"num_frames {declared!r} does not cover frame_index {last}"
    return {
        "video_id": video["name"].strip(),
        "num_frames": num_frames,
        "fps": fps,
        "width": size[0],
        "height": size[1],
        "tracks": tracks,
        "annotated_frames": tuple(sorted(images)),
    }
