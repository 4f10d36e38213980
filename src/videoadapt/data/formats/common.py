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
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

from videoadapt.data.records import FileSource, Item, TaskData, VideoSource
from videoadapt.errors import EmptySplitError, InputFileError, UnsafePathError, VideoadaptError

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

    def bad(self, path: str | Path, where: str, reason: str, error: type[InputFileError] = InputFileError) -> None:
        """Report item ``where`` of file ``path`` as bad: raise ``error``, or count it when skipping."""
        message = f"{where}: {reason}"
        if not self.skip_bad:
            raise error(path, f"{message} (pass skip_bad=True to skip bad items)")
        self.count += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{Path(path).name}: {message}")

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "reasons": list(self.reasons)}


# --- reading files ------------------------------------------------------------------------------------------


def read_json(path: str | Path) -> Any:
    """Parse a JSON annotation file; a missing or unparsable file is an :class:`InputFileError`."""
    return parse_json(Path(path), read_text_file(path))


def read_text_file(path: str | Path, kind: str = "annotation", encoding: str = "utf-8") -> str:
    """The text of a UTF-8 file; a missing or unreadable one is an :class:`InputFileError` naming it as a ``kind``
    file (annotation, prediction)."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise InputFileError(path, f"no such {kind} file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read {kind} file: {error}") from None


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if key in out:
            raise _DuplicateKey(f"key {key!r} appears twice in one object (a duplicate query id or frame)")
        out[key] = value
    return out


def parse_json(path: str | Path, text: str, unique_keys: bool = False) -> Any:
    """``json.loads`` whose every failure is an :class:`InputFileError` naming ``path``.

    Besides syntax errors, the json module raises a plain ValueError for an integer of over 4300 digits and
    RecursionError for nesting deeper than the interpreter's stack: both come from a broken or hostile file.
    ``unique_keys`` refuses a key repeated in one object (json keeps the last silently: in a prediction file a
    duplicate query id would lose a prediction).
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs if unique_keys else None)
    except _DuplicateKey as error:
        raise InputFileError(path, str(error)) from None
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON: {error}") from None
    except ValueError as error:
        raise InputFileError(path, f"not usable JSON: {error}") from None
    except RecursionError:
        raise InputFileError(path, "not usable JSON: nested too deeply") from None


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (csv, txt, jsonl). A leading byte order mark, which Excel and Notepad write
    in front of a csv, is dropped (``utf-8-sig``): left in, it would glue itself to the first column's name."""
    return read_text_file(path, encoding="utf-8-sig").splitlines()


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
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise InputFileError(path, f"csv header lacks column(s) {', '.join(missing)}; header: {', '.join(header)}")
        rows = []
        for number, row in enumerate(reader, start=2):
            # Extra fields beyond the header land under the key None as a list: not a column of the file.
            values = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None}
            if not any(v for v in values.values()):
                continue  # blank line
            rows.append((number, values))
    except csv.Error as error:  # e.g. a field over csv's size limit, or an unterminated quote
        raise InputFileError(path, f"line {reader.line_num}: not valid csv: {error}") from None
    return rows


SPLIT_ALIASES = {"training": "train", "validation": "val", "validate": "val", "valid": "val", "testing": "test"}
"""Values of a csv's ``split`` column that name the splits train/val/test otherwise (Kinetics-700's ``validate``)."""


def rows_of_split(
    path: str | Path, rows: list[tuple[int, dict]], split: str, problems: Problems | None = None
) -> list[tuple[int, dict]]:
    """The rows of ``split`` when the csv has a ``split`` column (values train/val/test, or an alias in
    :data:`SPLIT_ALIASES`), else all rows: one csv given for every split (``kinetics:all.csv``) must not hand
    the training rows to an evaluation on test. A row with an empty split value among filled ones belongs to no
    split: a bad row for ``problems`` (an error, or a counted skip), never a row of every split. A csv whose split
    column is filled but has no row of ``split`` is an error naming the file and the splits it does have."""
    if not rows or "split" not in rows[0][1]:
        return rows
    values = [SPLIT_ALIASES.get(v, v) for v in ((row.get("split") or "").strip().lower() for _, row in rows)]
    if not any(values):
        return rows  # the column is there but empty: nothing to go by
    kept = []
    for row, value in zip(rows, values, strict=True):
        if value == split:
            kept.append(row)
        elif not value and problems is not None:
            problems.bad(path, f"row {row[0]}", "no split value, while other rows have one: its split is unknown")
    if not any(value == split for value in values):
        counts = ", ".join(f"{name or '(empty)'} {n}" for name, n in sorted(Counter(values).items()))
        raise InputFileError(path, f"no rows of split {split!r} in the csv's split column (it has: {counts})")
    return kept


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


# --- paths written in annotation files -----------------------------------------------------------------------


def unsafe_path_reason(value: str) -> str | None:
    """Why ``value``, a path written in an annotation file, may not be joined to a data set folder; None if it may.

    Refused: empty, absolute (``/x``, ``\\x``, ``C:x``), a ``..`` step anywhere (with either slash), a NUL byte.
    A path that is lexically inside can still leave through a symlink: :func:`join_inside` checks that too.
    """
    if not value or not value.strip():
        return "is empty"
    if "\0" in value:
        return "contains a NUL byte"
    if value.startswith(("/", "\\")) or PureWindowsPath(value).drive:
        return "is absolute (annotation paths must be relative to the data set folder)"
    if ".." in re.split(r"[/\\]", value):
        return "has a '..' step (annotation paths may not leave the data set folder)"
    return None


def join_inside(root: Path, value: str) -> tuple[Path, str | None]:
    """``root / value`` and None, or the path and why it is refused: :func:`unsafe_path_reason`, or a symlink on
    the way that resolves outside ``root`` (compared after resolving both, so a symlinked ``root`` is fine)."""
    reason = unsafe_path_reason(value)
    path = root / value
    if reason is None:
        try:
            resolved, base = path.resolve(), root.resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop
            return path, f"cannot be resolved ({error})"
        if not resolved.is_relative_to(base):
            reason = f"resolves to {resolved}, outside {base} (through a symlink)"
    return path, reason


# --- video files --------------------------------------------------------------------------------------------


class MissingVideoPath(type(Path())):  # type: ignore[misc]  # the platform's concrete Path class
    """The conventional path given to a clip that was not found: compares and prints as that path, and carries
    ``missing_reason``, what was actually looked for, which the decoder reports instead of a bare "no such file"
    for a file name that was only guessed (``X.mp4`` when the clips may be ``.mkv``)."""

    missing_reason: str | None = None  # paths derived from it (``.parent``) carry none
    missing_dir: str | None = None  # the folder searched, which the decode error names

    def __reduce__(self) -> tuple[Any, ...]:  # keep the reason across processes (data loader workers)
        return (_missing_video_path, (str(self), self.missing_reason, self.missing_dir))


def _missing_video_path(path: str, reason: str | None, folder: str | None) -> MissingVideoPath:
    made = MissingVideoPath(path)
    made.missing_reason, made.missing_dir = reason, folder
    return made


class VideoIndex:
    """The video files under one folder, found by relative stem (``0000/2440175990``) or by bare stem.

    Benchmarks are distributed in many layouts (flat, one folder per class, one per split) and containers, so a
    reader names the clip it wants and the index finds it wherever it lies. The folder is walked once, lazily.
    A clip that is not found keeps the conventional path (a :class:`MissingVideoPath`, whose decode error says what
    was looked for rather than naming a guessed ``.mp4``) and is counted in ``extra["missing_videos"]``;
    ``skip_missing=True`` drops such items instead.
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

    def path_for(self, key: str, skip_missing: bool, problems: Problems, origin: str | Path, where: str) -> Path | None:
        """The file for ``key`` (named by item ``where`` of annotation file ``origin``); a missing one is counted
        and gets its conventional path, or None (skip the item) when ``skip_missing``. A key that is not a safe
        relative path (absolute, ``..``: :func:`unsafe_path_reason`) is a bad item, reported to ``problems``
        (None when skipping). Files found under the folder may be symlinks to elsewhere: a data set assembled
        from links is common, and its files are the user's own, not paths written in an annotation."""
        reason = unsafe_path_reason(key)
        if reason is not None:
            problems.bad(origin, where, f"video path {key!r} {reason}", UnsafePathError)
            return None
        found = self.find(key)
        if found is None:
            self.missing += 1
            if len(self.missing_examples) < MAX_REASONS:
                self.missing_examples.append(key)
            if skip_missing:
                return None
            stem = key.rsplit("/", 1)[-1]
            looked = key if stem == key else f"{key}.* or {stem}"
            extensions = ", ".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
            found = _missing_video_path(
                str(self.root / f"{key}{self.default_ext}"),
                f"no video file for id {key!r} under {self.root} (looked for {looked}.* in it and its subfolders, "
                f"with extensions {extensions})",
                str(self.root),
            )
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
        raise EmptySplitError(origin, f"split {split!r} of task {task} has no items{skipped}{missing}")
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


def finish_files(
    task: str, split: str, items: list[Item], origin: str | Path, problems: Problems, index: VideoIndex, **more: Any
) -> TaskData:
    """:func:`finish` of a reader whose videos are files found through ``index`` (``more``: classes, answers,
    extra): how every file-based reader ends its load."""
    return finish(
        task=task, split=split, items=items, source=FileSource(), origin=origin, problems=problems, index=index, **more
    )
