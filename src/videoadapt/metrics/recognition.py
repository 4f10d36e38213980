"""Recognition accuracy, following MMAction2's ``top_k_accuracy`` and ``mean_class_accuracy``.

Reference: ``mmaction/evaluation/functional/accuracy.py`` (MMAction2 1.x). Conventions, as implemented here:

* **top-k** — a sample is correct when its label is among the k classes taken from the end of an ascending
  argsort of its scores (MMAction2: ``np.argsort(scores)[:, -k:]``). MMAction2 uses NumPy's default sort, whose
  order among *tied* scores is unspecified (it changes with NumPy version and CPU: SIMD sorts are not stable), so
  its own result on ties is not reproducible. We use the same expression with a *stable* sort, which is what the
  default sort gave on small rows in older NumPy: among tied scores the **higher class index ranks first**.
  Without ties the result is identical to MMAction2's. ``k`` larger than the number of classes counts every
  sample as correct (as in MMAction2).
* **mean class accuracy** — the prediction is ``np.argmax`` (ties: the **lowest** class index wins, unlike top-1
  above — as in MMAction2). Per-class accuracy is hits / samples of that class, averaged over the classes that
  occur among the labels *or* the predictions: a class that is predicted but never the label counts as accuracy 0
  (MMAction2 builds its confusion matrix over the union of both); classes absent from both are ignored.
* Values are percentages (0–100).
"""

from __future__ import annotations

import numpy as np

from videoadapt.errors import VideoadaptError

CONVENTIONS = {
    "topk": "label among the last k of a stable ascending argsort (MMAction2 top_k_accuracy); "
    "ties: higher class index ranks first",
    "mean_class_accuracy": "argmax prediction (ties: lowest index); mean over classes present in labels or "
    "predictions, a predicted-but-unlabelled class counts 0 (MMAction2 mean_class_accuracy)",
    "units": "percent",
}


def recognition_metrics(scores: np.ndarray, labels: np.ndarray, topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies and mean class accuracy, in percent, with MMAction2's conventions (see module docstring).

    Args:
        scores: ``[N, C]`` class scores (logits or probabilities; only their order matters).
        labels: ``[N]`` integer labels in ``[0, C)``.
        topk: the k values; each gives a key ``f"top{k}"``.

    Returns:
        ``{"top1": ..., "top5": ..., "mean_class_accuracy": ...}`` in percent (0–100).
    """
    scores, labels = _check(scores, labels, topk)
    # Stable, so that the rank among tied scores is the class index (see module docstring).
    order = np.argsort(scores, axis=1, kind="stable")
    result: dict[str, float] = {}
    for k in topk:
        top = order[:, -k:]
        hit = (top == labels[:, None]).any(axis=1)
        result[f"top{k}"] = 100.0 * float(hit.mean())
    result["mean_class_accuracy"] = 100.0 * _mean_class_accuracy(np.argmax(scores, axis=1), labels)
    return result


def _mean_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    # MMAction2's confusion matrix spans the union of predicted and true labels, so a class that is only ever
    # predicted has 0 samples and contributes 0.0 to the mean.
    classes = np.unique(np.concatenate([predicted, labels]))
    accuracies = []
    for c in classes:
        of_class = labels == c
        count = int(of_class.sum())
        accuracies.append(float((predicted[of_class] == c).sum()) / count if count else 0.0)
    return float(np.mean(accuracies))


def _check(scores: np.ndarray, labels: np.ndarray, topk: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise VideoadaptError(f"recognition scores must be a non-empty [N, C] array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise VideoadaptError(f"recognition scores must be real numbers, got dtype {scores.dtype}")
    if labels.shape != (scores.shape[0],):
        raise VideoadaptError(f"expected {scores.shape[0]} labels (one per score row), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise VideoadaptError(f"recognition labels must be integers, got dtype {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= scores.shape[1]))
    if bad.size:
        raise VideoadaptError(
            f"label {int(labels[bad[0]])} of sample {int(bad[0])} is outside [0, {scores.shape[1]}) classes"
        )
    # NaN sorts above every number, so a NaN score would silently win top-1.
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1)) if scores.dtype.kind == "f" else np.array([])
    if nan_rows.size:
        raise VideoadaptError(f"recognition scores of sample {int(nan_rows[0])} contain NaN")
    if not topk or any(int(k) < 1 for k in topk):
        raise VideoadaptError(f"topk must be positive integers, got {topk}")
    return scores, labels.astype(np.int64)
