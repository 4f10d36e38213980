"""`videoadapt synth`: write a SynthWorld dataset (mp4 videos + one JSON annotation file per split)."""

from __future__ import annotations

import argparse
import json
import sys

from videoadapt.commands import Command
from videoadapt.registry import registry


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; an earlier run there is replaced)")
    parser.add_argument("--videos", type=int, required=True, help="total videos, split 80/10/10 train/val/test")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    parser.add_argument(
        "--scenes",
        choices=("events", "grounding", "tracking"),
        default="events",
        help="events: one event per video, for every task but grounding and tracking (default); grounding: two "
        "same-shape actors of different colours with an event each, for temporal and spatio-temporal grounding; "
        "tracking: objects crossing and occluding each other, for tracking and video instance segmentation",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel writer processes (default 1)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _run(args: argparse.Namespace) -> int:
    from videoadapt.data.synthworld.disk import TASK_COUNTS, write_synthworld
    from videoadapt.data.synthworld.world import SynthWorld, SynthWorldConfig, SynthWorldConfigError
    from videoadapt.utils.progress import make_progress
    from videoadapt.utils.safe_io import writable_folder

    if args.videos < 0:
        raise SynthWorldConfigError(f"--videos must be non-negative, got {args.videos}")
    writable_folder(args.out, "--out")
    if args.workers < 1:
        raise SynthWorldConfigError(f"--workers must be at least 1, got {args.workers}")
    config = SynthWorldConfig(size=args.size, frames=args.frames, fps=args.fps, seed=args.seed, scenes=args.scenes)
    total = sum(SynthWorld(config).split_sizes(args.videos).values())
    with make_progress(transient=args.json) as progress:
        task = progress.add_task("synthworld", total=total, info="")
        summary = write_synthworld(
            args.out,
            config,
            args.videos,
            workers=args.workers,
            on_video=lambda split: progress.update(task, advance=1, info=split),
        )
    summary = {"out": str(args.out), "seed": args.seed, "config": config.to_dict(), **summary}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console()
    # Tasks as rows and splits as columns: fits a narrow terminal.
    table = Table(title=f"SynthWorld → {args.out} (seed {args.seed})")
    table.add_column("count")
    for split in summary["splits"]:
        table.add_column(split, justify="right")
    for name in TASK_COUNTS:
        table.add_row(name.replace("_", " "), *(str(c[name]) for c in summary["splits"].values()))
    console.print(table)
    if args.scenes == "tracking":  # no events, so no action histogram
        return 0
    what = "events" if args.scenes == "grounding" else "videos"
    actions = Table(title=f"action classes of the {what} (time-reversal partners are drawn equally often)")
    actions.add_column("action")
    for split in summary["actions"]:
        actions.add_column(split, justify="right")
    for name in next(iter(summary["actions"].values())):
        actions.add_row(name, *(str(summary["actions"][split][name]) for split in summary["actions"]))
    console.print(actions)
    return 0


registry.register("command", "synth")(
    Command(
        help="write a SynthWorld video-text dataset",
        description=(
            "Render N procedural videos with exact ground truth for every task and write mp4 videos plus one "
            "JSON annotation file per split (see docs/synthworld.md)."
        ),
        add_arguments=_add_arguments,
        run=_run,
    )
)
