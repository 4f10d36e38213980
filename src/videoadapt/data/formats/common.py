"""What every format reader shares: reading annotation files with clear errors, bad-item accounting, finding
video files, answer vocabularies, and building the final :class:`TaskData`.

Every error a reader raises for bad input is an :class:`InputFileError` naming the annotation file and, for a bad
item, the row or item (``row 12``, ``item 'video7'``). With ``skip_bad=True`` a bad item is skipped instead and
counted in ``TaskData.extra["skipped"] = {"count": n, "reasons": [first few]}``; a file that cannot be read at
all, or a split left without items, is always an error.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from videoadapt.data.records import Item, TaskData, VideoSource
from videoadapt.errors import InputFileError, VideoadaptError

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".webm",
    ".mkv",
    ".avi",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".3gp",
    ".ogv",
)
"""Extensions a video file may have; benchmarks are re-encoded and re-hosted in every one of these."""

MAX_REASONS = 5
"""How many skip reasons ``extra["skipped"]`` keeps (the count covers all of them)."""


class BadItem(Exception):
    """Raised inside a reader for one bad row; :meth:`Problems.check` turns it into an error or a skip."""


class Problems:
    """Bad-item policy of one load: raise (default) or skip and count (``skip_bad=True``)."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.count = 0
        self.reasons: list[str] = []

    def bad(self, path: str | Path, where: str, reason: str) -> None:
        """Report item ``where`` of file ``path`` as bad: raise, or count it when skipping."""
        message = f"{where}: {reason}"
        if not self.skip_bad:
            raise InputFileError(path, f"{message} (pass skip_bad=True to skip bad items)")
        self.count += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{Path(path).name}: {message}")

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "reasons": list(self.reasons)}


# --- reading files ------------------------------------------------------------------------------------------


def read_json(path: str | Path) -> Any:
    """Parse a JSON annotation file; a missing or unparsable file is an :class:`InputFileError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such annotation file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read annotation file: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON: {error}") from None


def read_text_lines(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputFileError(path, "no such annotation file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read annotation file: {error}") from None


def read_csv(path: str | Path, required: Sequence[str], delimiter: str | None = None) -> list[tuple[int, dict]]:
    """Rows of a csv with a header line as ``(line number, {column: value})``.

    ``delimiter`` None sniffs between comma and tab from the header (MSR-VTT-MC's csv is tab-separated, the
    JSFusion retrieval csv comma-separated). A header without a ``required`` column is an error for the file; a
    row with too few fields has None values, which the reader reports as a malformed row.
    """
    lines = read_text_lines(path)
    if not lines or not lines[0].strip():
        raise InputFileError(path, "empty csv file (expected a header line)")
    if delimiter is None:
        delimiter = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    reader = csv.DictReader(lines, delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise InputFileError(path, f"csv header lacks column(s) {', '.join(missing)}; header: {', '.join(header)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        rows.append((number, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}))
    return rows


def first_existing(candidates: Iterable[Path]) -> Path | None:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def annotation_file(path: Path, candidates: Sequence[str], what: str) -> Path:
    """``path`` itself when it is a file, else the first of ``candidates`` inside the folder ``path``."""
    if path.is_file():
        return path
    if not path.exists():
        raise InputFileError(path, f"no such file or folder (expected {what})")
    found = first_existing(path / c for c in candidates)
    if found is None:
        raise InputFileError(path, f"no {what} in this folder (looked for {', '.join(candidates)})")
    return found


# --- video files --------------------------------------------------------------------------------------------


class VideoIndex:
    """The video files under one folder, found by relative stem (``0000/2440175990``) or by bare stem.

    Benchmarks are distributed in many layouts (flat, one folder per class, one per split) and containers, so a
    reader names the clip it wants and the index finds it wherever it lies. The folder is walked once, lazily.
    A clip that is not found keeps the conventional path (so a decode error names the file that was expected)
    and is counted in ``extra["missing_videos"]``; ``skip_missing=True`` drops such items instead.
    """

    def __init__(self, root: Path, default_ext: str = ".mp4") -> None:
        self.root = root
        self.default_ext = default_ext
        self._by_rel: dict[str, Path] | None = None
        self._by_stem: dict[str, Path] = {}
        self.missing = 0
        self.missing_examples: list[str] = []

    def _build(self) -> dict[str, Path]:
        by_rel: dict[str, Path] = {}
        if self.root.is_dir():
            for folder, dirs, files in os.walk(self.root, followlinks=True):
                dirs.sort()  # deterministic choice when a stem occurs twice
                for name in sorted(files):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() not in VIDEO_EXTENSIONS:
                        continue
                    full = Path(folder) / name
                    rel = full.relative_to(self.root).with_suffix("").as_posix()
                    by_rel.setdefault(rel, full)
                    self._by_stem.setdefault(stem, full)
        return by_rel

    def find(self, key: str) -> Path | None:
        """The file for ``key`` (a relative path without extension, or a bare stem), or None."""
        if self._by_rel is None:
            self._by_rel = self._build()
        key = key.strip("/")
        return self._by_rel.get(key) or self._by_stem.get(key.rsplit("/", 1)[-1])

    def path_for(self, key: str, skip_missing: bool = False) -> Path | None:
        """The file for ``key``; a missing one is counted and gets its conventional path, or None (skip the
        item) when ``skip_missing``."""
        found = self.find(key)
        if found is None:
            self.missing += 1
            if len(self.missing_examples) < MAX_REASONS:
                self.missing_examples.append(key)
            if skip_missing:
                return None
            found = self.root / f"{key}{self.default_ext}"
        return found

    def summary(self) -> dict[str, Any]:
        return {"count": self.missing, "examples": list(self.missing_examples), "video_dir": str(self.root)}


def video_dir(path: Path, option: str | Path | None, candidates: Sequence[str]) -> Path:
    """The folder holding the videos: the ``video_dir`` option, else the first existing conventional subfolder of
    the annotation folder, else the annotation folder itself."""
    if option is not None:
        return Path(option)
    base = path if path.is_dir() else path.parent
    return first_existing(base / c for c in candidates) or base


# --- answers and vocabularies -------------------------------------------------------------------------------


def answer_index(row: dict[str, Any], count: int, problems: Problems, file: Path, where: str) -> int | None:
    """The row's ``answer``, a 0-based index among ``count`` candidates, or None after reporting the row as bad."""
    try:
        answer = int(row["answer"])
    except (TypeError, ValueError):
        problems.bad(file, where, f"answer {row.get('answer')!r} is not an integer")
        return None
    if not 0 <= answer < count:
        problems.bad(file, where, f"answer {answer} is not a 0-based index of the {count} candidates")
        return None
    return answer


def answer_vocabulary(answers: Iterable[str], top: int) -> list[str]:
    """The ``top`` most frequent answers, most frequent first; ties broken alphabetically (deterministic)."""
    counts = Counter(answers)
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


# --- options and results ------------------------------------------------------------------------------------


def check_task(name: str, task: str, provided: Sequence[str]) -> None:
    if task not in provided:
        raise VideoadaptError(f"format {name!r} provides task(s) {', '.join(provided)}, not {task!r}")


def check_split(name: str, split: str, known: Sequence[str]) -> None:
    if split not in known:
        raise VideoadaptError(f"format {name!r} has splits {', '.join(known)}, not {split!r}")


def finish(
    *,
    task: str,
    split: str,
    items: list[Item],
    source: VideoSource,
    origin: str | Path,
    problems: Problems,
    index: VideoIndex | None = None,
    classes: list[str] | None = None,
    answers: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> TaskData:
    """Wrap up a load: an empty split is an error naming the file, and the bookkeeping goes into ``extra``."""
    if not items:
        skipped = f" ({problems.count} bad item(s) skipped)" if problems.count else ""
        missing = f" ({index.missing} item(s) without a video file dropped)" if index and index.missing else ""
        raise InputFileError(origin, f"split {split!r} of task {task} has no items{skipped}{missing}")
    extra = dict(extra or {})
    extra["skipped"] = problems.summary()
    if index is not None:
        extra["missing_videos"] = index.summary()
    return TaskData(
        task=task,
        split=split,
        items=items,
        source=source,
        origin=str(origin),
        classes=classes,
        answers=answers,
        extra=extra,
    )
