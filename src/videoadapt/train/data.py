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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from videoadapt.data.records import Item, TaskData
from videoadapt.data.sampling import Sampler
from videoadapt.data.transforms import ProcessorSettings, preprocess
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures
from videoadapt.tasks.base import Task

# Errors a video source raises for a clip it cannot read (VideoDecodeError is a VideoadaptError).
READ_ERRORS = (VideoadaptError, OSError, ValueError, RuntimeError)


@dataclass
class Batch:
    """Items ``indices`` of a split: their distinct clips ``video`` ``[V,T,3,H,W]`` and/or ``cached`` frame features
    (``V`` rows), ``rows[i]`` the row of item ``i``, and the task's ``targets``. ``skipped`` names bad items left out
    (``skip_bad``)."""

    indices: list[int]
    rows: torch.Tensor
    video: torch.Tensor | None
    cached: FrameFeatures | None
    targets: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device) -> Batch:
        def move(x: Any) -> Any:
            return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x

        cached = None
        if self.cached is not None:
            c = self.cached
            layers = None if c.layers is None else [move(t) for t in c.layers]
            cached = FrameFeatures(cls=move(c.cls), patches=move(c.patches), embeds=move(c.embeds), layers=layers)
        targets = {k: move(v) for k, v in self.targets.items()}
        return Batch(self.indices, move(self.rows), move(self.video), cached, targets, self.skipped)


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


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, 7919])


class _Seeded(Sampler):
    """A sampler whose random choices come from a given generator, whatever the video source passes."""

    def __init__(self, sampler: Sampler, rng: np.random.Generator) -> None:
        self.sampler, self.rng = sampler, rng

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.sampler.indices(num_frames, fps, self.rng)


class BatchBuilder:
    """Turns item indices into a :class:`Batch`: decodes and preprocesses the clips (or reads the feature cache),
    and collates the task's targets. Bad clips raise an error naming the item, or are skipped with ``skip_bad``."""

    def __init__(
        self,
        data: TaskData,
        task: Task,
        processor: ProcessorSettings,
        sampler: Sampler,
        *,
        train: bool,
        seed: int = 0,
        cache: Any = None,
        pixels: bool = True,
        skip_bad: bool = False,
        cache_sampler: Sampler | None = None,
        cache_patches: bool = True,
    ) -> None:
        self.data, self.task, self.processor, self.sampler = data, task, processor, sampler
        self.train, self.seed, self.cache, self.pixels, self.skip_bad = train, seed, cache, pixels, skip_bad
        # Draws the frames of each step from a denser cached clip (indices into its rows), so that a run from the
        # cache sees the same random temporal jitter as one that decodes video; None: cached rows as they are.
        self.cache_sampler = cache_sampler
        self.cache_patches = cache_patches  # False: the head never reads patch tokens, so cache reads skip them
        # Items whose decoding killed or hung a loader worker (skip_bad): skipped from then on, with this message.
        self.excluded: dict[int, str] = {}
        # Called with the item about to be decoded, then -1 (a worker's entry in the shared table).
        self.watch: Callable[[int], None] | None = None

    def describe(self, index: int) -> str:
        item = self.data.items[index]
        name = getattr(item, "question_id", None) or item.video.video_id
        return f"{self.data.origin}: {self.data.split} item {index} ({name!r})"

    def _for_item(self, sampler: Sampler, index: int, epoch: int) -> Sampler:
        """``sampler`` with item ``index``'s random generator of ``epoch`` in training (as it is in evaluation)."""
        return _Seeded(sampler, item_rng(self.seed, epoch, index)) if self.train else sampler

    def clip(self, index: int, epoch: int) -> torch.Tensor:
        item = self.data.items[index]
        sampler = self._for_item(self.sampler, index, epoch)
        frames = self.data.source.frames(item.video, sampler)
        if frames.ndim != 4 or len(frames) == 0:
            raise VideoadaptError(f"decoded no frames (shape {tuple(frames.shape)})")
        if _time_reversed(item):
            frames = np.ascontiguousarray(frames[::-1])  # the sampled clip, played backwards
        return preprocess(frames, self.processor)

    def build(self, indices: Sequence[int], epoch: int = 0) -> Batch:
        kept: list[int] = []
        skipped: list[str] = []
        # A clip is a video and a direction: a time-reversed copy is a clip of its own, not its original's.
        clips: dict[tuple[str, bool], torch.Tensor] = {}
        order: list[tuple[str, bool]] = []
        for index in indices:
            key = _clip_key(self.data.items[index])
            video_id = key[0]
            if self.train and key[1]:
                raise VideoadaptError(f"{self.describe(index)}: a time-reversed copy is for evaluation, not training")
            if index in self.excluded:
                skipped.append(self.excluded[index])
                continue
            if self.cache is not None and video_id not in self.cache:
                # Skipped as unreadable when the cache was extracted (only happens with skip_bad).
                message = f"{self.describe(index)}: its video was skipped as unreadable when caching features"
                if not self.skip_bad:
                    raise VideoadaptError(message)
                skipped.append(message)
                continue
            if key not in clips and self.pixels:
                if self.watch is not None:
                    self.watch(index)
                try:
                    clips[key] = self.clip(index, epoch)
                except READ_ERRORS as error:
                    message = f"{self.describe(index)}: cannot read its video: {error}"
                    if not self.skip_bad:
                        raise VideoadaptError(f"{message} (set data.skip_bad=true to skip bad items)") from error
                    skipped.append(message)
                    continue
                finally:
                    if self.watch is not None:
                        self.watch(-1)
            if key not in order:
                order.append(key)
            kept.append(index)
        rows = torch.tensor([order.index(_clip_key(self.data.items[i])) for i in kept], dtype=torch.long)
        video = None
        if self.pixels and order:
            video = torch.stack([clips[k] for k in order])
        cached = None
        if self.cache is not None and order:
            cached = self.cache.get([video_id for video_id, _ in order], patches=self.cache_patches)
        if cached is not None and self.cache_sampler is not None:
            first = {}
            for index in kept:
                first.setdefault(_clip_key(self.data.items[index]), index)
            cached = self._resample(cached, [first[k] for k in order], epoch)
        if cached is not None and any(backwards for _, backwards in order):
            cached = _reverse_rows(cached, [backwards for _, backwards in order])
        items: list[Item] = [self.data.items[i] for i in kept]
        rngs = [item_rng(self.seed + 1, epoch, i) for i in kept] if self.train else None
        targets = self.task.targets(items, self.data, rngs, train=self.train) if items else {}
        return Batch(kept, rows, video, cached, targets, skipped)

    def _resample(self, cached: FrameFeatures, indices: Sequence[int], epoch: int) -> FrameFeatures:
        """Row ``r`` of ``cached`` keeps the frames that ``cache_sampler`` picks among its ``T`` cached frames, with
        the random generator of item ``indices[r]`` (the same draw as a decoded clip of that item would get)."""
        frames = cached.embeds.shape[1]
        picks = []
        for index in indices:
            sampler = self._for_item(self.cache_sampler, index, epoch)
            # The cached frames are evenly spaced, so any frame rate gives the same picks to samplers that count
            # frames (uniform, dense); time-based samplers make no sense here and are refused by the trainer.
            picks.append(torch.as_tensor(sampler.indices(frames, 1.0), dtype=torch.long))
        pick = torch.stack(picks)  # [V, T']

        def take(x: torch.Tensor | None) -> torch.Tensor | None:
            if x is None:
                return None
            index = pick.view(*pick.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
            return torch.gather(x, 1, index.to(x.device))

        layers = None if cached.layers is None else [take(t) for t in cached.layers]
        return FrameFeatures(
            cls=take(cached.cls), patches=take(cached.patches), embeds=take(cached.embeds), layers=layers
        )


def _time_reversed(item: Item) -> bool:
    return bool(getattr(item, "time_reversed", False))


def _clip_key(item: Item) -> tuple[str, bool]:
    return item.video.video_id, _time_reversed(item)


def _reverse_rows(cached: FrameFeatures, reverse: Sequence[bool]) -> FrameFeatures:
    """The cached rows marked in ``reverse`` with their frames (dim 1) in reverse order: the cached clip played
    backwards, as a decoded time-reversed item is."""
    rows = torch.tensor([i for i, backwards in enumerate(reverse) if backwards], dtype=torch.long)

    def flip(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[rows] = x[rows].flip(1)
        return x

    layers = None if cached.layers is None else [flip(t) for t in cached.layers]
    return FrameFeatures(cls=flip(cached.cls), patches=flip(cached.patches), embeds=flip(cached.embeds), layers=layers)


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
