"""Batches of a split's items for a model: their clips decoded and preprocessed (or their cached frame features),
their rows (several items may share a clip), and the task's targets. Used by training and by evaluation alike.

In training every random choice is a function of ``(seed, epoch, item)`` (the frames a random sampler picks, the
caption drawn for a video), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from videoadapt.data.records import Item, TaskData, source_frames
from videoadapt.data.sampling import Dense, Sampler, UniformSegments, sample_by_time, sampler_from_spec
from videoadapt.data.transforms import ProcessorSettings, decode_short_side, preprocess
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures
from videoadapt.tasks.base import SAMPLED_FRAMES, Task

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


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, 7919])


class _Seeded(Sampler):
    """A sampler whose random choices come from a given generator, whatever the video source passes."""

    def __init__(self, sampler: Sampler, rng: np.random.Generator) -> None:
        self.sampler, self.rng = sampler, rng

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.sampler.indices(num_frames, fps, self.rng)

    def indices_for_times(self, times: np.ndarray, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        return sample_by_time(self.sampler, times, fps, self.rng)  # variable-rate videos (read_video)


class _Recording(Sampler):
    """Passes ``sampler``'s choices on and keeps the last ones: the video frames a clip was decoded at."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.picked: np.ndarray | None = None

    def indices(self, num_frames: int, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        self.picked = np.asarray(self.sampler.indices(num_frames, fps, rng), dtype=np.int64).reshape(-1)
        return self.picked

    def indices_for_times(self, times: np.ndarray, fps: float, rng: np.random.Generator | None = None) -> np.ndarray:
        self.picked = np.asarray(sample_by_time(self.sampler, times, fps, rng), dtype=np.int64).reshape(-1)
        return self.picked


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

    def clip(self, index: int, epoch: int) -> tuple[torch.Tensor, np.ndarray | None]:
        """Item ``index``'s clip, preprocessed, and the video frames it was decoded at (in the clip's order)."""
        item = self.data.items[index]
        sampler = _Recording(self._for_item(self.sampler, index, epoch))
        frames = source_frames(self.data.source, item.video, sampler, decode_short_side(self.processor))
        if frames.ndim != 4 or len(frames) == 0:
            raise VideoadaptError(f"decoded no frames (shape {tuple(frames.shape)})")
        picked = sampler.picked if sampler.picked is not None and len(sampler.picked) == len(frames) else None
        if _time_reversed(item):
            frames = np.ascontiguousarray(frames[::-1])  # the sampled clip, played backwards
            picked = None if picked is None else picked[::-1].copy()
        return preprocess(frames, self.processor), picked

    def _cached_frames(self, index: int, pick: torch.Tensor | None) -> np.ndarray | None:
        """The video frames of item ``index``'s cached rows (after ``pick``): the cache's deterministic sampler
        over the item's frame count, when the item states it (tracking and segmentation items do)."""
        num_frames = getattr(self.data.items[index], "num_frames", None)
        spec = (getattr(getattr(self.cache, "key", None), "parts", None) or {}).get("sampler_spec")
        if not num_frames or not spec:
            return None
        sampler = sampler_from_spec(str(spec))
        if not isinstance(sampler, UniformSegments | Dense):
            return None  # a time-based cache needs the video's frame rate, which an item does not carry
        frames = np.asarray(sampler.indices(int(num_frames), 1.0), dtype=np.int64)
        if pick is not None:
            frames = frames[pick.numpy()]
        return frames[::-1].copy() if _time_reversed(self.data.items[index]) else frames

    def build(self, indices: Sequence[int], epoch: int = 0) -> Batch:
        kept: list[int] = []
        skipped: list[str] = []
        # A clip is a video and a direction: a time-reversed copy is a clip of its own, not its original's.
        clips: dict[tuple[str, bool], torch.Tensor] = {}
        decoded_at: dict[tuple[str, bool], np.ndarray | None] = {}
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
                    clips[key], decoded_at[key] = self.clip(index, epoch)
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
        first = {}
        for index in kept:
            first.setdefault(_clip_key(self.data.items[index]), index)
        if self.cache is not None and order:
            cached = self.cache.get([video_id for video_id, _ in order], patches=self.cache_patches)
        picks = None
        if cached is not None and self.cache_sampler is not None:
            cached, picks = self._resample(cached, [first[k] for k in order], epoch)
        if cached is not None and any(backwards for _, backwards in order):
            cached = _reverse_rows(cached, [backwards for _, backwards in order])
        if self.pixels and order:
            frames_of = [decoded_at.get(k) for k in order]
        else:
            frames_of = [
                self._cached_frames(first[k], None if picks is None else picks[r]) for r, k in enumerate(order)
            ]
        items: list[Item] = [self.data.items[i] for i in kept]
        rngs = [item_rng(self.seed + 1, epoch, i) for i in kept] if self.train else None
        targets = self.task.targets(items, self.data, rngs, train=self.train) if items else {}
        if items:
            targets[SAMPLED_FRAMES] = [frames_of[int(r)] for r in rows]
        return Batch(kept, rows, video, cached, targets, skipped)

    def each_item(self, batch: Batch, epoch: int = 0) -> list[Batch]:
        """``batch`` (built by :meth:`build`) as one batch per item, in order: the item's own clip and cached
        features (copied into fresh tensors) and its targets collated alone. Evaluation runs the model on these, so
        that an item's prediction never depends on the other items of its batch (see
        :func:`videoadapt.model.evaluation.evaluate_data`); nothing is decoded or read again."""
        singles = []
        for j, index in enumerate(batch.indices):
            row = int(batch.rows[j])
            video = None if batch.video is None else batch.video[row : row + 1].clone()
            cached = None if batch.cached is None else _row_of(batch.cached, row)
            rngs = [item_rng(self.seed + 1, epoch, index)] if self.train else None
            targets = self.task.targets([self.data.items[index]], self.data, rngs, train=self.train)
            if SAMPLED_FRAMES in batch.targets:
                targets[SAMPLED_FRAMES] = [batch.targets[SAMPLED_FRAMES][j]]
            singles.append(Batch([index], torch.zeros(1, dtype=torch.long), video, cached, targets))
        return singles

    def _resample(
        self, cached: FrameFeatures, indices: Sequence[int], epoch: int
    ) -> tuple[FrameFeatures, torch.Tensor]:
        """Row ``r`` of ``cached`` keeps the frames that ``cache_sampler`` picks among its ``T`` cached frames, with
        the random generator of item ``indices[r]`` (the same draw as a decoded clip of that item would get);
        returns them and the picks ``[V,T']``."""
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
        features = FrameFeatures(
            cls=take(cached.cls), patches=take(cached.patches), embeds=take(cached.embeds), layers=layers
        )
        return features, pick


def _time_reversed(item: Item) -> bool:
    return bool(getattr(item, "time_reversed", False))


def _clip_key(item: Item) -> tuple[str, bool]:
    return item.video.video_id, _time_reversed(item)


def _row_of(cached: FrameFeatures, row: int) -> FrameFeatures:
    """Row ``row`` of ``cached`` as a batch of one, in fresh (aligned) tensors: some BLAS kernels round differently
    on an input that starts elsewhere in memory."""

    def take(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[row : row + 1].clone()

    layers = None if cached.layers is None else [take(t) for t in cached.layers]
    return FrameFeatures(cls=take(cached.cls), patches=take(cached.patches), embeds=take(cached.embeds), layers=layers)


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
