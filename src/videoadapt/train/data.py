"""Batches for the training loop: which items (a seeded permutation per epoch), their clips or cached features,
and their targets.

Every random choice is a function of ``(seed, epoch, item)``: the permutation of an epoch, the frames a random
sampler picks, the caption drawn for a video. Hence the position in the data is just ``(epoch, micro-batch)``, a
resumed run sees exactly the batches an uninterrupted one would, and the global batch is the same whatever the
number of processes (process ``r`` of ``P`` takes the ``r``-th slice of each global batch).

With ``run.num_workers > 0`` batches are built in DataLoader worker processes (:class:`WorkerLoader`). They start
from a *forkserver* by default: a clean process that imported videoadapt once and never ran a thread, so a worker
never inherits a lock held at fork time by one of the trainer's threads (the progress bar's refresh thread, gloo's,
OpenMP's), which can deadlock a plainly forked worker; measured on a 2-core EPYC, the server costs about 1 s once
per run and each epoch's workers then start as fast as forked ones (0.2 s; ``spawn``: 2 s every epoch). A worker
that raises (an unreadable video) returns the error, which the trainer raises naming the item; one that dies (a
decoder crash) or hangs past ``run.worker_timeout`` becomes an error naming the video it was decoding, read from a
small shared-memory table every worker keeps up to date; with ``skip_bad`` that video is skipped and counted and
the loader restarts after it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from videoadapt.errors import VideoadaptError
from videoadapt.model.batches import Batch, BatchBuilder

# Errors a video source raises for a clip it cannot read (VideoDecodeError is a VideoadaptError).


class EpochPlan:
    """Micro-batches of ``batch_size`` items from a seeded permutation of ``size`` items (the last incomplete batch
    is dropped in training so that every step has the same global batch)."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def batch(self, epoch: int, index: int, rank: int = 0, world: int = 1) -> list[int]:
        """Items of micro-batch ``index`` of ``epoch`` for process ``rank`` of ``world``."""
        order = self.order(epoch)
        chunk = order[index * self.batch_size : (index + 1) * self.batch_size]
        share = -(-len(chunk) // world)
        return [int(i) for i in chunk[rank * share : (rank + 1) * share]]


@dataclass
class BatchFailure:
    """What a worker sends instead of a batch it could not build: the error's message, which names the item."""

    message: str


class _WorkerTable:
    """One row per worker in shared memory: its pid, the batch it builds, the item it decodes (-1: none) and
    since when (ms, monotonic clock). The main process reads it to name the video a dead or hung worker was on."""

    FIELDS = 4

    def __init__(self, context: Any, workers: int) -> None:
        self.rows = context.RawArray("q", self.FIELDS * workers)
        for i in range(len(self.rows)):
            self.rows[i] = -1

    def set(self, worker: int, **values: int) -> None:
        for name, value in values.items():
            self.rows[worker * self.FIELDS + ("pid", "batch", "item", "since").index(name)] = value

    def get(self, worker: int) -> dict[str, int]:
        base = worker * self.FIELDS
        return dict(zip(("pid", "batch", "item", "since"), self.rows[base : base + self.FIELDS], strict=True))

    def __len__(self) -> int:
        return len(self.rows) // self.FIELDS


def _now_ms() -> int:
    # CLOCK_MONOTONIC is one clock for every process of the machine, and a suspend does not count as a hang.
    return int(time.monotonic() * 1000)


class StepDataset(torch.utils.data.Dataset):
    """Element ``k`` is the ``k``-th batch of a fixed list, so a DataLoader (``batch_size=None``) builds batches in
    worker processes while the order stays ours. In a worker, an error naming an item comes back as a
    :class:`BatchFailure` (a DataLoader would otherwise re-raise it wrapped in its own text, or fail to rebuild it)."""

    def __init__(
        self, builder: BatchBuilder, batches: list[list[int]], epoch: int, table: _WorkerTable | None = None
    ) -> None:
        self.builder, self.batches, self.epoch, self.table = builder, batches, epoch, table

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Batch | BatchFailure:
        info = torch.utils.data.get_worker_info()
        if info is None or self.table is None:
            return self.builder.build(self.batches[k], self.epoch)
        table, worker = self.table, info.id
        table.set(worker, batch=k, item=-1, since=_now_ms())

        def watch(item: int) -> None:
            table.set(worker, item=item, since=_now_ms())

        self.builder.watch = watch
        try:
            return self.builder.build(self.batches[k], self.epoch)
        except VideoadaptError as error:
            return BatchFailure(str(error))
        finally:
            self.builder.watch = None
            table.set(worker, batch=-1, item=-1)


def _keep(batch: Any) -> Any:
    return batch


def _worker_init(table: _WorkerTable | None, worker: int) -> None:
    import av.logging

    # No Python log callback from FFmpeg's decoding threads (each would take the GIL; PyAV's own default).
    av.logging.set_level(None)
    if table is not None:
        table.set(worker, pid=os.getpid())


class _InitWorker:
    """``worker_init_fn`` (a class, so that it pickles for a forkserver or spawn start)."""

    def __init__(self, table: _WorkerTable | None) -> None:
        self.table = table

    def __call__(self, worker: int) -> None:
        _worker_init(self.table, worker)


WORKER_STARTS = ("forkserver", "fork", "spawn")
# What the forkserver imports once, so that each epoch's workers start without importing anything.
_PRELOAD = ["torch", "av", "videoadapt.train.data", "videoadapt.data.formats", "videoadapt.tasks"]


def _context(start: str) -> Any:
    import multiprocessing

    if start not in WORKER_STARTS:
        raise VideoadaptError(f"run.worker_start must be one of {', '.join(WORKER_STARTS)}, got {start!r}")
    context = multiprocessing.get_context(start)
    if start == "forkserver":
        context.set_forkserver_preload(_PRELOAD)
    return context


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    try:  # a zombie (dead, not yet reaped by its parent) still answers signal 0
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _Watchdog(threading.Thread):
    """Stops (SIGKILL) a worker that made no progress on a batch for ``timeout`` seconds. DataLoader's own
    ``timeout`` is not used: with it, the main process looks for dead workers only once that timeout has passed
    (without it, every 5 s), so a crashed worker would go unnoticed for as long as a hung one may take."""

    def __init__(self, table: _WorkerTable, timeout: float) -> None:
        super().__init__(daemon=True, name="videoadapt-loader-watchdog")
        self.table, self.timeout = table, timeout
        self.stopping = threading.Event()
        self.killed: dict[int, dict[str, int]] = {}

    def run(self) -> None:
        interval = min(1.0, self.timeout / 4)
        while not self.stopping.wait(interval):
            now = _now_ms()
            for worker in range(len(self.table)):
                row = self.table.get(worker)
                late = row["batch"] >= 0 and now - row["since"] > self.timeout * 1000
                # A worker that died (a crash) is reported as such by the DataLoader, not as hung.
                if late and row["pid"] > 0 and row["pid"] not in self.killed and _alive(row["pid"]):
                    self.killed[row["pid"]] = row
                    with contextlib.suppress(OSError):
                        os.kill(row["pid"], signal.SIGKILL)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


class WorkerLoader:
    """Batches built by ``workers`` DataLoader processes, in order. A batch a worker could not build raises its
    error (naming the item); a worker that dies, or makes no progress for ``timeout`` seconds (then stopped), raises
    an error naming the video it was decoding, or, with ``builder.skip_bad``, has that item skipped (counted in the
    batch's ``skipped``) and the loader restarted from the batch it was waiting for."""

    def __init__(
        self,
        builder: BatchBuilder,
        batches: list[list[int]],
        epoch: int,
        workers: int,
        timeout: float = 0.0,
        start: str = "forkserver",
    ) -> None:
        self.builder, self.batches, self.epoch, self.workers = builder, batches, epoch, workers
        self.timeout, self.context, self.start = float(timeout or 0), _context(start), start
        self._table: _WorkerTable | None = None
        self._first = 0
        self._killed: dict[int, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self.batches)

    def _loader(self, first: int, table: _WorkerTable) -> Any:
        # Its own generator: a DataLoader otherwise draws its workers' base seed from the global torch RNG, which
        # would make dropout after a mid-epoch resume differ from an uninterrupted run.
        generator = torch.Generator().manual_seed(self.builder.seed * 1_000_003 + self.epoch)
        return torch.utils.data.DataLoader(
            StepDataset(self.builder, self.batches[first:], self.epoch, table),
            batch_size=None,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=_keep,
            generator=generator,
            multiprocessing_context=self.context,
            worker_init_fn=_InitWorker(table),
        )

    def __iter__(self) -> Iterator[Batch]:
        done = 0
        while done < len(self.batches):
            table = _WorkerTable(self.context, self.workers)
            self._table, self._first = table, done
            try:
                iterator = iter(self._loader(done, table))
            except (AttributeError, TypeError, pickle.PicklingError) as error:
                if "pickle" not in str(error).lower():
                    raise
                raise VideoadaptError(
                    f"cannot send the data to {self.start} loader workers ({error}); set run.worker_start=fork"
                ) from None
            watchdog = _Watchdog(table, self.timeout) if self.timeout > 0 else None
            if watchdog is not None:
                self._killed = watchdog.killed
                watchdog.start()
            try:
                while done < len(self.batches):
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        return
                    except (RuntimeError, EOFError, ConnectionError) as error:
                        # EOF / connection errors: a batch whose sender died before its tensors were fetched.
                        if not is_worker_failure(error):
                            raise
                        self._skip_or_raise(error)
                        break  # skipped (skip_bad): a fresh loader from batch ``done``
                    if isinstance(batch, BatchFailure):
                        raise VideoadaptError(batch.message)
                    done += 1
                    yield batch
            finally:
                if watchdog is not None:
                    watchdog.stop()
                shutdown = getattr(iterator, "_shutdown_workers", None)
                if shutdown is not None:
                    shutdown()  # now, not whenever the iterator is collected
                del iterator

    def explain(self, error: BaseException) -> tuple[int | None, str]:
        """The item behind a worker failure (None when no worker was decoding) and a message naming its video."""
        # An EOFError has no text: the connection to a worker that died with a batch on the way.
        text = (str(error).splitlines() or [f"{type(error).__name__}: its connection closed"])[0]
        table = self._table
        rows = [table.get(w) for w in range(len(table))] if table is not None else []
        busy = [r for r in rows if r["batch"] >= 0]
        match = re.search(r"pid(?:\(s\))?\s+([\d, ]+)", text)
        pids = {int(p) for p in re.findall(r"\d+", match.group(1))} if match else set()
        if not pids:  # a lost connection: the worker that is gone (give its death a moment to show)
            for _ in range(20):
                pids = {r["pid"] for r in rows if r["pid"] > 0 and not _alive(r["pid"])}
                if pids:
                    break
                time.sleep(0.05)
        culprits = [r for r in busy if r["pid"] in pids] or busy
        hung = [r for r in culprits if r["pid"] in self._killed]
        if hung:
            culprits = hung
            what = f"made no progress for {self.timeout:g} s (run.worker_timeout) and was stopped"
        else:
            what = f"died ({text})"
        named = [r for r in culprits if r["item"] >= 0]
        if not named:
            items = sorted({i for r in culprits for i in self.batches[self._first + r["batch"]]})
            where = f"while building a batch of items {items}" if items else "while not decoding"
            return None, f"a data-loader worker {what} {where} (epoch {self.epoch})"
        row = named[0]
        ref = self.builder.data.items[row["item"]].video
        video = f" {ref.path}" if getattr(ref, "path", None) else ""
        return row[
            "item"
        ], f"{self.builder.describe(row['item'])}: a data-loader worker decoding its video{video} {what}"

    def _skip_or_raise(self, error: RuntimeError) -> None:
        item, message = self.explain(error)
        if item is None or not self.builder.skip_bad:
            hint = " (set data.skip_bad=true to skip it)" if item is not None else ""
            raise VideoadaptError(message + hint) from None
        self.builder.excluded[item] = message


def is_worker_failure(error: BaseException) -> bool:
    """Whether ``error`` is a DataLoader's report of a worker that died or timed out, or the lost connection to
    a worker that died while its batch was on the way."""
    if isinstance(error, EOFError | ConnectionError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("DataLoader worker" in text or "DataLoader timed out" in text)


def batch_loader(
    builder: BatchBuilder,
    batches: list[list[int]],
    epoch: int,
    workers: int,
    timeout: float = 0.0,
    start: str = "forkserver",
) -> Any:
    """Iterate over ``batches`` (lists of item indices) as built :class:`Batch` es, with ``workers`` processes
    (:class:`WorkerLoader`: ``timeout`` seconds without progress before a worker is stopped, 0: never)."""
    if workers <= 0:
        return (builder.build(b, epoch) for b in batches)
    return WorkerLoader(builder, batches, epoch, workers, timeout, start)
