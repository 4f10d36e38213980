"""Confidence intervals and ties: a paired bootstrap over test items, on the per-item statistics every scored cell
keeps (``item_stats.safetensors``, see ``videoadapt.tasks.base.Task.item_statistics``).

For one table, every arm of a seed is scored on the same test items, so one set of resampling weights per seed
(``weights[b, i]``: how often item i is drawn in resample b) serves every arm: a difference between two arms is
computed on the same resampled items, i.e. *paired*, which removes the variance the arms share (the hard and easy
items) and leaves the one that tells them apart. A metric of a resample is the task's metric of the weighted sums of
the per-item statistics (``Task.metrics_from_sums``), so a thousand resamples are one matrix product.

With several seeds (each its own training run, and on SynthWorld its own data), an arm's figure is the mean over
its seeds; a resample draws the seeds with replacement (the same draw for every arm) and then the items within each
drawn seed, so the interval carries the seed-to-seed variance as well as the item sampling. Intervals are the 2.5
and 97.5 percentiles of ``DRAWS`` resamples. A leader is named only when the interval of its paired difference
with every other arm excludes 0; arms whose difference with the best one includes 0 are *tied* with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DRAWS = 1000
LEVEL = 0.95


@dataclass
class ArmSamples:
    """One arm of one table: per seed, the bootstrap samples of every metric (``[DRAWS]``) and its full value."""

    arm: str
    per_seed: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    values: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.per_seed)


def _seed(*parts: Any) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def load_item_stats(path: Path) -> dict[str, np.ndarray]:
    from videoadapt.utils.safe_io import load_tensors

    return {k: v.double().numpy() for k, v in load_tensors(path).items()}


class TableStatistics:
    """The bootstrap of one table: ``add(arm, seed, stats)`` for every scored cell, then intervals and ties."""

    def __init__(self, task: Any, table: str, draws: int = DRAWS, level: float = LEVEL) -> None:
        self.task = task
        self.table = table
        self.draws = draws
        self.level = level
        self.arms: dict[str, ArmSamples] = {}
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    def weights(self, seed: int, items: int) -> np.ndarray:
        """The resampling weights of a seed's test set, the same for every arm (the pairing)."""
        from videoadapt.metrics.bootstrap import resample_weights

        key = (seed, items)
        if key not in self._weights:
            self._weights[key] = resample_weights(items, self.draws, _seed(self.table, seed, items))
        return self._weights[key]

    def add(self, arm: str, seed: int, stats: dict[str, np.ndarray]) -> None:
        sizes = {v.shape[0] for v in stats.values()}
        if len(sizes) != 1:
            raise ValueError(f"{self.table}/{arm}/seed{seed}: item statistics of different lengths {sorted(sizes)}")
        (items,) = sizes
        weights = self.weights(seed, items)
        resampled = {k: weights @ v for k, v in stats.items()}
        full = {k: v.sum(axis=0) for k, v in stats.items()}
        entry = self.arms.setdefault(arm, ArmSamples(arm))
        samples = self.task.metrics_from_sums(resampled)
        entry.per_seed[seed] = {k: np.asarray(v, dtype=np.float64) for k, v in samples.items()}
        entry.values[seed] = {k: float(v) for k, v in self.task.metrics_from_sums(full).items()}

    def _seed_draws(self, seeds: Sequence[int]) -> np.ndarray:
        """``[DRAWS, S]`` positions into ``seeds``: which seeds each resample averages (all of them, once each, for
        one seed)."""
        count = len(seeds)
        if count == 1:
            return np.zeros((self.draws, 1), dtype=np.int64)
        rng = np.random.default_rng(_seed(self.table, "seeds", *seeds))
        return rng.integers(0, count, size=(self.draws, count))

    def _mean_over_seeds(self, per_seed: dict[int, np.ndarray], seeds: Sequence[int]) -> np.ndarray:
        stacked = np.stack([per_seed[s] for s in seeds])  # [S, DRAWS]
        draws = self._seed_draws(seeds)  # [DRAWS, S]
        columns = np.arange(self.draws)[:, None]
        return stacked[draws, columns].mean(axis=1)

    def summary(self, arm: str, metric: str) -> tuple[float, float, float, int] | None:
        """``(mean over seeds, low, high, seeds)`` of ``metric`` for ``arm``; None when it has no such metric."""
        entry = self.arms.get(arm)
        if entry is None or not entry.per_seed or any(metric not in m for m in entry.per_seed.values()):
            return None
        seeds = entry.seeds
        point = float(np.mean([entry.values[s][metric] for s in seeds]))
        samples = self._mean_over_seeds({s: entry.per_seed[s][metric] for s in seeds}, seeds)
        low, high = _interval(samples, self.level)
        return point, low, high, len(seeds)

    def difference(self, first: str, second: str, metric: str) -> tuple[float, float, float, int] | None:
        """``(point, low, high, seeds)`` of ``first - second`` on ``metric``, paired over the seeds both have."""
        a, b = self.arms.get(first), self.arms.get(second)
        if a is None or b is None:
            return None
        seeds = sorted(set(a.per_seed) & set(b.per_seed))
        if not seeds or any(metric not in a.per_seed[s] or metric not in b.per_seed[s] for s in seeds):
            return None
        diff = {s: a.per_seed[s][metric] - b.per_seed[s][metric] for s in seeds}
        point = float(np.mean([a.values[s][metric] - b.values[s][metric] for s in seeds]))
        low, high = _interval(self._mean_over_seeds(diff, seeds), self.level)
        return point, low, high, len(seeds)

    def ranking(self, arms: Sequence[str], metric: str) -> dict[str, Any] | None:
        """The best of ``arms`` on ``metric`` and who is tied with it (paired difference interval includes 0)."""
        scored = [(a, s) for a in arms if (s := self.summary(a, metric)) is not None]
        if not scored:
            return None
        scored.sort(key=lambda x: x[1][0], reverse=True)
        best, best_stats = scored[0]
        tied, behind = [], []
        for arm, _ in scored[1:]:
            diff = self.difference(best, arm, metric)
            entry = {"arm": arm, "difference": diff}
            (tied if diff is None or diff[1] <= 0 else behind).append(entry)
        return {"metric": metric, "best": best, "stats": best_stats, "tied": tied, "behind": behind}


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    from videoadapt.metrics.bootstrap import percentile_interval

    low, high = percentile_interval(samples, level)
    return float(low), float(high)


def kendall_tau(first: dict[str, float], second: dict[str, float]) -> tuple[float, int]:
    """Kendall's tau-b between two rankings of the same arms (their primary metric), and how many arms both have."""
    from scipy.stats import kendalltau

    common = sorted(set(first) & set(second))
    if len(common) < 2:
        return float("nan"), len(common)
    tau = kendalltau([first[a] for a in common], [second[a] for a in common]).statistic
    return float(tau), len(common)
