"""The samples SynthWorld produces: :class:`SynthVideo` (with tracks and events) and :class:`SynthImage`.

Conventions (also in docs/synthworld.md): pixel (col, row) covers [col, col+1) × [row, row+1); boxes are
``x1, y1, x2, y2`` in pixels with exclusive ends (x2 - x1 is the width in pixels), NaN where the object has no
visible pixel; frame ``i`` is shown at ``t = i / fps`` seconds; angles are radians, positive =
clockwise on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videoadapt.data.synthworld import rle
from videoadapt.data.synthworld.vocabulary import COLOUR_NAMES, POSITIONS, SHAPES, SIZE_NAMES


def _box_list(boxes: np.ndarray) -> list[list[float] | None]:
    return [None if math.isnan(b[0]) else b.tolist() for b in boxes]


def _box_array(boxes: list[list[float] | None]) -> np.ndarray:
    return np.array([[math.nan] * 4 if b is None else b for b in boxes], dtype=np.float64).reshape(-1, 4)


@dataclass
class SynthTrack:
    """One object through a video. Per-frame arrays have length T."""

    track_id: int
    category: str
    """The object's shape: the open-vocabulary category."""
    role: str
    """``"actor"`` (performs the event) or ``"distractor"`` (static)."""
    novel: bool
    """The category is held out of video training."""
    colours: list[str]
    """Palette colours the object shows, in order of appearance (two for a colour change)."""
    sizes: list[str]
    """Nominal sizes the object shows, in order (two for grow/shrink)."""
    boxes: np.ndarray
    """[T,4] float64 tight boxes of the visible mask, NaN where not visible."""
    masks: np.ndarray
    """[T,H,W] bool visible (after occlusion) instance masks."""
    visible: np.ndarray
    """[T] bool: the visible mask is non-empty."""
    center: np.ndarray
    """[T,2] float64 state: centre (x, y) in pixels."""
    radius: np.ndarray
    """[T] float64 state: radius of the bounding circle in pixels; 0 while the object is absent."""
    angle: np.ndarray
    """[T] float64 state: orientation in radians, positive = clockwise on screen."""
    rgb: np.ndarray
    """[T,3] uint8 state: the object's colour; every pixel of its visible mask has exactly this value."""

    @property
    def colour(self) -> str:
        return self.colours[0]

    @property
    def size(self) -> str:
        return self.sizes[0]

    @property
    def present(self) -> np.ndarray:
        return self.radius > 0

    def to_annotation(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "category": self.category,
            "role": self.role,
            "novel": self.novel,
            "colours": list(self.colours),
            "sizes": list(self.sizes),
            "boxes": _box_list(self.boxes),
            "visible": self.visible.tolist(),
            "masks": [rle.encode(m) for m in self.masks],
            "center": self.center.tolist(),
            "radius": self.radius.tolist(),
            "angle": self.angle.tolist(),
            "rgb": self.rgb.tolist(),
        }

    @classmethod
    def from_annotation(cls, ann: dict[str, Any]) -> SynthTrack:
        return cls(
            track_id=int(ann["track_id"]),
            category=ann["category"],
            role=ann["role"],
            novel=bool(ann["novel"]),
            colours=list(ann["colours"]),
            sizes=list(ann["sizes"]),
            boxes=_box_array(ann["boxes"]),
            masks=np.stack([rle.decode(m) for m in ann["masks"]]),
            visible=np.asarray(ann["visible"], dtype=bool),
            center=np.asarray(ann["center"], dtype=np.float64).reshape(-1, 2),
            radius=np.asarray(ann["radius"], dtype=np.float64),
            angle=np.asarray(ann["angle"], dtype=np.float64),
            rgb=np.asarray(ann["rgb"], dtype=np.uint8).reshape(-1, 3),
        )


@dataclass
class SynthEvent:
    """A temporal event: what happens, who does it, when, and a query that describes it."""

    action: str
    track_ids: list[int]
    start_frame: int
    end_frame: int
    """Inclusive: the state changes between ``start_frame`` and ``end_frame``."""
    start_s: float
    end_s: float
    """``start_frame / fps`` and ``end_frame / fps``."""
    query: str

    def to_annotation(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "track_ids": list(self.track_ids),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "query": self.query,
        }

    @classmethod
    def from_annotation(cls, ann: dict[str, Any]) -> SynthEvent:
        return cls(
            ann["action"],
            [int(t) for t in ann["track_ids"]],
            int(ann["start_frame"]),
            int(ann["end_frame"]),
            float(ann["start_s"]),
            float(ann["end_s"]),
            ann["query"],
        )


@dataclass
class SynthVideo:
    """One SynthWorld video with its ground truth for every task."""

    id: str
    split: str
    index: int
    frames: np.ndarray
    """uint8 [T,H,W,3] RGB."""
    fps: float
    action: str
    action_id: int
    tracks: list[SynthTrack]
    events: list[SynthEvent]
    captions: list[str]
    qa: dict[str, list[dict[str, Any]]]
    """``{"multiple_choice": [{question, options (5), answer_index}], "open_ended": [{question, answer}]}``"""
    novel: bool
    """Some track's category is held out of video training."""
    reversed: bool
    """The video is its pair's canonical script played backwards (for analysis; not a label to learn)."""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def track(self, track_id: int) -> SynthTrack:
        return next(t for t in self.tracks if t.track_id == track_id)

    def to_annotation(self) -> dict[str, Any]:
        """A JSON-safe dict holding everything but the frames; :meth:`from_annotation` inverts it exactly."""
        return {
            "id": self.id,
            "split": self.split,
            "index": self.index,
            "num_frames": self.num_frames,
            "height": int(self.frames.shape[1]),
            "width": int(self.frames.shape[2]),
            "fps": self.fps,
            "action": self.action,
            "action_id": self.action_id,
            "novel": self.novel,
            "reversed": self.reversed,
            "captions": list(self.captions),
            "events": [e.to_annotation() for e in self.events],
            "qa": {
                "multiple_choice": [dict(q, options=list(q["options"])) for q in self.qa["multiple_choice"]],
                "open_ended": [dict(q) for q in self.qa["open_ended"]],
            },
            "tracks": [t.to_annotation() for t in self.tracks],
        }

    @classmethod
    def from_annotation(cls, ann: dict[str, Any], frames: np.ndarray) -> SynthVideo:
        expected = (ann["num_frames"], ann["height"], ann["width"], 3)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise ValueError(f"frames {frames.dtype} {frames.shape} do not match the annotation's {expected}")
        return cls(
            id=ann["id"],
            split=ann["split"],
            index=int(ann["index"]),
            frames=frames,
            fps=float(ann["fps"]),
            action=ann["action"],
            action_id=int(ann["action_id"]),
            tracks=[SynthTrack.from_annotation(t) for t in ann["tracks"]],
            events=[SynthEvent.from_annotation(e) for e in ann["events"]],
            captions=list(ann["captions"]),
            qa={
                "multiple_choice": [dict(q, options=list(q["options"])) for q in ann["qa"]["multiple_choice"]],
                "open_ended": [dict(q) for q in ann["qa"]["open_ended"]],
            },
            novel=bool(ann["novel"]),
            reversed=bool(ann["reversed"]),
        )


@dataclass
class ImageObject:
    """One object of a still image, with the attribute labels zero-shot evaluation needs."""

    shape: str
    colour: str
    size: str
    position: str
    """3×3 grid cell of the centre (see ``POSITIONS``)."""
    center: tuple[float, float]
    radius: float
    angle: float
    novel: bool
    box: np.ndarray
    """[4] float64 tight box of the visible mask (NaN if fully hidden)."""
    mask: np.ndarray
    """[H,W] bool visible mask."""

    def to_annotation(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "position": self.position,
            "center": list(self.center),
            "radius": self.radius,
            "angle": self.angle,
            "novel": self.novel,
            "box": _box_list(self.box[None])[0],
            "mask": rle.encode(self.mask),
        }


@dataclass
class SynthImage:
    """A still SynthWorld scene for image-text pretraining, or a twin of one (see :meth:`SynthWorld.twin`)."""

    id: str
    split: str
    index: int
    image: np.ndarray
    """uint8 [H,W,3] RGB."""
    objects: list[ImageObject]
    caption: str
    """Canonical caption: objects in order, plain attribute names; twins' canonical captions differ only in
    the words of the changed attribute."""
    captions: list[str]
    """The canonical caption first, then paraphrases with synonyms."""
    novel: bool
    edit: dict[str, Any] | None = None
    """For a twin: ``{"object": k, "attribute": a, "from": old, "to": new}``; None for an original image."""
    scene: Any = field(default=None, repr=False, compare=False)
    """Private: the background and object specs the image was drawn from, so twins can be re-rendered."""

    def labels(self) -> dict[str, np.ndarray]:
        """Per-object attribute indices into SHAPES, COLOUR_NAMES, SIZE_NAMES and POSITIONS (int64 [N])."""
        return {
            "shape": np.array([SHAPES.index(o.shape) for o in self.objects], np.int64),
            "colour": np.array([COLOUR_NAMES.index(o.colour) for o in self.objects], np.int64),
            "size": np.array([SIZE_NAMES.index(o.size) for o in self.objects], np.int64),
            "position": np.array([POSITIONS.index(o.position) for o in self.objects], np.int64),
        }

    def to_annotation(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "split": self.split,
            "index": self.index,
            "caption": self.caption,
            "captions": list(self.captions),
            "novel": self.novel,
            "edit": None if self.edit is None else dict(self.edit),
            "objects": [o.to_annotation() for o in self.objects],
        }
