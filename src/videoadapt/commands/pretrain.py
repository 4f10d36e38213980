"""`videoadapt pretrain`: contrastive image-text pretraining of TinyCLIP on SynthWorld images."""

from __future__ import annotations

import argparse
import json

from videoadapt.commands import Command
from videoadapt.registry import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from videoadapt.foundation.tinyclip.pretrain import PretrainRecipe

    defaults = PretrainRecipe()
    parser.add_argument("--out", required=True, help="output directory (weights, config, model card); resumes there")
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"optimiser steps (default {defaults.steps})")
    parser.add_argument("--batch", type=int, default=defaults.batch, help=f"images per step (default {defaults.batch})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"peak learning rate (default {defaults.lr})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the model initialisation")
    parser.add_argument("--data-seed", type=int, default=defaults.data_seed, help="SynthWorld seed of the images")
    parser.add_argument(
        "--twin-fraction", type=float, default=defaults.twin_fraction, help="share of scenes that get a twin"
    )
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 instead of bf16 autocast")
    parser.add_argument(
        "--stop-after", type=int, default=None, help="checkpoint and stop after this many steps (resume later)"
    )
    parser.add_argument("--eval-images", type=int, default=500, help="zero-shot test images at the end")
    parser.add_argument("--json", action="store_true", help="print the model card as JSON")


def run(args: argparse.Namespace) -> int:
    from videoadapt.foundation.tinyclip.pretrain import PretrainRecipe, pretrain

    recipe = PretrainRecipe(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
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


registry.register("command", "pretrain")(
    Command(
        help="pretrain TinyCLIP contrastively on SynthWorld images (resumable)",
        add_arguments=add_arguments,
        run=run,
    )
)
