"""Feature cache: frozen-backbone frame features written once per (backbone, sampling, video), read by id.

Paradigms that keep the image-language model (ILFM) frozen (post-network tuning, side-tuning, distillation
teachers) see the same frame features every epoch, so computing them once and reading them back is where their
training speed comes from: an epoch from the cache never decodes a video nor runs the backbone.

On disk (``docs/feature-cache.md``)::

    DIR/layout.json       what the arrays hold: key, video ids (row order), frames, field shapes, dtype, meta
    DIR/cls.npy           [V,T,D]          pooled token before the projection
    DIR/patches.npy       [V,T,P,D]        last-layer patch tokens
    DIR/embeds.npy        [V,T,E]          frame embeddings in the joint space
    DIR/layers.npy        [V,L,T,N,D]      every block's tokens (only with all_layers)
    DIR/rows/writer-K.jsonl  per-writer log: one line per row written (its checksum) or skipped
    DIR/manifest.json     layout + one checksum per row + skipped ids; written atomically, LAST

The ``.npy`` files are preallocated (sparse) and memory-mapped; each writer process fills disjoint rows and logs
a checksum per row after writing it. ``finalize`` merges the logs into ``manifest.json``: a cache without one is
incomplete, ``open`` refuses it, and rerunning the extraction resumes, skipping rows whose bytes still match their
logged checksum (so a row half-written when a process died, or lost with an OS crash, is simply redone).

The key (:func:`cache_key`) digests the backbone's vision weights, the sampler, the preprocessing and whether every
layer is kept: a cache made for another backbone or sampling is refused by name instead of silently feeding the
wrong features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoadapt.data.records import TaskData, VideoRef
from videoadapt.data.sampling import AtTimestamps, Dense, Sampler, UniformSegments, sampler_from_spec
from videoadapt.data.transforms import ProcessorSettings, preprocess
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel
from videoadapt.utils.safe_io import load_json, save_json

__all__ = [
    "CacheDims",
    "CacheKey",
    "FeatureCache",
    "IncompleteCacheError",
    "NonFiniteFeaturesError",
    "backbone_fingerprint",
    "cache_key",
    "extract_features",
]

FORMAT = "videoadapt-feature-cache"
FORMAT_VERSION = 1
LAYOUT_FILE = "layout.json"
MANIFEST_FILE = "manifest.json"
ROWS_DIR = "rows"
FIELDS = ("cls", "patches", "embeds", "layers")
DTYPES = ("float32", "float16")
CHECKSUM = "sha256"  # hardware-accelerated on current x86 and ARM CPUs: ~2x blake2b's speed on the dev machine


class IncompleteCacheError(VideoadaptError):
    """A cache directory whose extraction has not finished (no manifest): rerun the extraction to resume."""


class CorruptCacheError(VideoadaptError):
    """Rows whose bytes no longer match the checksum recorded when they were written."""

    def __init__(self, directory: Path, video_ids: list[str]) -> None:
        self.video_ids = video_ids
        shown = ", ".join(repr(v) for v in video_ids[:10]) + (" ..." if len(video_ids) > 10 else "")
        super().__init__(
            f"{directory}: {len(video_ids)} corrupt row(s) (bytes differ from their checksum): {shown}; "
            "extract them again (rerun `videoadapt extract --overwrite` or delete the cache)"
        )


class NonFiniteFeaturesError(VideoadaptError):
    """Features holding NaN or infinity: refused when written (naming the videos), or found in a cache when read
    (naming the array file and the row), since training on them would turn every loss and gradient into NaN."""

    def __init__(self, message: str, video_ids: list[str], path: Path | None = None) -> None:
        self.video_ids, self.path = video_ids, None if path is None else str(path)
        super().__init__(message)


REEXTRACT = "extract the cache again (`videoadapt extract` with the same arguments and --overwrite)"


# --------------------------------------------------------------------------------------------------- keys


class CacheKey(str):
    """A cache key: a short hex digest that compares as a string, carrying the parts it digests (``.parts``) so
    that a mismatch can say which part differs."""

    parts: dict[str, Any]

    def __new__(cls, digest: str, parts: dict[str, Any]) -> CacheKey:
        key = super().__new__(cls, digest)
        key.parts = parts
        return key


def canonical_sampler(spec: str) -> str:
    """A spelling-independent form of a sampler spec (``"UNIFORM:8"`` and ``"uniform:8"`` give the same key)."""
    return repr(sampler_from_spec(spec))


def cache_key(backbone_fingerprint: str, sampler_spec: str, processor: ProcessorSettings, all_layers: bool) -> CacheKey:
    """The key of a cache: a 16-hex-digit digest of everything that decides what the stored features are.

    ``backbone_fingerprint`` comes from :func:`backbone_fingerprint`; ``sampler_spec`` is a
    :func:`~videoadapt.data.sampling.sampler_from_spec` spec; ``processor`` the model's preprocessing.
    """
    parts = {
        "format": FORMAT_VERSION,
        "backbone": str(backbone_fingerprint),
        "sampler": canonical_sampler(sampler_spec),
        "processor": dataclasses.asdict(processor),
        "all_layers": bool(all_layers),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return CacheKey(digest, {**parts, "sampler_spec": sampler_spec})


def backbone_fingerprint(ilfm: ImageLanguageModel) -> str:
    """A 16-hex-digit digest of the vision tower: class, and the name, shape, dtype and bytes of every tensor
    (parameters and buffers) of :meth:`~ImageLanguageModel.vision_modules`, in module order.

    Every byte is hashed (not a strided subset): sha256 runs at ~0.2 s for ViT-B/16's 86 M vision weights on the
    development CPU, cheap beside one extraction, and any weight change, however local, changes the key.
    """
    digest = hashlib.sha256(type(ilfm).__qualname__.encode())
    for index, module in enumerate(ilfm.vision_modules()):
        for name, tensor in module.state_dict(keep_vars=False).items():
            tensor = tensor.detach()
            digest.update(f"{index}.{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            if tensor.numel():
                # Viewing as bytes works for every dtype, bfloat16 included, which numpy cannot represent.
                digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------- dims


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


# --------------------------------------------------------------------------------------------------- cache


class FeatureCache:
    """Frame features of a frozen backbone, one row per video, memory-mapped.

    Make one with :meth:`create` (or :func:`extract_features`), read one with :meth:`open`. ``get(ids)`` returns a
    float32 :class:`FrameFeatures` batch ``[B,T,...]`` in the order asked.
    """

    def __init__(self, directory: Path, layout: dict[str, Any], *, writable: bool, writer: str | None = None):
        self.directory = directory
        self.layout = layout
        self.writable = writable
        self.writer = writer
        self.key = CacheKey(layout["key"], layout.get("key_parts", {}))
        self.dtype = np.dtype(layout["dtype"])
        self.frames = int(layout["frames"])
        self.dims = CacheDims.coerce(layout["dims"])
        self.all_video_ids: list[str] = list(layout["video_ids"])
        self._rows = {video_id: row for row, video_id in enumerate(self.all_video_ids)}
        self.skipped: dict[str, str] = dict(layout.get("skipped", {}))
        self._checksums: list[str | None] = list(layout.get("checksums") or [None] * len(self.all_video_ids))
        self._arrays = self._map_arrays("r+" if writable else "r")
        self._log: Any = None
        # What the extraction that returned this cache did (encoded, reused, skipped rows); empty otherwise.
        self.run_stats: dict[str, int] = {}

    # ---- making and opening

    @classmethod
    def create(
        cls,
        directory: str | Path,
        *,
        key: str,
        video_ids: Sequence[str],
        frames: int,
        dims: CacheDims | Mapping[str, Any],
        dtype: str | np.dtype = "float32",
        meta: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        writer: int | str = 0,
    ) -> FeatureCache:
        """Preallocate the arrays of a cache for ``video_ids`` (rows in this order) and return it writable.

        A directory already holding an unfinished (or finished) cache with the same key, ids, frames, dims and
        dtype is resumed: its rows stay, and :meth:`completed` says which are done. A different cache there is an
        error unless ``overwrite``, which deletes the cache files (nothing else in the directory).
        """
        directory = Path(directory)
        dtype = np.dtype(dtype)
        if dtype.name not in DTYPES:
            raise VideoadaptError(f"feature cache dtype must be one of {', '.join(DTYPES)}, got {dtype.name}")
        ids = [str(v) for v in video_ids]
        if not ids:
            raise VideoadaptError(f"{directory}: a feature cache needs at least one video")
        if len(set(ids)) != len(ids):
            duplicates = sorted({v for v in ids if ids.count(v) > 1})[:5]
            raise VideoadaptError(f"{directory}: video ids repeat: {duplicates}")
        if frames < 1:
            raise VideoadaptError(f"{directory}: frames must be >= 1, got {frames}")
        dims = CacheDims.coerce(dims)
        layout = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "key": str(key),
            "key_parts": getattr(key, "parts", {}),
            "dtype": dtype.name,
            "frames": int(frames),
            "dims": dataclasses.asdict(dims),
            "fields": {name: list(shape) for name, shape in dims.shapes(len(ids), frames).items()},
            "checksum": CHECKSUM,
            "video_ids": ids,
            "meta": dict(meta or {}),
        }
        layout = json.loads(json.dumps(layout))  # tuples become lists, as in a layout read back from disk
        existing = directory / LAYOUT_FILE
        if existing.is_file() and not overwrite:
            old = load_json(existing)
            differences = _layout_differences(old, layout)
            if differences:
                raise VideoadaptError(
                    f"{directory} already holds a feature cache that differs ({'; '.join(differences)}); "
                    "choose another directory or overwrite it (--overwrite)"
                )
            # Resuming: back to incomplete until finalize, so that nobody reads rows while they are rewritten.
            (directory / MANIFEST_FILE).unlink(missing_ok=True)
            return cls(
                directory, {**old, "meta": {**old.get("meta", {}), **layout["meta"]}}, writable=True, writer=str(writer)
            )
        _remove_cache_files(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ROWS_DIR).mkdir(exist_ok=True)
        for name, shape in layout["fields"].items():
            # open_memmap with w+ writes the header and extends the file: sparse, nothing is written yet.
            array = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))
            del array
        # layout.json last: its presence says the arrays are there to resume into.
        save_json(existing, layout)
        return cls(directory, layout, writable=True, writer=str(writer))

    @classmethod
    def attach(cls, directory: str | Path, *, key: str, writer: int | str) -> FeatureCache:
        """Open a cache that :meth:`create` just made (in the main process) for writing by another process."""
        directory = Path(directory)
        path = directory / LAYOUT_FILE
        if not path.is_file():
            raise VideoadaptError(f"{directory}: no feature cache layout to write into (create it first)")
        layout = load_json(path)
        _check_key(directory, layout, key)
        return cls(directory, layout, writable=True, writer=str(writer))

    @classmethod
    def open(cls, directory: str | Path, *, key: str | None = None) -> FeatureCache:
        """Open a finished cache read-only. With ``key``, a cache made for another backbone, sampling,
        preprocessing or layer setting is refused, naming both."""
        directory = Path(directory)
        manifest = directory / MANIFEST_FILE
        if not manifest.is_file():
            if (directory / LAYOUT_FILE).is_file():
                layout = load_json(directory / LAYOUT_FILE)
                done = len(_read_logs(directory, layout))
                raise IncompleteCacheError(
                    f"{directory}: feature cache is incomplete ({done} of {len(layout['video_ids'])} rows logged, "
                    "no manifest.json): its extraction stopped before finishing; rerun `videoadapt extract` with "
                    "the same arguments to resume it"
                )
            raise VideoadaptError(
                f"{directory}: no feature cache here (no {MANIFEST_FILE}); write one with `videoadapt extract`"
            )
        layout = load_json(manifest)
        if not isinstance(layout, dict) or layout.get("format") != FORMAT or layout.get("version") != FORMAT_VERSION:
            raise InputFileError(manifest, f"not a version-{FORMAT_VERSION} videoadapt feature cache manifest")
        problem = _manifest_problem(layout)
        if problem is not None:
            raise InputFileError(manifest, f"damaged feature cache manifest: {problem}; {REEXTRACT}")
        if key is not None:
            _check_key(directory, layout, key)
        return cls(directory, layout, writable=False)

    @staticmethod
    def is_complete(directory: str | Path) -> bool:
        return (Path(directory) / MANIFEST_FILE).is_file()

    def _map_arrays(self, mode: str) -> dict[str, np.ndarray]:
        arrays = {}
        for name, shape in self.layout["fields"].items():
            path = self.directory / f"{name}.npy"
            try:
                array = np.load(path, mmap_mode=mode, allow_pickle=False)
            except FileNotFoundError:
                raise InputFileError(
                    path, f"feature cache array missing (deleted, or not copied with the cache); {REEXTRACT}"
                ) from None
            except (ValueError, OSError, EOFError) as error:
                raise InputFileError(path, f"not a readable .npy array ({error}); {REEXTRACT}") from None
            if tuple(array.shape) != tuple(shape) or array.dtype != self.dtype:
                raise InputFileError(
                    path,
                    f"holds {array.dtype} {tuple(array.shape)}, the manifest says {self.dtype} {tuple(shape)}; "
                    + REEXTRACT,
                )
            # A plain ndarray view of the mapping: slicing it never yields np.memmap objects detached from a file.
            arrays[name] = array.view(np.ndarray)
        return arrays

    # ---- pickling: a DataLoader worker reopens the files instead of receiving a copy of every row

    def __getstate__(self) -> dict[str, Any]:
        if self.writable:
            raise VideoadaptError("a feature cache being written cannot be sent to another process; finalize it")
        return {"directory": str(self.directory), "key": str(self.key)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(FeatureCache.open(state["directory"], key=state["key"]).__dict__)

    # ---- reading

    @property
    def video_ids(self) -> list[str]:
        """Ids with features, in row order (skipped videos are left out)."""
        return [v for v in self.all_video_ids if v not in self.skipped]

    @property
    def meta(self) -> dict[str, Any]:
        return self.layout.get("meta", {})

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (allocated size; a cache still being written may be sparse on disk)."""
        return sum(array.nbytes for array in self._arrays.values())

    @property
    def all_layers(self) -> bool:
        return self.dims.layers is not None

    def __len__(self) -> int:
        return len(self.all_video_ids) - len(self.skipped)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._rows and video_id not in self.skipped

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, videos={len(self)}, frames={self.frames}, key={self.key})"

    def rows_of(self, video_ids: Sequence[str]) -> list[int]:
        """Row index of each id; an unknown or skipped id is an error naming it."""
        rows, unknown, skipped = [], [], []
        for video_id in video_ids:
            row = self._rows.get(video_id)
            if row is None:
                unknown.append(video_id)
            elif video_id in self.skipped:
                skipped.append(video_id)
            else:
                rows.append(row)
        if unknown:
            shown = ", ".join(repr(v) for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise VideoadaptError(
                f"{self.directory}: video(s) {shown} not in the feature cache ({len(self)} videos); it was "
                "extracted for another data set or split"
            )
        if skipped:
            shown = ", ".join(f"{v!r} ({self.skipped[v]})" for v in skipped[:5])
            raise VideoadaptError(f"{self.directory}: video(s) {shown} were skipped during extraction as unreadable")
        return rows

    def get(self, video_ids: Sequence[str], verify: bool = False, patches: bool = True) -> FrameFeatures:
        """Features of ``video_ids`` as float32 tensors ``[B,T,...]`` in that order (``layers`` ``[L][B,T,N,D]``
        when the cache keeps them). ``verify`` checks every row read against its checksum first.
        ``patches=False`` leaves the patch tokens unread (an empty ``[B,T,0,D]`` in their place): they are most
        of a row, and heads over frame embeddings or CLS tokens never look at them."""
        if isinstance(video_ids, str):
            raise VideoadaptError("FeatureCache.get takes a list of video ids, got one string")
        rows = self.rows_of(video_ids)
        # Fancy indexing copies the rows out of the mapping: what is returned owns its memory, and for float32
        # from_numpy then wraps it without a second copy.
        index = np.asarray(rows, dtype=np.int64)
        skip = set() if patches or verify else {"patches"}  # a checksum covers every field
        batch = {name: array[index] for name, array in self._arrays.items() if name != "layers" and name not in skip}
        if "patches" in skip:
            shape = self._arrays["patches"].shape
            batch["patches"] = np.empty((len(rows), shape[1], 0, shape[3]), dtype=np.float32)
        layers = None
        if "layers" in self._arrays:
            array = self._arrays["layers"]
            layers = [array[index, layer] for layer in range(array.shape[1])]
        if verify:
            bad = []
            for position, (video_id, row) in enumerate(zip(video_ids, rows, strict=True)):
                parts = [batch[name][position] for name in ("cls", "patches", "embeds")]
                parts += [layer[position] for layer in layers or []]
                if _digest(parts) != self._checksums[row]:
                    bad.append(video_id)
            if bad:
                raise CorruptCacheError(self.directory, bad)
        features = FrameFeatures(
            cls=_tensor(batch["cls"]),
            patches=_tensor(batch["patches"]),
            embeds=_tensor(batch["embeds"]),
            layers=None if layers is None else [_tensor(layer) for layer in layers],
        )
        self._check_finite(video_ids, rows, features)
        return features

    def _check_finite(self, video_ids: Sequence[str], rows: list[int], features: FrameFeatures) -> None:
        """Raise naming the array file and row when a batch read holds NaN or infinity.

        Extraction never writes such a row, so one here is damage (or a cache from before that rule) that the
        checksum would catch only with ``verify``. One float32 sum per field propagates NaN and infinity without
        allocating (about half the time of the copy the read makes anyway); a finite sum overflowing would need
        features near 1e31, which is damage too. Only a failing field is searched for its row.
        """
        parts = [("cls", features.cls), ("patches", features.patches), ("embeds", features.embeds)]
        parts += [("layers", layer) for layer in features.layers or []]
        for name, tensor in parts:
            array = tensor.numpy()
            with np.errstate(all="ignore"):  # inf - inf inside the sum is what is being looked for
                total = array.sum() if array.size else 0.0
            if np.isfinite(total):
                continue
            finite = np.isfinite(array.reshape(len(rows), -1)).all(axis=1)
            if finite.all():
                continue  # the sum overflowed on finite values
            position = int(np.flatnonzero(~finite)[0])
            raise NonFiniteFeaturesError(
                f"{self.directory / f'{name}.npy'}: row {rows[position]} (video {video_ids[position]!r}) holds NaN "
                f"or infinite features: the cache is damaged; {REEXTRACT}",
                [str(video_ids[position])],
                self.directory / f"{name}.npy",
            )

    def row_digest(self, row: int) -> str:
        """The checksum of row ``row`` as stored now (its bytes across fields, in field order)."""
        return _digest([self._arrays[name][row] for name in FIELDS if name in self._arrays])

    def verify(self, video_ids: Sequence[str] | None = None, *, raise_error: bool = True) -> list[str]:
        """Recompute the checksum of every row (or of ``video_ids``); the corrupt ids, or an error naming them."""
        ids = self.video_ids if video_ids is None else list(video_ids)
        bad = [v for v, row in zip(ids, self.rows_of(ids), strict=True) if self.row_digest(row) != self._checksums[row]]
        if bad and raise_error:
            raise CorruptCacheError(self.directory, bad)
        return bad

    # ---- writing

    def _require_writable(self) -> None:
        if not self.writable:
            raise VideoadaptError(f"{self.directory}: feature cache is open read-only")

    def _append_log(self, records: list[dict[str, Any]]) -> None:
        if self._log is None:
            path = self.directory / ROWS_DIR / f"writer-{self.writer}.jsonl"
            path.parent.mkdir(exist_ok=True)
            # A process killed mid-line leaves a partial last line; start on a fresh one so only that line is lost.
            needs_newline = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across writes; closed in flush)
            if needs_newline:
                self._log.write("\n")
        for record in records:
            self._log.write(json.dumps(record) + "\n")
        # Flushed to the OS, not fsynced: a row whose logged checksum outlives its bytes is caught on resume.
        self._log.flush()

    def write(self, video_ids: Sequence[str], features: FrameFeatures) -> None:
        """Store ``features`` (a ``[B,T,...]`` batch in the order of ``video_ids``) in their rows and log each
        row's checksum. Processes may write disjoint rows of one cache at the same time."""
        self._require_writable()
        rows = self.rows_of(list(video_ids))
        count = len(rows)
        torch_dtype = torch.float16 if self.dtype == np.float16 else torch.float32
        arrays = {
            "cls": _numpy(features.cls, torch_dtype),
            "patches": _numpy(features.patches, torch_dtype),
            "embeds": _numpy(features.embeds, torch_dtype),
        }
        if self.all_layers:
            if features.layers is None:
                raise VideoadaptError(f"{self.directory}: this cache keeps every layer; encode with all_layers=True")
            arrays["layers"] = np.stack([_numpy(layer, torch_dtype) for layer in features.layers], axis=1)
        expected = self.dims.shapes(count, self.frames)
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise VideoadaptError(
                    f"{self.directory}: {name} of {count} video(s) has shape {arrays[name].shape}, the cache "
                    f"holds {shape}"
                )
        bad = non_finite_rows(arrays, count)
        if bad:
            ids = [str(video_ids[i]) for i in bad]
            raise NonFiniteFeaturesError(
                f"{self.directory}: features of video(s) {', '.join(map(repr, ids[:5]))} hold NaN or infinity; "
                "nothing was written for this batch",
                ids,
            )
        index = np.asarray(rows, dtype=np.int64)
        for name, array in arrays.items():
            self._arrays[name][index] = array
        now = time.time_ns()
        records = []
        for position, (video_id, row) in enumerate(zip(video_ids, rows, strict=True)):
            digest = _digest([arrays[name][position] for name in FIELDS if name in arrays])
            self._checksums[row] = digest
            records.append({"id": video_id, "row": row, CHECKSUM: digest, "t": now})
        self._append_log(records)

    def mark_skipped(self, video_id: str, reason: str) -> None:
        """Record that ``video_id`` could not be read: it is left out of the cache, and ``get`` names it."""
        self._require_writable()
        row = self._rows.get(video_id)
        if row is None:
            raise VideoadaptError(f"{self.directory}: video {video_id!r} is not in the feature cache")
        self._append_log([{"id": video_id, "row": row, "skipped": str(reason), "t": time.time_ns()}])

    def completed(self, video_ids: Iterable[str] | None = None, *, verify: bool = True) -> set[str]:
        """Ids (of ``video_ids``, default all) whose rows a writer logged, and whose bytes still match the logged
        checksum when ``verify``: the rows a resumed extraction need not encode again. Skipped rows are not done:
        a resume tries them again."""
        logs = _read_logs(self.directory, self.layout)
        wanted = set(self.all_video_ids if video_ids is None else video_ids)
        done = set()
        for video_id, record in logs.items():
            if video_id not in wanted or CHECKSUM not in record:
                continue
            row = self._rows[video_id]
            if not verify or self.row_digest(row) == record[CHECKSUM]:
                done.add(video_id)
        return done

    def flush(self) -> None:
        """Write the mapped rows back and close this writer's log (each writer, before :meth:`finalize`)."""
        for array in self._arrays.values():
            base = array.base
            while base is not None and not isinstance(base, np.memmap):
                base = getattr(base, "base", None)
            if isinstance(base, np.memmap):
                base.flush()
        if self._log is not None:
            self._log.close()
            self._log = None

    def finalize(self) -> FeatureCache:
        """Merge every writer's log into ``manifest.json`` (written atomically, last) and return the cache opened
        read-only. Run once, by one process, after every writer has flushed. Rows neither written nor skipped
        make this an error: the cache stays incomplete."""
        self._require_writable()
        self.flush()
        logs = _read_logs(self.directory, self.layout)
        checksums: list[str | None] = []
        skipped: dict[str, str] = {}
        missing = []
        for video_id in self.all_video_ids:
            record = logs.get(video_id)
            if record is None:
                missing.append(video_id)
                checksums.append(None)
            elif "skipped" in record:
                skipped[video_id] = record["skipped"]
                checksums.append(None)
            else:
                checksums.append(record[CHECKSUM])
        if missing:
            raise IncompleteCacheError(
                f"{self.directory}: {len(missing)} of {len(self.all_video_ids)} rows were never written "
                f"(first: {missing[0]!r}); rerun the extraction to resume"
            )
        manifest = {
            **self.layout,
            "checksums": checksums,
            "skipped": skipped,
            "videos": len(self.all_video_ids) - len(skipped),
            "finalized": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        save_json(self.directory / MANIFEST_FILE, manifest)
        return FeatureCache.open(self.directory, key=self.key)


def _manifest_problem(layout: dict[str, Any]) -> str | None:
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


def non_finite_rows(arrays: Mapping[str, np.ndarray], count: int) -> list[int]:
    """Positions ``0..count-1`` of the batch whose values in any of ``arrays`` (each ``[count, ...]``) are not all
    finite."""
    finite = np.ones(count, dtype=bool)
    for array in arrays.values():
        finite &= np.isfinite(np.asarray(array).reshape(count, -1)).all(axis=1)
    return np.flatnonzero(~finite).tolist()


def _check_key(directory: Path, layout: dict[str, Any], key: str) -> None:
    if str(layout["key"]) == str(key):
        return
    old = layout.get("key_parts") or {}
    new = getattr(key, "parts", None) or {}
    names = {
        "backbone": "backbone weights",
        "sampler": "sampling",
        "processor": "preprocessing",
        "all_layers": "all_layers",
        "format": "cache format",
    }
    differ = [label for part, label in names.items() if old and new and old.get(part) != new.get(part)]

    def describe(parts: dict[str, Any], digest: str) -> str:
        if not parts:
            return f"key {digest}"
        layers = ", all layers" if parts.get("all_layers") else ""
        sampler = parts.get("sampler_spec", parts.get("sampler"))
        return f"backbone {parts.get('backbone')}, sampler {sampler}{layers} (key {digest})"

    what = ", ".join(differ) if differ else "backbone/sampling/preprocessing/all_layers"
    raise VideoadaptError(
        f"{directory}: feature cache was made for {describe(old, layout['key'])}, but this run needs "
        f"{describe(new, str(key))}: its {what} differ(s). Extract again into another directory (or --overwrite)"
    )


def _layout_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    differences = []
    if old.get("key") != new["key"]:
        differences.append(f"key {old.get('key')} vs {new['key']}: another backbone or sampling")
    for name in ("dtype", "frames", "dims"):
        if old.get(name) != new[name]:
            differences.append(f"{name} {old.get(name)} vs {new[name]}")
    if old.get("video_ids") != new["video_ids"]:
        differences.append(f"video ids ({len(old.get('video_ids', []))} vs {len(new['video_ids'])} videos)")
    return differences


def _remove_cache_files(directory: Path) -> None:
    """Delete what a cache consists of, and nothing else a user may keep in the directory."""
    (directory / MANIFEST_FILE).unlink(missing_ok=True)  # first: the cache is no longer complete
    (directory / LAYOUT_FILE).unlink(missing_ok=True)
    for name in FIELDS:
        (directory / f"{name}.npy").unlink(missing_ok=True)
    rows = directory / ROWS_DIR
    if rows.is_dir():
        for path in rows.glob("writer-*.jsonl"):
            path.unlink()


def _read_logs(directory: Path, layout: dict[str, Any]) -> dict[str, dict[str, Any]]:
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


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _digest(parts: Sequence[np.ndarray]) -> str:
    digest = hashlib.new(CHECKSUM)
    for part in parts:
        digest.update(np.ascontiguousarray(part).view(np.uint8))
    return digest.hexdigest()


def _numpy(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return tensor.detach().to(device="cpu", dtype=dtype).contiguous().numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if tensor.dtype == torch.float32 else tensor.float()


# --------------------------------------------------------------------------------------------------- extraction


def fixed_frame_count(sampler: Sampler, spec: str) -> int:
    """Frames per clip of a deterministic, fixed-length sampler; others cannot fill fixed-size rows."""
    if getattr(sampler, "random_offset", False) or getattr(sampler, "random_start", False):
        raise VideoadaptError(
            f"sampler {spec!r} is random: a cache would freeze one random draw per video; cache a deterministic "
            "sampler (drop ':random')"
        )
    if isinstance(sampler, UniformSegments):
        return sampler.num_segments
    if isinstance(sampler, Dense):
        return sampler.num_frames
    if isinstance(sampler, AtTimestamps):
        return len(sampler.seconds)
    raise VideoadaptError(
        f"sampler {spec!r} gives a number of frames that depends on the video; the cache stores a fixed number "
        "per video: use uniform:N, dense:N[xS] or timestamps:..."
    )


def extract_features(
    ilfm: ImageLanguageModel,
    data: TaskData,
    sampler_spec: str,
    directory: str | Path,
    *,
    all_layers: bool = False,
    batch_size: int = 8,
    accelerator: Any = None,
    dtype: str = "float32",
    skip_bad: bool = False,
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    decode_workers: int = 2,
) -> FeatureCache:
    """Encode every distinct video of ``data`` once with the frozen ``ilfm`` and store its frame features in
    ``directory``; returns the finished cache opened read-only.

    Videos are decoded by ``data.source`` with ``sampler_spec`` (deterministic, fixed frame count) and
    preprocessed with the model's processor on ``decode_workers`` threads while the model encodes the previous
    batch. Under Accelerate (``accelerator``), process ``k`` of ``n`` encodes rows ``k, k+n, ...``; the main
    process creates the files first and finalizes last. An existing complete cache with the same key and videos
    is returned as it is; an incomplete one is resumed. An unreadable video is an error naming it, or with
    ``skip_bad`` a skip recorded in the manifest.
    """
    sampler = sampler_from_spec(sampler_spec)
    frames = fixed_frame_count(sampler, sampler_spec)
    if batch_size < 1:
        raise VideoadaptError(f"batch_size must be >= 1, got {batch_size}")
    directory = Path(directory)
    refs = data.videos()
    ids = [ref.video_id for ref in refs]
    process, processes = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    main = process == 0

    def wait() -> None:
        if accelerator is not None and processes > 1:
            accelerator.wait_for_everyone()

    if accelerator is not None:
        ilfm.to(accelerator.device)
    device = _device_of(ilfm)
    key = cache_key(backbone_fingerprint(ilfm), sampler_spec, ilfm.processor, all_layers)

    # Every process decides from the same files, before the main process changes any of them.
    finished = None
    if not overwrite and FeatureCache.is_complete(directory):
        existing = FeatureCache.open(directory)
        same_dtype = existing.dtype == np.dtype(dtype)
        if str(existing.key) == str(key) and existing.all_video_ids == ids and same_dtype:
            finished = FeatureCache.open(directory, key=key)
    wait()
    if finished is not None:
        finished.run_stats = {"encoded": 0, "reused": len(finished), "skipped": len(finished.skipped)}
        return finished

    was_training = ilfm.training
    ilfm.eval()
    try:
        if main:
            dims = _probe_dims(ilfm, device, all_layers)
            run_meta = {
                "backbone": getattr(ilfm, "name", type(ilfm).__name__),
                "sampler": sampler_spec,
                "processor": dataclasses.asdict(ilfm.processor),
                "all_layers": all_layers,
                "data": {"origin": data.origin, "split": data.split, "task": data.task},
                "processes": processes,
                **dict(meta or {}),
            }
            cache = FeatureCache.create(
                directory,
                key=key,
                video_ids=ids,
                frames=frames,
                dims=dims,
                dtype=dtype,
                meta=run_meta,
                overwrite=overwrite,
                writer=process,
            )
        wait()
        if not main:
            cache = FeatureCache.attach(directory, key=key, writer=process)
        shard = ids[process::processes]
        done = cache.completed(shard, verify=True)
        todo = [(row, refs[row]) for row in range(process, len(ids), processes) if ids[row] not in done]
        encoded, skipped = _encode_rows(
            ilfm,
            cache,
            data.source,
            todo,
            sampler,
            frames,
            device,
            all_layers,
            batch_size,
            skip_bad,
            decode_workers,
            progress=progress and main,
            description=f"extract {process + 1}/{processes}" if processes > 1 else "extract",
        )
        cache.flush()
        stats = {"encoded": encoded, "reused": len(done), "skipped": skipped}
        if accelerator is not None and processes > 1:
            from accelerate.utils import gather_object

            gathered = gather_object([stats])
            stats = {name: sum(s[name] for s in gathered) for name in stats}
        wait()
        if main:
            cache.finalize()
        wait()
    finally:
        ilfm.train(was_training)
    result = FeatureCache.open(directory, key=key)
    result.run_stats = stats
    return result


def _device_of(module: torch.nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def _probe_dims(ilfm: ImageLanguageModel, device: torch.device, all_layers: bool) -> CacheDims:
    """Field sizes from one blank frame: exact for every model family (CLS token or not) without special cases."""
    size = ilfm.processor.image_size
    blank = torch.zeros(1, 1, 3, size, size, device=device)
    return CacheDims.of(ilfm.encode_frames(blank, all_layers=all_layers))


def _encode_rows(
    ilfm: ImageLanguageModel,
    cache: FeatureCache,
    source: Any,
    todo: list[tuple[int, VideoRef]],
    sampler: Sampler,
    frames: int,
    device: torch.device,
    all_layers: bool,
    batch_size: int,
    skip_bad: bool,
    decode_workers: int,
    progress: bool,
    description: str,
) -> tuple[int, int]:
    from videoadapt.utils.progress import make_progress

    processor = ilfm.processor

    def decode(ref: VideoRef) -> torch.Tensor:
        clip = preprocess(source.frames(ref, sampler), processor)
        if clip.shape[0] != frames:
            raise VideoadaptError(f"sampler gave {clip.shape[0]} frames instead of {frames}")
        return clip

    encoded = skipped = 0
    batch_refs: list[VideoRef] = []
    batch_clips: list[torch.Tensor] = []

    def skip(ref: VideoRef, reason: str, error: BaseException | None) -> None:
        nonlocal skipped
        where = f" ({ref.path})" if ref.path is not None else ""
        if not skip_bad:
            raise VideoadaptError(f"video {ref.video_id!r}{where} {reason} (--skip-bad skips such videos)") from error
        cache.mark_skipped(ref.video_id, reason)
        skipped += 1

    def encode_batch() -> int:
        """Encode and store the pending batch; the number of its videos (stored or skipped)."""
        nonlocal encoded
        count = len(batch_refs)
        if not count:
            return 0
        video = torch.stack(batch_clips).to(device)
        with torch.no_grad():
            features = ilfm.encode_frames(video, all_layers=all_layers)
        # A video the backbone turns into NaN or infinity (a broken frame, an overflow in float16) is refused
        # here, before anything is written, so a cache never holds a row that would poison training.
        # Checked where the features are (on the GPU, no extra copy to the host).
        finite = torch.ones(count, dtype=torch.bool, device=features.cls.device)
        for part in [features.cls, features.patches, features.embeds, *(features.layers or [])]:
            finite &= torch.isfinite(part.detach().reshape(count, -1)).all(dim=1)
        bad = set(torch.nonzero(~finite).flatten().tolist())
        for position in sorted(bad):
            skip(batch_refs[position], "gave non-finite features (NaN or inf) from the backbone; not stored", None)
        keep = [i for i in range(count) if i not in bad]
        if keep:
            if bad:
                index = torch.as_tensor(keep, device=features.cls.device)
                features = FrameFeatures(
                    cls=features.cls[index],
                    patches=features.patches[index],
                    embeds=features.embeds[index],
                    layers=None if features.layers is None else [layer[index] for layer in features.layers],
                )
            cache.write([batch_refs[i].video_id for i in keep], features)
            encoded += len(keep)
        batch_refs.clear()
        batch_clips.clear()
        return count

    with make_progress(disable=not progress) as bar:
        task = bar.add_task(description, total=len(todo), info="")
        for ref, outcome in _prefetch(decode, [ref for _, ref in todo], decode_workers, window=2 * batch_size):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, (VideoadaptError, ValueError, OSError, RuntimeError)):
                    raise outcome
                skip(ref, f"cannot be read: {type(outcome).__name__}: {outcome}", outcome)
                bar.update(task, advance=1, info=f"{skipped} skipped")
                continue
            batch_refs.append(ref)
            batch_clips.append(outcome)
            if len(batch_refs) == batch_size:
                bar.update(task, advance=encode_batch(), info=f"{skipped} skipped" if skipped else "")
        bar.update(task, advance=encode_batch(), info=f"{skipped} skipped" if skipped else "")
    return encoded, skipped


def _prefetch(
    function: Callable[[VideoRef], torch.Tensor], items: list[VideoRef], workers: int, window: int
) -> Iterator[tuple[VideoRef, torch.Tensor | BaseException]]:
    """``(item, function(item) or the exception it raised)`` in order, computed up to ``window`` items ahead on
    ``workers`` threads (decoding and resizing release the GIL), so that decoding overlaps encoding."""

    def safe(item: VideoRef) -> torch.Tensor | BaseException:
        try:
            return function(item)
        except Exception as error:  # handed to the consumer, which decides whether it is fatal
            return error

    if workers < 1:
        for item in items:
            yield item, safe(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[VideoRef, Future]] = deque()
        position = 0
        while position < len(items) or pending:
            while position < len(items) and len(pending) < max(window, 1):
                pending.append((items[position], pool.submit(safe, items[position])))
                position += 1
            item, future = pending.popleft()
            yield item, future.result()
