"""Training checkpoints that survive a crash at any moment: safetensors for tensors, JSON for the rest.

A checkpoint is a directory written whole under a temporary name and swapped in by renames, so a reader finds
either the previous complete checkpoint or the new complete one, never a mixture.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from videoadapt.errors import InputFileError
from videoadapt.utils.safe_io import load_json, load_tensors, save_json, save_tensors

MODEL, OPTIMIZER, STATE = "model.safetensors", "optimizer.safetensors", "state.json"


@dataclass
class TrainingState:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, slots in meta["scalars"].items():
        state.setdefault(int(index), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_tensors(partial / MODEL, model_state)
    meta: dict[str, Any] = {"step": step, "extra": extra or {}, "rng": torch.get_rng_state().tolist()}
    if optimizer is not None:
        tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        save_tensors(partial / OPTIMIZER, tensors)
    save_json(partial / STATE, meta)  # written last: its presence marks a complete checkpoint
    previous = directory.with_name(directory.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if directory.exists():
        directory.rename(previous)
    partial.rename(directory)
    shutil.rmtree(previous, ignore_errors=True)


def find_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint at ``directory``, or the one a crash mid-swap left as ``.previous``."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".previous")):
        if (candidate / STATE).is_file():
            return candidate
    return None


def load_checkpoint(directory: str | Path) -> TrainingState:
    directory = Path(directory)
    meta = load_json(directory / STATE)
    if "step" not in meta:
        raise InputFileError(directory / STATE, "not a training checkpoint (no 'step')")
    optimizer = None
    if "optimizer" in meta:
        optimizer = _unflatten_optimizer(load_tensors(directory / OPTIMIZER), meta["optimizer"])
    torch.set_rng_state(torch.tensor(meta["rng"], dtype=torch.uint8))
    return TrainingState(meta["step"], load_tensors(directory / MODEL), optimizer, meta.get("extra", {}))


def capture_rng() -> dict[str, Any]:
    """Every random generator a training step draws from, as JSON: torch (CPU and each CUDA device), numpy's
    global generator and Python's ``random``. Restoring them makes dropout and any unseeded draw repeat exactly."""
    import random

    import numpy as np

    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": position, "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "state": list(internal), "gauss": python_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    import random

    import numpy as np

    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
