"""ActivityNet Captions as temporal grounding (one sentence, one moment), from the release's json files.

Expected layout (``activitynet_captions:PATH``; PATH is the folder or one split's json)::

    PATH/train.json | val_1.json | val_2.json           (also 2D-TAN's renamed val.json / test.json)
        {"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                           "sentences": ["A young woman is seen standing ...", " The girl then ..."]}, ...}
    VIDEO_DIR/**/<vid>.mp4 (or without the ``v_`` prefix)   video_dir default PATH/videos, PATH/v1-3

Splits follow 2D-TAN and most grounding papers: ``train`` = train.json, ``val`` = val_1.json, ``test`` =
val_2.json (the official test set has no captions). One :class:`GroundingItem` per (timestamp, sentence) pair,
query id ``<vid>_<k>`` (k the 0-based position in the video's list). Windows follow the grounding convention of
:mod:`.grounding_common` (2D-TAN clips ``[max(start, 0), min(end, duration)]``; we clip the same overhang, count
it in ``extra["clipped"]``, and report a reversed, zero-length or entirely outside window as a bad item, where
2D-TAN drops it silently). A video whose timestamps and sentences differ in number is bad as a whole.
"""

from __future__ import annotations

from pathlib import Path

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    check_split,
    check_task,
    finish_files,
    read_json,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.formats.grounding_common import check_duration, check_window
from videoadapt.data.records import GroundingItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
FILES = {"train": ["train.json"], "val": ["val_1.json", "val.json"], "test": ["val_2.json", "test.json"]}


@registry.register("format", "activitynet_captions")
def load_activitynet_captions(
    path: str,
    split: str,
    task: str,
    *,
    clip_spans: bool = True,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """ActivityNet Captions json (see the module docstring) → one temporal grounding item per sentence."""
    check_task("activitynet_captions", task, ("temporal_grounding",))
    check_split("activitynet_captions", split, SPLITS)
    root = Path(path)
    file = annotation_file(root, FILES[split], f"ActivityNet Captions {split} json")
    document = read_json(file)
    if not isinstance(document, dict):
        raise InputFileError(file, 'expected a json object {"video id": {"duration", "timestamps", "sentences"}}')
    index = VideoIndex(find_video_dir(root, video_dir, ["videos", "v1-3"]))
    problems = Problems(skip_bad)
    items: list[Item] = []
    clipped = 0
    for vid, video in document.items():
        where = f"video {vid!r}"
        if not isinstance(video, dict):
            problems.bad(file, where, "not a json object")
            continue
        duration, reason = check_duration(video.get("duration"))
        stamps, sentences = video.get("timestamps"), video.get("sentences")
        if duration is None:
            problems.bad(file, where, reason or "bad duration")
            continue
        if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
            problems.bad(file, where, "needs 'timestamps' and 'sentences' lists of the same length")
            continue
        found = _video(index, vid, skip_missing, problems, file, where)
        if found is None:
            continue
        ref = VideoRef(vid, found)
        for k, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
            here = f"{where} sentence {k}"
            if not isinstance(sentence, str) or not sentence.strip():
                problems.bad(file, here, "empty or not a string")
                continue
            if not isinstance(stamp, list) or len(stamp) != 2:
                problems.bad(file, here, f"timestamp {stamp!r} is not [start, end]")
                continue
            window, reason, was_clipped = check_window(stamp[0], stamp[1], duration, clip_spans)
            if window is None:
                problems.bad(file, here, reason or "bad window")
                continue
            clipped += was_clipped
            items.append(GroundingItem(f"{vid}_{k}", ref, sentence.strip(), duration, (window,)))
    return finish_files(task, split, items, file, problems, index, extra={"clipped": clipped})


def _video(index: VideoIndex, vid: str, skip_missing: bool, problems: Problems, file: Path, where: str) -> Path | None:
    """The clip of ``vid``: ActivityNet ids carry a ``v_`` prefix that downloaded files often lack."""
    if vid.startswith("v_") and index.find(vid) is None and index.find(vid[2:]) is not None:
        return index.path_for(vid[2:], skip_missing, problems, file, where)
    return index.path_for(vid, skip_missing, problems, file, where)
