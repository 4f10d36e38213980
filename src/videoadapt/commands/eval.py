"""`videoadapt eval`: score a trained run folder on a split of its data."""

from __future__ import annotations

import argparse
import json
from typing import Any

from videoadapt.commands import Command
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder written by `videoadapt train`")
    parser.add_argument("--split", default="test", help="split of the run's data (default test)")
    parser.add_argument("--batch-size", type=int, help="clips per batch (default: the run's)")
    parser.add_argument(
        "--save-predictions",
        metavar="DIR",
        help="also write the predictions and the ground truth there in `videoadapt score`'s formats (every task; "
        "docs/scoring.md), so the two commands chain",
    )
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one of the run's data.options for this evaluation (repeatable), e.g. videos=3000: SynthWorld's "
        "splits of the same world, larger (video i of a split does not depend on it; the training videos stay out "
        "of test); results go to RUN/eval-SPLIT+KEY=VALUE.json",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def parse_data_options(pairs: list[str]) -> dict[str, Any]:
    """``["videos=3000"]`` -> ``{"videos": 3000}``: values typed as `videoadapt train --data-option` types them."""
    from omegaconf import OmegaConf

    from videoadapt.model.config import data_option_overrides, override_layers

    if not pairs:
        return {}
    merged = OmegaConf.merge(*override_layers(data_option_overrides(pairs)))
    return dict(OmegaConf.to_container(merged)["data"]["options"])


def run(args: argparse.Namespace) -> int:
    from videoadapt.inference.evaluate import evaluate_run

    result = evaluate_run(
        args.run,
        args.split,
        batch_size=args.batch_size,
        progress=not args.json,
        save_predictions=args.save_predictions,
        data_options=parse_data_options(args.data_option),
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['task']} on {result['split']} ({result['items']} items) — {args.run}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.2f}")
    Console().print(table)
    for name, path in result.get("predictions", {}).items():
        print(f"wrote {path} ({name})")
    left_out = {k: v for k, v in result.get("skipped", {}).items() if v}
    if left_out:
        print("not scored (skip_bad): " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in left_out.items()))
    return 0


registry.register("command", "eval")(
    Command(
        help="evaluate a trained run on a split (metrics of its task)",
        add_arguments=add_arguments,
        run=run,
        description="Rebuild the model of run folder RUN (config.yaml, vocabulary.json, model.safetensors), "
        "predict every item of SPLIT and print the task's metrics; also written to RUN/eval-SPLIT.json.",
    )
)
