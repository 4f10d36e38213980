"""`videoadapt predict`: a trained run's answers on new videos (files or folders of them)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from videoadapt.commands import Command
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO|DIR", help="video files, or folders of them")
    parser.add_argument("--run", required=True, help="run folder written by `videoadapt train`")
    parser.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="TEXT",
        help="retrieval: a text to rank against each video (repeat for several; with several videos, the videos "
        "are ranked for each text too); grounding: a sentence to locate",
    )
    parser.add_argument("--question", help="QA: the question to answer")
    parser.add_argument(
        "--choice", action="append", default=[], metavar="TEXT", help="multiple-choice QA: a candidate answer (repeat)"
    )
    parser.add_argument(
        "--prompt",
        help="a run on a video MLLM (head mllm, any task): ask it anything about the video, e.g. 'What happens?'",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="with --prompt: the answer's length bound (the run's)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="recognition: classes shown, grounding: moments (5)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is available")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 avoids the slow-down of threads waiting for each other "
        "on a machine whose cores other jobs hold)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from videoadapt.errors import VideoadaptError
    from videoadapt.inference.predictor import Predictor, video_files

    if args.top_k < 1:
        raise VideoadaptError(f"--top-k must be at least 1, got {args.top_k}")
    if args.threads is not None:
        if args.threads < 1:
            raise VideoadaptError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    videos = video_files(args.videos)  # every path checked before the model loads
    predictor = Predictor(args.run, device="cpu" if args.cpu else None)
    if args.prompt is not None:
        results = predictor.predict_many(videos, prompt=args.prompt, max_new_tokens=args.max_new_tokens)
    else:
        results = predictor.predict_many(
            videos, texts=args.text, question=args.question, choices=args.choice or None, top_k=args.top_k
        )
    output: dict[str, Any] = {"run": str(args.run), "task": predictor.task_name, "videos": results}
    ranking = video_ranking(results)
    if ranking:
        output["ranking"] = ranking
    failed = sum("error" in r for r in results)
    if args.json:
        print(json.dumps(output, indent=2))
    else:
        for result in results:
            print(render(result))
        for text, ranked in ranking.items():
            print(f"videos for {text!r}: " + ", ".join(f"{r['video']} ({r['similarity']:.3f})" for r in ranked))
    return 1 if failed == len(results) else 0


def video_ranking(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Text-to-video retrieval over the videos given: for each text, the videos by similarity (retrieval runs with
    several videos only)."""
    scored = [r for r in results if r.get("predictions") and "texts" in r["predictions"][0]]
    if len(scored) < 2:
        return {}
    by_text: dict[str, list[dict[str, Any]]] = {}
    for result in scored:
        for entry in result["predictions"][0]["texts"]:
            by_text.setdefault(entry["text"], []).append({"video": result["video"], "similarity": entry["similarity"]})
    return {text: sorted(rows, key=lambda r: -r["similarity"]) for text, rows in by_text.items()}


def render(result: dict[str, Any]) -> str:
    """One video's answer in a few readable lines."""
    if "error" in result:
        return f"{result['video']}: error: {result['error']}"
    lines = [f"{result['video']}  ({result['seconds']:.2f} s)"]
    if "prompt" in result:  # --prompt: a free question to a video MLLM
        cut = " [cut at the length bound]" if result["cut_at_length_bound"] else ""
        return "\n".join([*lines, f"  > {result['prompt']}", f"  {result['answer']}{cut}"])
    for prediction in result["predictions"]:
        if "top_k" in prediction:
            lines += [f"  {p['probability']:6.1%}  {p['label']}" for p in prediction["top_k"]]
        elif "texts" in prediction:
            lines += [f"  {t['similarity']:+.3f}  {t['text']}" for t in prediction["texts"]]
        elif "answer" in prediction:
            lines.append(f"  Q: {prediction['question']}\n  A: {prediction['answer']}")
        elif "caption" in prediction:
            lines.append(f"  {prediction['caption']}")
        elif "moments" in prediction:
            lines.append(f"  {prediction['query']!r}:")
            lines += [
                f"    {m['start_s']:7.2f}-{m['end_s']:7.2f} s  score {m['score']:.3f}" for m in prediction["moments"]
            ]
        elif "tracks" in prediction:  # tracking: one line per track
            if not prediction["tracks"]:
                lines.append("  no track: nothing of the named categories was detected (--json for the frames)")
            lines += [
                f"  track {t['track_id']}: {t['category']}, {t['start_s']:.2f}-{t['end_s']:.2f} s, "
                f"a box on {len(t['boxes'])} frames"
                for t in prediction["tracks"]
            ]
        elif "instances" in prediction:  # video instance segmentation: one line per instance
            if not prediction["instances"]:
                lines.append("  no instance: nothing of the named categories was segmented")
            lines += [
                f"  {i['category']} (score {i['score']:.3f}): a mask on {len(i['masks'])} frames"
                + (f", {i['start_s']:.2f}-{i['end_s']:.2f} s" if i["start_s"] is not None else "")
                for i in prediction["instances"]
            ]
        elif "boxes_xyxy" in prediction:
            frames = len(prediction["boxes_xyxy"])
            lines.append(
                f"  {prediction['query']!r}: {prediction['start_s']:.2f}-{prediction['end_s']:.2f} s, "
                f"a box on each of {frames} frames (--json for them)"
            )
    return "\n".join(lines)


registry.register("command", "predict")(
    Command(
        help="predict with a trained run on new videos (files or folders)",
        add_arguments=add_arguments,
        run=run,
        description="Load run folder RUN once and answer on each video: recognition's top classes, retrieval's "
        "ranked texts (and, with several videos, the videos ranked for each text), QA's answer, a caption, "
        "grounding's moments or boxes, tracks or instance masks of the categories named with --text. A video "
        "that cannot be read is reported and the others go on.",
    )
)
