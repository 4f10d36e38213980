"""Learning-rate schedule: linear warm-up, then cosine decay (CLIP4Clip, ActionCLIP, ST-Adapter all use it).

A pure function of the optimizer step, so resuming needs nothing but the step number; the trainer writes the rate
into the optimizer's parameter groups before every update. Each learning-rate group (the backbone and the head,
videoadapt.train.optimizer) follows the same curve from its own base rate.
"""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """The rate of the update that follows ``step`` completed updates (0-based) out of ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def rates_at(
    step: int, base_lrs: dict[str, float], total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0
) -> dict[str, float]:
    """The rate of each group (``{"head": ..., "backbone": ...}``) for the update that follows ``step``."""
    return {name: lr_at(step, base, total_steps, warmup_steps, min_ratio) for name, base in base_lrs.items()}


def schedule_state(
    step: int, base_lrs: dict[str, float], total_steps: int, warmup_steps: int, min_ratio: float
) -> dict:
    """What a checkpoint records of the schedule (JSON): the base rate and the current rate of every group."""
    return {
        "kind": "linear_warmup_cosine",
        "step": step,
        "base_lr": dict(base_lrs),
        "total_steps": total_steps,
        "warmup_steps": warmup_steps,
        "min_ratio": min_ratio,
        "lr": rates_at(step, base_lrs, total_steps, warmup_steps, min_ratio),
    }
