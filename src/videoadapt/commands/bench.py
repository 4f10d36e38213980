"""`videoadapt bench`: the paradigm x task matrix under one budget, with baselines, costs, tables and plots."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from videoadapt.commands import Command
from videoadapt.errors import VideoadaptError
from videoadapt.registry import registry

PRESET_NAMES = ("micro", "quick", "full")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="budget and tables (default quick)")
    parser.add_argument("--out", required=True, help="bench folder (rerun the same command to continue it)")
    parser.add_argument("--backbone", default="tiny", help="backbone spec for every cell (default: shipped TinyCLIP)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the preset's)")
    parser.add_argument("--paradigms", help="comma-separated paradigms (default: every registered one)")
    parser.add_argument("--tables", help="comma-separated task tables, e.g. recognition,qa-mc (default: preset's)")
    parser.add_argument(
        "--data",
        action="append",
        metavar="[TABLE=]SPEC",
        help="synth (default: SynthWorld generated on the fly) or, per table or task, a benchmark: "
        "retrieval=msrvtt:PATH, recognition=kinetics:PATH (repeat the flag); tables without data are not run",
    )
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="reader option for a table or task, e.g. retrieval.video_dir=/data/MSRVTT/videos (repeatable)",
    )
    parser.add_argument("--steps", type=int, help="optimizer steps per cell (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="clips per step (default: the preset's)")
    parser.add_argument("--frames", type=int, help="frames per clip (default: the preset's)")
    parser.add_argument("--videos", type=int, help="SynthWorld videos generated (default: the preset's)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default: the preset's)")
    parser.add_argument("--validate", action="store_true", help="validate at the end and keep the best weights")
    parser.add_argument("--no-baselines", action="store_true", help="no zero-shot and random-init rows")
    parser.add_argument(
        "--in-process", action="store_true", help="run cells in this process (faster start; peak memory less exact)"
    )
    parser.add_argument("--cpu", action="store_true", help="train on CPU even where a GPU is present")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in every cell")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad items instead of stopping")
    parser.add_argument(
        "--test-split", default="test", help="split every cell is scored on (default test; Kinetics-400: val)"
    )
    parser.add_argument(
        "--launcher",
        metavar="CMD",
        help="run each cell through this launcher, e.g. 'accelerate launch --multi_gpu --num_processes 8'",
    )
    parser.add_argument("--max-cells", type=int, help="run at most this many unfinished cells, then report")
    parser.add_argument("--list", action="store_true", help="print the matrix (tables, arms, cells) and exit")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def parse_data(values: list[str] | None) -> dict[str, str] | None:
    """``--data`` flags -> {table or task: spec}; None for SynthWorld everywhere."""
    if not values:
        return None
    out: dict[str, str] = {}
    for value in values:
        if value.strip().lower() == "synth":
            continue
        name, sep, spec = value.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise VideoadaptError(f"--data {value!r}: expected synth or TABLE=SPEC, e.g. retrieval=msrvtt:/data/MSRVTT")
        out[name.strip()] = spec.strip()
    return out or None


def parse_data_options(values: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for value in values:
        dotted, sep, item = value.partition("=")
        table, dot, key = dotted.partition(".")
        if not sep or not dot or not table or not key:
            raise VideoadaptError(f"--data-option {value!r}: expected TABLE.KEY=VALUE, e.g. retrieval.video_dir=DIR")
        out.setdefault(table.strip(), {})[key.strip()] = item
    return out


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


def run(args: argparse.Namespace) -> int:
    from videoadapt.bench.matrix import PRESETS, build_matrix, with_budget
    from videoadapt.bench.runner import run_bench

    preset = with_budget(
        PRESETS[args.preset],
        steps=args.steps,
        batch_size=args.batch_size,
        frames=args.frames,
        videos=args.videos,
        lr=args.lr,
        validate=True if args.validate else None,
    )
    paradigms, tables = _names(args.paradigms), _names(args.tables)
    if args.list:
        every, cells = build_matrix(preset, args.backbone, args.seeds, paradigms, tables, not args.no_baselines)
        listing = {
            "preset": preset.name,
            "budget": preset.budget.describe(),
            "tables": [t.name for t in every],
            "cells": [c.key for c in cells],
        }
        print(json.dumps(listing, indent=2) if args.json else "\n".join(listing["cells"]))
        return 0
    summary = run_bench(
        args.out,
        preset,
        backbone=args.backbone,
        seeds=args.seeds,
        paradigms=paradigms,
        tables=tables,
        data=parse_data(args.data),
        data_options=parse_data_options(args.data_option),
        baselines=not args.no_baselines,
        isolate=not args.in_process,
        device="cpu" if args.cpu else None,
        precision="bf16" if args.bf16 else "no",
        skip_bad=args.skip_bad,
        max_cells=args.max_cells,
        test_split=args.test_split,
        launcher=shlex.split(args.launcher) if args.launcher else None,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    for name, table in summary["tables"].items():
        lead = table["leader"]
        if lead:
            mean = lead["stats"][0]
            print(f"{name}: {lead['arm']} leads on {lead['metric']} ({mean:.1f})")
    state = "complete" if summary["complete"] else "incomplete (rerun the same command to continue)"
    print(
        f"bench {state}: {len(summary['ran'])} cells run now, {len(summary['reused'])} reused, "
        f"{summary['seconds'] / 60:.1f} min",
        file=sys.stderr,
    )
    print(f"report: {summary['report']}")
    return 0


registry.register("command", "bench")(
    Command(
        help="the paradigm x task matrix on one backbone and budget: survey-style tables, costs, plots",
        add_arguments=add_arguments,
        run=run,
        description="Train every registered paradigm (with the bench's options) on every task table of the preset, "
        "under one budget (same steps, data, frames and seeds), plus the zero-shot ILFM and a random-init baseline "
        "per table; score each on the test split. Writes OUT/report.md (one table per task in the survey's columns, "
        "cost columns on every row, mean ± std over seeds, a summary of which paradigm leads), OUT/results.csv (one "
        "row per cell and seed), OUT/plots/*.png and OUT/summary.json. Each cell keeps its run folder under "
        "OUT/cells/; rerunning the same command continues at the first unfinished cell.",
    )
)
