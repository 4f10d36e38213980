"""`videoadapt zeroshot`: zero-shot classification of held-out SynthWorld images by attribute, or with
``--detection`` zero-shot open-vocabulary detection (COCO AP/AP50, seen and held-out categories apart)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from videoadapt.commands import Command
from videoadapt.registry import registry

if TYPE_CHECKING:
    from rich.table import Table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="tiny", help="backbone spec (default: the shipped TinyCLIP)")
    parser.add_argument("--images", type=int, default=500, help="one-object test images (default 500)")
    parser.add_argument("--seed", type=int, default=1234, help="SynthWorld seed of the test images")
    parser.add_argument(
        "--detection",
        action="store_true",
        help="open-vocabulary detection AP on test-split images (a grounding backbone, e.g. tiny-owl)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.detection:
        return _run_detection(args)
    from videoadapt.foundation import load_backbone
    from videoadapt.foundation.zeroshot import TARGETS, evaluate, meets_targets

    result = evaluate(load_backbone(args.backbone), images=args.images, seed=args.seed)
    table = _report(args, result, TARGETS, meets_targets, f"zero-shot on {args.images} held-out SynthWorld images")
    if table is None:
        return 0
    for column in ("view", "accuracy", "target", "met"):
        table.add_column(column)
    for name, value in result.items():
        if isinstance(value, float):
            target = TARGETS.get(name)
            met = result["targets_met"].get(name)
            table.add_row(
                name, f"{value:.1%}", "" if target is None else f"{target:.0%}", "" if met is None else str(met)
            )
    _print(table)
    return 0


def _run_detection(args: argparse.Namespace) -> int:
    from videoadapt.errors import VideoadaptError
    from videoadapt.foundation import GroundingModel, load_backbone
    from videoadapt.foundation.zeroshot_detection import TARGETS, evaluate_detection, meets_targets

    model = load_backbone(args.backbone)
    if not isinstance(model, GroundingModel):
        raise VideoadaptError(
            f"--detection needs a grounding backbone (tiny-owl, hf-grounding:ID); {args.backbone!r} is not one"
        )
    result = evaluate_detection(model, images=args.images, seed=args.seed)
    title = f"zero-shot detection on {args.images} test-split SynthWorld images"
    table = _report(args, result, TARGETS, meets_targets, title)
    if table is None:
        return 0
    for column in ("categories", "AP", "AP50"):
        table.add_column(column)
    for group in ("seen", "held_out"):
        table.add_row(group, f"{result[group]['AP']:.1f}", f"{result[group]['AP50']:.1f}")
    _print(table)
    return 0


def _report(
    args: argparse.Namespace,
    result: dict[str, Any],
    targets: dict[str, float],
    meets_targets: Callable[[dict[str, Any]], dict[str, bool]],
    title: str,
) -> Table | None:
    """Adds the backbone and the targets to ``result``; prints it as JSON (None) with ``--json``, else returns the
    empty table titled ``title (backbone)`` for the caller's rows. Both evaluations report the same way."""
    result["backbone"] = args.backbone
    result["targets"] = targets
    result["targets_met"] = meets_targets(result)
    if args.json:
        print(json.dumps(result, indent=2))
        return None
    from rich.table import Table

    return Table(title=f"{title} ({args.backbone})")


def _print(table: Table) -> None:
    from rich.console import Console

    Console().print(table)


registry.register("command", "zeroshot")(
    Command(
        help="zero-shot attribute classification (shape, colour, size, position) on held-out SynthWorld images, "
        "or open-vocabulary detection AP (--detection)",
        add_arguments=add_arguments,
        run=run,
    )
)
