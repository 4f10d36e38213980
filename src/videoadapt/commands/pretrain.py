"""`videoadapt pretrain`: contrastive image-text pretraining of TinyCLIP on SynthWorld images, or with
``--detection`` open-vocabulary detection training of TinyOWL on SynthWorld images with boxes."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from videoadapt.commands import Command, old_spelling
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from videoadapt.foundation.tinyclip.recipe import PretrainRecipe
    from videoadapt.foundation.tinyowl.recipe import DetectionRecipe

    defaults, detection = PretrainRecipe(), DetectionRecipe()
    parser.add_argument("--out", required=True, help="output directory (weights, config, model card); resumes there")
    parser.add_argument(
        "--detection",
        action="store_true",
        help="train TinyOWL (OWL-ViT heads on TinyCLIP) to detect SynthWorld objects instead of pretraining TinyCLIP",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimiser steps (default {defaults.steps}; with --detection {detection.steps})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"images per step (default {defaults.batch}; --detection {detection.batch})",
    )
    old_spelling(parser, "--batch", "--batch-size", type=int)
    parser.add_argument(
        "--lr", type=float, default=None, help=f"peak learning rate (default {defaults.lr}; --detection {detection.lr})"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the model initialisation")
    parser.add_argument("--data-seed", type=int, default=defaults.data_seed, help="SynthWorld seed of the images")
    parser.add_argument(
        "--twin-fraction", type=float, default=defaults.twin_fraction, help="share of scenes that get a twin"
    )
    parser.add_argument(
        "--init",
        default=detection.init,
        help="--detection: TinyCLIP to start from ('tiny': the shipped one, or a checkpoint directory)",
    )
    parser.add_argument(
        "--backbone-lr-scale",
        type=float,
        default=detection.backbone_lr_scale,
        help=f"--detection: image tower learning rate as a fraction of --lr (default {detection.backbone_lr_scale})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="--detection: torch threads (default 1: on the shared 2-core build machine a step took 0.5 s on one "
        "thread and 1.6-2.5 s on two, whose threads wait for each other when other jobs hold a core)",
    )
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 instead of bf16 autocast")
    parser.add_argument(
        "--stop-after", type=int, default=None, help="checkpoint and stop after this many steps (resume later)"
    )
    parser.add_argument("--eval-images", type=int, default=500, help="zero-shot test images at the end")
    parser.add_argument("--json", action="store_true", help="print the model card as JSON")


def _given(args: argparse.Namespace, *names: str) -> dict[str, object]:
    """The options the user set (the others keep the recipe's own defaults, which differ between the two modes)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run(args: argparse.Namespace) -> int:
    from videoadapt.utils.safe_io import writable_folder

    writable_folder(args.out, "--out")
    if args.detection:
        return _run_detection(args)
    from videoadapt.foundation.tinyclip.pretrain import PretrainRecipe, pretrain

    recipe = PretrainRecipe(
        **_given(args, "steps", "lr"),
        **({"batch": args.batch_size} if args.batch_size is not None else {}),
        seed=args.seed,
        data_seed=args.data_seed,
        twin_fraction=args.twin_fraction,
        bf16=not args.no_bf16,
    )
    card = pretrain(args.out, recipe, eval_images=args.eval_images, stop_after=args.stop_after)
    if card is None:
        return 0
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        zero_shot = {k: v for k, v in card["zero_shot"].items() if isinstance(v, float)}
        print(f"wrote {args.out} after {card['steps']} steps in {card['wall_time_s'] / 60:.1f} min")
        print("zero-shot accuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in zero_shot.items()))
    return 0


def _run_detection(args: argparse.Namespace) -> int:
    import torch

    from videoadapt.errors import VideoadaptError
    from videoadapt.foundation.tinyowl.pretrain import DetectionRecipe, pretrain_detection

    if args.threads < 1:
        raise VideoadaptError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    recipe = DetectionRecipe(
        **_given(args, "steps", "lr"),
        **({"batch": args.batch_size} if args.batch_size is not None else {}),
        backbone_lr_scale=args.backbone_lr_scale,
        seed=args.seed,
        data_seed=args.data_seed,
        init=args.init,
        bf16=not args.no_bf16,
    )
    command = "videoadapt " + shlex.join(sys.argv[1:]) if len(sys.argv) > 1 else None
    card = pretrain_detection(
        args.out, recipe, eval_images=args.eval_images, stop_after=args.stop_after, command=command
    )
    if card is None:
        return 0
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    print(f"wrote {args.out} after {card['steps']} steps in {card['wall_time_s'] / 60:.1f} min")
    result = card.get("zero_shot_detection")
    if result is not None:
        for group in ("seen", "held_out"):
            print(f"{group}: AP {result[group]['AP']:.1f}  AP50 {result[group]['AP50']:.1f}")
    return 0


registry.register("command", "pretrain")(
    Command(
        help="pretrain TinyCLIP contrastively on SynthWorld images, or TinyOWL for detection (--detection); resumable",
        add_arguments=add_arguments,
        run=run,
    )
)
