"""Checks shared by the grounding readers (Charades-STA, QVHighlights, ActivityNet Captions, VidSTG, HC-STVG) and
the grounding prediction files: time windows, boxes and tubes, each answering with the cleaned value or the reason
it is bad, so that a reader can hand the reason to :class:`~videoadapt.data.formats.common.Problems`.

Window convention (every temporal-grounding reader): a window ``[start, end]`` in seconds must be finite with
``start < end`` (reversed or zero-length is bad) and must overlap the video ``[0, duration]`` (one entirely
outside is bad). A window that overlaps the video but sticks out of it is **clipped** to ``[0, duration]`` when
``clip`` is true: 2D-TAN's Charades-STA loader does ``min(end, duration)`` (Charades-STA ends overrun the csv
``length`` by a fraction of a second) and its ActivityNet loader ``[max(start, 0), min(end, duration)]``. With
``clip`` false such a window is bad.

Box convention: ``(x1, y1, x2, y2)`` pixels, continuous (no +1), ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <=
height``; VidSTG and HC-STVG give ``[x, y, w, h]`` and ``x2 = x + w`` (TubeDETR's and STCAT's conversion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from videoadapt.data.formats.common import parse_json, read_text_lines
from videoadapt.data.records import Tube
from videoadapt.errors import InputFileError

Window = tuple[float, float]
Box = tuple[float, float, float, float]


def number(value: object) -> float | None:
    """``value`` as a finite float, or None (a bool, a string, NaN and infinity are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def integer(value: object) -> int | None:
    """``value`` as an int when it is an integral number (``3`` or ``3.0``), else None."""
    result = number(value)
    return int(result) if result is not None and result.is_integer() else None


def check_window(start: object, end: object, duration: float, clip: bool) -> tuple[Window | None, str | None, bool]:
    """``(window, None, clipped)`` for a usable window (clipped to ``[0, duration]`` when it overhangs and
    ``clip``), else ``(None, reason, False)``; see the module docstring for the rules."""
    s, e = number(start), number(end)
    if s is None or e is None:
        return None, f"window [{start!r}, {end!r}] is not two finite numbers", False
    if e <= s:
        return None, f"window [{s:g}, {e:g}] s is reversed or zero-length (needs start < end)", False
    if e <= 0 or s >= duration:
        return None, f"window [{s:g}, {e:g}] s lies outside the {duration:g}-second video", False
    if s < 0 or e > duration:
        if not clip:
            return None, f"window [{s:g}, {e:g}] s sticks out of the {duration:g}-second video", False
        return (max(s, 0.0), min(e, duration)), None, True
    return (s, e), None, False


def check_duration(value: object) -> tuple[float | None, str | None]:
    """A video duration in seconds: finite and positive."""
    duration = number(value)
    if duration is None or duration <= 0:
        return None, f"duration {value!r} is not a positive number of seconds"
    return duration, None


def xywh_box(value: object) -> tuple[Box | None, str | None]:
    """``[x, y, w, h]`` → ``(x1, y1, x2, y2)`` with ``x2 = x + w`` (no +1), or the reason it is not a box."""
    box, reason = _four_numbers(value, "[x, y, w, h]")
    if box is None:
        return None, reason
    x, y, w, h = box
    return (x, y, x + w, y + h), None


def xyxy_box(value: object) -> tuple[Box | None, str | None]:
    """``[x1, y1, x2, y2]`` as a tuple of floats with positive size, or the reason it is not one."""
    box, reason = _four_numbers(value, "[x1, y1, x2, y2]")
    if box is None:
        return None, reason
    if box[2] <= box[0] or box[3] <= box[1]:
        return None, f"box {list(box)} has no positive size (needs x1 < x2 and y1 < y2)"
    return box, None


def box_in_frame(box: Box, width: int, height: int) -> str | None:
    """Why ``box`` is not a box of positive size inside a ``width`` × ``height`` frame; None when it is."""
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        return f"box {list(box)} (x1, y1, x2, y2) has no positive size"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return f"box {list(box)} (x1, y1, x2, y2) is not inside the {width}x{height} frame"
    return None


def make_tube(
    frames: Sequence[int],
    boxes: Sequence[Box],
    fps: float,
    width: int,
    height: int,
    frame_count: int | None = None,
) -> tuple[Tube | None, str | None]:
    """A checked :class:`Tube` (0-based frames strictly increasing and below ``frame_count``, every box inside the
    frame), or the reason it cannot be one; the first bad frame is named."""
    if not frames:
        return None, "the tube has no frame"
    if len(frames) != len(boxes):
        return None, f"the tube has {len(frames)} frames but {len(boxes)} boxes"
    previous = -1
    for frame, box in zip(frames, boxes, strict=True):
        if frame <= previous:
            return None, f"tube frame {frame} does not follow frame {previous} (frames must increase)"
        if frame_count is not None and frame >= frame_count:
            return None, f"tube frame {frame} (0-based) is past the video's {frame_count} frames"
        reason = box_in_frame(box, width, height)
        if reason is not None:
            return None, f"frame {frame}: {reason}"
        previous = frame
    if frames[0] < 0:
        return None, f"tube frame {frames[0]} is negative"
    return Tube(tuple(frames), tuple(boxes), fps, width, height), None


def frame_size(width: object, height: object) -> tuple[tuple[int, int] | None, str | None]:
    """A frame size: two positive integers."""
    w, h = integer(width), integer(height)
    if w is None or h is None or w <= 0 or h <= 0:
        return None, f"frame size {width!r} x {height!r} is not two positive integers"
    return (w, h), None


def _four_numbers(value: object, shape: str) -> tuple[Box | None, str | None]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 4:
        return None, f"box {value!r} is not {shape}"
    numbers = [number(v) for v in value]
    if any(v is None for v in numbers):
        return None, f"box {list(value)!r} is not four finite numbers {shape}"
    return (numbers[0], numbers[1], numbers[2], numbers[3]), None  # type: ignore[return-value]


def jsonl_records(path: Path) -> list[tuple[int, object, str | None]]:
    """``(line number, parsed value, None)`` per non-blank line of a JSON-lines file, or ``(line, None, reason)``
    for a line that is not JSON: one broken line is a bad item, not a broken file. An unreadable file raises."""
    records: list[tuple[int, object, str | None]] = []
    for number_, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            records.append((number_, parse_json(path, line), None))
        except InputFileError as error:
            records.append((number_, None, error.reason))
    return records
