"""`videoadapt train`: train a task head (and whatever the paradigm trains) into a run folder."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap

from videoadapt.commands import Command, task_names_text
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML with model / data / run sections (see configs/)")
    parser.add_argument("--task", help=f"{task_names_text()} (run.task)")
    parser.add_argument("--paradigm", help="paradigm composition, e.g. post_network or lora+post_network")
    parser.add_argument("--preset", help="a registered preset instead of --paradigm (videoadapt params --list)")
    parser.add_argument("--backbone", help="backbone spec: tiny, tiny-random, hf:ID, DIR, hf-config:NAME")
    parser.add_argument(
        "--data",
        help="data spec: folder:DIR (your own videos and a labels.csv, docs/datasets.md), synth (generated on the "
        "fly), synth:DIR, msrvtt:PATH, ...",
    )
    parser.add_argument("--out", required=True, help="run folder (created; must not hold a checkpoint unless --resume)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last good checkpoint (checkpoints/last, else checkpoints/previous)",
    )
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, the same as the override data.options.KEY=VALUE (e.g. videos=600, video_dir=DIR); "
        "repeatable",
    )
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad items instead of stopping")
    parser.add_argument("--json", action="store_true", help="print the run's metrics as JSON")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. run.lr=1e-3 data.frames=8 model.head.classifier=text "
        "data.options.videos=600 (the settings below); they win over --config and the task's defaults",
    )
    from videoadapt.model.config import settings_help

    # The settings table keeps its lines; the description is wrapped here instead of by argparse.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    width = max(40, min(shutil.get_terminal_size().columns - 2, 118))
    parser.description = textwrap.fill(parser.description or "", width)
    parser.epilog = settings_help(width)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from videoadapt.model.build import CONFIG
    from videoadapt.model.config import data_option_overrides, load_config
    from videoadapt.train.trainer import train

    config_path, recipe = args.config, True
    if args.resume and config_path is None and (Path(args.out) / CONFIG).is_file():
        # A resumed run keeps its own resolved config (today's task defaults must not change it).
        config_path, recipe = Path(args.out) / CONFIG, False
    data_options = data_option_overrides(args.data_option)
    flags = {
        "run.task": args.task,
        "model.paradigm": args.paradigm,
        "model.preset": args.preset,
        "model.backbone": args.backbone,
        "data.source": args.data,
        "data.skip_bad": True if args.skip_bad else None,
    }
    # --paradigm on the command line clears a preset named in the YAML file (a preset would win otherwise).
    cleared = ["model.preset=null"] if args.paradigm and not args.preset else []
    config = load_config(config_path, flags, [*cleared, *data_options, *args.overrides], recipe=recipe)
    metrics = train(config, args.out, resume=args.resume, check_test_split=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under a multi-process launch, one report is enough
    if args.json:
        print(json.dumps(metrics, indent=2, default=str))
    else:
        best = metrics["best"]["metrics"] or {}
        shown = ", ".join(f"{k} {v:.2f}" for k, v in best.items()) or "no validation metrics (data.val_split unset)"
        print(f"{args.out}: {metrics['steps']} steps, final loss {metrics['train']['final_loss']:.4f}; {shown}")
    return 0


registry.register("command", "train")(
    Command(
        help=f"train a task ({task_names_text()}) with a transfer paradigm",
        add_arguments=add_arguments,
        run=run,
        description="Train TASK on DATA with BACKBONE adapted by PARADIGM (or PRESET) into the run folder OUT: "
        "config.yaml, model.safetensors, vocabulary.json, metrics.json, log.csv and checkpoints/. Settings come "
        "from the defaults, the task's defaults (its recipe: budget, data size, head, early stopping on validation; "
        "listed below), --config, the flags and KEY=VALUE overrides, in that order: with only --task, --paradigm, "
        "--backbone and --data synth the run trains the task's recipe (figures in docs/training.md). Works under "
        "`accelerate launch -m videoadapt train ...` on several processes or GPUs.",
    )
)
