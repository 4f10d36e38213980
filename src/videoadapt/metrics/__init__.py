"""Metrics, one module per family, each following a named reference implementation.

recognition — MMAction2 top-k / mean class accuracy; retrieval — CLIP4Clip ``compute_metrics``; qa — VQA answer
normalisation, multiple-choice and open-ended accuracy; captioning — pycocoevalcap (BLEU, METEOR, ROUGE-L,
CIDEr). Each module's docstring states its conventions (ties, the median, strict vs. inclusive thresholds).
Accuracies and recalls are percentages (0–100), ranks are ranks, caption scores are x100 as papers report them.
``bootstrap`` turns a task's per-item statistics into paired percentile intervals over test items.
"""

from __future__ import annotations

from videoadapt.metrics.captioning import caption_metrics
from videoadapt.metrics.qa import multiple_choice_accuracy, normalize_answer, open_ended_accuracy
from videoadapt.metrics.recognition import recognition_metrics
from videoadapt.metrics.retrieval import retrieval_metrics

__all__ = [
    "caption_metrics",
    "multiple_choice_accuracy",
    "normalize_answer",
    "open_ended_accuracy",
    "recognition_metrics",
    "retrieval_metrics",
]
