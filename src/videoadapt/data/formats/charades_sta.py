"""Charades-STA temporal grounding from the release's text files and Charades' own csv (for video lengths).

Expected layout (``charades_sta:PATH``; PATH is the folder, or one split's txt with the csv beside it)::

    PATH/charades_sta_train.txt | charades_sta_test.txt
        AO8RW 0.0 6.9##a person is putting a book on a shelf.
    PATH/Charades_v1_train.csv | Charades_v1_test.csv      (Charades' csv: id, ..., length)  or  durations=FILE
    VIDEO_DIR/**/<VID>.mp4                                   video_dir default PATH/Charades_v1_480, PATH/videos

One :class:`GroundingItem` per line, query id ``<VID>_<line number>`` (1-based; the release has no ids and a video
has several sentences). The duration is the csv's ``length`` for the video (2D-TAN reads the same column), or the
``durations=FILE`` option: a csv with ``id`` and ``length`` columns or a json ``{"VID": seconds}``. The sentence
loses surrounding spaces and one trailing period (2D-TAN splits it off). Windows follow the grounding convention
(:mod:`.grounding_common`): reversed, zero-length or non-finite is bad, entirely outside the video is bad, one that
overruns the video's length is clipped to it (2D-TAN's ``min(end, duration)``; ``extra["clipped"]`` counts them)
unless ``clip_spans=False``. There is no validation split: ``val`` names ``holdout``/``fit`` instead.
"""

from __future__ import annotations

from pathlib import Path

from videoadapt.data.formats.common import (
    Problems,
    VideoIndex,
    annotation_file,
    check_task,
    finish_files,
    read_csv,
    read_json,
    read_text_lines,
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.formats.grounding_common import check_duration, check_window
from videoadapt.data.records import GroundingItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.registry import registry

SPLITS = ("train", "test")
VIDEO_DIRS = ("Charades_v1_480", "Charades_v1", "videos")


@registry.register("format", "charades_sta")
def load_charades_sta(
    path: str,
    split: str,
    task: str,
    *,
    durations: str | None = None,
    clip_spans: bool = True,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """Charades-STA txt + Charades csv lengths (see the module docstring) → temporal grounding items."""
    check_task("charades_sta", task, ("temporal_grounding",))
    if split == "val":
        raise VideoadaptError(
            "charades_sta has no validation split (only train and test): validate on a part of the training videos "
            "instead (split holdout, with fit as the training split)"
        )
    if split not in SPLITS:
        raise VideoadaptError(f"format 'charades_sta' has splits train, val, test, not {split!r}")
    root = Path(path)
    file = annotation_file(root, [f"charades_sta_{split}.txt"], f"Charades-STA {split} txt")
    lengths_file = Path(durations) if durations is not None else _default_lengths(file, split)
    lengths = read_lengths(lengths_file)
    index = VideoIndex(find_video_dir(root, video_dir, VIDEO_DIRS))
    problems = Problems(skip_bad)
    items: list[Item] = []
    clipped = 0
    for number, line in enumerate(read_text_lines(file), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        head, sep, sentence = line.partition("##")
        fields = head.split()
        sentence = sentence.strip()
        sentence = sentence[:-1].rstrip() if sentence.endswith(".") else sentence
        if not sep or len(fields) != 3 or not sentence:
            problems.bad(file, where, "expected 'VID start end##sentence'")
            continue
        vid, start, end = fields
        if vid not in lengths:
            problems.bad(file, where, f"video {vid!r} has no length in {lengths_file.name}")
            continue
        duration = lengths[vid]
        window, reason, was_clipped = check_window(_float(start), _float(end), duration, clip_spans)
        if window is None:
            problems.bad(file, where, f"video {vid!r}: {reason}")
            continue
        clip = index.path_for(vid, skip_missing, problems, file, where)
        if clip is None:
            continue
        clipped += was_clipped
        items.append(GroundingItem(f"{vid}_{number}", VideoRef(vid, clip), sentence, duration, (window,)))
    return finish_files(
        task, split, items, file, problems, index, extra={"clipped": clipped, "durations_file": str(lengths_file)}
    )


def read_lengths(file: Path) -> dict[str, float]:
    """``{video id: seconds}`` from a json object or a csv with ``id`` and ``length`` columns (Charades' csv).

    A row whose length is not a positive number is left out, so its sentences are reported as bad items naming
    the annotation line (the usual way a reader learns that one video is unusable)."""
    if file.suffix.lower() == ".json":
        loaded = read_json(file)
        if not isinstance(loaded, dict):
            raise InputFileError(file, 'expected a json object {"video id": seconds}')
        pairs = [(str(k), v) for k, v in loaded.items()]
    else:
        pairs = [(row.get("id") or "", _float(row.get("length"))) for _, row in read_csv(file, ("id", "length"))]
    lengths = {}
    for vid, value in pairs:
        duration, _ = check_duration(value)
        if vid and duration is not None:
            lengths[vid] = duration
    if not lengths:
        raise InputFileError(file, "no video with a positive length")
    return lengths


def _default_lengths(file: Path, split: str) -> Path:
    name = f"Charades_v1_{split}.csv"
    for candidate in (file.parent / name, file.parent / "Charades" / name):
        if candidate.exists():
            return candidate
    raise InputFileError(
        file.parent / name, "no such file: Charades-STA's video lengths come from Charades' csv (or durations=FILE)"
    )


def _float(value: object) -> object:
    """A numeric field as float when it parses (NaN and infinity too: the window check refuses them)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value
