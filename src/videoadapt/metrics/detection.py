"""COCO box AP and AP50 through pycocotools (the reference implementation), built from in-memory lists.

Ground truth and detections are plain per-image lists of pixel xyxy boxes; this module turns them into COCO's
dicts (xywh boxes, integer ids) and runs ``COCOeval`` once per category group, so that e.g. seen and held-out
categories are averaged apart. AP is COCO's mean over IoU 0.50:0.95 and over the group's categories (those with at
least one ground-truth box), in percent; AP50 at IoU 0.5 alone.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A pixel box ``(x1, y1, x2, y2)`` of ``category``; ``score`` for detections (ignored for ground truth)."""

    xyxy: tuple[float, float, float, float]
    category: str
    score: float = 1.0


def _coco_box(xyxy: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)]


def box_ap(
    ground_truth: Sequence[Sequence[Box]],
    detections: Sequence[Sequence[Box]],
    categories: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    image_size: tuple[int, int] = (64, 64),
    max_detections: int = 100,
) -> dict[str, dict[str, float]]:
    """``{group: {"AP": .., "AP50": .., "categories": n}}`` for every group (default: one group ``"all"``), plus
    ``{"per_category": {category: AP}}``. ``ground_truth[i]``/``detections[i]`` belong to image ``i``; a group
    without any ground-truth box reports NaN. ``max_detections`` per image is COCO's ``maxDets``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(detections)} detection images")
    ids = {name: k + 1 for k, name in enumerate(categories)}
    width, height = image_size
    images = [{"id": i + 1, "width": width, "height": height} for i in range(len(ground_truth))]
    annotations = []
    for i, boxes in enumerate(ground_truth):
        for box in boxes:
            xywh = _coco_box(box.xyxy)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": ids[box.category],
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
    results = [
        {"image_id": i + 1, "category_id": ids[box.category], "bbox": _coco_box(box.xyxy), "score": float(box.score)}
        for i, boxes in enumerate(detections)
        for box in boxes
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and summaries
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k, "name": name} for name, k in ids.items()],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else COCO()
        if not results:
            coco_dt.dataset = {"images": images, "annotations": [], "categories": coco_gt.dataset["categories"]}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: [T IoUs, R recall points, K categories, A area ranges, M maxDets]; area "all" = 0, maxDets last
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    order = list(evaluator.params.catIds)
    present = {ids[b.category] for boxes in ground_truth for b in boxes}

    def ap_of(category_ids: list[int], iou: slice) -> float:
        columns = [order.index(c) for c in category_ids if c in present]
        if not columns:
            return float("nan")
        values = precision[iou][:, :, columns]
        per_category = [np.mean(v[v > -1]) if np.any(v > -1) else 0.0 for v in np.moveaxis(values, -1, 0)]
        return float(100 * np.mean(per_category))

    groups = groups or {"all": list(categories)}
    out: dict[str, dict[str, float]] = {}
    for name, members in groups.items():
        unknown = [m for m in members if m not in ids]
        if unknown:
            raise ValueError(f"group {name!r} names unknown categories {unknown}")
        member_ids = [ids[m] for m in members]
        out[name] = {
            "AP": ap_of(member_ids, slice(None)),
            "AP50": ap_of(member_ids, slice(0, 1)),
            "categories": float(sum(c in present for c in member_ids)),
        }
    out["per_category"] = {name: ap_of([k], slice(None)) for name, k in ids.items()}
    return out
