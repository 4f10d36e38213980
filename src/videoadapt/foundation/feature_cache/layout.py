"""What a cache directory holds: its file names, the shape of its arrays (:class:`CacheDims`), the checks of its
layout and manifest, the per-writer row logs and the row checksum."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videoadapt.foundation.base import FrameFeatures

FORMAT = "videoadapt-feature-cache"
FORMAT_VERSION = 1
LAYOUT_FILE = "layout.json"
MANIFEST_FILE = "manifest.json"
ROWS_DIR = "rows"
FIELDS = ("cls", "patches", "embeds", "layers")
DTYPES = ("float32", "float16")
CHECKSUM = "sha256"  # hardware-accelerated on current x86 and ARM CPUs: ~2x blake2b's speed on the dev machine


@dataclass(frozen=True)
class CacheDims:
    """Per-frame sizes of the stored fields: ``cls`` D, ``patches`` (P, D), ``embeds`` E, ``layers`` (L, N, D)
    when every block's tokens are kept (None otherwise)."""

    cls: int
    patches: tuple[int, int]
    embeds: int
    layers: tuple[int, int, int] | None = None

    @classmethod
    def of(cls, features: FrameFeatures) -> CacheDims:
        """The sizes of ``features`` (a ``[B,T,...]`` batch from ``encode_frames``)."""
        layers = None
        if features.layers is not None:
            first = features.layers[0]
            layers = (len(features.layers), int(first.shape[-2]), int(first.shape[-1]))
        return cls(
            cls=int(features.cls.shape[-1]),
            patches=(int(features.patches.shape[-2]), int(features.patches.shape[-1])),
            embeds=int(features.embeds.shape[-1]),
            layers=layers,
        )

    @classmethod
    def coerce(cls, dims: CacheDims | Mapping[str, Any]) -> CacheDims:
        if isinstance(dims, CacheDims):
            return dims
        layers = dims.get("layers")
        return cls(
            cls=int(dims["cls"]),
            patches=tuple(int(x) for x in dims["patches"]),  # type: ignore[arg-type]
            embeds=int(dims["embeds"]),
            layers=None if layers is None else tuple(int(x) for x in layers),  # type: ignore[arg-type]
        )

    def shapes(self, videos: int, frames: int) -> dict[str, tuple[int, ...]]:
        """Array shape of each stored field. ``layers`` is stored layer-major within a row ([V,L,T,N,D]) so that
        one layer of a batch is read as one contiguous block per row."""
        shapes: dict[str, tuple[int, ...]] = {
            "cls": (videos, frames, self.cls),
            "patches": (videos, frames, *self.patches),
            "embeds": (videos, frames, self.embeds),
        }
        if self.layers is not None:
            depth, tokens, width = self.layers
            shapes["layers"] = (videos, depth, frames, tokens, width)
        return shapes


def manifest_problem(layout: dict[str, Any]) -> str | None:
    """What is wrong with the entries of a manifest that opening relies on, or None."""
    ids = layout.get("video_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(v, str) for v in ids):
        return "'video_ids' must be a non-empty list of strings"
    if not isinstance(layout.get("key"), str) or layout.get("dtype") not in DTYPES:
        return f"'key' must be a string and 'dtype' one of {', '.join(DTYPES)}"
    frames = layout.get("frames")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        return "'frames' must be a positive integer"
    try:
        dims = CacheDims.coerce(layout.get("dims") or {})
    except (KeyError, TypeError, ValueError, AttributeError):
        return "'dims' must give the sizes cls, patches, embeds (and layers)"
    if layout.get("fields") != {k: list(v) for k, v in dims.shapes(len(ids), frames).items()}:
        return "'fields' do not match 'dims', 'frames' and the number of videos"
    checksums = layout.get("checksums")
    if not isinstance(checksums, list) or len(checksums) != len(ids):
        return "'checksums' must hold one entry per video"
    if not isinstance(layout.get("skipped", {}), dict):
        return "'skipped' must map video ids to reasons"
    return None


def layout_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How the layout found on disk differs from the one a resumed extraction would write (empty: same cache)."""
    differences = []
    if old.get("key") != new["key"]:
        differences.append(f"key {old.get('key')} vs {new['key']}: another backbone or sampling")
    for name in ("dtype", "frames", "dims"):
        if old.get(name) != new[name]:
            differences.append(f"{name} {old.get(name)} vs {new[name]}")
    if old.get("video_ids") != new["video_ids"]:
        differences.append(f"video ids ({len(old.get('video_ids', []))} vs {len(new['video_ids'])} videos)")
    return differences


def remove_cache_files(directory: Path) -> None:
    """Delete what a cache consists of, and nothing else a user may keep in the directory."""
    (directory / MANIFEST_FILE).unlink(missing_ok=True)  # first: the cache is no longer complete
    (directory / LAYOUT_FILE).unlink(missing_ok=True)
    for name in FIELDS:
        (directory / f"{name}.npy").unlink(missing_ok=True)
    rows = directory / ROWS_DIR
    if rows.is_dir():
        for path in rows.glob("writer-*.jsonl"):
            path.unlink()


def read_logs(directory: Path, layout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The latest log record of each video across writers (a row rewritten on resume has a later time)."""
    valid = set(layout["video_ids"])
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted((directory / ROWS_DIR).glob("writer-*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    video_id = record["id"]
                    stamp = int(record["t"])
                except (ValueError, KeyError, TypeError):
                    continue  # a partial line left by a killed process
                if video_id in valid and (video_id not in latest or stamp >= latest[video_id]["t"]):
                    latest[video_id] = record
    return latest


def checksum(parts: Sequence[np.ndarray]) -> str:
    """The checksum of one row: its bytes across ``parts`` (the row of each field, in field order)."""
    digest = hashlib.new(CHECKSUM)
    for part in parts:
        digest.update(np.ascontiguousarray(part).view(np.uint8))
    return digest.hexdigest()
