"""Detection training of TinyOWL on SynthWorld images with boxes (`videoadapt pretrain --detection`).

Start: the shipped TinyCLIP (or ``--init DIR``) plus fresh OWL-ViT heads. Trained: the image tower (at
``backbone_lr_scale`` of the heads' learning rate, so that TinyCLIP's joint space is adapted, not overwritten) and
the heads; TinyCLIP's text side stays frozen, so the query embeddings are computed once.

Queries: for every *seen* category its phrase ("a star") and its colour+category phrases ("a red star"), the same
fixed set for every image (OWL-ViT uses the batch's queries; a fixed set of 72 also gives every image the other
categories as negatives). An object is positive for the two queries it satisfies.

Held-out categories stay unseen: their names are never queries, and every image that shows a held-out object is
dropped (kept, its objects would be unlabelled regions trained as background, teaching the per-region logit shift
to suppress exactly the objects zero-shot detection must find). About 58% of SynthWorld images qualify.

Batches are a pure function of (data seed, step): step ``s`` reads train images ``s*2B .. s*2B+2B-1`` and keeps the
first ``B`` without held-out objects, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoadapt.data.synthworld import COLOUR_NAMES, SHAPES, SynthImage, SynthWorld, SynthWorldConfig
from videoadapt.data.transforms import preprocess
from videoadapt.foundation.pretraining import checkpoint_or_pause, learning_rate, loss_summary, resume
from videoadapt.foundation.tinyowl import checkpoint as owl_checkpoint
from videoadapt.foundation.tinyowl.losses import LossWeights, Targets, set_loss
from videoadapt.foundation.tinyowl.model import TinyOWL, TinyOWLConfig, owl_logits
from videoadapt.foundation.tinyowl.recipe import DetectionRecipe


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def training_queries(held_out: tuple[str, ...]) -> tuple[list[str], dict[tuple[str, str | None], int]]:
    """The fixed training query set and its index: ``(shape, None)`` → "a star", ``(shape, colour)`` → "a red
    star". Held-out shapes are absent."""
    queries: list[str] = []
    index: dict[tuple[str, str | None], int] = {}
    for shape in SHAPES:
        if shape in held_out:
            continue
        index[(shape, None)] = len(queries)
        queries.append(f"{_article(shape)} {shape}")
        for colour in COLOUR_NAMES:
            index[(shape, colour)] = len(queries)
            queries.append(f"{_article(colour)} {colour} {shape}")
    return queries, index


def training_world(recipe: DetectionRecipe, image_size: int) -> SynthWorld:
    return SynthWorld(SynthWorldConfig(size=image_size, seed=recipe.data_seed, max_objects=recipe.max_objects))


def make_batch(world: SynthWorld, recipe: DetectionRecipe, step: int) -> list[SynthImage]:
    """Up to ``batch`` train images of step ``step`` without held-out objects (see the module docstring)."""
    kept: list[SynthImage] = []
    for index in range(step * 2 * recipe.batch, (step + 1) * 2 * recipe.batch):
        image = world.image(index, split="train")
        if not image.novel:
            kept.append(image)
            if len(kept) == recipe.batch:
                break
    return kept


def targets_of(image: SynthImage, index: dict[tuple[str, str | None], int], queries: int) -> Targets:
    size = image.image.shape[0]
    boxes, positives = [], []
    for obj in image.objects:
        if np.isnan(obj.box).any():
            continue  # fully hidden: nothing to detect
        x1, y1, x2, y2 = (float(v) / size for v in obj.box)
        boxes.append([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        row = torch.zeros(queries, dtype=torch.bool)
        row[index[(obj.shape, None)]] = True
        row[index[(obj.shape, obj.colour)]] = True
        positives.append(row)
    if not boxes:
        return Targets(torch.zeros(0, 4), torch.zeros(0, queries, dtype=torch.bool))
    return Targets(torch.tensor(boxes), torch.stack(positives))


def initial_model(recipe: DetectionRecipe) -> TinyOWL:
    from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint

    clip_dir = tiny_checkpoint.shipped_directory() if recipe.init == "tiny" else Path(recipe.init)
    clip = tiny_checkpoint.load(clip_dir)
    torch.manual_seed(recipe.seed)
    return TinyOWL.from_tinyclip(clip, TinyOWLConfig(clip=clip.config.to_dict(), box_hidden=recipe.box_hidden))


def freeze_text(model: TinyOWL) -> None:
    for module in (*model.text_modules(), model.clip.visual_projection):
        module.requires_grad_(False)
    model.clip.log_temperature.requires_grad_(False)


def _optimizer(model: TinyOWL, recipe: DetectionRecipe) -> torch.optim.Optimizer:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        backbone = name.startswith("clip.")
        plain = parameter.ndim < 2 or "embedding" in name  # norms, biases, embeddings: no weight decay
        groups.setdefault((backbone, plain), []).append(parameter)
    param_groups = [
        {
            "params": params,
            "weight_decay": 0.0 if plain else recipe.weight_decay,
            "lr_scale": recipe.backbone_lr_scale if backbone else 1.0,
        }
        for (backbone, plain), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=recipe.lr, betas=(0.9, 0.999))


def train_step(
    model: TinyOWL,
    optimizer: torch.optim.Optimizer,
    images: list[SynthImage],
    text: torch.Tensor,
    index: dict[tuple[str, str | None], int],
    bf16: bool,
) -> tuple[float, dict[str, float]]:
    """One optimiser step on ``images`` against the query embeddings ``text`` ``[Q,E]``."""
    pixels = preprocess(np.stack([im.image for im in images]), model.processor)
    targets = [targets_of(im, index, len(text)) for im in images]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        regions = model.encode_regions(pixels)
    logits = owl_logits(regions.embeds, regions.aux["shift"], regions.aux["scale"], text)
    loss, parts = set_loss(logits, regions.aux["cxcywh"], targets, LossWeights())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    return loss.item(), parts


def pretrain_detection(
    out: str | Path,
    recipe: DetectionRecipe,
    progress: bool = True,
    eval_images: int = 500,
    log: Any = None,
    stop_after: int | None = None,
    command: str | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) TinyOWL into ``out``; returns the model card written beside the weights.

    ``stop_after``: checkpoint and return None once that many steps are done (time-boxed sessions; tests).
    ``eval_images``: zero-shot detection images at the end (0: no evaluation).
    """
    from videoadapt.foundation.zeroshot_detection import evaluate_detection, meets_targets
    from videoadapt.utils.machine import machine_description
    from videoadapt.utils.progress import make_progress

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    out = Path(out)
    model = initial_model(recipe)
    freeze_text(model)
    optimizer = _optimizer(model, recipe)
    start, elapsed, history = resume(out, recipe, model, optimizer, log)

    world = training_world(recipe, model.processor.image_size)
    queries, index = training_queries(world.config.held_out_shapes)
    with torch.no_grad():
        text = model.embed_texts(queries).float()
    model.train()
    began = time.perf_counter() - elapsed
    interactive = progress and sys.stderr.isatty()
    with make_progress(disable=not interactive) as bar:
        task = bar.add_task("train TinyOWL", total=recipe.steps, completed=start, info="")
        for step in range(start, recipe.steps):
            tick = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step) * group["lr_scale"]
            images = make_batch(world, recipe, step)
            loss, parts = train_step(model, optimizer, images, text, index, recipe.bf16)
            history.append(loss)
            rate = len(images) / (time.perf_counter() - tick)
            info = f"cls {parts['cls']:.3f} l1 {parts['l1']:.3f} giou {parts['giou']:.3f}  {rate:.0f} img/s"
            bar.update(task, advance=1, info=f"loss {loss:.3f} ({info})")
            done = step + 1
            if not interactive and (done % 50 == 0 or done == recipe.steps):
                log(f"step {done}/{recipe.steps}  loss {np.mean(history[-50:]):.3f}  {info}")
            if checkpoint_or_pause(out, recipe, done, model, optimizer, began, history, stop_after, log):
                return None
    wall = time.perf_counter() - began
    model.eval()
    card: dict[str, Any] = {
        "model": "TinyOWL",
        "command": command or "videoadapt pretrain --detection",
        "recipe": recipe.to_dict(),
        "data": {
            "world": "SynthWorld image mode, split 'train', images with held-out objects dropped",
            "data_seed": recipe.data_seed,
            "held_out_categories": list(world.config.held_out_shapes),
            "training_queries": len(queries),
        },
        "steps": recipe.steps,
        "wall_time_s": wall,
        "machine": machine_description(),
        **loss_summary(history),
        "text_tower": "TinyCLIP's (frozen all-MiniLM-L6-v2 + TinyCLIP text head), unchanged",
    }
    owl_checkpoint.save(model, out, card)  # weights first: an evaluation failure must not lose the training
    if eval_images > 0:
        card["zero_shot_detection"] = evaluate_detection(model, images=eval_images)
        card["zero_shot_detection_targets_met"] = meets_targets(card["zero_shot_detection"])
        owl_checkpoint.save(model, out, card)
    return card
