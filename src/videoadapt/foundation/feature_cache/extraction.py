"""Extraction: encode every distinct video of a data set once with the frozen backbone and store its frame features
(:func:`extract_features`): decoding on threads ahead of the model, sharded across processes, resumable."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoadapt.data.records import TaskData, VideoRef, source_frames
from videoadapt.data.sampling import AtTimestamps, Dense, Sampler, UniformSegments, sampler_from_spec
from videoadapt.data.transforms import decode_short_side, preprocess
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel
from videoadapt.foundation.feature_cache.key import backbone_fingerprint, cache_key
from videoadapt.foundation.feature_cache.layout import CacheDims
from videoadapt.foundation.feature_cache.store import FeatureCache
from videoadapt.utils.folder_lock import FolderLock


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

    # One writer per cache folder: another extraction into it (a second job given the same --out or cache_dir)
    # refuses at once, naming the holder; the processes of one launch share it under the main process's lock.
    lock = _on_main(lambda: FolderLock(directory, "feature cache folder").acquire(), main, accelerator, processes)
    was_training = ilfm.training
    ilfm.eval()
    try:

        def create() -> FeatureCache:
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
            return FeatureCache.create(
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

        # Made (and its space reserved) by the main process; the others attach once it exists.
        cache = _on_main(create, main, accelerator, processes)
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
        if lock is not None:
            lock.release()
    result = FeatureCache.open(directory, key=key)
    result.run_stats = stats
    return result


def _on_main(action: Callable[[], Any], main: bool, accelerator: Any, processes: int) -> Any:
    """``action()`` on the main process (None elsewhere); its refusal is raised on every process, which would
    otherwise wait for the main one forever at the next barrier."""
    value, problem = None, None
    if main:
        try:
            value = action()
        except VideoadaptError as error:
            problem = error
    if accelerator is not None and processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([None if problem is None else str(problem)])[0]
        if problem is None and message is not None:
            problem = VideoadaptError(f"the main process stopped: {message}")
    if problem is not None:
        raise problem
    return value


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
        clip = preprocess(source_frames(source, ref, sampler, decode_short_side(processor)), processor)
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
        with torch.no_grad():
            features = _encode_each(ilfm, batch_clips, device, all_layers)
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


def _encode_each(
    ilfm: ImageLanguageModel, clips: list[torch.Tensor], device: torch.device, all_layers: bool
) -> FrameFeatures:
    """``clips`` encoded one at a time, as one batch of features. Batched, a clip's features move by ~1e-6 with its
    neighbours (BLAS picks its kernel by the row count), so a cache resumed after a kill between the rows of a batch
    would hold other numbers than an uninterrupted extraction, and the cache other numbers than evaluation, which
    encodes each clip alone. One at a time is no slower on a CPU (benchmarks/eval_per_item.py: TinyCLIP, 8-frame
    clips of 64 px, one thread: 0.86x the time of batches of 8)."""
    parts = [ilfm.encode_frames(clip.unsqueeze(0).to(device), all_layers=all_layers) for clip in clips]
    layers = None
    if parts[0].layers is not None:
        layers = [torch.cat([p.layers[k] for p in parts]) for k in range(len(parts[0].layers))]  # type: ignore[index]
    return FrameFeatures(
        cls=torch.cat([p.cls for p in parts]),
        patches=torch.cat([p.patches for p in parts]),
        embeds=torch.cat([p.embeds for p in parts]),
        layers=layers,
    )
