"""What TinyCLIP's and TinyOWL's pretraining runs share: the warm-up + cosine schedule, resuming from the run's
checkpoint directory, the periodic checkpoint that also ends a time-boxed session, and the loss summary of the
model card. One place, so that both runs resume, pause and report the same way."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from videoadapt.utils.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from videoadapt.utils.safe_io import load_json


class Recipe(Protocol):
    """The fields of a pretraining recipe that the shared run logic reads."""

    steps: int
    lr: float
    warmup: int
    checkpoint_every: int

    def to_dict(self) -> dict[str, Any]: ...


class TrainableModel(Protocol):
    def load_state_dict(self, state: dict[str, Any], strict: bool = ...) -> Any: ...

    def trainable_state_dict(self) -> dict[str, torch.Tensor]: ...


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up over ``recipe.warmup`` steps, then a cosine decay to zero at ``recipe.steps``."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resume(
    out: Path,
    recipe: Recipe,
    model: TrainableModel,
    optimizer: torch.optim.Optimizer,
    log: Callable[[str], Any],
) -> tuple[int, float, list[float]]:
    """Load the latest checkpoint under ``out/checkpoint`` into ``model`` and ``optimizer``; returns (first step,
    elapsed seconds, loss history), ``(0, 0.0, [])`` for a fresh run. A checkpoint of another recipe is refused:
    continuing it would silently mix two runs."""
    found = find_checkpoint(out / "checkpoint")
    if found is None:
        return 0, 0.0, []
    saved = load_json(found / "state.json")["extra"]
    if saved.get("recipe") != recipe.to_dict():
        raise ValueError(f"{found}: checkpoint of a different recipe; use another --out or the same options")
    state = load_checkpoint(found)
    model.load_state_dict(state.model, strict=False)
    optimizer.load_state_dict(state.optimizer)
    log(f"resuming {out} at step {state.step}/{recipe.steps}")
    return state.step, state.extra["elapsed_s"], state.extra["history"]


def checkpoint_or_pause(
    out: Path,
    recipe: Recipe,
    done: int,
    model: TrainableModel,
    optimizer: torch.optim.Optimizer,
    began: float,
    history: list[float],
    stop_after: int | None,
    log: Callable[[str], Any],
) -> bool:
    """Checkpoint after step ``done`` when it is due (every ``checkpoint_every`` steps, the last step, or a pause);
    returns True when the run should stop here because ``stop_after`` steps are done (time-boxed sessions)."""
    pause = stop_after is not None and done >= stop_after and done < recipe.steps
    if done % recipe.checkpoint_every == 0 or done == recipe.steps or pause:
        extra = {"recipe": recipe.to_dict(), "elapsed_s": time.perf_counter() - began, "history": history}
        save_checkpoint(out / "checkpoint", done, model.trainable_state_dict(), optimizer, extra)
    if pause:
        log(f"stopped after step {done}; run the same command again to resume")
    return pause


def loss_summary(history: list[float]) -> dict[str, Any]:
    """The model card's loss entries: the mean over the first and the last tenth of the steps, and every 50 steps."""
    tenth = max(1, len(history) // 10)
    return {
        "loss": {"start": float(np.mean(history[:tenth])), "end": float(np.mean(history[-tenth:]))},
        "loss_every_50_steps": [float(np.mean(history[i : i + 50])) for i in range(0, len(history), 50)],
    }
