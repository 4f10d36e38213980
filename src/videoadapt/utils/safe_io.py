"""Checkpoint files: safetensors for tensors, JSON for everything else, both written atomically.

Pickles execute code when loaded, so they are refused with a message instead of being opened.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from videoadapt.errors import InputFileError, VideoadaptError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def writable_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as a folder this process can write into, created if needed; checked before any work starts, so
    that hours of training or extraction never end on "cannot write" — a clear error naming the path instead: a
    file where the folder (or one of its parents) should be, a folder without write permission, a read-only disk."""
    path = Path(path)
    for part in [path, *path.parents]:
        if part.exists() and not part.is_dir():
            where = "" if part == path else f" (it should be a folder holding {path})"
            raise VideoadaptError(f"{what} {path}: {part} is a file{where}; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".videoadapt-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise VideoadaptError(f"{what} {path}: cannot write there ({error.strerror or error})") from None
    return path


def file_record(data: bytes) -> dict[str, Any]:
    """What a checkpoint records of each of its files, to detect truncation and damage on load."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_directory(path: str | Path) -> None:
    """Make the renames inside ``path`` durable (a crash after a rename otherwise may forget it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform or file system; the rename itself stays atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` to ``path`` through a temporary file, an fsync and a rename: readers (and a run killed at
    any moment) never see half a file. Returns :func:`file_record` of ``data``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        partial.unlink(missing_ok=True)  # the previous file, if any, is untouched: only the partial one goes
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(path, len(data)) from None
        raise
    partial.replace(path)
    fsync_directory(path.parent)
    return file_record(data)


class DiskFullError(VideoadaptError):
    """A write that found the disk (or the quota) full; names the file, the space it needed and what is free."""

    def __init__(self, path: str | Path, needed: int, kept: str | None = None) -> None:
        """``kept``: what is left usable, when it is not "the file as it was before" (a folder of many files)."""
        import shutil

        self.path, self.needed = Path(path), needed
        try:
            free = f"{shutil.disk_usage(Path(path).parent).free / 1e6:.1f} MB free"
        except OSError:
            free = "free space unknown"
        kept = kept or "the file as it was before is untouched"
        super().__init__(
            f"{path}: the disk is full: writing it needs {needed / 1e6:.1f} MB ({free} on its file system); "
            f"{kept} — free some space, then resume"
        )


def save_json(path: str | Path, data: Any) -> dict[str, Any]:
    return atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def load_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"not valid UTF-8 JSON ({error})") from None


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    from safetensors.torch import save

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(contiguous, metadata=metadata))


def looks_pickled(path: str | Path) -> bool:
    """Whether ``path`` starts like a pickle or a ``torch.save`` zip. Only meaningful for a file that is not valid
    safetensors: a safetensors header length can begin with the same bytes as a pickle."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


PICKLE_REFUSAL = (
    "this is a pickled (torch.save) checkpoint; videoadapt only loads safetensors, because "
    "unpickling can run arbitrary code. Convert it with safetensors.torch.save_file on a trusted machine."
)


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
        # Only a file that is not valid safetensors is examined further (see looks_pickled).
        if looks_pickled(path):
            raise InputFileError(path, PICKLE_REFUSAL) from None
        raise InputFileError(path, f"not a valid safetensors file ({error})") from None
