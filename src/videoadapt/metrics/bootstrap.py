"""Confidence intervals by the bootstrap over test items, paired across the arms of a comparison.

A task describes its scored test set by additive per-item statistics (``Task.item_statistics``: a dict of
``[N, K]`` arrays, one row per resampling unit) and its metrics as functions of their column sums
(``Task.metrics_from_sums``: ``[..., K] -> [...]``). A bootstrap resample of the N items is then a vector of
multinomial counts ``w`` ``[N]`` (how often each item was drawn), its statistics are ``w @ stats``, and ``B``
resamples are one matrix product ``weights [B, N] @ stats [N, K]``.

* **Percentile interval** (Efron): the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the B resampled
  metric values.
* **Paired difference**: two arms scored on the same test items are resampled with the *same* weights, and the
  interval is taken over the B differences. What the items share (easy and hard items are easy and hard for both
  arms) cancels, so the interval of a difference is narrower than two separate intervals suggest; an arm leads
  only when the interval of its difference excludes 0.
* **Several seeds**: each seed's metric is resampled over its own test items (the same weights for every seed
  when they share one test set), and the seeds' metrics are averaged per resample (:func:`bootstrap_seed_mean`):
  the interval then covers test-set sampling of the seed mean, not seed-to-seed variation of training alone.

Numpy only; no task knowledge here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from videoadapt.errors import VideoadaptError

Stats = Mapping[str, np.ndarray]
Reduce = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

DEFAULT_DRAWS = 1000
DEFAULT_LEVEL = 0.95


def resample_weights(n: int, draws: int = DEFAULT_DRAWS, seed: int = 0) -> np.ndarray:
    """``[draws, n]`` float64 multinomial counts: row ``b`` says how often each of the ``n`` items is drawn in
    resample ``b`` (each row sums to ``n``). Seeded, so every arm of a comparison gets the same resamples."""
    if int(n) < 1:
        raise VideoadaptError(f"bootstrap: need at least one item to resample, got n={n}")
    if int(draws) < 1:
        raise VideoadaptError(f"bootstrap: draws must be at least 1, got {draws}")
    rng = np.random.default_rng([int(seed), 0xB007])
    return rng.multinomial(int(n), np.full(int(n), 1.0 / int(n)), size=int(draws)).astype(np.float64)


def stratified_weights(sizes: Sequence[int], draws: int = DEFAULT_DRAWS, seed: int = 0) -> list[np.ndarray]:
    """One :func:`resample_weights` per stratum (e.g. per seed with its own test set), items resampled within
    their stratum; strata of the same size still get independent draws."""
    return [resample_weights(n, draws, seed * 1_000_003 + k) for k, n in enumerate(sizes)]


def _check(stats: Stats, weights: np.ndarray) -> None:
    if weights.ndim != 2:
        raise VideoadaptError(f"bootstrap: weights must be [draws, items], got shape {weights.shape}")
    for key, value in stats.items():
        if value.ndim != 2 or value.shape[0] != weights.shape[1]:
            raise VideoadaptError(
                f"bootstrap: statistics {key!r} must be [{weights.shape[1]} items, K], got shape {value.shape}"
            )


def sums(stats: Stats) -> dict[str, np.ndarray]:
    """Column sums over all items: what ``reduce`` turns into the point estimate."""
    return {key: np.asarray(value, dtype=np.float64).sum(axis=0) for key, value in stats.items()}


def point_metrics(stats: Stats, reduce: Reduce) -> dict[str, float]:
    """The metrics of the full test set (every weight 1)."""
    return {key: float(value) for key, value in reduce(sums(stats)).items()}


def bootstrap_metrics(stats: Stats, reduce: Reduce, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of ``reduce`` under each resample: ``{key: [draws]}``."""
    weights = np.asarray(weights, dtype=np.float64)
    _check(stats, weights)
    resampled = {key: weights @ np.asarray(value, dtype=np.float64) for key, value in stats.items()}
    return {key: np.asarray(value, dtype=np.float64) for key, value in reduce(resampled).items()}


def bootstrap_seed_mean(
    stats_per_seed: Sequence[Stats], reduce: Reduce, weights_per_seed: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    """The seed mean of every metric under each resample: seed ``s``'s items resampled by ``weights_per_seed[s]``
    (pass the same array for seeds that share a test set, :func:`stratified_weights` for seeds with their own)."""
    if not stats_per_seed or len(stats_per_seed) != len(weights_per_seed):
        raise VideoadaptError(
            f"bootstrap: {len(stats_per_seed)} seeds' statistics but {len(weights_per_seed)} weight arrays"
        )
    per_seed = [bootstrap_metrics(s, reduce, w) for s, w in zip(stats_per_seed, weights_per_seed, strict=True)]
    keys = set.intersection(*(set(m) for m in per_seed))
    return {key: np.mean([m[key] for m in per_seed], axis=0) for key in sorted(keys)}


def paired_difference(stats_a: Stats, stats_b: Stats, reduce: Reduce, weights: np.ndarray, key: str) -> np.ndarray:
    """``metric(a) - metric(b)`` under each resample ``[draws]``, both arms resampled with the same weights (their
    rows must be the same test items in the same order)."""
    a = bootstrap_metrics(stats_a, reduce, weights)
    b = bootstrap_metrics(stats_b, reduce, weights)
    if key not in a or key not in b:
        known = sorted(set(a) & set(b))
        raise VideoadaptError(f"bootstrap: no metric {key!r} for both arms; known: {', '.join(known)}")
    return a[key] - b[key]


def percentile_interval(samples: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap ``samples`` at ``level`` (0.95: the 2.5th and 97.5th percentiles).
    Resamples where the metric is undefined (NaN: e.g. no item of a subgroup was drawn) are left out; all NaN
    gives ``(nan, nan)``."""
    if not 0.0 < float(level) < 1.0:
        raise VideoadaptError(f"bootstrap: level must be between 0 and 1, got {level}")
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - float(level)) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def excludes_zero(interval: tuple[float, float]) -> bool:
    """Whether a difference's interval lies strictly on one side of 0 (a leader may then be named)."""
    low, high = interval
    return bool(low > 0.0 or high < 0.0)
