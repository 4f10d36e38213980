"""Zero-shot open-vocabulary detection on SynthWorld test images, for any :class:`GroundingModel`.

Protocol: ``images`` images of the ``test`` image split of SynthWorld seed ``seed`` (1-4 objects, every category
including the held-out ones); the queries are one phrase per category ("a circle", ..., "an hourglass"), all asked
at once. Every (region, query) pair is a detection scored ``sigmoid(logit)``; the ``max_detections`` best per image
go to COCO evaluation (no NMS: set-trained detectors give one region per object). Fully hidden objects are not
ground truth. AP/AP50 are reported for seen and held-out categories apart (``config.held_out_shapes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from videoadapt.data.synthworld import SHAPES, SynthWorld, SynthWorldConfig
from videoadapt.data.transforms import preprocess
from videoadapt.foundation.base import GroundingModel
from videoadapt.metrics.detection import Box, box_ap

TARGETS = {"seen_AP50": 60.0, "held_out_over_seen_AP50": 0.5}


def category_phrase(shape: str) -> str:
    return f"{'an' if shape[0] in 'aeiou' else 'a'} {shape}"


def evaluate_detection(
    model: GroundingModel,
    images: int = 500,
    seed: int = 1234,
    split: str = "test",
    batch: int = 100,
    max_detections: int = 100,
) -> dict[str, Any]:
    """AP and AP50 (percent) of ``model`` on seen and held-out categories; see the module docstring."""
    world = SynthWorld(SynthWorldConfig(seed=seed))
    held_out = list(world.config.held_out_shapes)
    seen = [s for s in SHAPES if s not in held_out]
    queries = [category_phrase(s) for s in SHAPES]
    samples = list(world.images(images, split=split))
    ground_truth: list[list[Box]] = []
    detections: list[list[Box]] = []
    model.eval()
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        pixels = preprocess(np.stack([s.image for s in chunk]), model.processor)
        with torch.no_grad():
            regions = model.detect(pixels, queries)
        for sample, boxes, logits in zip(chunk, regions.boxes, regions.logits, strict=True):
            height, width = sample.image.shape[:2]
            ground_truth.append(
                [Box(tuple(o.box), o.shape) for o in sample.objects if not np.isnan(o.box).any()]  # type: ignore[arg-type]
            )
            scores = logits.float().sigmoid()  # [R,Q]
            top = torch.topk(scores.flatten(), min(max_detections, scores.numel()))
            pixel = (boxes.float() * torch.tensor([width, height, width, height])).tolist()
            rows = top.indices // scores.shape[1]
            cols = top.indices % scores.shape[1]
            detections.append(
                [
                    Box(tuple(pixel[r]), SHAPES[c], float(s))  # type: ignore[arg-type]
                    for r, c, s in zip(rows.tolist(), cols.tolist(), top.values.tolist(), strict=True)
                ]
            )
    size = samples[0].image.shape[1], samples[0].image.shape[0]
    result = box_ap(ground_truth, detections, SHAPES, {"seen": seen, "held_out": held_out}, image_size=size)
    seen_ap50, held_ap50 = result["seen"]["AP50"], result["held_out"]["AP50"]
    return {
        "images": images,
        "seed": seed,
        "split": split,
        "queries": queries,
        "held_out_categories": held_out,
        "seen": result["seen"],
        "held_out": result["held_out"],
        "per_category_AP": result["per_category"],
        "held_out_over_seen_AP50": held_ap50 / seen_ap50 if seen_ap50 > 0 else float("nan"),
    }


def meets_targets(result: dict[str, Any]) -> dict[str, bool]:
    return {
        "seen_AP50": result["seen"]["AP50"] >= TARGETS["seen_AP50"],
        "held_out_over_seen_AP50": result["held_out_over_seen_AP50"] >= TARGETS["held_out_over_seen_AP50"],
    }
