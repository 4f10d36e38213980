"""`videoadapt score`: score predictions made by any model against ground truth, from files.

The file formats are documented in docs/scoring.md and read by :mod:`videoadapt.metrics.prediction_files`; this
module picks the reader and the metric and prints. Every id of the ground truth must have a prediction and every
prediction an id in the ground truth; otherwise the command fails naming the first offending ids and both files,
or, with ``--skip-bad``, drops the offending items and reports how many it dropped ("skipped"). Dropped items are
left out of the denominators, not counted as wrong: compare "skipped" before comparing two scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from videoadapt.commands import Command, task_names_text
from videoadapt.data.records import TASKS  # every task has a prediction file that `score` reads
from videoadapt.errors import VideoadaptError
from videoadapt.metrics import prediction_files as pf
from videoadapt.registry import registry


def score_recognition(pred: Path, gt: Path, items: pf.Items, topk: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    from videoadapt.metrics import recognition

    read = pf.read_recognition(pred, gt, items)
    if read.hard:  # one class per video: top-k beyond 1 needs scores and is not reported
        metrics = recognition.recognition_metrics(read.scores, read.targets, (1,))
        return {
            "metrics": {k: v for k, v in metrics.items() if k in ("top1", "mean_class_accuracy")},
            "counts": {"videos": len(read.ids), "classes": read.classes},
            "mode": "hard labels: top-1 and mean class accuracy only",
            "conventions": recognition.CONVENTIONS,
        }
    return {
        "metrics": recognition.recognition_metrics(read.scores, read.targets, topk),
        "counts": {"videos": len(read.ids), "classes": read.classes},
        "conventions": recognition.CONVENTIONS,
    }


def score_retrieval(pred: Path, gt: Path, items: pf.Items) -> dict[str, Any]:
    from videoadapt.metrics import retrieval

    read = pf.read_retrieval(pred, gt, items)
    return {
        "metrics": retrieval.retrieval_metrics(read.similarity, read.targets),
        "counts": {"texts": len(read.texts), "videos": len(read.videos), "captioned_videos": read.captioned},
        "conventions": retrieval.CONVENTIONS,
    }


def score_qa(pred: Path, gt: Path, items: pf.Items) -> dict[str, Any]:
    import numpy as np

    from videoadapt.metrics import qa

    read = pf.read_qa(pred, gt, items)
    if read.mode == "multiple_choice":
        metrics = qa.multiple_choice_accuracy(np.asarray(read.predicted), np.asarray(read.gold))
    else:
        metrics = qa.open_ended_accuracy(read.predicted, read.gold)
    return {
        "metrics": metrics,
        "counts": {"questions": len(read.gold)},
        "mode": read.mode,
        "conventions": qa.CONVENTIONS,
    }


def score_captioning(pred: Path, gt: Path, items: pf.Items) -> dict[str, Any]:
    from videoadapt.metrics import captioning

    predictions, refs = pf.read_captioning(pred, gt, items)
    return {
        "metrics": captioning.caption_metrics(predictions, refs),
        "counts": {"videos": len(predictions), "references": sum(len(r) for r in refs.values())},
        "conventions": captioning.CONVENTIONS,
    }


def score_grounding(pred: Path, gt: str, split: str, task: str, items: pf.Items) -> dict[str, Any]:
    """Temporal grounding: a QVHighlights-style jsonl, scored by the task's own evaluation. Spatio-temporal
    grounding: our STVG json against an STVG ground-truth json or a data set (the reference conventions of
    docs/scoring.md)."""
    if task == "temporal_grounding":
        from videoadapt.tasks import build_task

        predictions, subset = pf.read_moment_files(pred, gt, split, items)
        metrics = build_task(task).evaluate(predictions, subset)
        count = len(predictions)
    else:
        from videoadapt.metrics import st_grounding

        preds, gts = pf.read_stvg_files(pred, gt, split, items)
        result = st_grounding.st_grounding_metrics(preds, gts)
        metrics = {k: float(v) for k, v in result.items() if not k.startswith("gt_")}  # the task's own figures
        count = len(preds)
    return {"metrics": metrics, "counts": {"queries": count}, "split": split}


def score_tracking(pred: Path, gt: str, split: str, items: pf.Items) -> dict[str, Any]:
    """Tracking: a TAO result json against a TAO json (a path) or a data spec (tao:, mot:, synth:DIR) and
    ``split``; TETA, HOTA, MOTA, IDF1 with base and novel categories apart (metrics/tracking.py)."""
    from videoadapt.data.formats import load_task_data
    from videoadapt.metrics import tracking, tracking_files

    spec = f"tao:{gt}" if Path(gt).is_file() else gt
    data = load_task_data(spec, split, "tracking", skip_bad=items.skip_bad)
    predictions = tracking_files.read_tracking_predictions(pred, data, items)
    novel = list(data.extra.get("novel_categories") or [])  # type: ignore[call-overload]
    metrics = tracking.tracking_metrics(tracking_files.tracking_items(data), predictions, data.classes or [], novel)
    counts = {
        "videos": len(data.items),
        "videos_with_boxes": len(predictions),
        "boxes": sum(len(b) for b in predictions.values()),
        "categories": len(data.classes or []),
        "novel_categories": len(novel),
    }
    return {"metrics": metrics, "counts": counts, "split": split, "conventions": tracking.CONVENTIONS}


def score_segmentation(pred: Path, gt: Path, split: str, items: pf.Items) -> dict[str, Any]:
    """Video instance segmentation: a YouTube-VIS result json against a YouTube-VIS / LV-VIS json (YouTube-VIS
    AP/AR; LV-VIS base/novel AP when the ground truth marks novel categories)."""
    from videoadapt.metrics import segmentation_files as sf
    from videoadapt.metrics import video_segmentation as vs

    truth = sf.read_vis_ground_truth(gt, split)
    classes = list(truth.classes or [])
    ids = {v: k for k, v in truth.extra["category_ids"].items()}  # type: ignore[union-attr]
    preds = sf.read_vis_results(pred, truth.items, ids, truth.extra["video_ids"], items)  # type: ignore[arg-type]
    novel = truth.extra.get("novel_categories") or []
    metrics = vs.vis_metrics(truth.items, preds, classes, novel)  # type: ignore[arg-type]
    return {
        "metrics": metrics,
        "counts": {
            "videos": len(truth.items),
            "objects": sum(len(i.tracks) for i in truth.items),  # type: ignore[union-attr]
            "predictions": sum(len(v) for v in preds.values()),
            "categories": len(classes),
            "novel_categories": len(novel),  # type: ignore[arg-type]
        },
        "conventions": vs.CONVENTIONS,
    }


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
    items = pf.Items(skip_bad)
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
    elif task == "tracking":
        result = score_tracking(pred, gt_text, split, items)
    elif task == "segmentation":
        result = score_segmentation(pred, gt, split, items)
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
        "synth:DIR, ...) or a QVHighlights-style jsonl; tracking: a TAO json or a data spec (tao:, mot:, synth:DIR); "
        "segmentation: a YouTube-VIS / LV-VIS json",
    )
    parser.add_argument(
        "--split",
        default="test",
        help="grounding, tracking, segmentation: the split of the --gt data set to score against (default test)",
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
        help=f"score predictions from files ({task_names_text('and')})",
        add_arguments=add_arguments,
        run=run,
        description="Score the predictions of any model, read from --pred, against --gt, with the metric "
        "conventions of the reference implementations (MMAction2, CLIP4Clip, VQA, pycocoevalcap, 2D-TAN and "
        "Moment-DETR's standalone evaluator, TubeDETR, SysCV's TETA and TrackEval, YouTube-VIS's ytvoseval). File "
        "formats: docs/scoring.md. Ids that do not match between the files are an error (exit status 2) naming the "
        "first of them, unless --skip-bad drops them and reports the count.",
    )
)
