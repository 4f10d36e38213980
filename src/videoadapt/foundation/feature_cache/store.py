"""The on-disk store: :class:`FeatureCache` preallocates, writes (from one process or several), resumes, finalizes,
opens, reads and verifies a cache directory (its format: the package docstring and ``docs/feature-cache.md``)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation.base import FrameFeatures
from videoadapt.foundation.feature_cache.errors import (
    REEXTRACT,
    CorruptCacheError,
    IncompleteCacheError,
    NonFiniteFeaturesError,
)
from videoadapt.foundation.feature_cache.key import CacheKey, check_key
from videoadapt.foundation.feature_cache.layout import (
    CHECKSUM,
    DTYPES,
    FIELDS,
    FORMAT,
    FORMAT_VERSION,
    LAYOUT_FILE,
    MANIFEST_FILE,
    ROWS_DIR,
    CacheDims,
    checksum,
    layout_differences,
    manifest_problem,
    read_logs,
    remove_cache_files,
)
from videoadapt.utils.safe_io import DiskFullError, load_json, save_json


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
            differences = layout_differences(old, layout)
            if differences:
                raise VideoadaptError(
                    f"{directory} already holds a feature cache that differs ({'; '.join(differences)}); "
                    "choose another directory or overwrite it (--overwrite)"
                )
            # Resuming: back to incomplete until finalize, so that nobody reads rows while they are rewritten.
            (directory / MANIFEST_FILE).unlink(missing_ok=True)
            # Rows already written stay; the space of the others is reserved (again: a cache from before the
            # reservation, or one copied sparse) before any is encoded.
            _reserve(directory, old["fields"], np.dtype(old["dtype"]), new=False)
            return cls(
                directory, {**old, "meta": {**old.get("meta", {}), **layout["meta"]}}, writable=True, writer=str(writer)
            )
        remove_cache_files(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ROWS_DIR).mkdir(exist_ok=True)
        for name, shape in layout["fields"].items():
            # open_memmap with w+ writes the header and extends the file: sparse, nothing is written yet.
            array = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))
            del array
        _reserve(directory, layout["fields"], dtype, new=True)
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
        check_key(directory, layout, key)
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
                done = len(read_logs(directory, layout))
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
        problem = manifest_problem(layout)
        if problem is not None:
            raise InputFileError(manifest, f"damaged feature cache manifest: {problem}; {REEXTRACT}")
        if key is not None:
            check_key(directory, layout, key)
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
                if checksum(parts) != self._checksums[row]:
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
        return checksum([self._arrays[name][row] for name in FIELDS if name in self._arrays])

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
        path = self.directory / ROWS_DIR / f"writer-{self.writer}.jsonl"
        text = "".join(json.dumps(record) + "\n" for record in records)
        try:
            if self._log is None:
                path.parent.mkdir(exist_ok=True)
                # A process killed mid-line leaves a partial last line; start on a fresh one so only it is lost.
                needs_newline = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
                self._log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across writes; closed in flush)
                if needs_newline:
                    self._log.write("\n")
            self._log.write(text)
            # Flushed to the OS, not fsynced: a row whose logged checksum outlives its bytes is caught on resume.
            self._log.flush()
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # A row counts as written only once its whole log line is: the rows of this batch (a cut line is
            # ignored) are encoded again when the extraction is rerun; the rows logged before are kept.
            log, self._log = self._log, None
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()
            raise DiskFullError(
                path, len(text.encode()), kept="the rows logged before are kept and the cache stays incomplete"
            ) from None

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
            digest = checksum([arrays[name][position] for name in FIELDS if name in arrays])
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
        logs = read_logs(self.directory, self.layout)
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
        logs = read_logs(self.directory, self.layout)
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


def _reserve(directory: Path, fields: Mapping[str, Sequence[int]], dtype: np.dtype, new: bool) -> None:
    """Allocate every array's blocks on disk now. Rows are written through a memory mapping, where a full disk
    is not an error but SIGBUS, killing the process mid-row with no message; reserved, it is found here, before
    any video is encoded, as a :class:`DiskFullError` naming the folder and the space the cache needs. A new
    cache's files are removed again; a resumed one keeps its rows. A file system without ``posix_fallocate``
    (glibc emulates it nearly everywhere) gets a free-space check instead."""
    paths = [directory / f"{name}.npy" for name in fields]
    sizes = [path.stat().st_size for path in paths]
    missing = sum(max(0, size - path.stat().st_blocks * 512) for path, size in zip(paths, sizes, strict=True))
    for path, size in zip(paths, sizes, strict=True):
        try:
            descriptor = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(descriptor, 0, size)
            finally:
                os.close(descriptor)
        except OSError as error:
            full = error.errno in (errno.ENOSPC, errno.EDQUOT)
            unsupported = error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
            if not full and not (unsupported and shutil.disk_usage(directory).free < missing):
                if unsupported:
                    continue  # enough space for what is left: rows are written as they come
                raise
            if new:
                remove_cache_files(directory)
            kept = "nothing was extracted" if new else "the rows extracted before are kept"
            raise DiskFullError(
                directory, missing, kept=f"the feature cache's arrays ({dtype.name}) need it; {kept}"
            ) from None


def non_finite_rows(arrays: Mapping[str, np.ndarray], count: int) -> list[int]:
    """Positions ``0..count-1`` of the batch whose values in any of ``arrays`` (each ``[count, ...]``) are not all
    finite."""
    finite = np.ones(count, dtype=bool)
    for array in arrays.values():
        finite &= np.isfinite(np.asarray(array).reshape(count, -1)).all(axis=1)
    return np.flatnonzero(~finite).tolist()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _numpy(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return tensor.detach().to(device="cpu", dtype=dtype).contiguous().numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if tensor.dtype == torch.float32 else tensor.float()
