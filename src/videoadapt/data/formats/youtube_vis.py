"""YouTube-VIS and LV-VIS video instance segmentation json (the ``youtubevos/cocoapi`` ``YTVOS`` layout).

``youtube_vis:PATH`` (PATH is the data set folder or one split's json)::

    PATH/<split>.json | <split>_instances.json | annotations/<split>.json | annotations/instances_<split>.json
        {"videos": [{"id": 1, "file_names": ["0043f083b5/00000.jpg", ...], "length": 36,
                     "width": 1280, "height": 720}, ...],
         "annotations": [{"id": 1, "video_id": 1, "category_id": 3, "iscrowd": 0,
                          "segmentations": [RLE | polygons | null, ... one per frame],
                          "bboxes": [[x, y, w, h] | null, ...], "areas": [...]}, ...],
         "categories": [{"id": 3, "name": "cat", "partition": "base" | "novel"}, ...]}
    FRAMES/<file_names[i]>     the JPEG frames; FRAMES is the video_dir option, default PATH/<split>/JPEGImages,
                               PATH/JPEGImages, else PATH

YouTube-VIS ships each video as a folder of JPEG frames (every fifth frame of the 30 fps original, so 6 fps: the
``fps`` option), not as a video file; :class:`FrameFolderSource` reads the frames a sampler picks with PIL. A video's
``file_names`` are its frames in order; frame ``i`` of an annotation's ``segmentations`` is ``file_names[i]``.

One :class:`TrackingItem` per video (the ``segmentation`` task; ``tracking`` reads the same items, boxes from the
masks): every annotation of the video is an :class:`ObjectTrack` with its mask and box on each frame where its
segmentation is not null and not empty. Masks are kept as compressed RLEs (polygons and uncompressed RLEs are
converted with pycocotools); boxes are the masks' bounding boxes (``(x, y, x + w, y + h)``), not the json's
``bboxes``. ``TaskData.classes`` are the category names in id order. Base / novel (LV-VIS): the ``novel`` option
(comma-separated category names) or else the categories' ``partition`` field (``"base"`` or ``"novel"``) when
present, in ``extra["novel_categories"]``; without either, every category is base. A json without
``annotations`` (a challenge's val/test) gives items with no objects. ``extra["video_ids"]`` maps our video id
(the json's ``id`` as a string) back to the json's id and ``extra["category_ids"]`` each category name to its id
(for reading and writing result files).

Bad input, naming the file and the item: a video without frames or with a ``length`` other than its frame count,
an unsafe frame path, a duplicate video or category id, an annotation of an unknown video or category, a
segmentation list longer or shorter than the video, a mask of the wrong size, an RLE that does not decode or a
polygon that is not one. With ``skip_bad`` a bad video, or a video with a bad annotation, is skipped whole (its
ground truth would be incomplete) and counted in ``extra["skipped"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoadapt.data.formats.common import (
    Problems,
    annotation_file,
    check_split,
    check_task,
    finish,
    join_inside,
    read_json,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.formats.grounding_common import frame_size, integer
from videoadapt.data.masks import check_rle, polygons_to_rle, rle_area
from videoadapt.data.records import Item, ObjectTrack, TaskData, TrackingItem, VideoRef
from videoadapt.data.sampling import Sampler
from videoadapt.errors import InputFileError, VideoadaptError, VideoDecodeError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
DEFAULT_FPS = 6.0  # YouTube-VIS annotates every fifth frame of 30 fps videos


class FrameFolderSource:
    """Clips stored as JPEG (or any PIL-readable) frame files: ``files[video_id]`` lists a video's frames in order;
    a sampler picks indices into that list at the video's ``fps``."""

    def __init__(self, files: dict[str, tuple[Path, ...]], fps: float) -> None:
        self.files = files
        self.fps = fps

    def frames(self, ref: VideoRef, sampler: Sampler | None = None) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        files = self.files.get(ref.video_id)
        if not files:
            raise VideoadaptError(f"video {ref.video_id!r} has no frame files")
        picked = range(len(files)) if sampler is None else sampler.indices(len(files), self.fps)
        out = []
        for index in picked:
            path = files[int(index)]
            try:
                with Image.open(path) as image:
                    out.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
            except FileNotFoundError:
                raise VideoDecodeError(path, f"frame {int(index)} of video {ref.video_id!r} is missing") from None
            except (UnidentifiedImageError, OSError) as error:
                raise VideoDecodeError(path, f"frame {int(index)} of video {ref.video_id!r}: {error}") from None
        shapes = {f.shape for f in out}
        if len(shapes) > 1:
            raise VideoDecodeError(
                files[0].parent, f"frames of video {ref.video_id!r} differ in size: {sorted(shapes)}"
            )
        return np.stack(out)


@registry.register("format", "youtube_vis")
def load_youtube_vis(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    novel: str | None = None,
    fps: float = DEFAULT_FPS,
    skip_bad: bool = False,
) -> TaskData:
    """YouTube-VIS / LV-VIS json (see the module docstring) → video instance segmentation items."""
    check_task("youtube_vis", task, ("segmentation", "tracking"))
    check_split("youtube_vis", split, SPLITS)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise VideoadaptError(f"option fps={fps!r} of format 'youtube_vis' must be a number") from None
    if not fps > 0:
        raise VideoadaptError(f"option fps={fps} of format 'youtube_vis' must be positive")
    root = Path(path)
    candidates = [
        f"{split}.json",
        f"{split}_instances.json",
        f"annotations/{split}.json",
        f"annotations/instances_{split}.json",
    ]
    file = annotation_file(root, candidates, f"YouTube-VIS {split} json")
    document = read_json(file)
    if not isinstance(document, dict) or not isinstance(document.get("videos"), list):
        raise InputFileError(file, "expected a json object with a 'videos' list (YouTube-VIS layout)")
    if not isinstance(document.get("categories"), list):
        raise InputFileError(file, "expected a 'categories' list")
    names, ids, partition_novel = _categories(file, document["categories"])
    novel_names = _novel(file, novel, names, partition_novel)
    annotations = document.get("annotations", [])
    if not isinstance(annotations, list):
        raise InputFileError(file, "'annotations' must be a list")
    frames_root = find_video_dir(root, video_dir, [f"{split}/JPEGImages", "JPEGImages"])
    problems = Problems(skip_bad)
    videos: dict[Any, dict] = {}
    bad_videos: set[Any] = set()
    files: dict[str, tuple[Path, ...]] = {}
    for k, video in enumerate(document["videos"]):
        where = f"videos[{k}]"
        parsed = _video(video, frames_root, videos)
        if isinstance(parsed, str):
            if isinstance(video, dict) and video.get("id") is not None:
                bad_videos.add(video["id"])
            problems.bad(file, f"{where} (id {video.get('id') if isinstance(video, dict) else None!r})", parsed)
            continue
        videos[video["id"]] = parsed
    tracks: dict[Any, list[ObjectTrack]] = {vid: [] for vid in videos}
    for k, annotation in enumerate(annotations):
        where = f"annotations[{k}]"
        vid = annotation.get("video_id") if isinstance(annotation, dict) else None
        if vid in bad_videos:
            continue
        try:
            track = _track(annotation, k, videos, ids)
            if any(t.track_id == track.track_id for t in tracks[vid]):
                raise VideoadaptError(f"track id {track.track_id} is used twice in video {vid!r}")
        except VideoadaptError as error:
            problems.bad(file, f"{where} (video_id {vid!r})", str(error))
            if vid in videos:
                bad_videos.add(vid)
                del videos[vid]
            continue
        tracks[annotation["video_id"]].append(track)
    items: list[Item] = []
    for vid, video in videos.items():
        key = str(vid)
        files[key] = video["files"]
        ref = VideoRef(key, video["files"][0].parent)
        items.append(TrackingItem(ref, len(video["files"]), fps, video["width"], video["height"], tuple(tracks[vid])))
    return finish(
        task=task,
        split=split,
        items=items,
        source=FrameFolderSource(files, fps),
        origin=file,
        problems=problems,
        classes=names,
        extra={
            "novel_categories": sorted(novel_names),
            "video_ids": {str(v): v for v in videos},
            "category_ids": {name: i for i, name in ids.items()},
        },
    )


def _categories(file: Path, categories: list) -> tuple[list[str], dict[Any, str], set[str]]:
    """Names in id order, id -> name, and the names whose ``partition`` is ``novel``."""
    by_id: dict[Any, str] = {}
    novel: set[str] = set()
    for k, category in enumerate(categories):
        where = f"categories[{k}]"
        if not isinstance(category, dict) or integer(category.get("id")) is None:
            raise InputFileError(file, f"{where}: needs an integer 'id' and a 'name'")
        name = category.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InputFileError(file, f"{where}: needs a non-empty 'name'")
        if category["id"] in by_id or name in by_id.values():
            raise InputFileError(file, f"{where}: category id {category['id']!r} or name {name!r} appears twice")
        by_id[category["id"]] = name.strip()
        partition = category.get("partition")
        if partition is not None:
            if str(partition).lower() not in ("base", "novel"):
                raise InputFileError(file, f"{where}: partition {partition!r} is neither 'base' nor 'novel'")
            if str(partition).lower() == "novel":
                novel.add(name.strip())
    if not by_id:
        raise InputFileError(file, "the 'categories' list is empty")
    return [by_id[i] for i in sorted(by_id)], by_id, novel


def _novel(file: Path, option: str | None, names: Sequence[str], partition: set[str]) -> set[str]:
    if option is None:
        return partition
    chosen = {n.strip() for n in str(option).split(",") if n.strip()}
    unknown = sorted(chosen - set(names))
    if unknown:
        raise InputFileError(file, f"novel categories {unknown} are not among the json's categories")
    return chosen


def _video(video: object, frames_root: Path, seen: dict[Any, dict]) -> dict | str:
    """``{"files", "width", "height"}`` of a usable video entry, or why it is bad."""
    if not isinstance(video, dict):
        return "not a json object"
    if video.get("id") is None or video["id"] in seen:
        return "missing or repeated video id"
    names = video.get("file_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "'file_names' must be a non-empty list of frame paths"
    length = video.get("length", len(names))
    if integer(length) != len(names):
        return f"length {length!r} differs from its {len(names)} file_names"
    size, reason = frame_size(video.get("width"), video.get("height"))
    if size is None:
        return reason or "bad frame size"
    paths = []
    for name in names:
        joined, unsafe = join_inside(frames_root, name)
        if unsafe:
            return f"frame path {name!r} {unsafe}"
        paths.append(joined)
    return {"files": tuple(paths), "width": size[0], "height": size[1]}


def _track(annotation: object, k: int, videos: dict[Any, dict], categories: dict[Any, str]) -> ObjectTrack:
    if not isinstance(annotation, dict):
        raise VideoadaptError("not a json object")
    vid = annotation.get("video_id")
    if vid not in videos:
        raise VideoadaptError(f"unknown video_id {vid!r}")
    if annotation.get("category_id") not in categories:
        raise VideoadaptError(f"unknown category_id {annotation.get('category_id')!r}")
    video = videos[vid]
    width, height, length = video["width"], video["height"], len(video["files"])
    segmentations = annotation.get("segmentations")
    if not isinstance(segmentations, list):
        raise VideoadaptError("'segmentations' must be a list with one entry (or null) per frame")
    if len(segmentations) != length:
        raise VideoadaptError(f"'segmentations' has {len(segmentations)} entries; the video has {length} frames")
    track_id = integer(annotation.get("id", k + 1))
    if track_id is None:
        raise VideoadaptError(f"annotation id {annotation.get('id')!r} is not an integer")
    frames, boxes, masks = [], [], []
    for frame, segmentation in enumerate(segmentations):
        if segmentation is None:
            continue
        where = f"frame {frame}"
        if isinstance(segmentation, list):
            rle = polygons_to_rle(segmentation, height, width, where)
        else:
            rle = check_rle(segmentation, height, width, where)
        if rle_area(rle) == 0:
            continue  # not visible on this frame
        frames.append(frame)
        masks.append(rle)
        boxes.append(_box(rle))
    return ObjectTrack(
        track_id,
        categories[annotation["category_id"]],
        tuple(frames),
        tuple(boxes),
        tuple(masks),
        iscrowd=bool(annotation.get("iscrowd", 0)),
    )


def _box(rle: dict) -> tuple[float, float, float, float]:
    from pycocotools import mask as mask_utils

    x, y, w, h = (float(v) for v in mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}))
    return x, y, x + w, y + h
