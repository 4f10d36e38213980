"""Metrics, one module per family, each following a named reference implementation.

recognition — MMAction2 top-k / mean class accuracy; retrieval — CLIP4Clip ``compute_metrics``; qa — VQA answer
normalisation, multiple-choice and open-ended accuracy; captioning — pycocoevalcap (BLEU, METEOR, ROUGE-L,
CIDEr); temporal_grounding — Charades-STA R@n,IoU=m / mIoU (2D-TAN) and QVHighlights moment retrieval and
highlight detection (Moment-DETR ``standalone_eval``); st_grounding — VidSTG / HC-STVG tIoU and vIoU (TubeDETR).
Each module's docstring states its conventions (ties, the median, strict vs. inclusive thresholds).
Accuracies and recalls are percentages (0–100), ranks are ranks, caption scores are x100 as papers report them.
``bootstrap`` turns a task's per-item statistics into paired percentile intervals over test items.
"""

from __future__ import annotations

from videoadapt.metrics.captioning import caption_metrics
from videoadapt.metrics.qa import multiple_choice_accuracy, normalize_answer, open_ended_accuracy
from videoadapt.metrics.recognition import recognition_metrics
from videoadapt.metrics.retrieval import retrieval_metrics
from videoadapt.metrics.st_grounding import box_iou, st_grounding_metrics
from videoadapt.metrics.temporal_grounding import (
    charades_sta_metrics,
    highlight_detection_metrics,
    moment_retrieval_metrics,
    qvhighlights_saliency_labels,
    temporal_iou,
)

__all__ = [
    "box_iou",
    "caption_metrics",
    "charades_sta_metrics",
    "highlight_detection_metrics",
    "moment_retrieval_metrics",
    "multiple_choice_accuracy",
    "normalize_answer",
    "open_ended_accuracy",
    "qvhighlights_saliency_labels",
    "recognition_metrics",
    "retrieval_metrics",
    "st_grounding_metrics",
    "temporal_iou",
]
