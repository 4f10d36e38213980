"""NExT-QA multiple-choice VideoQA from the official csv files (github.com/doc-doc/NExT-QA, ``dataset/nextqa``).

Expected layout (``nextqa:PATH``; PATH is the folder, or one split's csv with the map beside it)::

    PATH/train.csv | val.csv | test.csv
        video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4
        4010069381,369,640,480,how do the two man play the instrument,0,6,CH,roll the handle,tap their feet,...
    PATH/map_vid_vidorID.json            {"4010069381": "1106/4010069381", ...}
    VIDEO_DIR/<mapped path>.mp4          the VidOR videos (``NExTVideo/1106/4010069381.mp4``)

``answer`` is the 0-based index of the right candidate among ``a0``–``a4``. Question ids are ``<video>_<qid>``, the
key the official evaluation uses; ``extra["question_types"]`` gives each item's ``type`` (CW, CH, TN, TC, TP, DL,
DC, DO: causal, temporal and descriptive groups). Without ``map_vid_vidorID.json`` the video is looked up by its
id alone. ``video_dir`` defaults to ``PATH/NExTVideo``, ``PATH/videos`` or PATH. A csv given directly that has a
``split`` column (values train/val/test) gives only the rows of the requested split; a split with none is an error
naming the file (:func:`~videoadapt.data.formats.common.rows_of_split`).
"""

from __future__ import annotations

from pathlib import Path

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    answer_index,
    check_split,
    check_task,
    finish_files,
    read_csv,
    read_json,
    rows_of_split,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.records import Item, QAItem, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
CANDIDATES = ("a0", "a1", "a2", "a3", "a4")
MAP = "map_vid_vidorID.json"


@registry.register("format", "nextqa")
def load_nextqa(
    path: str,
    split: str,
    task: str,
    *,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """NExT-QA csv + ``map_vid_vidorID.json`` (see the module docstring) → 5-candidate QA items."""
    check_task("nextqa", task, ("qa",))
    check_split("nextqa", split, SPLITS)
    root = Path(path)
    file = annotation_file(root, [f"{split}.csv"], f"NExT-QA {split} csv")
    problems = Problems(skip_bad)
    rows = rows_of_split(file, read_csv(file, ("video", "question", "answer", "qid", *CANDIDATES)), split, problems)
    map_file = file.parent / MAP
    mapping: dict[str, str] = {}
    if map_file.exists():
        loaded = read_json(map_file)
        if not isinstance(loaded, dict):
            raise InputFileError(map_file, 'expected a json object {"video id": "folder/video id"}')
        mapping = {str(k): str(v) for k, v in loaded.items()}
    index = VideoIndex(find_video_dir(root, video_dir, ["NExTVideo", "videos"]))
    items: list[Item] = []
    types: list[str] = []
    for number, row in rows:
        where = f"row {number}"
        video, question, qid = row.get("video"), row.get("question"), row.get("qid")
        candidates = tuple(row.get(c) or "" for c in CANDIDATES)
        if not video or not question or not qid or not all(candidates):
            problems.bad(file, where, "missing video, question, qid or one of the candidates a0..a4")
            continue
        answer = answer_index(row, len(candidates), problems, file, where)
        if answer is None:
            continue
        if mapping and video not in mapping:
            problems.bad(file, where, f"video {video!r} is not in {MAP}")
            continue
        # A mapped path is written in the map file: a bad one is reported there, naming the csv row too.
        origin, item = (map_file, f"video {video!r} ({where} of {file.name})") if mapping else (file, where)
        clip = index.path_for(mapping.get(video, video), skip_missing, problems, origin, item)
        if clip is None:
            continue
        ref = VideoRef(video, clip)
        items.append(QAItem(f"{video}_{qid}", ref, question, candidates[answer], candidates, answer))
        types.append(row.get("type") or "")
    return finish_files(task, split, items, file, problems, index, extra={"question_types": types})
