"""Checkpoint files: safetensors for tensors, JSON for everything else, both written atomically.

Pickles execute code when loaded, so they are refused with a message instead of being opened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from videoadapt.errors import InputFileError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def save_json(path: str | Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"not valid UTF-8 JSON ({error})") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(contiguous, metadata=metadata))


def load_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle in particular) is refused with the reason."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint file not found")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as error:
        # Only a file that is not valid safetensors is examined further: a safetensors header length can begin
        # with the same byte as a pickle.
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head.startswith(b"PK\x03\x04") or (
            head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
        ):
            raise InputFileError(
                path,
                "this is a pickled (torch.save) checkpoint; videoadapt only loads safetensors, because "
                "unpickling can run arbitrary code. Convert it with safetensors.torch.save_file on a trusted machine.",
            ) from None
        raise InputFileError(path, f"not a valid safetensors file ({error})") from None
