"""A folder of one's own videos with one small table per task (``folder:DIR``).

Expected layout::

    DIR/eat.mp4, DIR/clips/milk.mkv, ...      videos in any container PyAV opens, in DIR or its subfolders
    DIR/labels.csv                            recognition: video,label[,split]
    DIR/captions.csv | captions.jsonl         retrieval and captioning: video,caption[,split] (several rows per
                                              video = several captions) or {"video", "caption" | "captions": [...],
                                              "split"} per line
    DIR/questions.jsonl                       qa: {"video", "question", "answer", "choices": [...], "split", "id"}
    DIR/splits.csv                            video,split: written on the first load of a table without a split
                                              column, read back on every later one

``video`` is the file's path relative to DIR (``clips/milk.mkv``); written without an extension (``clips/milk``) it
names the one video file of that stem, and two files of that stem are an error. Tables made by other tools read as
they are: the video column may be called ``file``, ``filename``, ``path`` or ``clip``, the label ``class`` or
``category``. Question answering is multiple
choice when the questions have ``choices`` (``answer``: the right choice's 0-based index or its text; every question
has the same number of choices) and open-ended when none has (``answer``: a text; the vocabulary is the ``answers``
(default 1000) most frequent answers of the training split).

Splits: a ``split`` column (field) with values train/val/test (or ``validation``, …) decides, and an empty value
among filled ones is a bad row. Without one, the split is made per video — stratified by label for recognition, so
that every class with at least 3 videos has one in val and one in test; fractions ``split_fractions`` (default
70/15/15) — seeded by the sorted video names, and written to ``DIR/splits.csv`` so that it never changes
afterwards, whatever the code does. A video of the table missing from an existing ``splits.csv`` is an error (delete
the file to split again, or add its rows). When DIR is not writable the split is made in memory and a warning says
so (it is deterministic: the same videos give the same split).

Bad input raises :class:`~videoadapt.errors.InputFileError` naming the file and the row: a missing folder or table,
videos that are not in the folder (all of them listed at once), the same video twice in ``labels.csv``, a blank
label, a class without a training video, … With ``skip_bad=True`` bad rows and rows of absent videos are skipped
and counted in ``extra["skipped"]``; ``skip_missing=True`` drops rows of absent videos only (``extra
["missing_videos"]``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoadapt.data.formats.common import (
    MAX_REASONS,
    SPLIT_ALIASES,
    VIDEO_EXTENSIONS,
    Problems,
    answer_vocabulary,
    check_split,
    check_task,
    finish,
    read_csv,
    unsafe_path_reason,
)
from videoadapt.data.formats.grounding_common import jsonl_records
from videoadapt.data.records import CaptionItem, ClassificationItem, FileSource, Item, QAItem, TaskData, VideoRef
from videoadapt.errors import EmptySplitError, InputFileError, UnsafePathError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
TASKS = ("recognition", "retrieval", "captioning", "qa")
TABLES: dict[str, tuple[str, ...]] = {
    "recognition": ("labels.csv",),
    "retrieval": ("captions.csv", "captions.jsonl"),
    "captioning": ("captions.csv", "captions.jsonl"),
    "qa": ("questions.jsonl",),
}
SPLITS_FILE = "splits.csv"
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
DEFAULT_ANSWERS = 1000
MAX_LISTED = 10
"""How many names an error lists before it gives the count of the rest."""


@dataclass
class Row:
    """One usable row of a table: where it is, the video it names and what it says about it."""

    line: int
    video: str  # identity: the file's path relative to DIR when found, else the name as written
    path: Path | None  # None: no such video in the folder
    split: str  # "" when the table has no split column
    fields: dict[str, Any] = field(default_factory=dict)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _normal(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class FolderVideos:
    """The files under DIR, looked up by a table's ``video`` value: the exact relative name, else (a name without
    a video extension) the one video file of that relative stem. Walked once, following symlinked folders; files
    may be symlinks to anywhere (a folder assembled from links is the user's own)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}
        self.stems: dict[str, list[str]] = defaultdict(list)
        self.names: dict[str, list[str]] = defaultdict(list)  # bare file stem -> relative paths, for hints
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                full = Path(folder) / name
                rel = full.relative_to(root).as_posix()
                self.files[rel] = full
                stem, ext = os.path.splitext(rel)
                if ext.lower() in VIDEO_EXTENSIONS:
                    self.stems[stem].append(rel)
                    self.names[Path(stem).name].append(rel)

    def find(self, name: str) -> tuple[str | None, str | None]:
        """``(relative path, None)`` of the file ``name`` names; ``(None, None)`` when there is none;
        ``(None, reason)`` when ``name`` cannot name one (unsafe, or ambiguous)."""
        unsafe = unsafe_path_reason(name)
        if unsafe is not None:
            return None, f"video path {name!r} {unsafe}"
        name = _normal(name)
        if name in self.files:
            return name, None
        matches = self.stems.get(name, [])
        if len(matches) == 1:
            return matches[0], None
        if len(matches) > 1:
            return None, f"video {name!r} is ambiguous: {', '.join(matches)} all match (write the extension)"
        return None, None

    def hint(self, name: str) -> str:
        """Where a video that was not found may be: files of the same stem elsewhere in the folder."""
        name = _normal(name)
        stem = Path(name).stem if Path(name).suffix.lower() in VIDEO_EXTENSIONS else Path(name).name
        others = [rel for rel in self.names.get(stem, []) if rel != name]
        return f" (did you mean {' or '.join(others[:3])}? names are relative to the folder)" if others else ""


# --- reading the tables ------------------------------------------------------------------------------------------


# Column (field) names other tools write for the same thing: a table made elsewhere reads as it is.
SYNONYMS = {
    "video": ("file", "filename", "file_name", "path", "clip", "video_path", "video_id"),
    "label": ("class", "category", "action", "class_name"),
}


def _canonical(names: list[str]) -> dict[str, str]:
    """``{name in the table: our name}`` for the synonyms of ``video`` and ``label`` a table uses instead."""
    renamed = {}
    for ours, others in SYNONYMS.items():
        if ours not in names:
            found = [n for n in names if n.strip().lower() in others]
            if found:
                renamed[found[0]] = ours
    return renamed


def _read_table(file: Path, task: str, problems: Problems) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """The rows of a table as ``(line, {field: value})`` and whether it has a split column (field)."""
    if file.suffix == ".csv":
        required = ("video", "label") if task == "recognition" else ("video", "caption")
        rows = read_csv(file, ())
        header = list(rows[0][1]) if rows else []
        rename = _canonical(header)
        header = [rename.get(h, h) for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            accepted = "; ".join(f"{c} (or {', '.join(SYNONYMS[c])})" for c in missing if c in SYNONYMS)
            raise InputFileError(
                file,
                f"csv header lacks column(s) {', '.join(missing)}; header: {', '.join(header)}"
                + (f"; accepted names: {accepted}" if accepted else ""),
            )
        rows = [(line, {rename.get(k, k): v for k, v in row.items()}) for line, row in rows]
        return rows, bool(rows) and "split" in rows[0][1]
    rows = []
    for line, value, reason in jsonl_records(file):
        if reason is not None:
            problems.bad(file, f"line {line}", reason)
        elif not isinstance(value, dict):
            problems.bad(file, f"line {line}", "not a JSON object")
        else:
            rename = _canonical(list(value))
            rows.append((line, {rename.get(k, k): v for k, v in value.items()}))
    return rows, any("split" in row for _, row in rows)


def _split_value(row: dict[str, Any], has_split: bool) -> tuple[str, str | None]:
    """The row's split (``""`` without a split column) or a reason the value is bad."""
    if not has_split:
        return "", None
    raw = row.get("split")
    value = "" if raw is None else str(raw).strip().lower()
    value = SPLIT_ALIASES.get(value, value)
    if value and value not in SPLITS:
        return "", f"split {raw!r} is not one of {', '.join(SPLITS)}"
    return value, None


def _rows(
    file: Path, task: str, videos: FolderVideos, problems: Problems
) -> tuple[list[Row], list[tuple[int, str]], bool]:
    """Usable rows, the ``(line, name)`` of rows whose video is not in the folder (also in the rows, path None),
    and whether the split comes from the table."""
    raw_rows, has_split = _read_table(file, task, problems)
    if not raw_rows:
        raise InputFileError(file, "the table has no rows")
    rows, missing = [], []
    for line, raw in raw_rows:
        where = f"line {line}"
        name = raw.get("video")
        if not isinstance(name, str) or not name.strip():
            problems.bad(file, where, "no video name")
            continue
        split, reason = _split_value(raw, has_split)
        fields = _fields(task, raw, file.suffix) if reason is None else reason
        if isinstance(fields, str):
            problems.bad(file, where, fields)
            continue
        rel, why = videos.find(name)
        if why is not None:
            problems.bad(file, where, why, UnsafePathError if why.startswith("video path") else InputFileError)
            continue
        if rel is None:
            missing.append((line, _normal(name)))
        rows.append(Row(line, rel or _normal(name), videos.files[rel] if rel else None, split, fields))
    if has_split:
        bad = _check_split_column(file, rows, problems)
        rows = [r for r in rows if r.line not in bad]
    return rows, missing, has_split


def _check_split_column(file: Path, rows: list[Row], problems: Problems) -> set[int]:
    """The lines of bad rows: an empty split among filled ones, or a video whose rows are in two splits."""
    bad: set[int] = set()
    if not any(r.split for r in rows):
        return bad
    first: dict[str, Row] = {}
    for row in rows:
        if not row.split:
            problems.bad(file, f"line {row.line}", "no split value, while other rows have one: its split is unknown")
            bad.add(row.line)
            continue
        seen = first.setdefault(row.video, row)
        if seen.split != row.split:
            bad.add(row.line)
            problems.bad(
                file,
                f"line {row.line}",
                f"video {row.video!r} is in split {row.split} here and in {seen.split} on line {seen.line}: "
                "all rows of a video belong to one split",
            )
    return bad


def _fields(task: str, row: dict[str, Any], suffix: str) -> dict[str, Any] | str:
    """What a row says besides its video and split, or why it is bad."""
    if task == "recognition":
        label = row.get("label")
        if not isinstance(label, str) or not label.strip():
            return "blank label"
        return {"label": label.strip()}
    if task in ("retrieval", "captioning"):
        texts: list[Any] = []
        if "caption" in row:
            texts.append(row["caption"])
        if suffix == ".jsonl" and "captions" in row:
            if not isinstance(row["captions"], list):
                return "'captions' is not a list of strings"
            texts.extend(row["captions"])
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            return "no caption (a 'caption' string, or a 'captions' list of non-empty strings)"
        return {"captions": [t.strip() for t in texts]}
    question, answer, choices = row.get("question"), row.get("answer"), row.get("choices")
    if not isinstance(question, str) or not question.strip():
        return "no question (a non-empty 'question' string)"
    if choices is None:
        if isinstance(answer, bool) or not isinstance(answer, str | int | float) or not str(answer).strip():
            return "no answer (an 'answer' string)"
        return {"question": question.strip(), "answer": str(answer).strip(), "id": row.get("id")}
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        return "'choices' is not a list of at least 2 non-empty strings"
    choices = [c.strip() for c in choices]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            return f"answer {answer} is not a 0-based index of the {len(choices)} choices"
        index = answer
    elif isinstance(answer, str) and answer.strip() in choices:
        if choices.count(answer.strip()) > 1:
            return f"answer {answer!r} is more than one of the choices"
        index = choices.index(answer.strip())
    else:
        return f"answer {answer!r} is neither a 0-based index of the {len(choices)} choices nor one of them"
    return {"question": question.strip(), "choices": tuple(choices), "answer_index": index, "id": row.get("id")}


# --- splits ------------------------------------------------------------------------------------------------------


def _fractions(option: Any) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in option)
    except (TypeError, ValueError):
        raise VideoadaptError(f"split_fractions must be 3 numbers (train, val, test), got {option!r}") from None
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values) or values[0] <= 0:
        raise VideoadaptError(f"split_fractions must be 3 non-negative numbers with train > 0, got {option!r}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train, val and test counts of a group of ``n`` videos: largest remainders, then at least one in val and
    in test when the group has 3 or more videos (and those splits have a fraction), never none in train."""
    exact = [f * n for f in fractions]
    counts = [int(e) for e in exact]
    for k in sorted(range(3), key=lambda k: (-(exact[k] - counts[k]), k))[: n - sum(counts)]:
        counts[k] += 1
    if n >= 3:
        for k in (1, 2):
            if counts[k] == 0 and fractions[k] > 0:
                counts[k] += 1
                counts[0] -= 1
    while counts[0] < 1 and n >= 1:  # a group without a training video would be a class nothing learns
        k = 1 if counts[1] >= counts[2] else 2
        counts[k] -= 1
        counts[0] += 1
    return counts[0], counts[1], counts[2]


def make_split(groups: dict[str, list[str]], fractions: tuple[float, float, float]) -> dict[str, str]:
    """``{video: split}``: each group (a class, or all videos) apportioned by ``fractions``, shuffled by a seed
    drawn from the sorted video names (the same videos always give the same split, whatever their order)."""
    every = sorted({v for videos in groups.values() for v in videos})
    digest = hashlib.sha256("\n".join(every).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    out: dict[str, str] = {}
    for group in sorted(groups):
        videos = sorted(set(groups[group]))
        order = [videos[i] for i in rng.permutation(len(videos))]
        train, val, _ = _counts(len(videos), fractions)
        for k, video in enumerate(order):
            out[video] = "train" if k < train else "val" if k < train + val else "test"
    return out


def _read_splits(file: Path, videos: FolderVideos) -> dict[str, str]:
    out: dict[str, tuple[str, int]] = {}
    for line, row in read_csv(file, ("video", "split")):
        name = row.get("video") or ""
        value = SPLIT_ALIASES.get((row.get("split") or "").lower(), (row.get("split") or "").lower())
        if not name or value not in SPLITS:
            raise InputFileError(file, f"line {line}: expected a video name and a split (train, val or test)")
        rel, _ = videos.find(name)
        key = rel or _normal(name)
        if key in out and out[key][0] != value:
            raise InputFileError(file, f"line {line}: video {key!r} is in {out[key][0]} on line {out[key][1]}")
        out[key] = (value, line)
    return {k: v for k, (v, _) in out.items()}


def _write_splits(file: Path, split_of: dict[str, str]) -> str | None:
    """Write ``video,split`` rows atomically; the reason when the folder is not writable."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "split"])
    for video in sorted(split_of):
        writer.writerow([video, split_of[video]])
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(temporary, file)
    except OSError as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        return str(error)
    return None


def _split_of(
    root: Path,
    table: Path,
    groups: dict[str, list[str]],
    fractions: tuple[float, float, float] | None,
    videos: FolderVideos,
) -> tuple[dict[str, str], str]:
    """``{video: split}`` from ``splits.csv``, or made now and written there; and where it came from."""
    file = root / SPLITS_FILE
    every = sorted({v for vs in groups.values() for v in vs})
    if file.exists():
        split_of = _read_splits(file, videos)
        absent = [v for v in every if v not in split_of]
        if not absent and fractions is not None and make_split(groups, fractions) != {v: split_of[v] for v in every}:
            warnings.warn(
                f"split_fractions is not used: {file} holds the split made before (delete it to split again)",
                stacklevel=3,
            )
        if absent:
            raise InputFileError(
                file,
                f"{len(absent)} video(s) of {table.name} are not in it: {_listed(absent)}. It holds the split made "
                f"when the folder was first read; delete {file.name} to split every video again, or add a row "
                "'video,split' for each (split: train, val or test)",
            )
        return split_of, str(file)
    split_of = make_split(groups, fractions or DEFAULT_FRACTIONS)
    failure = _write_splits(file, split_of)
    if failure is None:
        return split_of, str(file)
    warnings.warn(
        f"{root} is not writable ({failure}): the train/val/test split of its videos was made in memory and not "
        f"saved to {file.name}. It is deterministic (seeded by the video names), but changes when videos are added; "
        "write a split column into the table, or a splits.csv, to fix it",
        stacklevel=3,
    )
    return split_of, "computed in memory (folder not writable)"


# --- the reader --------------------------------------------------------------------------------------------------


def _table(root: Path, task: str) -> Path:
    names = TABLES[task]
    present = [root / n for n in names if (root / n).is_file()]
    if not present:
        what = " or ".join(names)
        raise InputFileError(root, f"no {task} table in this folder (looked for {what}; see docs/datasets.md)")
    if len(present) > 1:
        raise InputFileError(root, f"both {' and '.join(p.name for p in present)} are here: keep one")
    return present[0]


def _dedupe_labels(file: Path, rows: list[Row], problems: Problems) -> list[Row]:
    """Each video once in ``labels.csv``: a repeated row, or one video with two labels, is bad (every row of it
    when the labels differ: which one is right cannot be told)."""
    by_video: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_video[row.video].append(row)
    drop: set[int] = set()
    for video, group in by_video.items():
        if len(group) < 2:
            continue
        lines = ", ".join(str(r.line) for r in group)
        labels = {r.fields["label"] for r in group}
        if len(labels) == 1:
            problems.bad(file, f"line {group[1].line}", f"video {video!r} is listed twice (lines {lines})")
            drop.update(r.line for r in group[1:])
        else:
            listed = ", ".join(f"{r.fields['label']!r} (line {r.line})" for r in group)
            problems.bad(file, f"lines {lines}", f"video {video!r} has different labels: {listed}")
            drop.update(r.line for r in group)
    return [r for r in rows if r.line not in drop]


@registry.register("format", "folder")
def load_folder(
    path: str,
    split: str,
    task: str,
    *,
    split_fractions: list[float] | None = None,
    answers: int = DEFAULT_ANSWERS,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """A folder of videos with ``labels.csv``, ``captions.csv``/``.jsonl`` or ``questions.jsonl`` (see the module
    docstring) → recognition, retrieval, captioning or QA items."""
    check_task("folder", task, TASKS)
    check_split("folder", split, SPLITS)
    if answers < 1:
        raise VideoadaptError(f"answers must be at least 1, got {answers}")
    fractions = None if split_fractions is None else _fractions(split_fractions)
    root = Path(path)
    if root.is_file() and root.name in TABLES[task]:
        root = root.parent  # folder:DIR/labels.csv
    if not root.exists():
        raise InputFileError(root, "no such folder (expected a folder of videos and a table, see docs/datasets.md)")
    if not root.is_dir():
        raise InputFileError(root, "not a folder (folder:DIR takes the folder holding the videos and the table)")
    table = _table(root, task)
    problems = Problems(skip_bad)
    videos = FolderVideos(root)
    rows, missing, has_split = _rows(table, task, videos, problems)
    if task == "recognition":
        rows = _dedupe_labels(table, rows, problems)
    kept_lines = {r.line for r in rows}
    missing = [(line, name) for line, name in missing if line in kept_lines]
    if missing and not (skip_bad or skip_missing):
        listed = _listed([f"{name} (line {line}){videos.hint(name)}" for line, name in missing])
        raise InputFileError(
            table,
            f"{len(missing)} video(s) named in the table are not in {root}: {listed}; a name is the file's path "
            "relative to the folder, with or without its extension (pass skip_bad=True or skip_missing=True to "
            "leave them out)",
        )
    if not rows:
        raise InputFileError(table, f"no usable rows ({problems.count} bad row(s) skipped)")

    classes = sorted({r.fields["label"] for r in rows}) if task == "recognition" else None
    if has_split:
        split_of = {r.video: r.split for r in rows}
        origin_of_split = f"the split column of {table.name}"
    else:
        groups: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            groups[row.fields["label"] if task == "recognition" else ""].append(row.video)
        split_of, origin_of_split = _split_of(root, table, groups, fractions, videos)
    if classes is not None:
        _check_classes(table, rows, split_of, origin_of_split)

    missing_lines = {line for line, _ in missing}
    wanted = []
    absent = 0
    for row in rows:
        if split_of[row.video] != split:
            continue
        if row.line in missing_lines:
            absent += 1
            if skip_missing:
                continue
            problems.bad(table, f"line {row.line}", f"video {row.video!r} is not in {root}")
            continue
        wanted.append(row)
    extra: dict[str, Any] = {
        "split_source": origin_of_split,
        "missing_videos": {
            "count": absent if skip_missing else 0,
            "examples": [n for _, n in missing][:MAX_REASONS] if skip_missing else [],
            "video_dir": str(root),
        },
    }
    answer_list = None
    if task == "recognition":
        lookup = {name: i for i, name in enumerate(classes or [])}
        items: list[Item] = [ClassificationItem(VideoRef(r.video, r.path), lookup[r.fields["label"]]) for r in wanted]
    elif task in ("retrieval", "captioning"):
        items = _caption_items(wanted)
    else:
        items, answer_list, more = _qa_items(table, rows, wanted, split_of, split, answers, problems)
        extra.update(more)
    if not items and not has_split and split != "train":
        # Say why, and what to do: a few clips per class all go to training.
        raise EmptySplitError(
            table,
            f"split {split!r} of task {task} has no items: the automatic split keeps every video of a class with "
            f"fewer than 3 videos in train ({len(rows)} videos in {table.name}); add a split column, or more videos",
        )
    return finish(
        task=task,
        split=split,
        items=items,
        source=FileSource(),
        origin=table,
        problems=problems,
        classes=classes,
        answers=answer_list,
        extra=extra,
    )


def _check_classes(table: Path, rows: list[Row], split_of: dict[str, str], origin: str) -> None:
    counts = Counter(r.fields["label"] for r in rows if split_of[r.video] == "train")
    empty = sorted({r.fields["label"] for r in rows} - set(counts))
    if empty and counts:
        raise InputFileError(
            table,
            f"class(es) {_listed([repr(c) for c in empty])} have no video in the training split ({origin}): a "
            "classifier cannot learn them; move one of their videos to train, or remove the class",
        )


def _caption_items(rows: list[Row]) -> list[Item]:
    captions: dict[str, list[str]] = {}
    refs: dict[str, VideoRef] = {}
    for row in rows:
        refs.setdefault(row.video, VideoRef(row.video, row.path))
        captions.setdefault(row.video, []).extend(row.fields["captions"])
    return [CaptionItem(refs[v], tuple(texts)) for v, texts in captions.items()]


def _qa_items(
    table: Path,
    rows: list[Row],
    wanted: list[Row],
    split_of: dict[str, str],
    split: str,
    top: int,
    problems: Problems,
) -> tuple[list[Item], list[str] | None, dict[str, Any]]:
    """QA items of ``wanted``: multiple choice when the file's questions have choices, else open-ended with the
    training split's most frequent answers as the vocabulary."""
    first = rows[0]
    multiple = "choices" in first.fields
    width = len(first.fields["choices"]) if multiple else 0
    usable: list[Row] = []
    for row in rows:
        if ("choices" in row.fields) != multiple:
            kind = "multiple-choice" if multiple else "open-ended"
            problems.bad(table, f"line {row.line}", f"questions of one file are all {kind}, like line {first.line}")
        elif multiple and len(row.fields["choices"]) != width:
            problems.bad(
                table,
                f"line {row.line}",
                f"{len(row.fields['choices'])} choices, while line {first.line} has {width}: every question needs "
                "the same number",
            )
        else:
            usable.append(row)
    ok = {r.line for r in usable}
    wanted = [r for r in wanted if r.line in ok]
    ids: dict[str, int] = {}
    items: list[Item] = []
    if multiple:
        for row in wanted:
            qid = _question_id(table, row, ids, problems)
            if qid is None:
                continue
            f = row.fields
            ref = VideoRef(row.video, row.path)
            items.append(
                QAItem(qid, ref, f["question"], f["choices"][f["answer_index"]], f["choices"], f["answer_index"])
            )
        return items, None, {}
    vocabulary = answer_vocabulary((r.fields["answer"] for r in usable if split_of[r.video] == "train"), top)
    known = set(vocabulary)
    outside = 0
    for row in wanted:
        if row.fields["answer"] not in known:
            outside += 1
            if split == "train":
                continue
        qid = _question_id(table, row, ids, problems)
        if qid is None:
            continue
        items.append(QAItem(qid, VideoRef(row.video, row.path), row.fields["question"], row.fields["answer"]))
    if not vocabulary:
        raise InputFileError(table, "no training questions: open-ended QA takes its answers from the training split")
    return items, vocabulary, {"out_of_vocabulary": {"count": outside, "dropped": split == "train"}}


def _question_id(table: Path, row: Row, ids: dict[str, int], problems: Problems) -> str | None:
    given = row.fields.get("id")
    qid = str(given).strip() if given is not None and str(given).strip() else f"line{row.line}"
    if qid in ids:
        problems.bad(table, f"line {row.line}", f"question id {qid!r} is also on line {ids[qid]}")
        return None
    ids[qid] = row.line
    return qid
