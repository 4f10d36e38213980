"""One writer per output folder: a run folder or a bench folder is held by the process writing it.

Two processes writing the same run folder (a second `videoadapt train --resume` started by mistake, two cluster
jobs given one --out) would interleave checkpoints and logs and leave neither run usable. The holder writes
``FOLDER/.videoadapt.lock`` (JSON: pid, host, start time, command) with an exclusive create; a second process
refuses at once, naming the holder. A lock left by a process that no longer exists on this host (killed, the
machine rebooted) is stale and taken over with a notice; a holder on another host cannot be checked from here, so
the message says how to remove its lock once that job is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from videoadapt.errors import VideoadaptError

LOCK_NAME = ".videoadapt.lock"


class FolderBusyError(VideoadaptError):
    """The folder is being written by another live process."""


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # not a process id (os.kill(-1, 0) would ask about every process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    command = holder.get("command")
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {when}" + (f" ({command})" if command else "")


class FolderLock:
    """``with FolderLock(folder, "run folder"):`` — hold ``folder`` for this process, or raise
    :class:`FolderBusyError` naming the live holder. Re-entrant within one process."""

    def __init__(self, folder: str | Path, what: str = "folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self.held = False

    def _record(self) -> bytes:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": " ".join(sys.argv[:6]) if sys.argv and sys.argv[0] else None,
        }
        return json.dumps(holder).encode()

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed, or a race with another taker: try again
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue
                if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                    self.held = False  # held by this very process already (re-entrant): leave it to the outer one
                    return self
                if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
                    print(
                        f"videoadapt: {self.what} {self.folder}: taking over the lock of a process that no longer "
                        f"runs ({_describe(holder)})",
                        file=sys.stderr,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                here = holder.get("host") == socket.gethostname()
                remedy = (
                    "wait for it or stop it"
                    if here
                    else f"if that job is gone, delete {self.path} (its host cannot be checked from here)"
                )
                raise FolderBusyError(
                    f"{self.what} {self.folder} is being written by another process: {_describe(holder)}; {remedy}"
                ) from None
            with os.fdopen(descriptor, "wb") as file:
                file.write(self._record())
            self.held = True
            return self
        raise FolderBusyError(f"{self.what} {self.folder}: could not take {self.path}; another process keeps taking it")

    def _holder(self) -> dict[str, Any] | None:
        """The lock's record; a lock that is not readable JSON (a holder killed mid-write) counts as stale."""
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.path.unlink(missing_ok=True)
            return None
        if not isinstance(holder, dict):
            self.path.unlink(missing_ok=True)
            return None
        return holder

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
