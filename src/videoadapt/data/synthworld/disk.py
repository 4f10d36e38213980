"""SynthWorld on disk: one layout, written in parallel, read back into the same samples.

Layout (documented in docs/synthworld.md)::

    DIR/videos/<split>/<id>.mp4        lossless libx264rgb: decodes to exactly the generated frames
    DIR/annotations/<split>.json       {"info": ..., "vocabulary": ..., "videos": [annotation, ...]}

Each video's annotation is :meth:`SynthVideo.to_annotation` plus ``"file"`` (the mp4 path relative to DIR).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from videoadapt.data.encode import write_video
from videoadapt.data.synthworld import vocabulary as vocab
from videoadapt.data.synthworld.samples import SynthVideo
from videoadapt.data.synthworld.world import SPLITS, VERSION, SynthWorld, SynthWorldConfig
from videoadapt.errors import InputFileError, UnsafePathError

TASK_COUNTS: tuple[str, ...] = (
    "videos",
    "novel_videos",
    "recognition",
    "retrieval",
    "captioning",
    "temporal_grounding",
    "st_grounding",
    "tracking",
    "segmentation",
    "qa_multiple_choice",
    "qa_open_ended",
)
"""Summary columns: recognition = action labels; retrieval/captioning = captions; temporal/st grounding = events
(each with a query, and for st_grounding the actors' box tubes); tracking = tracks; segmentation = visible instance
masks (track-frames); qa = questions. A grounding-scenes set (``scenes="grounding"``) serves grounding, tracking and
segmentation only, so its recognition, retrieval, captioning and qa counts are 0."""

GROUNDING_TASKS: tuple[str, ...] = ("temporal_grounding", "st_grounding")
"""The tasks a grounding-scenes set is made for (and the only ones its readers serve)."""
TRACKING_TASKS: tuple[str, ...] = ("tracking", "segmentation")
"""The tasks a tracking-scenes set is made for (and the only ones its readers serve)."""


def scenes_for(task: str) -> str:
    """The kind of SynthWorld scene that serves ``task``: ``grounding``, ``tracking`` or ``events``."""
    return "grounding" if task in GROUNDING_TASKS else "tracking" if task in TRACKING_TASKS else "events"


def annotation_path(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"{split}.json"


def video_path(root: str | Path, split: str, video_id: str) -> Path:
    return Path(root) / "videos" / split / f"{video_id}.mp4"


def vocabulary_dict() -> dict[str, Any]:
    """Everything a reader needs to interpret the annotations without importing videoadapt."""
    return {
        "shapes": list(vocab.SHAPES),
        "colours": {name: list(rgb) for name, rgb in vocab.COLOURS.items()},
        "sizes": dict(vocab.SIZES),
        "positions": list(vocab.POSITIONS),
        "actions": list(vocab.ACTIONS),
        "partners": {a: vocab.partner(a) for a in vocab.ACTIONS},
        "answers": list(vocab.ANSWER_VOCAB),
        "synonyms": {
            "shapes": {k: list(v) for k, v in vocab.SHAPE_SYNONYMS.items()},
            "colours": {k: list(v) for k, v in vocab.COLOUR_SYNONYMS.items()},
            "sizes": {k: list(v) for k, v in vocab.SIZE_SYNONYMS.items()},
        },
    }


# Worker state: each process builds its world once.
_WORLD: SynthWorld | None = None
_ROOT: Path | None = None


def _init_worker(config: dict[str, Any], root: str) -> None:
    global _WORLD, _ROOT
    _WORLD = SynthWorld(SynthWorldConfig.from_dict(config))
    _ROOT = Path(root)


def _write_one(job: tuple[str, int]) -> dict[str, Any]:
    assert _WORLD is not None and _ROOT is not None
    split, index = job
    video = _WORLD.video(split, index)
    path = video_path(_ROOT, split, video.id)
    write_video(path, video.frames, video.fps)
    return {**video.to_annotation(), "file": path.relative_to(_ROOT).as_posix()}


def write_synthworld(
    root: str | Path,
    config: SynthWorldConfig,
    videos: int,
    *,
    workers: int = 1,
    on_video: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate ``videos`` videos split 80/10/10 into ``root`` and return :func:`summarise` of what was written.

    The output is identical for any ``workers``: every sample depends only on (seed, split, index), mp4s are
    encoded single-threaded and annotations are gathered in index order. ``on_video(split)`` is called after
    each video (progress).
    """
    if videos < 0:
        raise ValueError(f"videos must be non-negative, got {videos}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    root = Path(root)
    world = SynthWorld(config)
    sizes = world.split_sizes(videos)
    jobs = [(split, i) for split in SPLITS for i in range(sizes[split])]
    annotations: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}

    def collect(results: Iterator[dict[str, Any]]) -> None:
        for ann in results:
            annotations[ann["split"]].append(ann)
            if on_video is not None:
                on_video(ann["split"])

    if workers == 1 or len(jobs) <= 1:
        _init_worker(config.to_dict(), str(root))
        collect(_write_one(job) for job in jobs)
    else:
        # spawn: workers start clean whatever the parent has imported (fork with torch threads can deadlock).
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(config.to_dict(), str(root)),
        ) as pool:
            collect(pool.map(_write_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))))

    for split in SPLITS:
        _remove_stale_videos(root, split, {Path(a["file"]).name for a in annotations[split]})
        document = {
            "info": {
                "name": "SynthWorld",
                "version": VERSION,
                "split": split,
                "videos": len(annotations[split]),
                "config": config.to_dict(),
            },
            "vocabulary": vocabulary_dict(),
            "videos": annotations[split],
        }
        _atomic_write_json(annotation_path(root, split), document)
    return summarise(annotations, scenes=config.scenes)


def _remove_stale_videos(root: Path, split: str, keep: set[str]) -> None:
    """Drop mp4s a previous, larger run left in this split's folder, so the folder matches the annotations."""
    folder = root / "videos" / split
    if folder.is_dir():
        for path in folder.glob(f"{split}_*.mp4"):
            if path.name not in keep:
                path.unlink()


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    # json.dumps runs the C encoder; json.dump streams through the pure-Python one, 3x slower here.
    text = json.dumps(data, separators=(",", ":")) + "\n"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def summarise(annotations: dict[str, list[dict[str, Any]]], scenes: str = "events") -> dict[str, Any]:
    """Counts per split and task, and the action histogram per split (every event's action for grounding
    scenes, whose videos have two), from annotation dicts."""
    grounding = scenes != "events"  # grounding and tracking scenes have no labels or captions
    counts: dict[str, dict[str, int]] = {}
    actions: dict[str, dict[str, int]] = {}
    for split, videos in annotations.items():
        c = Counter({k: 0 for k in TASK_COUNTS})
        for v in videos:
            c["videos"] += 1
            c["novel_videos"] += int(v["novel"])
            c["recognition"] += 0 if grounding else 1
            c["retrieval"] += 0 if grounding else len(v["captions"])
            c["captioning"] += 0 if grounding else len(v["captions"])
            c["temporal_grounding"] += len(v["events"])
            c["st_grounding"] += len(v["events"])
            c["tracking"] += len(v["tracks"])
            c["segmentation"] += sum(sum(t["visible"]) for t in v["tracks"])
            c["qa_multiple_choice"] += len(v["qa"]["multiple_choice"])
            c["qa_open_ended"] += len(v["qa"]["open_ended"])
        counts[split] = {k: c[k] for k in TASK_COUNTS}
        histogram = (
            Counter(e["action"] for v in videos for e in v["events"])
            if grounding
            else Counter(v["action"] for v in videos)
        )
        actions[split] = {a: histogram[a] for a in vocab.ACTIONS}
    return {"splits": counts, "actions": actions}


def check_video_annotation(ann: Any) -> str | None:
    """Why one video's annotation cannot be used as ground truth, or None when its geometry and times are sane.

    Checked: every track has one box (and one mask of the frame's size) per frame, each ``None`` (not
    visible) or ``[x1, y1, x2, y2]`` of finite numbers with ``0 <= x1 < x2 <= width`` and
    ``0 <= y1 < y2 <= height`` (boxes are end-exclusive pixels, tight around a non-empty mask); every event has
    ``0 <= start_frame <= end_frame < num_frames`` and ``0 <= start_s <= end_s <= num_frames / fps``. A box
    outside the frame or an inverted or negative span would otherwise train and score grounding and tracking
    against impossible targets, silently.
    """
    if not isinstance(ann, dict):
        return f"malformed annotation (not an object but {type(ann).__name__})"
    try:
        frames, height, width, fps = int(ann["num_frames"]), int(ann["height"]), int(ann["width"]), float(ann["fps"])
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        return f"malformed annotation (num_frames, height, width, fps: {type(error).__name__}: {error})"
    if frames < 1 or height < 1 or width < 1 or not (math.isfinite(fps) and fps > 0):
        return f"impossible size {frames} frames x {height}x{width} at {fps:g} fps"
    tracks, events = ann.get("tracks", []), ann.get("events", [])
    if not isinstance(tracks, list) or not isinstance(events, list):
        return "'tracks' and 'events' must be lists"
    for t, track in enumerate(tracks):
        boxes = track.get("boxes") if isinstance(track, dict) else None
        if not isinstance(boxes, list) or len(boxes) != frames:
            return f"track {t}: 'boxes' must be a list of {frames} boxes (one per frame)"
        for i, box in enumerate(boxes):
            if box is None:
                continue
            if not (isinstance(box, list) and len(box) == 4 and all(_is_finite_number(v) for v in box)):
                return f"track {t}, frame {i}: box {box!r} is not [x1, y1, x2, y2] of finite numbers"
            x1, y1, x2, y2 = box
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                return (
                    f"track {t}, frame {i}: box {box!r} is not inside the {width}x{height} frame "
                    "with x1 < x2 and y1 < y2"
                )
        masks = track.get("masks", [])
        # The mask size bounds what decoding its run lengths allocates: checked before anything is decoded.
        if not isinstance(masks, list) or len(masks) not in (0, frames):
            return f"track {t}: 'masks' must be a list of {frames} masks (one per frame)"
        if any(not isinstance(m, dict) or m.get("size") != [height, width] for m in masks):
            return f"track {t}: every mask must be an RLE object of size [{height}, {width}]"
    duration = frames / fps
    for e, event in enumerate(events):
        if not isinstance(event, dict):
            return f"event {e}: not an object"
        span = [event.get(k) for k in ("start_frame", "end_frame", "start_s", "end_s")]
        if not all(_is_finite_number(v) for v in span):
            return f"event {e}: start_frame, end_frame, start_s and end_s must be finite numbers, got {span}"
        start, end, start_s, end_s = span
        if not 0 <= start <= end < frames:
            return f"event {e}: frame span [{start}, {end}] is not 0 <= start <= end < {frames} (negative or inverted)"
        if not 0 <= start_s <= end_s <= duration + 1e-6:
            return (
                f"event {e}: time span [{start_s:g}, {end_s:g}] s is not 0 <= start <= end <= {duration:g} s "
                "(negative or inverted)"
            )
    return None


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_annotations(root: str | Path, split: str) -> dict[str, Any]:
    """The parsed ``annotations/<split>.json`` of a written SynthWorld (an object with a ``videos`` list)."""
    from videoadapt.data.formats.common import parse_json

    path = annotation_path(root, split)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such annotation file (was the SynthWorld written with this split?)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read annotation file: {error}") from None
    document = parse_json(path, text)
    if not isinstance(document, dict) or not isinstance(document.get("videos"), list):
        raise InputFileError(path, "not a SynthWorld annotation file (expected an object with a 'videos' list)")
    return document


def load_split(root: str | Path, split: str) -> Iterator[SynthVideo]:
    """Stream the videos of ``split`` back from disk as :class:`SynthVideo`, equal to the in-memory ones.

    A video whose annotation is malformed (:func:`check_video_annotation`), whose ``file`` leaves ``root``
    (absolute, ``..``, a symlink out), or whose file does not decode to the annotated frames raises an
    :class:`InputFileError` naming the annotation file and the video (the decoder's own error names the mp4).
    """
    from videoadapt.data.formats.common import join_inside
    from videoadapt.data.video import read_video

    root = Path(root)
    path = annotation_path(root, split)
    for k, ann in enumerate(read_annotations(root, split)["videos"]):
        where = f"video {k} ({ann.get('id', '?')!r})" if isinstance(ann, dict) else f"video {k}"
        reason = check_video_annotation(ann)
        if reason is not None:
            raise InputFileError(path, f"{where}: {reason}")
        file, unsafe = join_inside(root, str(ann.get("file", "")))
        if unsafe is not None:
            raise UnsafePathError(path, f"{where}: video path {ann.get('file')!r} {unsafe}")
        frames = read_video(file).frames
        try:
            video = SynthVideo.from_annotation(ann, frames)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as error:
            raise InputFileError(path, f"{where}: malformed annotation ({type(error).__name__}: {error})") from None
        yield video
