"""MSR-VTT: text-video retrieval and captioning (``msrvtt``), and the MSR-VTT multiple-choice test (``msrvtt_mc``).

``msrvtt:PATH`` (PATH is the annotation folder, or the caption json with the csv files beside it)::

    PATH/MSRVTT_data.json | videodatainfo.json | videodatainfo_2017.json
                          | train_val_videodatainfo.json + test_videodatainfo.json   (2016 release, merged)
        {"videos": [{"video_id": "video0", "category": 9, "url": ..., "start time": 137.72, "end time": 149.44,
                     "split": "train" | "validate" | "test", "id": 0}, ...],
         "sentences": [{"caption": "a car is shown", "video_id": "video0", "sen_id": 0}, ...]}
    PATH/MSRVTT_train.9k.csv           video_id                       (CLIP4Clip's 9k training list)
    PATH/MSRVTT_JSFUSION_test.csv      key,vid_key,video_id,sentence   (the 1k-A test set: one caption per video)
    VIDEO_DIR/**/<video_id>.mp4

Two protocols (option ``protocol``):

* ``1k-A`` (default for retrieval; CLIP4Clip and most CLIP-based work): ``train`` = the 9k list with all ~20
  captions of each video; ``test`` = the JSFusion 1k videos, each with its one csv sentence. There is no ``val``:
  CLIP4Clip validated on the test set, which selects on it; ask for ``holdout`` (a part of the training videos,
  with ``fit`` as the training split) instead, and ``val`` says so.
* ``official`` (default for captioning): the json's own ``split`` field, train 6513 / validate 497 / test 2990
  videos, every caption of each video (``val`` reads ``validate``).

``video_dir`` defaults to ``PATH/MSRVTT_Videos``, ``PATH/videos/all``, ``PATH/videos`` or PATH (searched
recursively, so the original ``TrainValVideo``/``TestVideo`` folders are found too).

``msrvtt_mc:PATH`` (PATH is the folder holding ``MSR_MC_test.csv`` or the csv itself; split ``test`` only)::

    key<TAB>vid_key<TAB>a1<TAB>a2<TAB>a3<TAB>a4<TAB>a5<TAB>answer      (tab-separated, as JSFusion released it)

Each row is one :class:`QAItem` whose candidates are the five captions ``a1``–``a5``; ``answer`` is the 0-based
index of the right one (the reference MSR-VTT-MC metric compares it with an argmax over the five). The video is
``video<N>`` for ``vid_key`` ``msr<N>`` (or the ``video_id`` column when the csv has one). The question text is
the ``question`` option, empty by default: the task is choosing the caption that matches the video.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    answer_index,
    check_split,
    check_task,
    finish_files,
    first_existing,
    read_csv,
    read_json,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.records import CaptionItem, Item, QAItem, TaskData, VideoRef
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
PROTOCOLS = ("1k-A", "official")
OFFICIAL_SPLITS = {"train": "train", "val": "validate", "test": "test"}
DATA_JSONS = ("MSRVTT_data.json", "videodatainfo.json", "videodatainfo_2017.json", "train_val_videodatainfo.json")
TRAIN_9K = "MSRVTT_train.9k.csv"
TEST_1KA = "MSRVTT_JSFUSION_test.csv"
MC_TEST = "MSR_MC_test.csv"
VIDEO_DIRS = ("MSRVTT_Videos", "videos/all", "videos")


@registry.register("format", "msrvtt")
def load_msrvtt(
    path: str,
    split: str,
    task: str,
    *,
    protocol: str | None = None,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """MSR-VTT captions (see the module docstring) → retrieval or captioning items."""
    check_task("msrvtt", task, ("retrieval", "captioning"))
    check_split("msrvtt", split, SPLITS)
    protocol = protocol or ("1k-A" if task == "retrieval" else "official")
    if protocol not in PROTOCOLS:
        raise VideoadaptError(f"msrvtt protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    root = Path(path)
    base = root if root.is_dir() else root.parent
    problems = Problems(skip_bad)
    index = VideoIndex(find_video_dir(root, video_dir, VIDEO_DIRS))

    if protocol == "1k-A" and split == "val":
        raise VideoadaptError(
            "msrvtt 1k-A has no validation split: its 1k videos are the test set, and validating on them selects "
            "on test; validate on a part of the training videos instead (split holdout, with fit as the training "
            "split: data.train_split=fit data.val_split=holdout, or videoadapt bench --train-split fit --val-split "
            "holdout)"
        )
    if protocol == "1k-A" and split == "test":
        # The 1k-A csv carries its own sentence per video: the caption json is not needed.
        file = base / TEST_1KA if root.is_dir() else _sibling(root, TEST_1KA)
        captions: dict[str, list[str]] = defaultdict(list)
        for number, row in read_csv(file, ("video_id", "sentence")):
            if not row.get("video_id") or not row.get("sentence"):
                problems.bad(file, f"row {number}", "missing video_id or sentence")
                continue
            captions[row["video_id"]].append(row["sentence"])
        return _caption_data(task, split, file, list(captions), captions, index, problems, skip_missing, protocol)

    data_file = root if root.is_file() else annotation_file(root, DATA_JSONS, "MSR-VTT caption json")
    videos, captions = _read_data(data_file, problems)
    if protocol == "1k-A":  # train
        list_file = _sibling(data_file, TRAIN_9K)
        order = []
        for number, row in read_csv(list_file, ("video_id",)):
            if not row.get("video_id"):
                problems.bad(list_file, f"row {number}", "missing video_id")
                continue
            order.append(row["video_id"])
        origin = list_file
    else:
        wanted = OFFICIAL_SPLITS[split]
        order = [v for v, s in videos.items() if s == wanted]
        origin = data_file
    return _caption_data(task, split, origin, order, captions, index, problems, skip_missing, protocol, data_file)


def _sibling(file: Path, name: str) -> Path:
    return file.parent / name


def _read_data(file: Path, problems: Problems) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``{video_id: split}`` in file order and ``{video_id: [captions]}``, merging the 2016 test file."""
    documents = [(file, read_json(file))]
    if file.name == "train_val_videodatainfo.json":
        test = first_existing([file.parent / "test_videodatainfo.json"])
        if test is not None:
            documents.append((test, read_json(test)))
    videos: dict[str, str] = {}
    captions: dict[str, list[str]] = defaultdict(list)
    for path, document in documents:
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("sentences"), list)
            or not isinstance(document.get("videos") or [], list)
        ):
            raise InputFileError(path, "expected a json object with 'videos' and 'sentences' lists")
        for k, video in enumerate(document.get("videos") or []):
            if not isinstance(video, dict) or not video.get("video_id"):
                problems.bad(path, f"videos[{k}]", "not an object with a 'video_id'")
                continue
            videos[str(video["video_id"])] = str(video.get("split", ""))
        for k, sentence in enumerate(document["sentences"]):
            if (
                not isinstance(sentence, dict)
                or not sentence.get("video_id")
                or not isinstance(sentence.get("caption"), str)
            ):
                problems.bad(path, f"sentences[{k}]", "not an object with 'video_id' and a 'caption' string")
                continue
            captions[str(sentence["video_id"])].append(sentence["caption"].strip())
    return videos, captions


def _caption_data(
    task: str,
    split: str,
    origin: Path,
    order: list[str],
    captions: dict[str, list[str]],
    index: VideoIndex,
    problems: Problems,
    skip_missing: bool,
    protocol: str,
    data_file: Path | None = None,
) -> TaskData:
    items: list[Item] = []
    for video_id in dict.fromkeys(order):  # first occurrence, file order
        texts = tuple(c for c in captions.get(video_id, ()) if c)
        if not texts:
            problems.bad(data_file or origin, f"video {video_id!r}", "has no captions")
            continue
        clip = index.path_for(video_id, skip_missing, problems, origin, f"video {video_id!r}")
        if clip is None:
            continue
        items.append(CaptionItem(VideoRef(video_id, clip), texts))
    return finish_files(task, split, items, origin, problems, index, extra={"protocol": protocol})


# --- MSR-VTT multiple choice ---------------------------------------------------------------------------------

_MSR_KEY = re.compile(r"^msr(\d+)$")
CANDIDATE_COLUMNS = ("a1", "a2", "a3", "a4", "a5")


def mc_video_id(row: dict[str, Any]) -> str:
    """``video<N>`` for the csv's ``vid_key`` ``msr<N>`` (the id MSR-VTT's files use); a ``video_id`` column wins."""
    if row.get("video_id"):
        return str(row["video_id"])
    key = str(row.get("vid_key") or "")
    match = _MSR_KEY.match(key)
    return f"video{match.group(1)}" if match else key


@registry.register("format", "msrvtt_mc")
def load_msrvtt_mc(
    path: str,
    split: str,
    task: str,
    *,
    question: str = "",
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """MSR-VTT multiple choice (``MSR_MC_test.csv``, test split only) → 5-candidate QA items."""
    check_task("msrvtt_mc", task, ("qa",))
    check_split("msrvtt_mc", split, ("test",))
    root = Path(path)
    file = annotation_file(root, [MC_TEST], "MSR-VTT multiple-choice csv")
    rows = read_csv(file, ("key", "vid_key", *CANDIDATE_COLUMNS, "answer"))
    index = VideoIndex(find_video_dir(root, video_dir, VIDEO_DIRS))
    problems = Problems(skip_bad)
    items: list[Item] = []
    for number, row in rows:
        where = f"row {number}"
        candidates = tuple(row.get(c) or "" for c in CANDIDATE_COLUMNS)
        video_id = mc_video_id(row)
        if not row.get("key") or not video_id or not all(candidates):
            problems.bad(file, where, "missing key, vid_key or one of the candidates a1..a5")
            continue
        answer = answer_index(row, len(candidates), problems, file, where)
        if answer is None:
            continue
        clip = index.path_for(video_id, skip_missing, problems, file, where)
        if clip is None:
            continue
        ref = VideoRef(video_id, clip)
        items.append(QAItem(row["key"], ref, question, candidates[answer], candidates, answer))
    return finish_files(task, split, items, file, problems, index)
