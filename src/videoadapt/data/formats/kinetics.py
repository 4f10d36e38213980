"""Kinetics (400/600/700) action recognition from the official csv files.

Expected layout (``kinetics:PATH``; PATH is the annotation folder or one csv)::

    PATH/train.csv | kinetics-400_train.csv | kinetics_400_train.csv | kinetics_train.csv   (val, test alike)
        label,youtube_id,time_start,time_end,split[,is_cc]
        abseiling,0347ZoDXyP0,14,24,train,0
    VIDEO_DIR/**/<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>

Clip names follow the official ActivityNet downloader (``%s_%06d_%06d.mp4`` of id, start and end seconds), which
the CVDF release (flat ``train/``, ``val/``, ``test/`` folders) and mmaction2 (``videos_train/<class>/``) keep. The
video folder is searched recursively, so either layout (flat, per split, per class) and any container works.
``video_dir`` defaults to ``PATH/videos_<split>``, ``PATH/<split>``, ``PATH/videos`` or PATH, the first that exists.

One csv may hold every split (``kinetics:all.csv``): when it has a ``split`` column (values ``train``, ``val``,
``test``; ``validate``/``validation`` count as ``val``), only the rows of the requested split are read, and a split
with no rows in it is an error naming the file. A csv without a ``split`` column is read whole for any split.

Classes are the sorted label names of the train csv (found next to the split's csv; otherwise the train rows of the
csv read, or all its rows when it has no ``split`` column), or
the lines of the file given as ``classes=FILE``, so class indices agree across splits. A label outside them, a
row with a missing field, a time span that is not ``0 <= time_start < time_end``, or a ``youtube_id`` that is not
a plain relative name (absolute, ``..``) is a bad item. Each clip's ``VideoRef`` carries ``start_s``/``end_s``: its
window in the YouTube video; the file itself is already the trimmed clip and is decoded whole.
"""

from __future__ import annotations

import math
from pathlib import Path

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    check_split,
    check_task,
    finish_files,
    first_existing,
    read_csv,
    read_text_lines,
    rows_of_split,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.records import ClassificationItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _csv_names(split: str) -> list[str]:
    return [
        f"{split}.csv",
        f"kinetics-400_{split}.csv",
        f"kinetics_400_{split}.csv",
        f"kinetics400_{split}.csv",
        f"kinetics_{split}.csv",
        f"annotations/{split}.csv",
    ]


def clip_name(youtube_id: str, start: float, end: float) -> str:
    """The file stem of a trimmed clip, as the official downloader writes it."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


@registry.register("format", "kinetics")
def load_kinetics(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    classes: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """Kinetics csv (see the module docstring) → recognition items; classes = sorted train labels."""
    check_task("kinetics", task, ("recognition",))
    check_split("kinetics", split, SPLITS)
    root = Path(path)
    file = annotation_file(root, _csv_names(split), f"Kinetics {split} csv")
    all_rows = read_csv(file, COLUMNS)
    problems = Problems(skip_bad)
    rows = rows_of_split(file, all_rows, split, problems)
    class_list = _classes(file, all_rows, split, classes)
    lookup = {name: i for i, name in enumerate(class_list)}
    folder = video_dir_for(root, split, video_dir)
    index = VideoIndex(folder)
    items: list[Item] = []
    for number, row in rows:
        where = f"row {number}"
        label, youtube_id = row.get("label"), row.get("youtube_id")
        if not label or not youtube_id:
            problems.bad(file, where, "missing label or youtube_id")
            continue
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except (TypeError, ValueError):
            problems.bad(
                file, where, f"time_start/time_end not numbers: {row.get('time_start')!r}, {row.get('time_end')!r}"
            )
            continue
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            problems.bad(file, where, f"time span [{start:g}, {end:g}] s is not 0 <= time_start < time_end")
            continue
        if label not in lookup:
            problems.bad(file, where, f"label {label!r} is not one of the {len(class_list)} classes")
            continue
        name = clip_name(youtube_id, start, end)
        clip = index.path_for(name, skip_missing, problems, file, where)
        if clip is None:
            continue
        items.append(ClassificationItem(VideoRef(name, clip, start, end), lookup[label]))
    return finish_files(task, split, items, file, problems, index, classes=class_list)


def video_dir_for(root: Path, split: str, option: str | None) -> Path:
    return find_video_dir(root, option, [f"videos_{split}", split, "videos"])


def _classes(file: Path, rows: list[tuple[int, dict]], split: str, option: str | None) -> list[str]:
    if option is not None:
        names = [line.strip() for line in read_text_lines(option) if line.strip()]
        if not names:
            raise InputFileError(option, "class list is empty")
        return names
    train = file if split == "train" else first_existing(file.parent / n for n in _csv_names("train"))
    if train is not None and train != file:
        rows = read_csv(train, COLUMNS)
    if train is None or train == file:  # one csv for every split: its own train rows name the classes
        rows = _train_rows(file, rows)
    names = sorted({row["label"] for _, row in rows if row.get("label")})
    if not names:
        raise InputFileError(train or file, "no labels in the csv (the test csv of some releases has none)")
    return names


def _train_rows(file: Path, rows: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """The train rows of a csv with a filled ``split`` column, else all its rows."""
    try:
        return rows_of_split(file, rows, "train")
    except InputFileError:  # a split column without train rows (a test-only csv): its own labels
        return rows
