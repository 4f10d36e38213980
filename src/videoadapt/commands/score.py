"""`videoadapt score`: score predictions made by any model against ground truth, from files.

The file formats are documented in docs/scoring.md. Every id of the ground truth must have a prediction and every
prediction an id in the ground truth; otherwise the command fails naming the first offending ids and both files,
or, with ``--skip-bad``, drops the offending items and reports how many it dropped ("skipped"). Dropped items are
left out of the denominators, not counted as wrong: compare "skipped" before comparing two scores.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from videoadapt.commands import Command
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.registry import registry

TASKS = ("recognition", "retrieval", "qa", "captioning", "temporal_grounding", "st_grounding")
_EXAMPLES = 10  # skipped items listed in the output


class _Items:
    """Collects the items that cannot be scored: raises on the first unless skipping is allowed."""

    def __init__(self, skip_bad: bool) -> None:
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
            "skipped_examples": self.skipped[:_EXAMPLES],
        }


def _reason_kind(reason: str) -> str:
    if reason.startswith("no prediction"):
        return "missing_prediction"
    if reason.startswith("not in"):
        return "unknown_id"
    return "invalid"


def _first(ids: list[str], n: int = 3) -> str:
    return ", ".join(repr(i) for i in ids[:n])


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


# ----------------------------------------------------------------------------------------------------- recognition


def score_recognition(pred: Path, gt: Path, items: _Items, topk: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    import numpy as np

    from videoadapt.metrics import recognition

    p = _load(pred, (), "prediction")
    g = _load(gt, ("labels",), "ground truth")
    labels = _mapping(g, "labels", gt)
    if "scores" not in p and "labels" in p:
        return _score_hard_labels(p, g, pred, gt, items)
    if "scores" not in p:
        raise InputFileError(pred, "prediction needs a 'scores' entry, or 'labels' (hard labels; see docs/scoring.md)")
    scores = _mapping(p, "scores", pred)
    classes = g.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise InputFileError(gt, "'classes' must be a list of class names")
    pred_classes = p.get("classes")
    if pred_classes is not None and (
        not isinstance(pred_classes, list) or not all(isinstance(c, str) for c in pred_classes)
    ):
        raise InputFileError(pred, "'classes' must be a list of class names")
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
    rows, targets = [], []
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
        rows.append(row)
        targets.append(target)
    _require(rows, pred)
    metrics = recognition.recognition_metrics(np.asarray(rows, dtype=np.float64), np.asarray(targets), topk)
    return {
        "metrics": metrics,
        "counts": {"videos": len(rows), "classes": width},
        "conventions": recognition.CONVENTIONS,
    }


def _score_hard_labels(p: dict[str, Any], g: dict[str, Any], pred: Path, gt: Path, items: _Items) -> dict[str, Any]:
    """Predictions that are one class per video (a name from the ground truth's ``classes`` or an index): top-1 and
    mean class accuracy; top-k beyond 1 needs scores and is not reported."""
    import numpy as np

    from videoadapt.metrics import recognition

    predicted, labels = _mapping(p, "labels", pred), _mapping(g, "labels", gt)
    classes = g.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise InputFileError(gt, "'classes' must be a list of class names")
    index = {name: i for i, name in enumerate(classes or [])}
    width = len(classes) if classes is not None else None

    def as_index(value: object) -> int | None:
        if isinstance(value, str):
            return index.get(value)
        return value if _is_index(value, width) else None  # type: ignore[return-value]

    rows, targets = [], []
    for vid in items.match("video", predicted, labels, pred, gt):
        guess, target = as_index(predicted[vid]), as_index(labels[vid])
        known = "a class index" + (" or a name from 'classes'" if classes is not None else "")
        if target is None:
            items.bad(gt, f"video {vid!r}", f"label {labels[vid]!r} is not {known}")
            continue
        if guess is None:
            items.bad(pred, f"video {vid!r}", f"predicted label {predicted[vid]!r} is not {known}")
            continue
        rows.append(guess)
        targets.append(target)
    _require(rows, pred)
    count = width if width is not None else max(max(rows), max(targets)) + 1
    onehot = np.zeros((len(rows), count))
    onehot[np.arange(len(rows)), rows] = 1.0
    metrics = recognition.recognition_metrics(onehot, np.asarray(targets), (1,))
    return {
        "metrics": {k: v for k, v in metrics.items() if k in ("top1", "mean_class_accuracy")},
        "counts": {"videos": len(rows), "classes": count},
        "mode": "hard labels: top-1 and mean class accuracy only",
        "conventions": recognition.CONVENTIONS,
    }


# ------------------------------------------------------------------------------------------------------- retrieval


def score_retrieval(pred: Path, gt: Path, items: _Items) -> dict[str, Any]:
    import numpy as np

    from videoadapt.metrics import retrieval

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
    _require(texts, pred)
    position = {v: i for i, v in enumerate(videos)}
    metrics = retrieval.retrieval_metrics(matrix[good], np.asarray([position[text_to_video[t]] for t in texts]))
    captioned = len({text_to_video[t] for t in texts})
    return {
        "metrics": metrics,
        "counts": {"texts": len(texts), "videos": len(videos), "captioned_videos": captioned},
        "conventions": retrieval.CONVENTIONS,
    }


def _id_list(data: dict[str, Any], key: str, path: Path) -> list[str]:
    ids = data[key]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputFileError(path, f"{key!r} must be a list of string ids")
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise InputFileError(path, f"{key!r} repeats ids (first: {_first(duplicates)})")
    return ids


def _similarity(data: dict[str, Any], path: Path) -> Any:
    import numpy as np

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


# -------------------------------------------------------------------------------------------------------------- qa


def score_qa(pred: Path, gt: Path, items: _Items) -> dict[str, Any]:
    import numpy as np

    from videoadapt.metrics import qa

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
    ids = items.match("question", answers, questions, pred, gt)
    if choice:
        predicted, gold = [], []
        for qid in ids:
            q, answer = questions[qid], answers[qid]
            truth = _gold_index(q)
            if truth is None:
                items.bad(gt, f"question {qid!r}", "needs 'answer_index' or an 'answer' found among 'candidates'")
                continue
            guess = _choice_index(answer, q.get("candidates"), qa.normalize_answer)
            if guess is None:
                items.bad(pred, f"question {qid!r}", f"answer {answer!r} is neither a candidate index nor a string")
                continue
            predicted.append(guess)
            gold.append(truth)
        _require(gold, pred)
        metrics = qa.multiple_choice_accuracy(np.asarray(predicted), np.asarray(gold))
        mode, scored = "multiple_choice", len(gold)
    else:
        predicted_text, gold_text = [], []
        for qid in ids:
            truth, answer = questions[qid].get("answer"), answers[qid]
            if not isinstance(truth, str):
                items.bad(gt, f"question {qid!r}", "needs a string 'answer'")
                continue
            if _is_number(answer):  # "2" and 2 are the same open-ended answer
                answer = str(answer)
            if not isinstance(answer, str):
                items.bad(pred, f"question {qid!r}", f"answer {answer!r} is not a string")
                continue
            predicted_text.append(answer)
            gold_text.append(truth)
        _require(gold_text, pred)
        metrics = qa.open_ended_accuracy(predicted_text, gold_text)
        mode, scored = "open_ended", len(gold_text)
    return {
        "metrics": metrics,
        "counts": {"questions": scored},
        "mode": mode,
        "conventions": qa.CONVENTIONS,
    }


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


# ------------------------------------------------------------------------------------------------------ captioning


def score_captioning(pred: Path, gt: Path, items: _Items) -> dict[str, Any]:
    from videoadapt.metrics import captioning

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
    _require(predictions, pred)
    metrics = captioning.caption_metrics(predictions, refs)
    return {
        "metrics": metrics,
        "counts": {"videos": len(predictions), "references": sum(len(r) for r in refs.values())},
        "conventions": captioning.CONVENTIONS,
    }


def _grounding_truth(gt: str, split: str, task: str, skip_bad: bool) -> Any:
    """Ground truth of a grounding task: a data spec (``charades_sta:DIR``, ``vidstg:DIR``, ``synth:DIR`` ...) or,
    for temporal grounding, a QVHighlights-style jsonl file (Moment-DETR's standalone evaluator reads that)."""
    from videoadapt.data.formats import load_task_data

    spec = f"qvhighlights:{gt}" if task == "temporal_grounding" and Path(gt).is_file() else gt
    return load_task_data(spec, split, task, skip_bad=skip_bad)


def score_grounding(pred: Path, gt: str, split: str, task: str, items: _Items) -> dict[str, Any]:
    """Temporal grounding: a QVHighlights-style jsonl of ``pred_relevant_windows`` (and ``pred_saliency_scores``
    per clip). Spatio-temporal grounding: our STVG json ``{qid: {"span": [first, last], "boxes": {frame: box}}}``.
    Scored by the task's own evaluation (the reference conventions of docs/scoring.md)."""
    from videoadapt.data.formats import grounding_predictions as gp
    from videoadapt.tasks import build_task

    data = _grounding_truth(gt, split, task, items.skip_bad)
    by_id = {item.query_id: k for k, item in enumerate(data.items)}
    if task == "temporal_grounding":
        read = gp.read_moment_predictions(pred, gp.durations_of(data.items))
        converted = {q: {"windows": r["windows"] or [], "saliency": r["saliency"]} for q, r in read.items()}
    else:
        read = gp.read_stvg_predictions(pred)
        converted = {q: {"start": r["span"][0], "end": r["span"][1], "boxes": r["boxes"]} for q, r in read.items()}
    kept = items.match("query", converted, by_id, pred, Path(gt))
    subset = data.subset([by_id[q] for q in kept])
    predictions = [converted[q] for q in kept]
    if task == "temporal_grounding" and any(p["saliency"] is None for p in predictions):
        if any(getattr(i, "saliency", None) is not None for i in subset.items):
            raise InputFileError(pred, "the ground truth has saliency labels: every line needs pred_saliency_scores")
    if task == "st_grounding":
        for q, p in zip(kept, predictions, strict=True):
            frames = data.items[by_id[q]].tube.frames  # type: ignore[union-attr]
            lacking = [f for f in frames if f not in p["boxes"]]
            if lacking:
                raise InputFileError(pred, f"query {q!r}: no box for ground-truth tube frame {lacking[0]}")
    _require(predictions, pred)
    metrics = build_task(task).evaluate(predictions, subset)
    return {"metrics": metrics, "counts": {"queries": len(predictions)}, "split": split}


def _require(scored: Any, pred: Path) -> None:
    if not scored:
        raise InputFileError(pred, "no item is left to score")


# ------------------------------------------------------------------------------------------------------------- CLI


def score_files(
    task: str,
    pred: str | Path,
    gt: str | Path,
    *,
    skip_bad: bool = False,
    topk: tuple[int, ...] = (1, 5),
    split: str = "test",
) -> dict[str, Any]:
    """Score a prediction file against a ground-truth file (formats: docs/scoring.md); the command's JSON."""
    gt_text = str(gt)
    pred, gt = Path(pred), Path(gt)
    items = _Items(skip_bad)
    if task == "recognition":
        result = score_recognition(pred, gt, items, topk)
    elif task == "retrieval":
        result = score_retrieval(pred, gt, items)
    elif task == "qa":
        result = score_qa(pred, gt, items)
    elif task == "captioning":
        result = score_captioning(pred, gt, items)
    elif task in ("temporal_grounding", "st_grounding"):
        result = score_grounding(pred, gt_text, split, task, items)
    else:
        raise VideoadaptError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    out = {"task": task, "pred": str(pred), "gt": str(gt), **result}
    out.update(items.report())
    return out


def _parse_topk(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return ks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS, help="what the predictions are for")
    parser.add_argument("--pred", required=True, metavar="FILE", help="prediction file (JSON, docs/scoring.md)")
    parser.add_argument(
        "--gt",
        required=True,
        metavar="FILE",
        help="ground-truth file (JSON, docs/scoring.md); grounding: a data spec (charades_sta:DIR, vidstg:DIR, "
        "synth:DIR, ...) or a QVHighlights-style jsonl",
    )
    parser.add_argument(
        "--split", default="test", help="grounding: the split of the --gt data set to score against (default test)"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="drop items whose ids do not match or whose entries are invalid, and report how many "
        "(default: fail naming the first such item)",
    )
    parser.add_argument(
        "--topk", type=_parse_topk, default=(1, 5), metavar="K,K", help="recognition: top-k values (default 1,5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (metrics, counts, conventions)")


def run(args: argparse.Namespace) -> int:
    result = score_files(args.task, args.pred, args.gt, skip_bad=args.skip_bad, topk=args.topk, split=args.split)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.task}: {args.pred} vs {args.gt}")
    for key, value in result["metrics"].items():
        print(f"  {key:22s} {value:10.3f}")
    print(
        "  "
        + ", ".join(f"{k}: {v}" for k, v in result["counts"].items())
        + (f" ({result['mode']})" if "mode" in result else "")
    )
    if result["skipped"]:
        examples = "; ".join(f"{s['item']} ({s['reason']})" for s in result["skipped_examples"][:3])
        print(f"  skipped {result['skipped']} item(s), not counted: {examples}")
    return 0


registry.register("command", "score")(
    Command(
        help="score predictions from files (recognition, retrieval, QA, captioning, temporal and spatio-temporal "
        "grounding)",
        add_arguments=add_arguments,
        run=run,
        description="Score the predictions of any model, read from --pred, against --gt, with the metric "
        "conventions of the reference implementations (MMAction2, CLIP4Clip, VQA, pycocoevalcap, 2D-TAN and "
        "Moment-DETR's standalone evaluator, TubeDETR). File formats: "
        "docs/scoring.md. Ids that do not match between the files are an error (exit status 2) naming the "
        "first of them, unless --skip-bad drops them and reports the count.",
    )
)
