"""`videoadapt bench`: the paradigm x task matrix under one budget, with baselines, costs, intervals, tables and
plots; `--sweep lr` chooses each arm's learning rates on validation; `--compare A B` measures whether two benches
rank the arms alike (Kendall's tau)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from videoadapt.commands import Command
from videoadapt.errors import VideoadaptError
from videoadapt.registry import registry

PRESET_NAMES = ("micro", "quick", "standard", "grounding", "tracking", "full")
PRECISIONS = {"auto": "auto", "bf16": "bf16", "fp32": "no"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="budget and tables (default quick)")
    parser.add_argument("--out", help="bench folder (rerun the same command to continue it)")
    parser.add_argument(
        "--backbone",
        help="backbone spec for every cell (default: the preset's: the shipped TinyCLIP, TinyOWL for grounding)",
    )
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the preset's)")
    parser.add_argument(
        "--seed", type=int, default=0, help="first seed (default 0); on SynthWorld each seed is also the data seed"
    )
    parser.add_argument(
        "--mllm",
        metavar="SPEC",
        help="also run the video-MLLM rows of the captioning and QA tables on this backbone (mllm, hf-mllm:ID): "
        "each paradigm on the MLLM and its zero-shot row",
    )
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
    parser.add_argument(
        "--learning-rates",
        metavar="FILE",
        help="each arm's learning rates (a file `--sweep lr` wrote; default: the one shipped for the preset, else "
        "the published defaults)",
    )
    parser.add_argument(
        "--lr", type=float, help="one head learning rate for every arm instead of per-arm rates (not the recipe)"
    )
    parser.add_argument("--backbone-lr", type=float, help="with --lr: one backbone learning rate for every arm")
    parser.add_argument(
        "--sweep",
        choices=("lr",),
        help="choose each arm's learning rates on the validation split instead of running the bench; writes "
        "OUT/learning_rates.json for --learning-rates",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="ARM=LR,LR,...",
        help="with --sweep: the values an arm tries (head: the shared head's rates), e.g. adapter=1e-4,1e-3",
    )
    parser.add_argument("--validate", action="store_true", help="keep the best validation weights, not the last")
    parser.add_argument("--no-baselines", action="store_true", help="no zero-shot and random-init rows")
    parser.add_argument(
        "--in-process", action="store_true", help="run cells in this process (faster start; peak memory less exact)"
    )
    parser.add_argument("--cpu", action="store_true", help="train on CPU even where a GPU is present")
    parser.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        help="auto (default: bf16 autocast where the hardware runs bf16 natively), bf16 or fp32",
    )
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad items instead of stopping")
    parser.add_argument("--train-split", default="train", help="split every cell trains on (default train)")
    parser.add_argument(
        "--val-split",
        default="val",
        help="split for learning curves, --validate and --sweep (default val; a benchmark whose val is its test "
        "split: holdout, a part of the training split set aside, with --train-split fit)",
    )
    parser.add_argument(
        "--test-split",
        action="append",
        default=[],
        metavar="[TABLE=]SPLIT",
        help="split the cells are scored on (default test), for every table or per table or task: "
        "recognition=val (Kinetics-400 reports val), retrieval=test (MSR-VTT 1k-A); repeatable",
    )
    parser.add_argument(
        "--launcher",
        metavar="CMD",
        help="run each cell through this launcher, e.g. 'accelerate launch --multi_gpu --num_processes 8'",
    )
    parser.add_argument("--max-cells", type=int, help="run at most this many unfinished cells, then report")
    parser.add_argument("--list", action="store_true", help="print the matrix (tables, arms, cells) and exit")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("BENCH_A", "BENCH_B"),
        help="rank agreement of two finished benches of the same preset (Kendall's tau of each table's arms on "
        "its primary metric); runs nothing",
    )
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


def parse_test_splits(values: list[str]) -> dict[str, str]:
    """``--test-split`` flags -> {table or task: split}, the key "" for every other table (default test)."""
    out = {"": "test"}
    for value in values:
        name, sep, split = value.partition("=")
        name, split = (name.strip(), split.strip()) if sep else ("", name.strip())
        if not split or (sep and not name):
            raise VideoadaptError(f"--test-split {value!r}: expected SPLIT or TABLE=SPLIT, e.g. recognition=val")
        out[name] = split
    return out


def parse_grids(values: list[str]) -> dict[str, tuple[float, ...]]:
    from videoadapt.bench.learning_rates import parse_grid

    out = {}
    for value in values:
        arm, sep, grid = value.partition("=")
        if not sep or not arm.strip():
            raise VideoadaptError(f"--grid {value!r}: expected ARM=LR,LR,..., e.g. adapter=1e-4,3e-4,1e-3")
        out[arm.strip()] = parse_grid(grid, f"--grid {arm.strip()}")
    return out


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


def _rates(args: argparse.Namespace, preset: Any, tables: list[str] | None, paradigms: list[str] | None) -> Any:
    from videoadapt.bench.learning_rates import LearningRates, check_rate
    from videoadapt.bench.matrix import bench_arms, select_tables

    if args.backbone_lr is not None and args.lr is None:
        raise VideoadaptError("--backbone-lr goes with --lr (one rate for every arm); per-arm rates come from a file")
    if args.lr is not None:
        if args.learning_rates:
            raise VideoadaptError("give --lr (one rate for every arm) or --learning-rates FILE, not both")
        backbone = None if args.backbone_lr is None else check_rate(args.backbone_lr, "--backbone-lr")
        return LearningRates.fixed(check_rate(args.lr, "--lr"), backbone)
    names = [t.name for t in select_tables(preset, tables)]
    arms = bench_arms(paradigms, preset.budget.video_head)
    if args.learning_rates:
        return LearningRates.load(args.learning_rates, names, arms)
    shipped = LearningRates.shipped(preset.name)
    if shipped is not None:
        # Only the shipped tables and arms apply; others keep the defaults (a table added with --tables).
        return shipped
    return LearningRates.defaults()


def _command_line() -> str:
    """This command as typed (what continues an interrupted bench), when the process was started as one."""
    words = sys.argv[1:]
    if words[:1] != ["bench"]:
        return "the same `videoadapt bench` command"  # called from Python (tests, notebooks)
    return "videoadapt " + " ".join(shlex.quote(a) for a in words)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return compare(args)
    if not args.out:
        raise VideoadaptError("--out DIR is required (the bench folder)")
    from videoadapt.bench.matrix import BENCH_PRESETS, build_matrix, with_budget

    if args.grid and not args.sweep:
        raise VideoadaptError("--grid goes with --sweep lr")
    preset = with_budget(
        BENCH_PRESETS[args.preset],
        steps=args.steps,
        batch_size=args.batch_size,
        frames=args.frames,
        videos=args.videos,
        validate=True if args.validate else None,
    )
    args.backbone = args.backbone or preset.backbone
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--frames", args.frames)):
        if value is not None and value < 1:
            raise VideoadaptError(f"{flag} must be >= 1, got {value}")
    paradigms, tables = _names(args.paradigms), _names(args.tables)
    precision = PRECISIONS[args.precision] if args.precision else None
    splits = (args.train_split, args.val_split, parse_test_splits(args.test_split))
    launcher = shlex.split(args.launcher) if args.launcher else None
    if args.sweep:
        return sweep(args, preset, paradigms, tables, precision, splits, launcher)
    rates = _rates(args, preset, tables, paradigms)
    if args.list:
        every, cells = build_matrix(
            preset, args.backbone, args.seeds, paradigms, tables, not args.no_baselines, rates, args.seed, args.mllm
        )
        listing = {
            "preset": preset.name,
            "budget": preset.budget.describe(),
            "learning_rates": rates.describe(),
            "tables": [t.name for t in every],
            "cells": [c.key for c in cells],
            "rates": {c.key: {"lr": c.lr, "backbone_lr": c.backbone_lr} for c in cells},
        }
        print(json.dumps(listing, indent=2) if args.json else "\n".join(listing["cells"]))
        return 0
    from videoadapt.bench.runner import run_bench
    from videoadapt.utils.safe_io import writable_folder

    writable_folder(args.out, "--out")
    summary = run_bench(
        args.out,
        preset,
        command=_command_line(),
        mllm=args.mllm,
        backbone=args.backbone,
        seeds=args.seeds,
        first_seed=args.seed,
        paradigms=paradigms,
        tables=tables,
        data=parse_data(args.data),
        data_options=parse_data_options(args.data_option),
        rates=rates,
        baselines=not args.no_baselines,
        isolate=not args.in_process,
        device="cpu" if args.cpu else None,
        precision=precision,
        skip_bad=args.skip_bad,
        max_cells=args.max_cells,
        splits=splits,
        launcher=launcher,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    for name, table in summary["tables"].items():
        standing = table["standing"]
        if standing and standing.get("ranking"):
            ranking = standing["ranking"]
            tied = [t["arm"] for t in ranking["tied"]]
            verdict = f"tied: {', '.join([ranking['best'], *tied])}" if tied else f"{ranking['best']} leads"
            print(f"{name}: {verdict} on {standing['metric']}")
    state = "complete" if summary["complete"] else "incomplete (rerun the same command to continue)"
    print(
        f"bench {state}: {len(summary['ran'])} cells run now, {len(summary['reused'])} reused, "
        f"{summary['seconds'] / 60:.1f} min",
        file=sys.stderr,
    )
    print(f"report: {summary['report']}")
    return 0


def sweep(
    args: argparse.Namespace,
    preset: Any,
    paradigms: list[str] | None,
    tables: list[str] | None,
    precision: str | None,
    splits: tuple[str, str, str],
    launcher: list[str] | None,
) -> int:
    from videoadapt.bench.sweep import run_sweep
    from videoadapt.utils.safe_io import writable_folder

    if args.lr is not None or args.learning_rates or args.list:
        raise VideoadaptError("--sweep lr chooses the rates: it takes no --lr, --learning-rates or --list")
    writable_folder(args.out, "--out")
    command = _command_line()
    result = run_sweep(
        args.out,
        preset,
        command=command,
        backbone=args.backbone,
        paradigms=paradigms,
        tables=tables,
        data=parse_data(args.data),
        data_options=parse_data_options(args.data_option),
        grids=parse_grids(args.grid),
        isolate=not args.in_process,
        device="cpu" if args.cpu else None,
        precision=precision,
        skip_bad=args.skip_bad,
        splits=splits,
        launcher=launcher,
        progress=not args.json,
        max_cells=args.max_cells,
    )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for table, arms in result["chosen"].items():
        for arm, chosen in arms.items():
            print(f"{table}/{arm}: " + ", ".join(f"{k} {v:g}" for k, v in chosen.items()))
    state = "complete" if result["complete"] else "incomplete (rerun the same command to continue)"
    print(f"sweep {state}: {len(result['ran'])} cells run now, {result['seconds'] / 60:.1f} min", file=sys.stderr)
    print(f"learning rates: {result['rates']} (use with --learning-rates)")
    print(f"report: {result['report']}")
    return 0


def compare(args: argparse.Namespace) -> int:
    from videoadapt.bench.statistics import kendall_tau

    summaries = []
    for folder in args.compare:
        path = Path(folder) / "summary.json"
        try:
            summaries.append(json.loads(path.read_text()))
        except FileNotFoundError:
            raise VideoadaptError(f"{path}: not found: {folder} is not a finished bench folder") from None
        except (OSError, json.JSONDecodeError) as error:
            raise VideoadaptError(f"{path}: cannot read the bench summary: {error}") from None
    first, second = summaries
    for key in ("preset", "backbone"):
        if first["settings"].get(key) != second["settings"].get(key):
            raise VideoadaptError(
                f"{args.compare[1]} is a bench of another {key} ({second['settings'].get(key)!r}, not "
                f"{first['settings'].get(key)!r} as {args.compare[0]}): only benches of the same preset and backbone "
                "rank the same arms under the same budget"
            )
    if first["settings"].get("budget") != second["settings"].get("budget"):
        raise VideoadaptError(
            f"{args.compare[1]} ran another budget than {args.compare[0]}: their rankings do not compare"
        )
    tables = _names(args.tables) or [t for t in first["tables"] if t in second["tables"]]
    out: dict[str, Any] = {"benches": list(args.compare), "tables": {}}
    for table in tables:
        if table not in first["tables"] or table not in second["tables"]:
            raise VideoadaptError(f"table {table!r} is not in both benches")
        ranks = [_primary(s["tables"][table]) for s in summaries]
        tau, arms = kendall_tau(*ranks)
        out["tables"][table] = {"kendall_tau": tau, "arms": arms, "values": ranks}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for table, entry in out["tables"].items():
        print(f"{table}: Kendall tau {entry['kendall_tau']:.3f} over {entry['arms']} arms")
    return 0


def _primary(table: dict[str, Any]) -> dict[str, float]:
    """Each paradigm arm's primary metric (baselines left out: they are not ranked)."""
    from videoadapt.bench.matrix import BASELINES

    key = table["primary_metric"]
    out = {}
    for row in table["rows"]:
        stats = row["metrics"].get(key)
        if row["status"] == "ok" and stats and row["arm"] not in BASELINES:
            out[row["arm"]] = float(stats[0])
    return out


registry.register("command", "bench")(
    Command(
        help="the paradigm x task matrix on one backbone and budget: intervals, ties, costs, curves, plots",
        add_arguments=add_arguments,
        run=run,
        description="Train every registered paradigm on every task table of the preset under one budget (same "
        "steps, data, frames, seeds and heads), plus the zero-shot ILFM and a random-init baseline per table, each "
        "arm at its own learning rates (chosen on the validation split by --sweep lr); score each on the test split. "
        "Writes OUT/report.md (one table per task in the survey's columns with 95 % confidence intervals from a "
        "paired bootstrap over test items, learning rates and cost columns on every row, who leads or who is tied, "
        "what each row changes), OUT/results.csv, OUT/plots/*.png (costs and learning curves) and "
        "OUT/summary.json. Each cell keeps its run folder, per-item statistics and predictions under OUT/cells/; "
        "rerunning the same command continues at the first unfinished cell. --compare A B gives Kendall's tau "
        "between two benches' rankings.",
    )
)
