"""COCO *uncompressed* RLE for binary masks, readable by ``pycocotools.mask.frPyObjects``.

Runs are taken over the mask flattened in column-major (Fortran) order and always start with a run of zeros
(possibly empty): ``{"size": [H, W], "counts": [zeros, ones, zeros, ...]}``.
"""

from __future__ import annotations

import numpy as np


def encode(mask: np.ndarray) -> dict:
    """RLE of a 2-D boolean mask ``[H, W]``."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    # Positions where the value changes, plus both ends, give the run lengths directly.
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return {"size": [int(height), int(width)], "counts": runs}


def decode(rle: dict) -> np.ndarray:
    """Boolean mask ``[H, W]`` from an uncompressed RLE."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {height * width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")
