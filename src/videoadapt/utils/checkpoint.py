"""Training checkpoints that survive a crash at any moment: safetensors for tensors, JSON for the rest.

A checkpoint is a directory (``model.safetensors``, ``optimizer.safetensors``, ``state.json``). It is written
whole under a temporary name (every file fsynced) and swapped in by renames, and the one it replaces is kept as
the *previous* checkpoint::

    1. write   last.partial/            (a kill here: last and previous untouched; the partial is discarded)
    2. rename  previous -> last.trash   (the oldest one goes)
    3. rename  last -> previous         (a kill here: no last, previous holds the step before: it is used)
    4. rename  last.partial -> last
    5. delete  last.trash

``state.json`` records the size and SHA-256 of every other file and a checksum of its own content, so that a
truncated, missing, replaced (a pickle in particular) or damaged file is detected on load; :func:`find_checkpoint`
then falls back to the previous checkpoint with a message naming what was wrong, and fails with every reason when
neither is usable.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.utils.safe_io import (
    PICKLE_REFUSAL,
    PICKLE_SUFFIXES,
    fsync_directory,
    load_tensors,
    looks_pickled,
    save_json,
    save_tensors,
    sha256_of,
)

MODEL, OPTIMIZER, STATE = "model.safetensors", "optimizer.safetensors", "state.json"
FORMAT = 2  # 1: no file records or checksum (still loaded)


class CheckpointError(InputFileError):
    """A checkpoint directory that cannot be used, or no usable checkpoint at all; names it and the reason."""


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


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(directory.name + suffix)


def previous_of(directory: str | Path) -> Path:
    """Where the checkpoint before ``directory``'s is kept, unless the caller names another place."""
    return _sibling(Path(directory), ".previous")


def _state_checksum(meta: dict[str, Any]) -> str:
    # Canonical JSON of everything but the checksum itself (floats round-trip exactly through JSON).
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    directory: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
    *,
    previous: str | Path | None = None,
    keep_last: bool = True,
) -> None:
    """Write the checkpoint of ``step`` to ``directory``; the one it replaces becomes ``previous`` (default
    ``DIR.previous``). ``keep_last=False`` discards the replaced one instead (it was found damaged), so that the
    good previous checkpoint stays."""
    directory = Path(directory)
    previous = Path(previous) if previous is not None else previous_of(directory)
    partial, trash = _sibling(directory, ".partial"), _sibling(directory, ".trash")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
    try:
        files = {MODEL: save_tensors(partial / MODEL, model_state)}
        meta: dict[str, Any] = {
            "format": FORMAT,
            "step": step,
            "extra": extra or {},
            "rng": torch.get_rng_state().tolist(),
        }
        if optimizer is not None:
            tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
            files[OPTIMIZER] = save_tensors(partial / OPTIMIZER, tensors)
        meta["files"] = files
        meta["checksum"] = _state_checksum(meta)
        save_json(partial / STATE, meta)
        fsync_directory(partial)
    except (OSError, VideoadaptError):
        # A full disk (DiskFullError) or any failed write leaves the last and previous checkpoints as they were,
        # and frees what the half-written one took.
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if directory.exists():
        if keep_last and _looks_complete(directory):
            if previous.exists():
                previous.rename(trash)
            directory.rename(previous)
        else:
            directory.rename(trash)
    partial.rename(directory)
    fsync_directory(directory.parent)
    if previous.parent != directory.parent:
        fsync_directory(previous.parent)
    shutil.rmtree(trash, ignore_errors=True)


def _looks_complete(directory: Path) -> bool:
    """A cheap check (no checksums) that ``directory`` is worth keeping as the previous checkpoint."""
    try:
        meta = json.loads((directory / STATE).read_text(encoding="utf-8"))
        records = meta.get("files", {MODEL: None})
        return all(
            (directory / name).is_file() and (record is None or (directory / name).stat().st_size == record["bytes"])
            for name, record in records.items()
        )
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return False


def _read_state(directory: Path) -> dict[str, Any]:
    """``state.json`` of ``directory``, checked; :class:`CheckpointError` naming what is wrong otherwise."""
    if not directory.is_dir():
        raise CheckpointError(directory, "not a directory" if directory.exists() else "no such checkpoint")
    state = directory / STATE
    if not state.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES or looks_pickled(p))
        if pickles:
            raise CheckpointError(
                directory,
                f"holds pickled checkpoint files ({', '.join(pickles)}) and no {STATE}: videoadapt refuses to load "
                "pickles, because unpickling can run arbitrary code; checkpoints are safetensors + JSON",
            )
        raise CheckpointError(directory, f"incomplete checkpoint: {STATE} is missing")
    try:
        meta = json.loads(state.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(state, f"not valid UTF-8 JSON ({error}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or "step" not in meta:
        raise CheckpointError(state, "not a training checkpoint (no 'step')")
    if "checksum" in meta and meta["checksum"] != _state_checksum(meta):
        raise CheckpointError(state, "checksum mismatch: the file was changed or damaged after it was written")
    return meta


def verify_checkpoint(directory: str | Path) -> dict[str, Any]:
    """``state.json`` of the checkpoint at ``directory`` once every file it records is there, of the recorded size
    and checksum; :class:`CheckpointError` naming the first problem otherwise."""
    directory = Path(directory)
    meta = _read_state(directory)
    records = meta.get("files")
    if records is None:  # format 1: the files without records
        records = {MODEL: None, **({OPTIMIZER: None} if "optimizer" in meta else {})}
    try:
        for name, record in records.items():
            _verify_file(directory / name, record)
    except (KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(directory / STATE, f"malformed file records ({error!r})") from None
    return meta


def _verify_file(path: Path, record: dict[str, Any] | None) -> None:
    if not path.is_file():
        raise CheckpointError(path, "missing from the checkpoint (state.json records it)")
    if record is None:
        # No record to compare with: at least the safetensors header must parse (reads the header only).
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError, ValueError) as error:
            reason = PICKLE_REFUSAL if looks_pickled(path) else f"not a valid safetensors file ({error})"
            raise CheckpointError(path, reason) from None
        return
    size = path.stat().st_size
    if size != record["bytes"] or sha256_of(path) != record["sha256"]:
        if looks_pickled(path):
            raise CheckpointError(path, PICKLE_REFUSAL)
        what = f"{size} bytes where state.json records {record['bytes']}" if size != record["bytes"] else None
        raise CheckpointError(
            path, f"truncated or replaced: {what}" if what else "checksum mismatch: the file is damaged"
        )


def _stderr(message: str) -> None:
    print(f"videoadapt: {message}", file=sys.stderr, flush=True)


def find_checkpoint(
    directory: str | Path,
    previous: str | Path | None = None,
    warn: Callable[[str], None] | None = _stderr,
) -> Path | None:
    """The newest usable checkpoint: ``directory``, else ``previous`` (default ``DIR.previous``), each verified
    (:func:`verify_checkpoint`). A damaged newer one is reported through ``warn`` with the reason; when every
    checkpoint there is damaged, :class:`CheckpointError` lists them all; None when there is none at all."""
    directory = Path(directory)
    previous = Path(previous) if previous is not None else previous_of(directory)
    candidates = list(dict.fromkeys([directory, previous, previous_of(directory)]))
    problems: list[str] = []
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            meta = verify_checkpoint(candidate)
        except (CheckpointError, OSError) as error:
            problems.append(str(error))
            continue
        if problems and warn is not None:
            warn(f"unusable checkpoint skipped ({'; '.join(problems)}); using {candidate} (step {meta['step']})")
        return candidate
    if problems:
        raise CheckpointError(directory, f"no usable checkpoint: {'; '.join(problems)}")
    return None


def any_checkpoint(directory: str | Path, previous: str | Path | None = None) -> bool:
    """Whether a checkpoint (usable or not) is at ``directory`` or its previous place."""
    directory = Path(directory)
    previous = Path(previous) if previous is not None else previous_of(directory)
    return any(p.exists() for p in (directory, previous, previous_of(directory)))


def load_checkpoint(directory: str | Path, verify: bool = True) -> TrainingState:
    """The checkpoint at ``directory`` (verified first unless the caller just did); restores the torch RNG."""
    directory = Path(directory)
    meta = verify_checkpoint(directory) if verify else _read_state(directory)
    try:
        optimizer = None
        if "optimizer" in meta:
            optimizer = _unflatten_optimizer(load_tensors(directory / OPTIMIZER), meta["optimizer"])
        model = load_tensors(directory / MODEL)
    except CheckpointError:
        raise
    except InputFileError as error:
        raise CheckpointError(error.path, error.reason) from None
    torch.set_rng_state(torch.tensor(meta["rng"], dtype=torch.uint8))
    return TrainingState(meta["step"], model, optimizer, meta.get("extra", {}))


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
