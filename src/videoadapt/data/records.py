"""The items of a video-text data set, whatever its source: what readers produce and tasks consume.

A reader of a benchmark's own annotation files (``data/formats/``) or the SynthWorld adapter returns a
:class:`TaskData`: the items of one split for one task, the label or answer vocabulary, and a
:class:`VideoSource` that turns a :class:`VideoRef` into frames. Items refer to videos by id; the same id always
means the same clip, which is what the feature cache keys on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from videoadapt.data.sampling import Sampler
from videoadapt.errors import EmptySplitError, VideoadaptError

TASKS = (
    "recognition",
    "retrieval",
    "qa",
    "captioning",
    "temporal_grounding",
    "st_grounding",
    "tracking",
    "segmentation",
)


@dataclass(frozen=True)
class VideoRef:
    """One clip: an id unique within its data set, the file when it is on disk, and an optional time window in
    seconds (Kinetics' csv gives ``time_start``/``time_end`` of the clip within its YouTube video)."""

    video_id: str
    path: Path | None = None
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class ClassificationItem:
    """Action recognition: a clip and its class index into :attr:`TaskData.classes`.

    ``time_reversed``: the clip is played backwards (SynthWorld's reversal copies, evaluation only): the batch
    builder flips the frames it sampled for ``video``, so the item is exactly the clip of the unreversed item of
    the same video, in reverse order; its label is that item's time-reversal partner.
    """

    video: VideoRef
    label: int
    time_reversed: bool = False


@dataclass(frozen=True)
class CaptionItem:
    """Retrieval and captioning: a clip and all its reference captions (MSR-VTT has 20 per video)."""

    video: VideoRef
    captions: tuple[str, ...]


@dataclass(frozen=True)
class QAItem:
    """VideoQA. Multiple choice: ``candidates`` and ``answer_index`` (``answer`` is the right candidate's text).
    Open-ended: ``answer`` from :attr:`TaskData.answers` and no candidates."""

    question_id: str
    video: VideoRef
    question: str
    answer: str
    candidates: tuple[str, ...] | None = None
    answer_index: int | None = None

    @property
    def multiple_choice(self) -> bool:
        return self.candidates is not None


@dataclass(frozen=True)
class Tube:
    """A spatio-temporal tube: one box per annotated frame, in the video's own frame numbering.

    ``frames`` are 0-based indices of the video decoded at ``fps`` (readers of 1-based formats subtract one),
    strictly increasing; ``boxes`` are ``(x1, y1, x2, y2)`` pixels of a ``width`` × ``height`` frame, x2 > x1 and
    y2 > y1. The tube's span is ``[frames[0], frames[-1]]`` inclusive (readers of end-exclusive formats convert).
    """

    frames: tuple[int, ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    fps: float
    width: int
    height: int

    @property
    def span_s(self) -> tuple[float, float]:
        """The tube's time span in seconds, from the start of its first frame to the end of its last (frame i
        covers ``[i / fps, (i + 1) / fps)``): the temporal window of a spatio-temporal grounding data set's
        sentence. SynthWorld's event windows end at the last frame's *start* instead (``end_frame / fps``: the
        state changes between the frames), which its reader writes itself."""
        return self.frames[0] / self.fps, (self.frames[-1] + 1) / self.fps


@dataclass(frozen=True)
class GroundingItem:
    """Temporal grounding (moment retrieval) and spatio-temporal grounding: a sentence about a clip.

    ``windows``: the relevant time windows ``(start, end)`` in seconds of a ``duration``-second clip, start < end
    (Charades-STA has one, QVHighlights up to a few). ``saliency``: QVHighlights' per-clip scores, ``(clip index,
    score 0-4)`` pairs for clips of ``clip_length`` seconds (highlight detection), else None. ``tube``: the box of
    the described object in each frame of its span (spatio-temporal grounding), else None.
    """

    query_id: str
    video: VideoRef
    query: str
    duration: float
    windows: tuple[tuple[float, float], ...]
    saliency: tuple[tuple[int, float], ...] | None = None
    clip_length: float | None = None
    tube: Tube | None = None


@dataclass(frozen=True)
class ObjectTrack:
    """One object through a video: its category and, on each frame where it is annotated, a box and (video instance
    segmentation) a mask.

    ``track_id`` is unique within its video (not across videos). ``frames`` are 0-based indices of the video decoded
    at its ``fps``, strictly increasing; ``boxes`` are ``(x1, y1, x2, y2)`` pixels, x2 > x1 and y2 > y1, one per
    frame; ``masks`` (or None where the data set has boxes only) are COCO RLEs ``{"size": [height, width],
    "counts": str}``, one per frame, of the object's visible pixels. ``iscrowd``: a crowd region (COCO, YouTube-VIS,
    TAO): never a target, ignored by the metrics, and a prediction matching it is neither right nor wrong.
    """

    track_id: int
    category: str
    frames: tuple[int, ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    masks: tuple[dict, ...] | None = None
    iscrowd: bool = False


@dataclass(frozen=True)
class TrackingItem:
    """Open-vocabulary multi-object tracking (``tracking``) and video instance segmentation (``segmentation``): every
    object of the data set's categories (``TaskData.classes``) in one clip of ``num_frames`` frames of
    ``width`` × ``height`` pixels at ``fps``.

    ``annotated_frames``: the frames on which annotation is exhaustive (TAO: about one per second), where a
    prediction is scored; None means every frame. Categories held out of adaptation are listed in
    ``TaskData.extra["novel_categories"]`` (OVTrack's and LV-VIS's base/novel split).
    """

    video: VideoRef
    num_frames: int
    fps: float
    width: int
    height: int
    tracks: tuple[ObjectTrack, ...]
    annotated_frames: tuple[int, ...] | None = None

    @property
    def evaluated_frames(self) -> tuple[int, ...]:
        return self.annotated_frames if self.annotated_frames is not None else tuple(range(self.num_frames))


Item = ClassificationItem | CaptionItem | QAItem | GroundingItem | TrackingItem


def time_reversal_copies(items: list[Item]) -> dict[int, int]:
    """Index of each item's time-reversed copy, keyed by the index of the item it copies (the unreversed item of
    the same :class:`VideoRef`). Read from the items themselves, so it stays right when a caller keeps a subset of
    them (bad items skipped); a copy without its original, or a second copy of one, is an error."""
    originals: dict[VideoRef, int] = {}
    copies: dict[int, int] = {}
    for index, item in enumerate(items):
        if not getattr(item, "time_reversed", False):
            originals.setdefault(item.video, index)
    for index, item in enumerate(items):
        if not getattr(item, "time_reversed", False):
            continue
        original = originals.get(item.video)
        if original is None:
            raise VideoadaptError(f"item {index} ({item.video.video_id!r}): a time-reversed copy without its original")
        if original in copies:
            raise VideoadaptError(f"item {original} ({item.video.video_id!r}) has two time-reversed copies")
        copies[original] = index
    return copies


class VideoSource(Protocol):
    """Frames of a clip: uint8 ``[T,H,W,3]`` picked by ``sampler`` (all frames when None)."""

    def frames(self, ref: VideoRef, sampler: Sampler | None = None) -> np.ndarray: ...


class FileSource:
    """Clips on disk, decoded with :func:`videoadapt.data.video.read_video` (bounded time, clear errors)."""

    def frames(self, ref: VideoRef, sampler: Sampler | None = None) -> np.ndarray:
        from videoadapt.data.video import read_video

        if ref.path is None:
            raise VideoadaptError(f"video {ref.video_id!r} has no file path")
        return read_video(ref.path, sampler).frames


@dataclass
class TaskData:
    """The items of one split of one task, with the vocabularies its heads and metrics need.

    ``origin`` names the annotation file (or ``synthworld:seed=S``) so that errors can say where an item came from.
    """

    task: str
    split: str
    items: list[Item]
    source: VideoSource
    origin: str
    classes: list[str] | None = None
    answers: list[str] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise VideoadaptError(f"{self.origin}: unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if not self.items:
            raise EmptySplitError(self.origin, f"split {self.split!r} of task {self.task} has no items")

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, keep: list[int], **changes: object) -> TaskData:
        """The items at the indices ``keep`` (in that order), vocabularies shared; ``changes`` replace fields."""
        return replace(self, items=[self.items[i] for i in keep], **changes)

    def videos(self) -> list[VideoRef]:
        """Distinct clips in item order (a video with several questions or captions appears once)."""
        seen: dict[str, VideoRef] = {}
        for item in self.items:
            seen.setdefault(item.video.video_id, item.video)
        return list(seen.values())
