"""The paired bootstrap over test items (videoadapt.metrics.bootstrap): resamples as multinomial weights, intervals
that cover a known proportion about as often as they claim, a difference of an arm with itself that is exactly 0,
paired intervals narrower than unpaired ones for correlated arms, and weights that equal evaluating a resampled
test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoadapt.data.records import ClassificationItem, TaskData, VideoRef
from videoadapt.errors import VideoadaptError
from videoadapt.metrics.bootstrap import (
    bootstrap_metrics,
    bootstrap_seed_mean,
    excludes_zero,
    paired_difference,
    percentile_interval,
    point_metrics,
    resample_weights,
    stratified_weights,
)
from videoadapt.tasks import build_task


def accuracy(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A proportion in percent from (hits, items) sums, the shape every task's metrics_from_sums has."""
    return {"accuracy": 100.0 * sums["hits"][..., 0] / sums["hits"][..., 1]}


def proportion_stats(hits: np.ndarray) -> dict[str, np.ndarray]:
    return {"hits": np.stack([hits.astype(np.float64), np.ones(len(hits))], axis=1)}


def test_resample_weights_are_seeded_multinomial_counts():
    weights = resample_weights(50, draws=200, seed=3)
    assert weights.shape == (200, 50) and weights.dtype == np.float64
    assert (weights.sum(axis=1) == 50).all() and (weights >= 0).all() and (weights == np.round(weights)).all()
    np.testing.assert_array_equal(weights, resample_weights(50, draws=200, seed=3))
    assert not np.array_equal(weights, resample_weights(50, draws=200, seed=4))
    # Each item is drawn once per resample on average, with the multinomial's variance (1 - 1/n).
    assert weights.mean() == pytest.approx(1.0)
    assert weights.var() == pytest.approx(1 - 1 / 50, rel=0.1)
    with pytest.raises(VideoadaptError, match="need at least one item"):
        resample_weights(0)


def test_stratified_weights_resample_within_each_stratum_independently():
    a, b = stratified_weights([30, 30], draws=100, seed=1)
    assert a.shape == b.shape == (100, 30) and (a.sum(1) == 30).all() and (b.sum(1) == 30).all()
    assert not np.array_equal(a, b)


def test_percentile_interval_of_known_samples():
    samples = np.arange(1001, dtype=np.float64)  # the 2.5th and 97.5th percentiles of 0..1000 are 25 and 975
    assert percentile_interval(samples) == pytest.approx((25.0, 975.0))
    assert percentile_interval(samples, level=0.5) == pytest.approx((250.0, 750.0))
    with_nan = np.concatenate([samples, [np.nan] * 10])
    assert percentile_interval(with_nan) == pytest.approx((25.0, 975.0))  # undefined resamples are left out
    assert all(np.isnan(percentile_interval(np.full(5, np.nan))))
    with pytest.raises(VideoadaptError, match="level must be between 0 and 1"):
        percentile_interval(samples, level=95)
    assert excludes_zero((0.5, 2.0)) and excludes_zero((-3.0, -0.1)) and not excludes_zero((-0.1, 2.0))


def test_intervals_cover_a_known_proportion_about_95_percent_of_the_time():
    """200 simulated test sets of 200 items with a true accuracy of 30 %: the 95 % percentile interval covers 30 in
    about 190 of them. Covered counts are Binomial(200, ~0.95) (sd ~3), so [178, 198] fails by chance only beyond
    ~4 sd; the run is seeded anyway."""
    rng = np.random.default_rng(2024)
    truth, covered = 30.0, 0
    for experiment in range(200):
        hits = rng.random(200) < truth / 100
        samples = bootstrap_metrics(proportion_stats(hits), accuracy, resample_weights(200, 1000, experiment))
        low, high = percentile_interval(samples["accuracy"])
        covered += low <= truth <= high
    assert 178 <= covered <= 198, covered


def test_a_paired_difference_of_an_arm_with_itself_is_exactly_zero():
    hits = np.random.default_rng(0).random(300) < 0.6
    stats = proportion_stats(hits)
    difference = paired_difference(stats, stats, accuracy, resample_weights(300, 500, 0), "accuracy")
    assert difference.shape == (500,) and (difference == 0.0).all()
    with pytest.raises(VideoadaptError, match="no metric 'top1' for both arms; known: accuracy"):
        paired_difference(stats, stats, accuracy, resample_weights(300, 5, 0), "top1")


def test_a_paired_interval_is_narrower_than_an_unpaired_one_for_correlated_arms():
    """Arm b gets right what arm a gets right except on a few items: their difference is 3 points whatever the
    test items, while each arm's own accuracy varies by several points from resample to resample."""
    rng = np.random.default_rng(7)
    a = rng.random(400) < 0.6
    b = a.copy()
    flip = rng.choice(np.flatnonzero(a), 12, replace=False)  # b misses 12 of a's hits: 3 points lower
    b[flip] = False
    stats_a, stats_b = proportion_stats(a), proportion_stats(b)
    weights = resample_weights(400, 2000, 1)
    paired = percentile_interval(paired_difference(stats_a, stats_b, accuracy, weights, "accuracy"))
    independent = resample_weights(400, 2000, 2)
    unpaired = percentile_interval(
        bootstrap_metrics(stats_a, accuracy, weights)["accuracy"]
        - bootstrap_metrics(stats_b, accuracy, independent)["accuracy"]
    )
    assert paired[1] - paired[0] < 0.4 * (unpaired[1] - unpaired[0])
    assert excludes_zero(paired) and not excludes_zero(unpaired)


def test_weights_equal_evaluating_the_resampled_test_set():
    """A row of weights is a resampled test set: the recognition task's evaluate on the items drawn (with their
    repeats) gives the metrics bootstrap_metrics computes from the per-item statistics and that row."""
    rng = np.random.default_rng(5)
    n, classes = 40, 7
    items = [ClassificationItem(VideoRef(f"v{i}"), int(rng.integers(classes))) for i in range(n)]
    data = TaskData("recognition", "test", items, source=None, origin="test", classes=[str(c) for c in range(7)])  # type: ignore[arg-type]
    scores = [torch.tensor(np.round(rng.normal(size=classes), 1), dtype=torch.float32) for _ in range(n)]
    task = build_task("recognition")
    weights = resample_weights(n, 5, 9)
    resampled = bootstrap_metrics(task.item_statistics(scores, data), task.metrics_from_sums, weights)
    for row in range(len(weights)):
        drawn = np.repeat(np.arange(n), weights[row].astype(int))
        subset = TaskData("recognition", "test", [items[i] for i in drawn], None, "test", data.classes)  # type: ignore[arg-type]
        expected = task.evaluate([scores[i] for i in drawn], subset)
        for key in ("top1", "top5", "mean_class_accuracy"):
            assert resampled[key][row] == pytest.approx(expected[key], abs=1e-9)
    assert point_metrics(task.item_statistics(scores, data), task.metrics_from_sums)["top1"] == pytest.approx(
        task.evaluate(scores, data)["top1"], abs=1e-9
    )


def test_seed_mean_averages_each_seeds_resampled_metric():
    rng = np.random.default_rng(11)
    seeds = [proportion_stats(rng.random(100) < p) for p in (0.4, 0.6)]
    shared = resample_weights(100, 300, 0)
    mean = bootstrap_seed_mean(seeds, accuracy, [shared, shared])["accuracy"]
    each = [bootstrap_metrics(s, accuracy, shared)["accuracy"] for s in seeds]
    np.testing.assert_allclose(mean, (each[0] + each[1]) / 2)
    with pytest.raises(VideoadaptError, match="2 seeds' statistics but 1 weight arrays"):
        bootstrap_seed_mean(seeds, accuracy, [shared])


def test_statistics_of_the_wrong_length_are_named():
    stats = proportion_stats(np.ones(10, dtype=bool))
    with pytest.raises(VideoadaptError, match=r"statistics 'hits' must be \[12 items, K\], got shape \(10, 2\)"):
        bootstrap_metrics(stats, accuracy, resample_weights(12, 3, 0))
