"""QVHighlights moment retrieval and highlight detection from the release's JSON-lines files (Moment-DETR).

Expected layout (``qvhighlights:PATH``; PATH is the folder or one split's jsonl)::

    PATH/highlight_{train,val,test}_release.jsonl      (also {train,val,test}.jsonl)
        {"qid": 8737, "query": "A family is playing basketball together on a green court outside.",
         "duration": 126, "vid": "bP5KfdFJzC4_660.0_810.0", "relevant_windows": [[0, 16]],
         "relevant_clip_ids": [0, 1, 2, 3, 4, 5, 6, 7], "saliency_scores": [[4, 1, 1], [4, 1, 1], ...]}
    VIDEO_DIR/**/<vid>.mp4                              video_dir default PATH/videos

One :class:`GroundingItem` per line, query id ``str(qid)``; ``windows`` the ``relevant_windows`` (the grounding
window convention of :mod:`.grounding_common`: an overhang past ``duration`` is clipped, counted in
``extra["clipped"]``), ``clip_length`` 2 s (Moment-DETR's ``clip_len``).

Saliency: each relevant clip has one score per annotator (three, 0-4). Moment-DETR's evaluator
(``standalone_eval/eval.py``) keeps the annotators apart: a clip is positive per annotator (score >= 2, 3 or 4),
HIT@1 takes the max over annotators and mAP the mean of per-annotator APs; our
:func:`~videoadapt.metrics.temporal_grounding.highlight_detection_metrics` does the same from
:func:`~videoadapt.metrics.temporal_grounding.qvhighlights_saliency_labels`. A :class:`GroundingItem` holds one
score per clip, so ``saliency`` is the **mean over annotators** (0-4; it ranks clips as Moment-DETR's training
targets do, which sum them) and the per-annotator rows are kept, untouched, in
``extra["saliency_annotators"][query_id] = {"relevant_clip_ids": [...], "saliency_scores": [[...], ...]}`` for
the evaluator. A relevant clip id outside ``int(duration / 2)`` clips, or score rows that do not match the ids, is
a bad item.

A line with `relevant_windows` but neither `relevant_clip_ids` nor `saliency_scores` is a moment-retrieval-only
item (no saliency): what `videoadapt eval --save-predictions` writes for data sets without highlight labels.

The test split's annotations carry no labels (the leaderboard holds them). Loading it is an error unless
``unlabelled=True``, which gives items with ``windows=()`` and no saliency (for writing a submission) and sets
``extra["unlabelled"] = True``; train and val lines without ``relevant_windows`` are bad items either way.
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
)
from videoadapt.data.formats.common import video_dir as find_video_dir
from videoadapt.data.formats.grounding_common import check_duration, check_window, integer, jsonl_records, number
from videoadapt.data.records import GroundingItem, Item, TaskData, VideoRef
from videoadapt.errors import InputFileError
from videoadapt.registry import registry

SPLITS = ("train", "val", "test")
CLIP_LENGTH = 2.0
MAX_SCORE = 4


def _names(split: str) -> list[str]:
    return [f"highlight_{split}_release.jsonl", f"{split}.jsonl"]


@registry.register("format", "qvhighlights")
def load_qvhighlights(
    path: str,
    split: str,
    task: str,
    *,
    unlabelled: bool = False,
    clip_spans: bool = True,
    video_dir: str | None = None,
    skip_bad: bool = False,
    skip_missing: bool = False,
) -> TaskData:
    """QVHighlights jsonl (see the module docstring) → temporal grounding items with saliency."""
    check_task("qvhighlights", task, ("temporal_grounding",))
    check_split("qvhighlights", split, SPLITS)
    root = Path(path)
    file = annotation_file(root, _names(split), f"QVHighlights {split} jsonl")
    records = jsonl_records(file)
    labelled = [r for _, r, _ in records if isinstance(r, dict) and "relevant_windows" in r]
    if not labelled and records and not unlabelled:
        raise InputFileError(
            file,
            "no line has relevant_windows: this split carries no labels (QVHighlights' test labels are held by the "
            "leaderboard), so it cannot be trained or scored on; pass unlabelled=True to load its queries for "
            "writing a submission",
        )
    index = VideoIndex(find_video_dir(root, video_dir, ["videos"]))
    problems = Problems(skip_bad)
    items: list[Item] = []
    annotators: dict[str, dict[str, list]] = {}
    seen: set[str] = set()
    clipped = 0
    for number_, record, error in records:
        where = f"line {number_}"
        if error is not None:
            problems.bad(file, where, error)
            continue
        if not isinstance(record, dict):
            problems.bad(file, where, "not a json object")
            continue
        qid = record.get("qid")
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid) == "":
            problems.bad(file, where, f"qid {qid!r} is not an integer or a string")
            continue
        where = f"line {number_} (qid {qid})"
        query_id = str(qid)
        query, vid = record.get("query"), record.get("vid")
        if not isinstance(query, str) or not query.strip() or not isinstance(vid, str) or not vid:
            problems.bad(file, where, "missing query or vid")
            continue
        if query_id in seen:
            problems.bad(file, where, f"qid {qid} appears twice")
            continue
        duration, reason = check_duration(record.get("duration"))
        if duration is None:
            problems.bad(file, where, reason or "bad duration")
            continue
        windows: list[tuple[float, float]] = []
        saliency = None
        if unlabelled and "relevant_windows" not in record:
            pass
        else:
            parsed = _labels(record, duration, clip_spans)
            if isinstance(parsed, str):
                problems.bad(file, where, parsed)
                continue
            windows, saliency, item_clipped = parsed
            clipped += item_clipped
            if saliency is not None:
                annotators[query_id] = {
                    "relevant_clip_ids": list(record["relevant_clip_ids"]),
                    "saliency_scores": [list(row) for row in record["saliency_scores"]],
                }
        clip = index.path_for(vid, skip_missing, problems, file, where)
        if clip is None:
            continue
        seen.add(query_id)
        items.append(
            GroundingItem(
                query_id,
                VideoRef(vid, clip),
                query.strip(),
                duration,
                tuple(windows),
                saliency,
                CLIP_LENGTH,
            )
        )
    extra = {"clipped": clipped, "saliency_annotators": annotators, "unlabelled": bool(unlabelled and not labelled)}
    return finish_files(task, split, items, file, problems, index, extra=extra)


def _labels(
    record: dict, duration: float, clip: bool
) -> str | tuple[list[tuple[float, float]], tuple[tuple[int, float], ...] | None, int]:
    """The windows, per-clip mean saliency and clipped-window count of a labelled line, or why it is bad."""
    raw_windows = record.get("relevant_windows")
    ids, scores = record.get("relevant_clip_ids"), record.get("saliency_scores")
    if not isinstance(raw_windows, list) or not raw_windows:
        return "relevant_windows is missing or empty"
    # Moment-retrieval-only lines (no highlight labels: what `eval --save-predictions` writes for data sets without
    # saliency) carry neither key; one without the other is a malformed line.
    moments_only = ids is None and scores is None
    if not moments_only and (not isinstance(ids, list) or not isinstance(scores, list)):
        return "relevant_clip_ids or saliency_scores is missing"
    ids, scores = (ids or []), (scores or [])
    windows, clipped = [], 0
    for k, raw in enumerate(raw_windows):
        if not isinstance(raw, list) or len(raw) != 2:
            return f"relevant_windows[{k}] {raw!r} is not [start, end]"
        window, reason, was_clipped = check_window(raw[0], raw[1], duration, clip)
        if window is None:
            return f"relevant_windows[{k}]: {reason}"
        windows.append(window)
        clipped += was_clipped
    if len(ids) != len(scores):
        return f"{len(ids)} relevant_clip_ids but {len(scores)} rows of saliency_scores"
    num_clips = int(duration / CLIP_LENGTH)  # Moment-DETR's mk_gt_scores
    saliency = []
    width = None
    for k, (clip_id, row) in enumerate(zip(ids, scores, strict=True)):
        index = integer(clip_id)
        if index is None or not 0 <= index < num_clips:
            return f"relevant_clip_ids[{k}] {clip_id!r} is not one of the {num_clips} 2-second clips"
        values = [number(v) for v in row] if isinstance(row, list) and row else [None]
        if any(v is None or not 0 <= v <= MAX_SCORE for v in values):
            return f"saliency_scores[{k}] {row!r} is not a list of scores 0-{MAX_SCORE}"
        if width is not None and len(values) != width:
            return f"saliency_scores[{k}] has {len(values)} annotators, earlier rows {width}"
        width = len(values)
        saliency.append((index, sum(values) / len(values)))  # type: ignore[arg-type]
    if len({i for i, _ in saliency}) != len(saliency):
        return "relevant_clip_ids lists a clip twice"
    return windows, (None if moments_only else tuple(saliency)), clipped
