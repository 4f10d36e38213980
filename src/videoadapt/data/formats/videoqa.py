"""Open-ended VideoQA on MSR-VTT-QA (``msrvtt_qa``) and MSVD-QA (``msvd_qa``), as released with Xu et al. 2017
(github.com/xudejing/video-question-answering).

Expected layout (``msrvtt_qa:PATH`` / ``msvd_qa:PATH``; PATH is the folder, or one split's json)::

    PATH/train_qa.json | val_qa.json | test_qa.json
        [{"answer": "clip", "id": 0, "question": "what is a computer program showing?", "video_id": 0}, ...]
    PATH/youtube_mapping.txt             (MSVD-QA only) one "<youtube clip name> vid<N>" per line
    VIDEO_DIR/**/video<N>.mp4            (MSR-VTT-QA: video_id N is MSR-VTT's video<N>)
    VIDEO_DIR/**/<youtube clip name>.avi (MSVD-QA: video_id N is the clip mapped to vid<N>, e.g. -4wsuPCjDBc_5_15)

Entries that name the video file instead (``"video": "video0.mp4"``, as the VindLU / mmaction2 re-releases do) are
read too. ``video_dir`` defaults to ``PATH/video``, ``PATH/videos``, ``PATH/YouTubeClips`` or PATH.

Answer vocabulary (``TaskData.answers``): the ``answers`` (default 1000) most frequent answers of the *train* split
(ties alphabetical), as is standard for these benchmarks; when the folder has no ``train_qa.json`` the split's own
file is used and ``extra["answer_source"]`` says so. Train questions whose answer is outside the vocabulary are
dropped (nothing could be learned from them); val/test questions keep their true answer and, as no prediction from
the vocabulary can equal it, count as wrong. ``extra["out_of_vocabulary"]`` counts both. Question ids are the
entries' ``id`` (else ``<split>/<position>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    answer_vocabulary,
    check_split,
    check_task,
    finish_files,
    read_json,
    read_text_lines,
    unsafe_path_reason,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.records import Item, QAItem, TaskData, VideoRef
from videoadapt.errors import InputFileError, UnsafePathError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
VIDEO_DIRS = ("video", "videos", "YouTubeClips")
MAPPING = "youtube_mapping.txt"
DEFAULT_ANSWERS = 1000


def _split_file(split: str) -> str:
    return f"{split}_qa.json"


def _entries(file: Path) -> list[Any]:
    entries = read_json(file)
    if not isinstance(entries, list):
        raise InputFileError(file, "expected a json list of {question, answer, video_id, id}")
    return entries


def _answer(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    answer = entry.get("answer")
    if isinstance(answer, list):  # some re-releases keep a list of accepted answers; the first is the label
        answer = answer[0] if answer else None
    return str(answer).strip() if answer is not None and str(answer).strip() else None


def read_youtube_mapping(file: Path) -> dict[str, str]:
    """``{"vid1": "-4wsuPCjDBc_5_15", ...}`` from MSVD-QA's ``youtube_mapping.txt`` (``name vidN`` per line)."""
    mapping = {}
    for number, line in enumerate(read_text_lines(file), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].startswith("vid"):
            raise InputFileError(file, f"line {number}: expected '<clip name> vid<N>', got {line!r}")
        mapping[parts[1]] = parts[0]
    return mapping


def _load(
    name: str,
    path: str,
    split: str,
    task: str,
    *,
    answers: int,
    video_dir: str | None,
    skip_bad: bool,
    skip_missing: bool,
) -> TaskData:
    check_task(name, task, ("qa",))
    check_split(name, split, SPLITS)
    if answers < 1:
        raise VideoadaptError(f"answers must be at least 1, got {answers}")
    root = Path(path)
    file = annotation_file(root, [_split_file(split)], f"{name} {split} json")
    entries = _entries(file)
    train_file = file.parent / _split_file("train")
    source_file = train_file if train_file.exists() else file
    train_entries = entries if source_file == file else _entries(source_file)
    vocabulary = answer_vocabulary((a for a in map(_answer, train_entries) if a is not None), answers)
    known = set(vocabulary)
    mapping = read_youtube_mapping(file.parent / MAPPING) if name == "msvd_qa" else {}
    index = VideoIndex(find_video_dir(root, video_dir, VIDEO_DIRS), ".avi" if name == "msvd_qa" else ".mp4")
    problems = Problems(skip_bad)
    items: list[Item] = []
    out_of_vocabulary = 0
    for k, entry in enumerate(entries):
        where = f"item {k}"
        answer = _answer(entry)
        question = entry.get("question") if isinstance(entry, dict) else None
        if answer is None or not isinstance(question, str) or not question.strip():
            problems.bad(file, where, "missing question or answer")
            continue
        if entry.get("video"):
            unsafe = unsafe_path_reason(str(entry["video"]))
            if unsafe is not None:
                problems.bad(file, where, f"video path {entry['video']!r} {unsafe}", UnsafePathError)
                continue
        video_id = _video_id(name, entry, mapping)
        if video_id is None:
            reason = f"video_id {entry.get('video_id')!r} is not in {MAPPING}" if name == "msvd_qa" else "no video"
            problems.bad(file, where, reason)
            continue
        if answer not in known:
            out_of_vocabulary += 1
            if split == "train":
                continue
        # MSVD-QA's clip name comes from the mapping file: a bad one is reported there, naming the entry too.
        origin, item = (
            (file.parent / MAPPING, f"{where} of {file.name} (video_id {entry.get('video_id')!r})")
            if mapping and not entry.get("video")
            else (file, where)
        )
        clip = index.path_for(video_id, skip_missing, problems, origin, item)
        if clip is None:
            continue
        question_id = str(entry["id"]) if entry.get("id") is not None else f"{split}/{k}"
        items.append(QAItem(question_id, VideoRef(video_id, clip), question.strip(), answer))
    return finish_files(
        task,
        split,
        items,
        file,
        problems,
        index,
        answers=vocabulary,
        extra={
            "answer_source": str(source_file),
            "out_of_vocabulary": {"count": out_of_vocabulary, "dropped": split == "train"},
        },
    )


_MSRVTT_NAME = re.compile(r"^video\d+$")


def _video_id(name: str, entry: dict[str, Any], mapping: dict[str, str]) -> str | None:
    if entry.get("video"):  # a file name: its stem is the clip
        return Path(str(entry["video"])).stem
    raw = entry.get("video_id")
    if raw is None or str(raw).strip() == "":
        return None
    raw = str(raw).strip()
    if name == "msrvtt_qa":
        return raw if _MSRVTT_NAME.match(raw) else f"video{raw}" if raw.isdigit() else raw
    key = raw if raw.startswith("vid") else f"vid{raw}"
    return mapping.get(key)


def _register_loader(name: str, doc: str) -> Callable[..., TaskData]:
    """Register (as format ``name``) a reader that hands its arguments to :func:`_load` for ``name``."""

    def load(
        path: str,
        split: str,
        task: str,
        *,
        answers: int = DEFAULT_ANSWERS,
        video_dir: str | None = None,
        skip_bad: bool = False,
        skip_missing: bool = False,
    ) -> TaskData:
        return _load(
            name,
            path,
            split,
            task,
            answers=answers,
            video_dir=video_dir,
            skip_bad=skip_bad,
            skip_missing=skip_missing,
        )

    load.__name__ = load.__qualname__ = f"load_{name}"
    load.__doc__ = doc
    return registry.register("format", name)(load)


load_msrvtt_qa = _register_loader(
    "msrvtt_qa", "MSR-VTT-QA json (see the module docstring) → open-ended QA over the top-``answers`` train answers."
)
load_msvd_qa = _register_loader(
    "msvd_qa", "MSVD-QA json + ``youtube_mapping.txt`` (see the module docstring) → open-ended QA."
)
