"""The optimizer's two learning-rate groups: the backbone and the head.

Papers that adapt a pretrained backbone train it far more gently than the modules they add: CLIP4Clip tunes CLIP's
weights at 1e-7 and its new modules at 1e-4; adapter and LoRA papers train the inserted modules at 1e-4..1e-3.
``run.backbone_lr`` is the rate of the *backbone group*, every trainable parameter inside the ILFM (unfrozen
pretrained weights, adapters, LoRA matrices, prompts, a learnable text context) plus what the video head declares
as copies of the backbone (``VideoHead.backbone_parameters()``, e.g. a student initialised from it); ``run.lr`` is
the rate of the *head group*, everything else (temporal modules, side networks, the task head).

Within each group, weight decay applies to matrices only, never to biases, norms, other one-dimensional parameters
or temperatures (as CLIP does), so the optimizer has up to four parameter groups. Each carries its role
(``"group": "backbone" | "head"``), which the schedule reads to set its rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from videoadapt.errors import VideoadaptError

BACKBONE, HEAD = "backbone", "head"
ROLES = (BACKBONE, HEAD)


def split_trainable(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``{"backbone": [...], "head": [...]}``: the trainable ``(name, parameter)`` pairs of a task model (an
    ``encoder`` holding the ILFM as ``encoder.ilfm`` and the video head as ``encoder.head``), each once."""
    encoder = model.encoder
    backbone = {id(p) for p in encoder.ilfm.parameters() if p.requires_grad}
    # A video MLLM's projector is a new module inside the ILFM: trained at the head rate, as LLaVA's first stage
    # trains it at 1e-3 while its LoRA or LM tuning runs at the backbone's gentler rate.
    added = getattr(encoder.ilfm, "projector_modules", None)
    if added is not None:
        backbone -= {id(p) for m in added() for p in m.parameters()}
    # Declared by the paradigms' heads; absent on heads that have no copy of the backbone.
    declared = getattr(encoder.head, "backbone_parameters", None)
    if declared is not None:
        backbone.update(id(p) for p in declared() if p.requires_grad)
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {BACKBONE: [], HEAD: []}
    for name, parameter in model.named_parameters():  # named_parameters yields a shared parameter once
        if parameter.requires_grad:
            groups[BACKBONE if id(parameter) in backbone else HEAD].append((name, parameter))
    return groups


def decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight decay on matrices and kernels; none on biases, norms, 1-d embeddings and temperatures."""
    return parameter.ndim >= 2 and "log_scale" not in name


def param_groups(
    groups: dict[str, list[tuple[str, nn.Parameter]]], rates: dict[str, float], weight_decay: float
) -> list[dict]:
    """torch parameter groups, the backbone's first, each with its role, its base rate and its weight decay."""
    out = []
    for role in ROLES:
        decay = [p for n, p in groups[role] if decays(n, p)]
        no_decay = [p for n, p in groups[role] if not decays(n, p)]
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                out.append({"params": params, "weight_decay": wd, "lr": rates[role], "group": role})
    if not out:
        raise VideoadaptError("nothing trains: the paradigm and the task head have no trainable parameter")
    return out


def build_optimizer(
    groups: dict[str, list[tuple[str, nn.Parameter]]],
    rates: dict[str, float],
    weight_decay: float,
    betas: Sequence[float],
) -> torch.optim.AdamW:
    # The fused kernel (CPU and CUDA): one pass over all parameters instead of a Python loop over tensors,
    # 8x faster per step for a 3 M-parameter head on this CPU, which is what a cached epoch mostly does.
    return torch.optim.AdamW(
        param_groups(groups, rates, weight_decay), lr=rates[HEAD], betas=(float(betas[0]), float(betas[1])), fused=True
    )


def set_rates(optimizer: torch.optim.Optimizer, rates: dict[str, float]) -> None:
    """Write each group's rate for the next update (a group restored from an older checkpoint without a role is
    the head's: before the split there was one rate)."""
    for group in optimizer.param_groups:
        group["lr"] = rates[group.get("group", HEAD)]


def group_sizes(groups: dict[str, list[tuple[str, nn.Parameter]]]) -> dict[str, int]:
    return {role: sum(p.numel() for _, p in groups[role]) for role in ROLES}
