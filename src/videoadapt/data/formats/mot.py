"""MOTChallenge (MOT16, MOT17, MOT20 and data sets written in its layout) for multi-object tracking.

``mot:PATH``::

    PATH/<split>/<SEQ>/seqinfo.ini         [Sequence] name, frameRate, seqLength, imWidth, imHeight
    PATH/<split>/<SEQ>/gt/gt.txt           frame, id, x, y, w, h, conf, class, visibility   (one box per line)
    VIDEO_DIR/<SEQ>.<any video extension>  video_dir default PATH/<split> (searched with its subfolders)

``<split>`` is ``train``, ``val`` or ``test``; when PATH has no such folder, PATH itself is the folder of
sequences (or one sequence folder) and serves whatever split is asked. MOTChallenge ships frames (``img1/``):
make ``SEQ.mp4`` from them at ``frameRate``.

Conventions (MOTChallenge's devkit and trackeval's ``MotChallenge2DBox``): ``frame`` is **1-based** (frame ``f``
becomes 0-based ``f - 1``); a row with ``conf`` 0 is not considered (ignored, not a track box); ``class`` is
MOT17's id (1 pedestrian, 2 person on vehicle, 3 car, 4 bicycle, 5 motorbike, 6 non motorized vehicle, 7 static
person, 8 distractor, 9 occluder, 10 occluder on the ground, 11 occluder full, 12 reflection, 13 crowd); a file
without the column (MOT15) or with -1 means pedestrian. The option ``classes`` picks the categories: ``pedestrian``
(default, what MOTChallenge scores), ``all``, or names separated by commas; rows of other classes are dropped.
Boxes ``[x, y, w, h]`` become ``(x, y, x + w, y + h)`` and may stick out of the image. Every frame is annotated
(``annotated_frames`` None). ``extra["novel_categories"]`` comes from the option ``novel`` (names; default none).

Bad rows (an error naming ``gt.txt`` and the line, or skipped and counted with ``skip_bad``): too few fields or
not numbers, a frame outside ``1 .. seqLength`` (a box on a frame the sequence lacks), an unknown class id, a
second box of one id on one frame, an id whose class changes, a box of no positive size. Track ids are per
sequence (MOTChallenge's), so they may repeat across sequences.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from videoadapt.data.formats.common import Problems, VideoIndex, check_split, check_task, finish_files, read_text_lines
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.formats.grounding_common import frame_size, integer, number
from videoadapt.data.formats.tracking_common import TrackBuilder, novel_categories, positive_box
from videoadapt.data.records import Item, TaskData, TrackingItem, VideoRef
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
CLASSES = {
    1: "pedestrian",
    2: "person on vehicle",
    3: "car",
    4: "bicycle",
    5: "motorbike",
    6: "non motorized vehicle",
    7: "static person",
    8: "distractor",
    9: "occluder",
    10: "occluder on the ground",
    11: "occluder full",
    12: "reflection",
    13: "crowd",
}


@registry.register("format", "mot")
def load_mot(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    classes: str = "pedestrian",
    novel: str = "none",
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """MOTChallenge sequences (see the module docstring) → tracking items, one per sequence."""
    check_task("mot", task, ("tracking",))
    check_split("mot", split, SPLITS)
    root = Path(path)
    if not root.is_dir():
        raise InputFileError(root, "no such folder (expected MOTChallenge sequences)")
    folder = root / split if (root / split).is_dir() else root
    sequences = [folder] if _is_sequence(folder) else sorted(p for p in folder.iterdir() if _is_sequence(p))
    if not sequences:
        raise InputFileError(folder, "no sequence folder (with seqinfo.ini and gt/gt.txt) here")
    chosen = _chosen_classes(classes)
    names = [CLASSES[c] for c in sorted(chosen)]
    problems = Problems(skip_bad)
    index = VideoIndex(find_video_dir(folder, video_dir, []))
    items: list[Item] = []
    for sequence in sequences:
        info = _seqinfo(sequence)
        gt = sequence / "gt" / "gt.txt"
        builder = TrackBuilder()
        for line, text in enumerate(read_text_lines(gt), start=1):
            if text.strip():
                reason = _row(text, info["length"], chosen, builder)
                if reason is not None:
                    problems.bad(gt, f"line {line}", reason)
        clip = index.path_for(info["name"], skip_missing, problems, gt, f"sequence {info['name']!r}")
        if clip is None:
            continue
        items.append(
            TrackingItem(
                VideoRef(info["name"], clip),
                info["length"],
                info["fps"],
                info["width"],
                info["height"],
                builder.tracks(),
            )
        )
    extra = {"novel_categories": novel_categories(novel, names)}
    return finish_files(task, split, items, folder, problems, index, classes=names, extra=extra)


def _is_sequence(folder: Path) -> bool:
    return folder.is_dir() and (folder / "seqinfo.ini").is_file()


def _chosen_classes(option: str) -> set[int]:
    text = str(option).strip().lower()
    if text == "all":
        return set(CLASSES)
    by_name = {name: cid for cid, name in CLASSES.items()}
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in by_name]
    if unknown or not wanted:
        raise VideoadaptError(
            f"option classes={option!r} of format 'mot': unknown class(es) {', '.join(map(repr, unknown))}; "
            f"known: all, {', '.join(CLASSES.values())}"
        )
    return {by_name[w] for w in wanted}


def _seqinfo(sequence: Path) -> dict:
    """name, fps, length, width, height of a sequence from its seqinfo.ini (an error naming it when unusable)."""
    file = sequence / "seqinfo.ini"
    parser = configparser.ConfigParser()
    try:
        parser.read_string("\n".join(read_text_lines(file)))
        section = parser["Sequence"]
    except (configparser.Error, KeyError) as error:
        raise InputFileError(file, f"not a seqinfo.ini with a [Sequence] section: {error}") from None
    try:
        length, fps = int(section["seqLength"]), float(section["frameRate"])
        size, reason = frame_size(int(section["imWidth"]), int(section["imHeight"]))
    except (KeyError, ValueError) as error:
        raise InputFileError(file, f"needs integer seqLength, imWidth, imHeight and a frameRate ({error})") from None
    if size is None or length <= 0 or not fps > 0:
        raise InputFileError(file, reason or "seqLength and frameRate must be positive")
    return {"name": section.get("name", sequence.name).strip(), "fps": fps, "length": length, "width": size[0],
            "height": size[1]}  # fmt: skip


def _row(text: str, length: int, chosen: set[int], builder: TrackBuilder) -> str | None:
    """Add one gt.txt row; the reason it is bad, else None (also None for a row that is dropped)."""
    fields = [f.strip() for f in text.split(",")]
    if len(fields) < 7:
        return f"{len(fields)} fields; expected frame, id, x, y, w, h, conf[, class, visibility]"
    try:
        values = [float(f) for f in fields[:8]]
    except ValueError:
        return f"fields {fields[:8]} are not all numbers"
    frame, track_id = integer(values[0]), integer(values[1])
    if frame is None or track_id is None:
        return f"frame {fields[0]!r} and id {fields[1]!r} must be integers"
    if number(values[6]) == 0:
        return None  # conf 0: not considered by the evaluation
    class_id = integer(values[7]) if len(values) > 7 else -1
    if class_id == -1:
        class_id = 1
    if class_id not in CLASSES:
        return f"unknown class id {fields[7]!r} (MOT17 classes are 1 .. 13)"
    if not 1 <= frame <= length:
        return f"frame {frame} is not a frame of the sequence's {length} (1-based)"
    if class_id not in chosen:
        return None
    box, reason = positive_box(values[2:6])
    if box is None:
        return reason
    return builder.add(track_id, CLASSES[class_id], frame - 1, box)
