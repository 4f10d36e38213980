"""Batches for the training loop: which items (a seeded permutation per epoch), their clips or cached features,
and their targets.

Every random choice is a function of ``(seed, epoch, item)``: the permutation of an epoch, the frames a random
sampler picks, the caption drawn for a video. Hence the position in the data is just ``(epoch, micro-batch)``, a
resumed run sees exactly the batches an uninterrupted one would, and the global batch is the same whatever the
number of processes (process ``r`` of ``P`` takes the ``r``-th slice of each global batch).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    ) -> None:
        self.data, self.task, self.processor, self.sampler = data, task, processor, sampler
        self.train, self.seed, self.cache, self.pixels, self.skip_bad = train, seed, cache, pixels, skip_bad
        # Draws the frames of each step from a denser cached clip (indices into its rows), so that a run from the
        # cache sees the same random temporal jitter as one that decodes video; None: cached rows as they are.
        self.cache_sampler = cache_sampler

    def describe(self, index: int) -> str:
        item = self.data.items[index]
        name = getattr(item, "question_id", None) or item.video.video_id
        return f"{self.data.origin}: {self.data.split} item {index} ({name!r})"

    def clip(self, index: int, epoch: int) -> torch.Tensor:
        ref = self.data.items[index].video
        sampler = _Seeded(self.sampler, item_rng(self.seed, epoch, index)) if self.train else self.sampler
        frames = self.data.source.frames(ref, sampler)
        if frames.ndim != 4 or len(frames) == 0:
            raise VideoadaptError(f"decoded no frames (shape {tuple(frames.shape)})")
        return preprocess(frames, self.processor)

    def build(self, indices: Sequence[int], epoch: int = 0) -> Batch:
        kept: list[int] = []
        skipped: list[str] = []
        clips: dict[str, torch.Tensor] = {}
        order: list[str] = []
        for index in indices:
            video_id = self.data.items[index].video.video_id
            if self.cache is not None and video_id not in self.cache:
                # Skipped as unreadable when the cache was extracted (only happens with skip_bad).
                message = f"{self.describe(index)}: its video was skipped as unreadable when caching features"
                if not self.skip_bad:
                    raise VideoadaptError(message)
                skipped.append(message)
                continue
            if video_id not in clips and self.pixels:
                try:
                    clips[video_id] = self.clip(index, epoch)
                except READ_ERRORS as error:
                    message = f"{self.describe(index)}: cannot read its video: {error}"
                    if not self.skip_bad:
                        raise VideoadaptError(f"{message} (set data.skip_bad=true to skip bad items)") from error
                    skipped.append(message)
                    continue
            if video_id not in order:
                order.append(video_id)
            kept.append(index)
        rows = torch.tensor([order.index(self.data.items[i].video.video_id) for i in kept], dtype=torch.long)
        video = None
        if self.pixels and order:
            video = torch.stack([clips[v] for v in order])
        cached = self.cache.get(order) if self.cache is not None and order else None
        if cached is not None and self.cache_sampler is not None:
            first = {}
            for index in kept:
                first.setdefault(self.data.items[index].video.video_id, index)
            cached = self._resample(cached, [first[v] for v in order], epoch)
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
            sampler = (
                _Seeded(self.cache_sampler, item_rng(self.seed, epoch, index)) if self.train else self.cache_sampler
            )
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


class StepDataset(torch.utils.data.Dataset):
    """Element ``k`` is the ``k``-th batch of a fixed list, so a DataLoader (``batch_size=None``) builds batches in
    worker processes while the order stays ours."""

    def __init__(self, builder: BatchBuilder, batches: list[list[int]], epoch: int) -> None:
        self.builder, self.batches, self.epoch = builder, batches, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Batch:
        return self.builder.build(self.batches[k], self.epoch)


def _keep(batch: Batch) -> Batch:
    return batch


def batch_loader(builder: BatchBuilder, batches: list[list[int]], epoch: int, workers: int) -> Any:
    """Iterate over ``batches`` (lists of item indices) as built :class:`Batch` es, with ``workers`` processes."""
    if workers <= 0:
        return (builder.build(b, epoch) for b in batches)
    # Its own generator: a DataLoader otherwise draws its workers' base seed from the global torch RNG, which
    # would make dropout after a mid-epoch resume differ from an uninterrupted run.
    generator = torch.Generator().manual_seed(builder.seed * 1_000_003 + epoch)
    return torch.utils.data.DataLoader(
        StepDataset(builder, batches, epoch),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_keep,
        generator=generator,
    )
