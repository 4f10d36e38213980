"""What the tracking readers (TAO, MOTChallenge) share: assembling checked boxes into :class:`ObjectTrack` s and the
category list with its novel part.

Box convention: ``(x1, y1, x2, y2)`` pixels with positive size, from ``[x, y, w, h]`` as ``x2 = x + w`` (no +1).
Boxes may stick out of the frame (MOTChallenge boxes of people entering the view start at negative x); the metrics
take them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from videoadapt.data.formats.grounding_common import Box, xywh_box
from videoadapt.data.records import ObjectTrack
from videoadapt.errors import VideoadaptError


def positive_box(value: object) -> tuple[Box | None, str | None]:
    """``[x, y, w, h]`` → ``(x1, y1, x2, y2)`` of positive size, or the reason it is not one."""
    box, reason = xywh_box(value)
    if box is None:
        return None, reason
    if box[2] <= box[0] or box[3] <= box[1]:
        return None, f"box {value!r} ([x, y, w, h]) has no positive size"
    return box, None


class TrackBuilder:
    """Boxes of the tracks of one video, added one at a time; a second box of a track on a frame is refused."""

    def __init__(self) -> None:
        self.boxes: dict[int, dict[int, Box]] = {}
        self.categories: dict[int, str] = {}

    def add(self, track_id: int, category: str, frame: int, box: Box) -> str | None:
        """Add a box; the reason it cannot be added (a second box on the frame, another category), else None."""
        known = self.categories.setdefault(track_id, category)
        if known != category:
            return f"track {track_id} is {known!r} elsewhere but {category!r} here"
        frames = self.boxes.setdefault(track_id, {})
        if frame in frames:
            return f"track {track_id} has a second box on frame {frame}"
        frames[frame] = box
        return None

    def tracks(self) -> tuple[ObjectTrack, ...]:
        """The tracks in track-id order, frames increasing."""
        out = []
        for track_id in sorted(self.boxes):
            frames = sorted(self.boxes[track_id])
            out.append(
                ObjectTrack(
                    track_id, self.categories[track_id], tuple(frames), tuple(self.boxes[track_id][f] for f in frames)
                )
            )
        return tuple(out)


def novel_categories(option: str | Sequence[str] | None, names: Sequence[str], rare: Iterable[str] = ()) -> list[str]:
    """The novel categories chosen by a reader's ``novel`` option: ``"rare"`` (LVIS frequency ``r``, OVTrack's
    split; ``rare`` lists them), ``"none"`` / empty, or names (a list or a comma-separated string), each of which
    must be one of ``names``."""
    if option is None:
        return []
    if isinstance(option, str):
        text = option.strip()
        if text.lower() in ("", "none"):
            return []
        if text.lower() == "rare":
            rare = set(rare)
            return [n for n in names if n in rare]
        wanted = [part.strip() for part in text.split(",") if part.strip()]
    else:
        wanted = [str(part) for part in option]
    unknown = [w for w in wanted if w not in set(names)]
    if unknown:
        raise VideoadaptError(
            f"novel categories {', '.join(map(repr, unknown))} are not categories of the data set "
            f"(first few: {', '.join(map(repr, list(names)[:8]))})"
        )
    return [n for n in names if n in set(wanted)]
