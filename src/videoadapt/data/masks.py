"""COCO run-length-encoded (RLE) masks, as YouTube-VIS, LV-VIS and TAO store them, checked without decoding.

An RLE is ``{"size": [height, width], "counts": str}``: the column-major (Fortran order) mask as alternating runs
of background and foreground pixels, starting with background, compressed into printable characters by
pycocotools' ``rleToString``. Readers and metrics keep masks in this form; :func:`check_rle` turns any form a file
may hold (compressed string or bytes, uncompressed list of counts) into it, or says why it cannot, and
:func:`polygons_to_rle` rasterises COCO polygons with pycocotools.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from videoadapt.errors import VideoadaptError


def rle_runs(counts: str) -> list[int] | None:
    """The run lengths encoded in a compressed COCO RLE string (the inverse of pycocotools' ``rleToString``: five
    bits per character from ``"0"``, a continuation bit, a sign bit, runs after the second stored as differences
    from the run two before), or None when the string is not a valid encoding."""
    runs: list[int] = []
    position, length = 0, len(counts)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length:
                return None
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def check_rle(rle: object, height: int, width: int, where: str) -> dict:
    """``rle`` as ``{"size": [height, width], "counts": str}``, checked to decode to a ``height`` × ``width`` mask
    (an uncompressed RLE, counts as a list, is compressed). Raises :class:`VideoadaptError` naming ``where``
    otherwise: a mask of another size, counts that do not decode or do not cover the frame exactly."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise VideoadaptError(f"{where}: a mask must be an RLE {{'size': [h, w], 'counts': ...}}, got {rle!r:.80}")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise VideoadaptError(f"{where}: RLE size must be [height, width], got {size!r:.80}")
    if list(size) != [height, width]:
        raise VideoadaptError(f"{where}: a mask of size {list(size)} (height, width) in a {height}x{width} video")
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise VideoadaptError(f"{where}: uncompressed RLE counts do not add up to {height}x{width} pixels")
        from pycocotools import mask as mask_utils

        counts = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise VideoadaptError(f"{where}: RLE counts are not ASCII") from None
    if not isinstance(counts, str):
        raise VideoadaptError(f"{where}: RLE counts must be a string or a list, got {type(counts).__name__}")
    runs = rle_runs(counts)
    if runs is None or any(r < 0 for r in runs) or sum(runs) != height * width:
        raise VideoadaptError(f"{where}: the RLE does not decode to a {height}x{width} mask")
    return {"size": [height, width], "counts": counts}


def rle_area(rle: Mapping) -> int:
    """Foreground pixels of a checked RLE (the sum of its odd runs), as pycocotools' ``area``."""
    runs = rle_runs(rle["counts"]) or []
    return int(sum(runs[1::2]))


def encode_mask(mask: np.ndarray) -> dict:
    """A boolean ``[height, width]`` mask as ``{"size": [height, width], "counts": str}`` (pycocotools)."""
    return encode_masks(np.asarray(mask)[None])[0]


def encode_masks(masks: np.ndarray) -> list[dict]:
    """Boolean masks ``[K, height, width]`` as RLEs ``{"size": [height, width], "counts": str}``, in one
    pycocotools call."""
    from pycocotools import mask as mask_utils

    masks = np.asarray(masks)
    if not len(masks):
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def decode_mask(rle: Mapping) -> np.ndarray:
    """The boolean ``[height, width]`` mask of an RLE (pycocotools)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    coco = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(coco).astype(bool)


def polygons_to_rle(polygons: object, height: int, width: int, where: str) -> dict:
    """COCO polygons (a list of ``[x1, y1, x2, y2, ...]`` lists, pixel coordinates) rasterised and merged into one
    RLE by pycocotools; a polygon with fewer than three points or a non-number raises naming ``where``."""
    from pycocotools import mask as mask_utils

    if not isinstance(polygons, list) or not polygons:
        raise VideoadaptError(f"{where}: polygons must be a non-empty list of coordinate lists")
    for polygon in polygons:
        if (
            not isinstance(polygon, list)
            or len(polygon) < 6
            or len(polygon) % 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in polygon)
        ):
            raise VideoadaptError(f"{where}: a polygon must list at least three x, y pairs of numbers")
    rles = mask_utils.frPyObjects([[float(v) for v in p] for p in polygons], height, width)
    merged = mask_utils.merge(rles)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}
