"""SynthWorld on disk: one layout, written in parallel, read back into the same samples.

Layout (documented in docs/synthworld.md)::

    DIR/videos/<split>/<id>.mp4        lossless libx264rgb: decodes to exactly the generated frames
    DIR/annotations/<split>.json       {"info": ..., "vocabulary": ..., "videos": [annotation, ...]}

Each video's annotation is :meth:`SynthVideo.to_annotation` plus ``"file"`` (the mp4 path relative to DIR).
"""

from __future__ import annotations

import json
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
from videoadapt.errors import InputFileError

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
masks (track-frames); qa = questions."""


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
    return summarise(annotations)


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


def summarise(annotations: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Counts per split and task, and the action histogram per split, from annotation dicts."""
    counts: dict[str, dict[str, int]] = {}
    actions: dict[str, dict[str, int]] = {}
    for split, videos in annotations.items():
        c = Counter({k: 0 for k in TASK_COUNTS})
        for v in videos:
            c["videos"] += 1
            c["novel_videos"] += int(v["novel"])
            c["recognition"] += 1
            c["retrieval"] += len(v["captions"])
            c["captioning"] += len(v["captions"])
            c["temporal_grounding"] += len(v["events"])
            c["st_grounding"] += len(v["events"])
            c["tracking"] += len(v["tracks"])
            c["segmentation"] += sum(sum(t["visible"]) for t in v["tracks"])
            c["qa_multiple_choice"] += len(v["qa"]["multiple_choice"])
            c["qa_open_ended"] += len(v["qa"]["open_ended"])
        counts[split] = {k: c[k] for k in TASK_COUNTS}
        histogram = Counter(v["action"] for v in videos)
        actions[split] = {a: histogram[a] for a in vocab.ACTIONS}
    return {"splits": counts, "actions": actions}


def read_annotations(root: str | Path, split: str) -> dict[str, Any]:
    """The parsed ``annotations/<split>.json`` of a written SynthWorld."""
    path = annotation_path(root, split)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, "no such annotation file (was the SynthWorld written with this split?)") from None
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON: {error}") from None


def load_split(root: str | Path, split: str) -> Iterator[SynthVideo]:
    """Stream the videos of ``split`` back from disk as :class:`SynthVideo`, equal to the in-memory ones."""
    from videoadapt.data.video import read_video

    root = Path(root)
    for ann in read_annotations(root, split)["videos"]:
        frames = read_video(root / ann["file"]).frames
        yield SynthVideo.from_annotation(ann, frames)
