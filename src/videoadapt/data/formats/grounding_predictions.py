"""Grounding prediction files: QVHighlights-style JSON lines (moment retrieval + highlight detection) and our own
spatio-temporal grounding json, read into plain dicts keyed by query id and written back.

**Moment predictions** (Moment-DETR's submission format, ``standalone_eval/eval.py``), one json object per line::

    {"qid": 2579, "query": "...", "vid": "j7rJstUseKg_360.0_510.0",
     "pred_relevant_windows": [[start, end, score], ...],   best first (R1 takes the first)
     "pred_saliency_scores": [score per 2-second clip, ...]}

``qid`` is required, with at least one of ``pred_relevant_windows`` and ``pred_saliency_scores``; ``query`` and
``vid`` are kept when present. Read as ``{str(qid): {"query", "vid", "windows": [(s, e, score), ...] | None,
"saliency": [...] | None}}``; written with ``qid`` as an integer when the id is one (QVHighlights' own ids are, and
Moment-DETR's evaluator compares them with the ground truth's as they are).

**Spatio-temporal predictions** (our design), one json object keyed by query id::

    {"<query id>": {"span": [first_frame, last_frame],                 0-based, both included (our Tube's convention)
                    "boxes": {"<frame>": [x1, y1, x2, y2], ...}}, ...}  pixels, any frames (at least the GT tube's)

Read as ``{query_id: {"span": (first, last), "boxes": {frame: (x1, y1, x2, y2)}}}``. :func:`stvg_metric_input`
turns one into the half-open ``{"start", "end", "boxes"}`` that
:func:`~videoadapt.metrics.st_grounding.st_grounding_metrics` takes (``end = last + 1``), and
:func:`stvg_ground_truth` does the same for a :class:`GroundingItem`'s tube.

Every error is an :class:`~videoadapt.errors.InputFileError` naming the file and the line or query id: malformed
JSON, a missing key, a duplicate query id (also a key repeated inside a json object), a non-finite number, a
reversed or zero-length window, a window outside ``[0, duration]`` when durations are given, a negative or reversed
span, a box with no positive size. A prediction file is scored whole, so nothing is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videoadapt.data.formats.grounding_common import integer, jsonl_records, number, xyxy_box
from videoadapt.data.records import GroundingItem, Item
from videoadapt.errors import InputFileError, VideoadaptError

WINDOWS, SALIENCY = "pred_relevant_windows", "pred_saliency_scores"


# --- moment retrieval / highlight detection (JSON lines) -----------------------------------------------------


def read_moment_predictions(
    path: str | Path, durations: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """A QVHighlights-style prediction jsonl → ``{query id: {"query", "vid", "windows", "saliency"}}``.

    ``durations`` (query id → seconds, e.g. :func:`durations_of` the ground-truth items): windows must lie in
    ``[0, duration]`` of their query; without it only ``start >= 0`` is checked."""
    path = Path(path)
    predictions: dict[str, dict[str, Any]] = {}
    for line, record, error in jsonl_records(path):
        if error is not None:
            raise InputFileError(path, f"line {line}: {error}")
        if not isinstance(record, dict) or "qid" not in record:
            raise InputFileError(path, f"line {line}: not a json object with a 'qid'")
        qid = _query_id(record["qid"])
        if qid is None:
            raise InputFileError(path, f"line {line}: qid {record['qid']!r} is not an integer or a string")
        if qid in predictions:
            raise InputFileError(path, f"line {line} (qid {qid}): qid {qid} appears twice")
        duration = durations.get(qid) if durations is not None else None
        predictions[qid] = _moment(record, duration, f"line {line} (qid {qid})", path)
    if not predictions:
        raise InputFileError(path, "no predictions (an empty file)")
    return predictions


def write_moment_predictions(
    path: str | Path, predictions: Mapping[str, Mapping[str, Any]], durations: Mapping[str, float] | None = None
) -> None:
    """Write ``{query id: {"windows": [(s, e, score)], "saliency": [...], "query", "vid"}}`` as QVHighlights-style
    jsonl (checked first, with the reader's rules, so a written file always reads back)."""
    path = Path(path)
    lines = []
    for qid, entry in predictions.items():
        record: dict[str, Any] = {"qid": int(qid) if _is_int_text(str(qid)) else str(qid)}
        for key in ("query", "vid"):
            if entry.get(key) is not None:
                record[key] = entry[key]
        if entry.get("windows") is not None:
            record[WINDOWS] = [[float(v) for v in w] for w in entry["windows"]]
        if entry.get("saliency") is not None:
            record[SALIENCY] = [float(v) for v in entry["saliency"]]
        duration = durations.get(str(qid)) if durations is not None else None
        _moment(record, duration, f"query {qid!r}", path)
        lines.append(json.dumps(record))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def durations_of(items: Sequence[Item]) -> dict[str, float]:
    """``{query id: duration}`` of grounding items, for the window range check."""
    return {item.query_id: item.duration for item in items if isinstance(item, GroundingItem)}


def _moment(record: dict, duration: float | None, where: str, path: Path) -> dict[str, Any]:
    if WINDOWS not in record and SALIENCY not in record:
        raise InputFileError(path, f"{where}: needs {WINDOWS} or {SALIENCY}")
    windows = None
    if WINDOWS in record:
        raw = record[WINDOWS]
        if not isinstance(raw, list):
            raise InputFileError(path, f"{where}: {WINDOWS} is not a list")
        windows = []
        for k, window in enumerate(raw):
            values = [number(v) for v in window] if isinstance(window, list) and len(window) == 3 else None
            if values is None:
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} is not [start, end, score]")
            if any(v is None for v in values):
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} has a non-finite or non-number value")
            start, end, score = values
            if end <= start:  # type: ignore[operator]
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} is reversed or zero-length")
            if start < 0 or (duration is not None and end > duration):  # type: ignore[operator]
                span = f"[0, {duration:g}]" if duration is not None else "[0, ...)"
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} is outside the video {span} s")
            windows.append((start, end, score))
    saliency = None
    if SALIENCY in record:
        raw = record[SALIENCY]
        values = [number(v) for v in raw] if isinstance(raw, list) else [None]
        if not values or any(v is None for v in values):
            raise InputFileError(path, f"{where}: {SALIENCY} is not a non-empty list of finite numbers")
        saliency = values
    return {"query": record.get("query"), "vid": record.get("vid"), "windows": windows, "saliency": saliency}


# --- spatio-temporal grounding (one json object) -------------------------------------------------------------


def read_stvg_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Our STVG prediction json (module docstring) → ``{query id: {"span": (first, last), "boxes": {f: box}}}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such prediction file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read prediction file: {error}") from None
    document = _load_unique(path, text)
    if not isinstance(document, dict) or not document:
        raise InputFileError(path, 'expected a non-empty json object {"query id": {"span", "boxes"}}')
    return {qid: _tube(path, qid, entry) for qid, entry in document.items()}


def write_stvg_predictions(path: str | Path, predictions: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``{query id: {"span": (first, last), "boxes": {frame: box}}}`` as our STVG json (checked first)."""
    path = Path(path)
    document = {}
    for qid, entry in predictions.items():
        record = {
            "span": [int(v) for v in entry["span"]],
            "boxes": {str(int(f)): [float(v) for v in box] for f, box in sorted(entry["boxes"].items())},
        }
        _tube(path, str(qid), record)
        document[str(qid)] = record
    path.write_text(json.dumps(document), encoding="utf-8")


def stvg_metric_input(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """A read prediction as :func:`~videoadapt.metrics.st_grounding.st_grounding_metrics` takes it: half-open."""
    first, last = prediction["span"]
    return {"start": first, "end": last + 1, "boxes": dict(prediction["boxes"])}


def stvg_ground_truth(item: GroundingItem, frames: Sequence[int] | None = None) -> dict[str, Any]:
    """An item's tube as the metric's ground truth: ``[first, last + 1)``, its boxes, and the evaluated ``frames``
    (default: every frame of the tube; TubeDETR evaluates the frames it sampled)."""
    if item.tube is None:
        raise VideoadaptError(f"query {item.query_id!r} has no tube (not a spatio-temporal grounding item)")
    tube = item.tube
    return {
        "frames": list(frames) if frames is not None else list(tube.frames),
        "start": tube.frames[0],
        "end": tube.frames[-1] + 1,
        "boxes": dict(zip(tube.frames, tube.boxes, strict=True)),
    }


def _tube(path: Path, qid: str, entry: object) -> dict[str, Any]:
    where = f"query {qid!r}"
    if not isinstance(entry, dict) or "span" not in entry or "boxes" not in entry:
        raise InputFileError(path, f"{where}: needs 'span' and 'boxes'")
    span = entry["span"]
    bounds = [integer(v) for v in span] if isinstance(span, list) and len(span) == 2 else [None]
    if any(b is None for b in bounds):
        raise InputFileError(path, f"{where}: span {span!r} is not [first_frame, last_frame] (integers)")
    first, last = bounds
    if first < 0 or last < first:  # type: ignore[operator]
        raise InputFileError(path, f"{where}: span {span!r} is negative or reversed (needs 0 <= first <= last)")
    if not isinstance(entry["boxes"], dict):
        raise InputFileError(path, f"{where}: boxes is not an object {{frame: [x1, y1, x2, y2]}}")
    boxes = {}
    for key, value in entry["boxes"].items():
        frame = int(key) if _is_int_text(str(key)) else None
        if frame is None:
            raise InputFileError(path, f"{where}: box key {key!r} is not a frame number >= 0")
        box, reason = xyxy_box(value)
        if box is None:
            raise InputFileError(path, f"{where}: frame {frame}: {reason}")
        boxes[frame] = box
    return {"span": (first, last), "boxes": boxes}


# --- ids ----------------------------------------------------------------------------------------------------


def check_prediction_ids(predictions: Mapping[str, Any], items: Sequence[Item], file: str | Path) -> dict[str, Any]:
    """Refuse predictions for query ids the ground truth lacks (an error naming ``file`` and the first ids);
    return ``{"missing": n, "examples": [first ids]}`` for ground-truth items without a prediction."""
    known = [item.query_id for item in items if isinstance(item, GroundingItem)]
    known_set = set(known)
    unknown = [qid for qid in predictions if qid not in known_set]
    if unknown:
        shown = ", ".join(repr(q) for q in unknown[:5])
        raise InputFileError(file, f"{len(unknown)} query id(s) not in the ground truth: {shown}")
    missing = [qid for qid in known if qid not in predictions]
    return {"missing": len(missing), "examples": missing[:5]}


def _query_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or str(value) == "":
        return None
    return str(value)


def _is_int_text(text: str) -> bool:
    return text.isdigit() and str(int(text)) == text


class _DuplicateKey(ValueError):
    pass


def _load_unique(path: Path, text: str) -> Any:
    """``json.loads`` that refuses a key repeated in one object (json keeps the last silently: a duplicate query
    id would lose a prediction), with every failure an :class:`InputFileError` naming ``path``."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _DuplicateKey(f"key {key!r} appears twice in one object (a duplicate query id or frame)")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except _DuplicateKey as error:
        raise InputFileError(path, str(error)) from None
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON: {error}") from None
    except ValueError as error:
        raise InputFileError(path, f"not usable JSON: {error}") from None
    except RecursionError:
        raise InputFileError(path, "not usable JSON: nested too deeply") from None
