"""Prediction and ground-truth files of every task, in one place: what ``videoadapt score`` reads, what
``videoadapt eval --save-predictions`` writes (through each task's ``score_documents``), and what a future
``videoadapt predict`` will write. The formats are documented in docs/scoring.md ("File formats").

Each format has a writer that returns the file's text (``*_text``; a ``write_*`` puts it in a file where that is
handy) and a reader that returns the structures the metric functions of :mod:`videoadapt.metrics` take; what a
writer writes, the reader reads back (``tests/test_prediction_files.py``).

* **Recognition**, **retrieval**, **QA**, **captioning**: one JSON object per file, ids as strings. The readers take
  the prediction and the ground-truth file together (:func:`read_recognition`, :func:`read_retrieval`,
  :func:`read_qa`, :func:`read_captioning`), since an item is scored only when both files have it: every id of the
  ground truth needs a prediction and every prediction an id in the ground truth; otherwise :class:`Items` fails
  naming the first offending ids and both files, or, when skipping, drops the items and counts them.
* **Temporal grounding**: QVHighlights-style JSON lines (Moment-DETR's submission format) for predictions
  (:func:`read_moment_predictions`, :func:`moment_predictions_text`) and for the ground truth
  (:func:`moment_ground_truth_text`, read back by the ``qvhighlights`` data reader).
* **Spatio-temporal grounding**: our STVG json, one object keyed by query id, for predictions
  (:func:`read_stvg_predictions`, :func:`stvg_predictions_text`) and the ground truth
  (:func:`read_stvg_ground_truth`, :func:`stvg_ground_truth_text`).

**Moment predictions** (Moment-DETR's submission format, ``standalone_eval/eval.py``), one json object per line::

    {"qid": 2579, "query": "...", "vid": "j7rJstUseKg_360.0_510.0",
     "pred_relevant_windows": [[start, end, score], ...],   best first (R1 takes the first)
     "pred_saliency_scores": [score per 2-second clip, ...]}

``qid`` is required, with at least one of ``pred_relevant_windows`` and ``pred_saliency_scores``; ``query`` and
``vid`` are kept when present. Read as ``{str(qid): {"query", "vid", "windows": [(s, e, score), ...] | None,
"saliency": [...] | None}}``; written with ``qid`` as an integer when the id is one (QVHighlights' own ids are, and
Moment-DETR's evaluator compares them with the ground truth's as they are).

**Spatio-temporal tubes** (our design), one json object keyed by query id::

    {"<query id>": {"span": [first_frame, last_frame],                 0-based, both included (our Tube's convention)
                    "boxes": {"<frame>": [x1, y1, x2, y2], ...}}, ...}  pixels

Predictions have boxes on any frames (at least the GT tube's). The ground truth has the same shape (optionally
``query`` and ``video``), with a box on every annotated frame of the tube: its first and last box frames are its
span. Read as ``{query_id: {"span": (first, last), "boxes": {frame: (x1, y1, x2, y2)}}}``.
:func:`stvg_metric_pair` turns a prediction and its ground-truth tube into the half-open ``{"start", "end",
"boxes"}`` inputs that :func:`~videoadapt.metrics.st_grounding.st_grounding_metrics` takes (``end = last + 1``),
every frame up to both tubes' ends evaluated.

Every error is an :class:`~videoadapt.errors.InputFileError` naming the file and the line, item or query id.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videoadapt.data.formats.common import parse_json, read_text_file
from videoadapt.data.formats.grounding_common import integer, jsonl_records, number, xyxy_box
from videoadapt.data.records import GroundingItem, Item, TaskData
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.utils.safe_io import atomic_write_bytes

WINDOWS, SALIENCY = "pred_relevant_windows", "pred_saliency_scores"
EXAMPLES = 10  # skipped items listed in a report

# File names ``eval --save-predictions`` writes (and docs/scoring.md names).
PREDICTIONS, GROUND_TRUTH = "predictions", "ground_truth"


def documents(predictions: str, ground_truth: str, suffix: str = "json") -> dict[str, str]:
    """``{"predictions.<suffix>": text, "ground_truth.<suffix>": text}``: what ``Task.score_documents`` returns."""
    return {f"{PREDICTIONS}.{suffix}": predictions, f"{GROUND_TRUTH}.{suffix}": ground_truth}


def unique_ids(ids: Sequence[str]) -> list[str]:
    """``ids`` with repeats numbered (``v``, ``v#2``, ...): a file keyed by id must not merge two items."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out


# --- matching the two files ----------------------------------------------------------------------------------


class Items:
    """Collects the items that cannot be scored: raises on the first unless skipping is allowed."""

    def __init__(self, skip_bad: bool = False) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[dict[str, str]] = []

    def bad(self, path: Path, item: str, reason: str) -> None:
        if not self.skip_bad:
            raise InputFileError(path, f"{item}: {reason} (pass --skip-bad to score the other items)")
        self.skipped.append({"item": item, "reason": reason})

    def match(self, what: str, pred_ids: Iterable[str], gt_ids: Iterable[str], pred: Path, gt: Path) -> list[str]:
        """The ground-truth ids (in ground-truth order) that have a prediction; mismatches are bad items."""
        pred_list, gt_list = list(pred_ids), list(gt_ids)
        pred_set, gt_set = set(pred_list), set(gt_list)
        missing = [i for i in gt_list if i not in pred_set]
        extra = [i for i in pred_list if i not in gt_set]
        if (missing or extra) and not self.skip_bad:
            parts = []
            if missing:
                parts.append(f"{len(missing)} {what} id(s) of {gt} have no prediction (first: {_first(missing)})")
            if extra:
                parts.append(f"{len(extra)} {what} id(s) are not in {gt} (first: {_first(extra)})")
            raise InputFileError(
                pred, "does not match the ground truth: " + "; ".join(parts) + " (pass --skip-bad to score the rest)"
            )
        for i in missing:
            self.skipped.append({"item": f"{what} {i!r}", "reason": f"no prediction in {pred.name}"})
        for i in extra:
            self.skipped.append({"item": f"{what} {i!r}", "reason": f"not in {gt.name}"})
        return [i for i in gt_list if i in pred_set]

    def report(self) -> dict[str, Any]:
        reasons = Counter(_reason_kind(s["reason"]) for s in self.skipped)
        return {
            "skipped": len(self.skipped),
            "skipped_by_reason": dict(reasons),
            "skipped_examples": self.skipped[:EXAMPLES],
        }


def _reason_kind(reason: str) -> str:
    if reason.startswith("no prediction"):
        return "missing_prediction"
    if reason.startswith("not in"):
        return "unknown_id"
    return "invalid"


def _first(ids: list[str], n: int = 3) -> str:
    return ", ".join(repr(i) for i in ids[:n])


def require(scored: Any, pred: Path) -> None:
    """Fail when no item is left to score."""
    if not scored:
        raise InputFileError(pred, "no item is left to score")


def _load(path: Path, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, f"{what} file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:  # ValueError: bad JSON, or an int of 4300+ digits
        raise InputFileError(path, f"cannot read {what} JSON: {error}") from None
    except RecursionError:
        raise InputFileError(path, f"cannot read {what} JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputFileError(path, f"{what} must be a JSON object, got {type(data).__name__}")
    for key in keys:
        if key not in data:
            raise InputFileError(path, f"{what} needs a {key!r} entry (see docs/scoring.md)")
    return data


def _mapping(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise InputFileError(path, f"{key!r} must be an object mapping id -> value, got {type(value).__name__}")
    return value


def _is_number(x: object) -> bool:
    """A JSON number that a float holds: an integer past float64's range (JSON has no limit) is not one."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return isinstance(x, float) or -(2**1023) <= x <= 2**1023


def _is_index(x: object, count: int | None = None) -> bool:
    """A candidate or class index: an int in ``[0, count)``, or in int32 range when there is no count."""
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < (2**31 if count is None else count)


def _class_names(data: dict[str, Any], path: Path) -> list[str] | None:
    classes = data.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise InputFileError(path, "'classes' must be a list of class names")
    return classes


# --- recognition ---------------------------------------------------------------------------------------------


def recognition_predictions_text(
    scores: Mapping[str, Sequence[float]] | None = None,
    classes: Sequence[str] | None = None,
    labels: Mapping[str, str | int] | None = None,
) -> str:
    """``{"classes", "scores": {video: [score per class]}}``, or hard ``labels`` (``{video: class name or index}``)."""
    if (scores is None) == (labels is None):
        raise VideoadaptError("recognition predictions are scores or hard labels: give exactly one")
    document: dict[str, Any] = {} if classes is None else {"classes": list(classes)}
    if scores is not None:
        document["scores"] = {str(v): [float(x) for x in row] for v, row in scores.items()}
    else:
        document["labels"] = {str(v): label for v, label in labels.items()}  # type: ignore[union-attr]
    return json.dumps(document)


def recognition_ground_truth_text(labels: Mapping[str, str | int], classes: Sequence[str] | None = None) -> str:
    """``{"classes", "labels": {video: class name or index}}``."""
    document: dict[str, Any] = {} if classes is None else {"classes": list(classes)}
    document["labels"] = {str(v): label for v, label in labels.items()}
    return json.dumps(document)


@dataclass
class RecognitionInput:
    """What :func:`~videoadapt.metrics.recognition.recognition_metrics` takes: ``scores [N, C]`` and ``targets
    [N]``; ``hard``: the predictions were hard labels (``scores`` one-hot: top-1 and mean class accuracy only)."""

    ids: list[str]
    scores: np.ndarray
    targets: np.ndarray
    classes: int
    hard: bool = False


def read_recognition(pred: Path, gt: Path, items: Items) -> RecognitionInput:
    """A recognition prediction file (scores or hard labels) against its ground truth."""
    p = _load(pred, (), "prediction")
    g = _load(gt, ("labels",), "ground truth")
    labels = _mapping(g, "labels", gt)
    if "scores" not in p and "labels" in p:
        return _read_hard_labels(p, g, pred, gt, items)
    if "scores" not in p:
        raise InputFileError(pred, "prediction needs a 'scores' entry, or 'labels' (hard labels; see docs/scoring.md)")
    scores = _mapping(p, "scores", pred)
    classes = _class_names(g, gt)
    pred_classes = _class_names(p, pred)
    if pred_classes is not None and classes is not None and pred_classes != classes:
        raise InputFileError(pred, f"'classes' differs from the class order of {gt}; score columns must follow it")
    classes = classes if classes is not None else pred_classes
    index = {name: i for i, name in enumerate(classes)} if classes is not None else {}
    ids = items.match("video", scores, labels, pred, gt)
    if classes is not None:
        width = len(classes)
    else:  # without class names, the usual row length; rows of another length are bad items
        lengths = Counter(len(v) for v in scores.values() if isinstance(v, list))
        width = lengths.most_common(1)[0][0] if lengths else 0
    kept, rows, targets = [], [], []
    for vid in ids:
        row, label = scores[vid], labels[vid]
        if not isinstance(row, list) or len(row) != width or not all(_is_number(x) for x in row):
            items.bad(pred, f"video {vid!r}", f"scores must be a list of {width} numbers")
            continue
        if any(math.isnan(x) for x in row):
            items.bad(pred, f"video {vid!r}", "scores contain NaN")
            continue
        if isinstance(label, str) and label in index:
            target = index[label]
        elif _is_index(label, width):
            target = label
        else:
            known = "a class index" + (" or a name from 'classes'" if classes is not None else "")
            items.bad(gt, f"video {vid!r}", f"label {label!r} is not {known} in [0, {width})")
            continue
        kept.append(vid)
        rows.append(row)
        targets.append(target)
    require(rows, pred)
    return RecognitionInput(kept, np.asarray(rows, dtype=np.float64), np.asarray(targets), width)


def _read_hard_labels(p: dict[str, Any], g: dict[str, Any], pred: Path, gt: Path, items: Items) -> RecognitionInput:
    """Predictions that are one class per video (a name from the ground truth's ``classes`` or an index)."""
    predicted, labels = _mapping(p, "labels", pred), _mapping(g, "labels", gt)
    classes = _class_names(g, gt)
    index = {name: i for i, name in enumerate(classes or [])}
    width = len(classes) if classes is not None else None

    def as_index(value: object) -> int | None:
        if isinstance(value, str):
            return index.get(value)
        return value if _is_index(value, width) else None  # type: ignore[return-value]

    kept, rows, targets = [], [], []
    for vid in items.match("video", predicted, labels, pred, gt):
        guess, target = as_index(predicted[vid]), as_index(labels[vid])
        known = "a class index" + (" or a name from 'classes'" if classes is not None else "")
        if target is None:
            items.bad(gt, f"video {vid!r}", f"label {labels[vid]!r} is not {known}")
            continue
        if guess is None:
            items.bad(pred, f"video {vid!r}", f"predicted label {predicted[vid]!r} is not {known}")
            continue
        kept.append(vid)
        rows.append(guess)
        targets.append(target)
    require(rows, pred)
    count = width if width is not None else max(max(rows), max(targets)) + 1
    onehot = np.zeros((len(rows), count))
    onehot[np.arange(len(rows)), rows] = 1.0
    return RecognitionInput(kept, onehot, np.asarray(targets), count, hard=True)


# --- retrieval -----------------------------------------------------------------------------------------------


def retrieval_predictions_text(text_ids: Sequence[str], video_ids: Sequence[str], similarity: Any) -> str:
    """``{"text_ids", "video_ids", "similarity": [[...], ...]}`` (rows: texts, columns: videos), inline."""
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.shape != (len(text_ids), len(video_ids)):
        raise VideoadaptError(f"similarity has shape {matrix.shape}, expected [{len(text_ids)}, {len(video_ids)}]")
    return json.dumps({"text_ids": list(text_ids), "video_ids": list(video_ids), "similarity": matrix.tolist()})


def retrieval_ground_truth_text(text_to_video: Mapping[str, str], videos: Sequence[str] | None = None) -> str:
    """``{"text_to_video": {text: video}, "videos": [gallery]}`` (``videos`` left out when None)."""
    document: dict[str, Any] = {"text_to_video": dict(text_to_video)}
    if videos is not None:
        document["videos"] = list(videos)
    return json.dumps(document)


@dataclass
class RetrievalInput:
    """What :func:`~videoadapt.metrics.retrieval.retrieval_metrics` takes: ``similarity [texts, videos]`` and each
    text's video column ``targets``; ``texts`` and ``videos`` are the scored ids in that order."""

    texts: list[str]
    videos: list[str]
    similarity: np.ndarray
    targets: np.ndarray

    @property
    def captioned(self) -> int:
        return len(set(self.targets.tolist()))


def read_retrieval(pred: Path, gt: Path, items: Items) -> RetrievalInput:
    """A similarity matrix against the ground truth's caption -> video map (and gallery)."""
    p = _load(pred, ("text_ids", "video_ids"), "prediction")
    g = _load(gt, ("text_to_video",), "ground truth")
    text_ids, video_ids = _id_list(p, "text_ids", pred), _id_list(p, "video_ids", pred)
    similarity = _similarity(p, pred)
    if similarity.shape != (len(text_ids), len(video_ids)):
        raise InputFileError(
            pred,
            f"similarity has shape {similarity.shape}, expected [len(text_ids), len(video_ids)] = "
            f"[{len(text_ids)}, {len(video_ids)}]",
        )
    text_to_video = _mapping(g, "text_to_video", gt)
    not_str = next((t for t, v in text_to_video.items() if not isinstance(v, str)), None)
    if not_str is not None:
        raise InputFileError(gt, f"text {not_str!r} must map to a video id string, got {text_to_video[not_str]!r}")
    gallery = g.get("videos")
    if gallery is None:  # the videos that have a caption, in order of first mention
        gallery = list(dict.fromkeys(text_to_video.values()))
    elif not isinstance(gallery, list) or not all(isinstance(v, str) for v in gallery):
        raise InputFileError(gt, "'videos' must be a list of video ids")
    gallery_set = set(gallery)
    unknown = [t for t, v in text_to_video.items() if v not in gallery_set]
    if unknown:
        raise InputFileError(gt, f"text {unknown[0]!r} maps to video {text_to_video[unknown[0]]!r}, not in 'videos'")

    videos = items.match("video", video_ids, gallery, pred, gt)
    kept_videos = set(videos)
    texts = []
    for tid in items.match("text", text_ids, text_to_video, pred, gt):
        if text_to_video[tid] not in kept_videos:
            items.bad(pred, f"text {tid!r}", f"its video {text_to_video[tid]!r} has no similarity column")
            continue
        texts.append(tid)
    row_of, col_of = {t: i for i, t in enumerate(text_ids)}, {v: i for i, v in enumerate(video_ids)}
    matrix = similarity[np.ix_([row_of[t] for t in texts], [col_of[v] for v in videos])]
    good = ~np.isnan(matrix).any(axis=1) if matrix.dtype.kind == "f" else np.ones(len(texts), dtype=bool)
    for tid in (t for t, ok in zip(texts, good, strict=True) if not ok):
        items.bad(pred, f"text {tid!r}", "similarity row contains NaN")
    texts = [t for t, ok in zip(texts, good, strict=True) if ok]
    require(texts, pred)
    position = {v: i for i, v in enumerate(videos)}
    return RetrievalInput(texts, videos, matrix[good], np.asarray([position[text_to_video[t]] for t in texts]))


def _id_list(data: dict[str, Any], key: str, path: Path) -> list[str]:
    ids = data[key]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputFileError(path, f"{key!r} must be a list of string ids")
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise InputFileError(path, f"{key!r} repeats ids (first: {_first(duplicates)})")
    return ids


def _similarity(data: dict[str, Any], path: Path) -> np.ndarray:
    if ("similarity" in data) == ("similarity_npy" in data):
        raise InputFileError(path, "give exactly one of 'similarity' (nested lists) or 'similarity_npy' (a .npy file)")
    if "similarity_npy" in data:
        npy = path.parent / str(data["similarity_npy"])  # relative to the prediction file
        try:
            matrix = np.load(npy, allow_pickle=False)  # no pickles: a score file must not run code
        except FileNotFoundError:
            raise InputFileError(npy, "similarity .npy file not found") from None
        except (OSError, ValueError, EOFError) as error:  # EOFError: an empty or cut file
            raise InputFileError(npy, f"cannot read a .npy array: {error}") from None
    else:
        try:
            matrix = np.asarray(data["similarity"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InputFileError(path, "'similarity' must be a rectangular list of lists of numbers") from None
    if matrix.ndim != 2 or matrix.dtype.kind not in "iuf":
        raise InputFileError(path, f"similarity must be a 2-D numeric matrix, got shape {matrix.shape} {matrix.dtype}")
    return matrix


# --- QA ------------------------------------------------------------------------------------------------------


def qa_predictions_text(answers: Mapping[str, int | str]) -> str:
    """``{"answers": {question: candidate index or answer text}}``."""
    return json.dumps({"answers": {str(q): a for q, a in answers.items()}})


def qa_ground_truth_text(questions: Mapping[str, Mapping[str, Any]]) -> str:
    """``{"questions": {question: {"question", "answer"} or {"question", "candidates", "answer_index"}}}``."""
    return json.dumps({"questions": {str(q): dict(v) for q, v in questions.items()}})


@dataclass
class QAInput:
    """``mode`` "multiple_choice": candidate indices (``predicted``, -1 for an answer that is no candidate, and
    ``gold``) for :func:`~videoadapt.metrics.qa.multiple_choice_accuracy`; "open_ended": answer strings for
    :func:`~videoadapt.metrics.qa.open_ended_accuracy`."""

    mode: str
    ids: list[str]
    predicted: list[Any]
    gold: list[Any]


def read_qa(pred: Path, gt: Path, items: Items) -> QAInput:
    """Answers against the questions (all multiple choice or all open-ended)."""
    from videoadapt.metrics.qa import normalize_answer

    answers = _mapping(_load(pred, ("answers",), "prediction"), "answers", pred)
    questions = _mapping(_load(gt, ("questions",), "ground truth"), "questions", gt)
    for qid, q in questions.items():
        if not isinstance(q, dict):
            raise InputFileError(gt, f"question {qid!r} must be an object with 'answer' (and 'candidates')")
        if q.get("candidates") is not None and not isinstance(q["candidates"], list):
            raise InputFileError(gt, f"question {qid!r}: 'candidates' must be a list")
    choice = {qid for qid, q in questions.items() if "candidates" in q or "answer_index" in q}
    if choice and len(choice) != len(questions):
        open_id = next(qid for qid in questions if qid not in choice)
        raise InputFileError(gt, f"mixes multiple-choice and open-ended questions (e.g. {open_id!r} has no candidates)")
    kept: list[str] = []
    predicted: list[Any] = []
    gold: list[Any] = []
    for qid in items.match("question", answers, questions, pred, gt):
        q, answer = questions[qid], answers[qid]
        if choice:
            truth = _gold_index(q)
            if truth is None:
                items.bad(gt, f"question {qid!r}", "needs 'answer_index' or an 'answer' found among 'candidates'")
                continue
            guess = _choice_index(answer, q.get("candidates"), normalize_answer)
            if guess is None:
                items.bad(pred, f"question {qid!r}", f"answer {answer!r} is neither a candidate index nor a string")
                continue
        else:
            truth = q.get("answer")
            if not isinstance(truth, str):
                items.bad(gt, f"question {qid!r}", "needs a string 'answer'")
                continue
            guess = str(answer) if _is_number(answer) else answer  # "2" and 2 are the same open-ended answer
            if not isinstance(guess, str):
                items.bad(pred, f"question {qid!r}", f"answer {answer!r} is not a string")
                continue
        kept.append(qid)
        predicted.append(guess)
        gold.append(truth)
    require(gold, pred)
    return QAInput("multiple_choice" if choice else "open_ended", kept, predicted, gold)


def _gold_index(question: Mapping[str, Any]) -> int | None:
    candidates = question.get("candidates")
    index = question.get("answer_index")
    if isinstance(index, int) and not isinstance(index, bool):
        return index if _is_index(index, None if candidates is None else len(candidates)) else None
    answer = question.get("answer")
    if isinstance(candidates, list) and answer in candidates:
        return candidates.index(answer)
    return None


def _choice_index(answer: object, candidates: object, normalize: Callable[[str], str]) -> int | None:
    """A predicted index as is (-1, wrong, when it is no candidate's); a predicted string -> its candidate (exact,
    then normalised), else -1 (wrong)."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        count = len(candidates) if isinstance(candidates, list) else None
        return answer if _is_index(answer, count) else -1
    if not isinstance(answer, str):
        return None
    if isinstance(candidates, list):
        if answer in candidates:
            return candidates.index(answer)
        normalized = [normalize(c) if isinstance(c, str) else None for c in candidates]
        if normalize(answer) in normalized:
            return normalized.index(normalize(answer))
    return -1


# --- captioning ----------------------------------------------------------------------------------------------


def captioning_predictions_text(captions: Mapping[str, str]) -> str:
    """``{"captions": {video: caption}}``."""
    return json.dumps({"captions": {str(v): str(c) for v, c in captions.items()}})


def captioning_ground_truth_text(references: Mapping[str, Sequence[str]]) -> str:
    """``{"references": {video: [reference, ...]}}``."""
    return json.dumps({"references": {str(v): list(r) for v, r in references.items()}})


def read_captioning(pred: Path, gt: Path, items: Items) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(captions, references)`` keyed by video, as :func:`~videoadapt.metrics.captioning.caption_metrics` takes
    them (a single reference string is a list of one)."""
    captions = _mapping(_load(pred, ("captions",), "prediction"), "captions", pred)
    references = _mapping(_load(gt, ("references",), "ground truth"), "references", gt)
    predictions: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for vid in items.match("video", captions, references, pred, gt):
        caption, ref = captions[vid], references[vid]
        if isinstance(ref, str):
            ref = [ref]
        if not isinstance(ref, list) or not ref or not all(isinstance(r, str) for r in ref):
            items.bad(gt, f"video {vid!r}", "references must be a non-empty list of strings")
            continue
        if not isinstance(caption, str):
            items.bad(pred, f"video {vid!r}", f"caption must be a string, got {type(caption).__name__}")
            continue
        predictions[vid], refs[vid] = caption, ref
    require(predictions, pred)
    return predictions, refs


# --- moment retrieval / highlight detection (JSON lines) -----------------------------------------------------


def read_moment_predictions(
    path: str | Path, durations: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """A QVHighlights-style prediction jsonl → ``{query id: {"query", "vid", "windows", "saliency"}}``.

    ``durations`` (query id → seconds, e.g. :func:`durations_of` the ground-truth items): windows must lie in
    ``[0, duration]`` of their query; without it only ``start >= 0`` is checked."""
    path = Path(path)
    predictions: dict[str, dict[str, Any]] = {}
    for line, record, error in jsonl_records(path):
        if error is not None:
            raise InputFileError(path, f"line {line}: {error}")
        if not isinstance(record, dict) or "qid" not in record:
            raise InputFileError(path, f"line {line}: not a json object with a 'qid'")
        qid = _query_id(record["qid"])
        if qid is None:
            raise InputFileError(path, f"line {line}: qid {record['qid']!r} is not an integer or a string")
        if qid in predictions:
            raise InputFileError(path, f"line {line} (qid {qid}): qid {qid} appears twice")
        duration = durations.get(qid) if durations is not None else None
        predictions[qid] = _moment(record, duration, f"line {line} (qid {qid})", path)
    if not predictions:
        raise InputFileError(path, "no predictions (an empty file)")
    return predictions


def moment_predictions_text(
    predictions: Mapping[str, Mapping[str, Any]], durations: Mapping[str, float] | None = None
) -> str:
    """``{query id: {"windows": [(s, e, score)], "saliency": [...], "query", "vid"}}`` as QVHighlights-style jsonl
    (checked first, with the reader's rules, so a written file always reads back)."""
    lines = []
    for qid, entry in predictions.items():
        record: dict[str, Any] = {"qid": _qid_value(qid)}
        for key in ("query", "vid"):
            if entry.get(key) is not None:
                record[key] = entry[key]
        if entry.get("windows") is not None:
            record[WINDOWS] = [[float(v) for v in w] for w in entry["windows"]]
        if entry.get("saliency") is not None:
            record[SALIENCY] = [float(v) for v in entry["saliency"]]
        duration = durations.get(str(qid)) if durations is not None else None
        _moment(record, duration, f"query {qid!r}", Path(f"{PREDICTIONS}.jsonl"))
        lines.append(json.dumps(record))
    return "".join(line + "\n" for line in lines)


def write_moment_predictions(
    path: str | Path, predictions: Mapping[str, Mapping[str, Any]], durations: Mapping[str, float] | None = None
) -> None:
    """:func:`moment_predictions_text` into the file ``path``."""
    # Atomic: on a full disk (DiskFullError naming the file) a previous file stays whole.
    atomic_write_bytes(path, moment_predictions_text(predictions, durations).encode("utf-8"))


def moment_ground_truth_text(items: Sequence[GroundingItem], annotators: Mapping[str, Mapping] | None = None) -> str:
    """Grounding items as QVHighlights-style ground-truth jsonl (``qid``, ``query``, ``vid``, ``duration``,
    ``relevant_windows``; with ``relevant_clip_ids`` + ``saliency_scores`` for the queries ``annotators`` has,
    the ``qvhighlights`` reader's ``extra["saliency_annotators"]``), which that reader reads back."""
    lines = []
    for item in items:
        record: dict[str, Any] = {
            "qid": _qid_value(item.query_id),
            "query": item.query,
            "vid": item.video.video_id,
            "duration": item.duration,
            "relevant_windows": [[float(v) for v in w] for w in item.windows],
        }
        raw = (annotators or {}).get(item.query_id)
        if raw is not None:
            record["relevant_clip_ids"] = list(raw["relevant_clip_ids"])
            record["saliency_scores"] = [list(row) for row in raw["saliency_scores"]]
        lines.append(json.dumps(record))
    return "".join(line + "\n" for line in lines)


def durations_of(items: Sequence[Item]) -> dict[str, float]:
    """``{query id: duration}`` of grounding items, for the window range check."""
    return {item.query_id: item.duration for item in items if isinstance(item, GroundingItem)}


def _moment(record: dict, duration: float | None, where: str, path: Path) -> dict[str, Any]:
    if WINDOWS not in record and SALIENCY not in record:
        raise InputFileError(path, f"{where}: needs {WINDOWS} or {SALIENCY}")
    windows = None
    if WINDOWS in record:
        raw = record[WINDOWS]
        if not isinstance(raw, list):
            raise InputFileError(path, f"{where}: {WINDOWS} is not a list")
        windows = []
        for k, window in enumerate(raw):
            values = [number(v) for v in window] if isinstance(window, list) and len(window) == 3 else None
            if values is None:
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} is not [start, end, score]")
            if any(v is None for v in values):
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} has a non-finite or non-number value")
            start, end, score = values
            if end <= start:  # type: ignore[operator]
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} is reversed or zero-length")
            if start < 0 or (duration is not None and end > duration):  # type: ignore[operator]
                span = f"[0, {duration:g}]" if duration is not None else "[0, ...)"
                raise InputFileError(path, f"{where}: {WINDOWS}[{k}] {window!r} is outside the video {span} s")
            windows.append((start, end, score))
    saliency = None
    if SALIENCY in record:
        raw = record[SALIENCY]
        values = [number(v) for v in raw] if isinstance(raw, list) else [None]
        if not values or any(v is None for v in values):
            raise InputFileError(path, f"{where}: {SALIENCY} is not a non-empty list of finite numbers")
        saliency = values
    return {"query": record.get("query"), "vid": record.get("vid"), "windows": windows, "saliency": saliency}


# --- spatio-temporal grounding (one json object) -------------------------------------------------------------


def read_stvg_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """Our STVG prediction json (module docstring) → ``{query id: {"span": (first, last), "boxes": {f: box}}}``."""
    path = Path(path)
    document = parse_json(path, read_text_file(path, "prediction"), unique_keys=True)
    if not isinstance(document, dict) or not document:
        raise InputFileError(path, 'expected a non-empty json object {"query id": {"span", "boxes"}}')
    return {qid: _tube(path, qid, entry) for qid, entry in document.items()}


def stvg_predictions_text(predictions: Mapping[str, Mapping[str, Any]]) -> str:
    """``{query id: {"span": (first, last), "boxes": {frame: box}}}`` as our STVG json (checked first)."""
    return json.dumps({str(q): _tube_record(Path(f"{PREDICTIONS}.json"), str(q), e) for q, e in predictions.items()})


def write_stvg_predictions(path: str | Path, predictions: Mapping[str, Mapping[str, Any]]) -> None:
    """:func:`stvg_predictions_text` into the file ``path``."""
    atomic_write_bytes(path, stvg_predictions_text(predictions).encode("utf-8"))  # atomic, as above


def stvg_ground_truth_text(tubes: Mapping[str, Mapping[str, Any]]) -> str:
    """Ground-truth tubes ``{query id: {"span", "boxes", "query"?, "video"?}}`` (e.g. :func:`stvg_tube_of` each
    item) as our STVG ground-truth json, which :func:`read_stvg_ground_truth` reads back."""
    path = Path(f"{GROUND_TRUTH}.json")
    document = {}
    for qid, entry in tubes.items():
        record = _tube_record(path, str(qid), entry)
        _truth_tube(path, str(qid), _tube(path, str(qid), record))
        for key in ("query", "video"):
            if entry.get(key) is not None:
                record[key] = str(entry[key])
        document[str(qid)] = record
    return json.dumps(document)


def read_stvg_ground_truth(path: str | Path) -> dict[str, dict[str, Any]]:
    """Our STVG ground-truth json → ``{query id: {"span": (first, last), "boxes": {frame: box}}}``; the span's
    first and last frames must be the first and last box frames (a box on every annotated frame)."""
    path = Path(path)
    return {qid: _truth_tube(path, qid, tube) for qid, tube in read_stvg_predictions(path).items()}


def stvg_tube_of(item: GroundingItem) -> dict[str, Any]:
    """An item's tube as the STVG files hold one: ``{"span": (first, last), "boxes": {frame: box}, "query",
    "video"}``."""
    if item.tube is None:
        raise VideoadaptError(f"query {item.query_id!r} has no tube (not a spatio-temporal grounding item)")
    tube = item.tube
    return {
        "span": (tube.frames[0], tube.frames[-1]),
        "boxes": dict(zip(tube.frames, tube.boxes, strict=True)),
        "query": item.query,
        "video": item.video.video_id,
    }


def stvg_metric_pair(prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> tuple[dict, dict]:
    """A predicted tube and its ground-truth tube (both ``{"span": (first, last), "boxes"}``, the truth with a box
    on each of its frames) as :func:`~videoadapt.metrics.st_grounding.st_grounding_metrics` takes them: half-open
    spans, every frame up to both tubes' ends evaluated (TubeDETR's union denominator then counts predicted frames
    outside the ground-truth tube)."""
    last = max(int(truth["span"][1]), int(prediction["span"][1]))
    frames = sorted(truth["boxes"])
    gt = {"frames": list(range(last + 1)), "start": frames[0], "end": frames[-1] + 1, "boxes": dict(truth["boxes"])}
    return stvg_metric_input(prediction), gt


def check_stvg_boxes(path: Path, qid: str, prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
    """A prediction needs a box on every frame of the ground-truth tube."""
    lacking = [f for f in sorted(truth["boxes"]) if f not in prediction["boxes"]]
    if lacking:
        raise InputFileError(path, f"query {qid!r}: no box for ground-truth tube frame {lacking[0]}")


def stvg_metric_input(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """A read prediction as :func:`~videoadapt.metrics.st_grounding.st_grounding_metrics` takes it: half-open."""
    first, last = prediction["span"]
    return {"start": first, "end": last + 1, "boxes": dict(prediction["boxes"])}


def _tube(path: Path, qid: str, entry: object) -> dict[str, Any]:
    where = f"query {qid!r}"
    if not isinstance(entry, dict) or "span" not in entry or "boxes" not in entry:
        raise InputFileError(path, f"{where}: needs 'span' and 'boxes'")
    span = entry["span"]
    bounds = [integer(v) for v in span] if isinstance(span, list) and len(span) == 2 else [None]
    if any(b is None for b in bounds):
        raise InputFileError(path, f"{where}: span {span!r} is not [first_frame, last_frame] (integers)")
    first, last = bounds
    if first < 0 or last < first:  # type: ignore[operator]
        raise InputFileError(path, f"{where}: span {span!r} is negative or reversed (needs 0 <= first <= last)")
    if not isinstance(entry["boxes"], dict):
        raise InputFileError(path, f"{where}: boxes is not an object {{frame: [x1, y1, x2, y2]}}")
    boxes = {}
    for key, value in entry["boxes"].items():
        frame = int(key) if _is_int_text(str(key)) else None
        if frame is None:
            raise InputFileError(path, f"{where}: box key {key!r} is not a frame number >= 0")
        box, reason = xyxy_box(value)
        if box is None:
            raise InputFileError(path, f"{where}: frame {frame}: {reason}")
        boxes[frame] = box
    return {"span": (first, last), "boxes": boxes}


def _tube_record(path: Path, qid: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A tube as its json record, checked with the reader's rules."""
    record = {
        "span": [int(v) for v in entry["span"]],
        "boxes": {str(int(f)): [float(v) for v in box] for f, box in sorted(entry["boxes"].items())},
    }
    _tube(path, qid, record)
    return record


def _truth_tube(path: Path, qid: str, tube: dict[str, Any]) -> dict[str, Any]:
    frames = sorted(tube["boxes"])
    if not frames or (frames[0], frames[-1]) != tube["span"]:
        first_last = f"[{frames[0]}, {frames[-1]}]" if frames else "none"
        raise InputFileError(
            path,
            f"query {qid!r}: span {list(tube['span'])} is not the first and last frame of its boxes ({first_last})",
        )
    return tube


# --- ground truth of the grounding tasks, for score ---------------------------------------------------------


def grounding_truth(gt: str, split: str, task: str, skip_bad: bool) -> TaskData:
    """Ground truth of a grounding task: a data spec (``charades_sta:DIR``, ``vidstg:DIR``, ``synth:DIR`` ...) or,
    for temporal grounding, a QVHighlights-style jsonl file (Moment-DETR's standalone evaluator reads that)."""
    from videoadapt.data.formats import load_task_data

    spec = f"qvhighlights:{gt}" if task == "temporal_grounding" and Path(gt).is_file() else gt
    return load_task_data(spec, split, task, skip_bad=skip_bad)


def read_moment_files(pred: Path, gt: str, split: str, items: Items) -> tuple[list[dict[str, Any]], TaskData]:
    """Moment predictions against a temporal-grounding ground truth: the predictions ``{"windows", "saliency"}``
    of the matched queries and the ground truth's items for them, in its order (what the task's ``evaluate``
    takes)."""
    data = grounding_truth(gt, split, "temporal_grounding", items.skip_bad)
    by_id = {item.query_id: k for k, item in enumerate(data.items)}
    read = read_moment_predictions(pred, durations_of(data.items))
    kept = items.match("query", read, by_id, pred, Path(gt))
    subset = data.subset([by_id[q] for q in kept])
    predictions = [{"windows": read[q]["windows"] or [], "saliency": read[q]["saliency"]} for q in kept]
    if any(p["saliency"] is None for p in predictions):
        if any(getattr(i, "saliency", None) is not None for i in subset.items):
            raise InputFileError(pred, "the ground truth has saliency labels: every line needs pred_saliency_scores")
    require(predictions, pred)
    return predictions, subset


def read_stvg_files(pred: Path, gt: str, split: str, items: Items) -> tuple[dict[str, dict], dict[str, dict]]:
    """Tube predictions against a spatio-temporal-grounding ground truth (our STVG ground-truth json file, or a
    data spec and ``split``): ``(predictions, ground truth)`` of the matched queries, keyed by query id, as
    :func:`~videoadapt.metrics.st_grounding.st_grounding_metrics` takes them (:func:`stvg_metric_pair`)."""
    if Path(gt).is_file():
        truths = read_stvg_ground_truth(gt)
    else:
        truths = {i.query_id: stvg_tube_of(i) for i in grounding_truth(gt, split, "st_grounding", items.skip_bad).items}
    read = read_stvg_predictions(pred)
    preds, gts = {}, {}
    for qid in items.match("query", read, truths, pred, Path(gt)):
        check_stvg_boxes(pred, qid, read[qid], truths[qid])
        preds[qid], gts[qid] = stvg_metric_pair(read[qid], truths[qid])
    require(preds, pred)
    return preds, gts


# --- ids ----------------------------------------------------------------------------------------------------


def check_prediction_ids(predictions: Mapping[str, Any], items: Sequence[Item], file: str | Path) -> dict[str, Any]:
    """Refuse predictions for query ids the ground truth lacks (an error naming ``file`` and the first ids);
    return ``{"missing": n, "examples": [first ids]}`` for ground-truth items without a prediction."""
    known = [item.query_id for item in items if isinstance(item, GroundingItem)]
    known_set = set(known)
    unknown = [qid for qid in predictions if qid not in known_set]
    if unknown:
        shown = ", ".join(repr(q) for q in unknown[:5])
        raise InputFileError(file, f"{len(unknown)} query id(s) not in the ground truth: {shown}")
    missing = [qid for qid in known if qid not in predictions]
    return {"missing": len(missing), "examples": missing[:5]}


def _qid_value(qid: object) -> int | str:
    """A query id as a file writes it: an integer where the id is one (QVHighlights' own are)."""
    return int(str(qid)) if _is_int_text(str(qid)) else str(qid)


def _query_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or str(value) == "":
        return None
    return str(value)


def _is_int_text(text: str) -> bool:
    return text.isdigit() and str(int(text)) == text
