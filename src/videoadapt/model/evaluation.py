"""A task's metrics of a model on a split: items shared across processes, predictions gathered and scored."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from videoadapt.data.records import TaskData
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.precision import autocast
from videoadapt.model.task_model import TaskModel


def _shards(size: int, batch_size: int, rank: int, world: int) -> Iterator[list[int]]:
    mine = list(range(rank, size, world))
    for start in range(0, len(mine), batch_size):
        yield mine[start : start + batch_size]


def evaluate_data(
    model: TaskModel,
    data: TaskData,
    sampler_spec: str,
    accelerator: Any = None,
    batch_size: int = 16,
    cache: Any = None,
    skip_bad: bool = False,
    progress: bool = False,
    precision: str | None = None,
    keep: list[tuple[int, Any]] | None = None,
) -> dict[str, float]:
    """The task's metrics of ``model`` on ``data``; items are split across processes and predictions gathered.
    ``batch_size`` items are decoded (or read from the feature cache) together, then each goes through the model
    on its own, so that predictions and metrics are the same, bit for bit, at any batch size and process count.
    ``precision`` ``"bf16"`` runs the model under bf16 autocast, ``"no"`` in fp32; None: as ``accelerator`` says.
    ``keep``: a list that receives ``(item index, prediction)`` of every scored item, in order (per-item analysis:
    the bench's bootstrap and prediction records)."""
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    encoder = model.encoder
    builder = BatchBuilder(
        data,
        model.task,
        encoder.ilfm.processor,
        sampler_from_spec(sampler_spec),
        train=False,
        cache=cache,
        pixels=cache is None or model.cache_with_pixels,
        skip_bad=skip_bad,
        cache_patches=bool(getattr(encoder.head, "needs_patches", True)) or model.task.needs_patches,
    )
    was_training = model.training
    model.eval()
    indexed: list[tuple[int, Any]] = []
    mixed = autocast(device, precision) if precision is not None else None
    if mixed is None:
        mixed = accelerator.autocast() if accelerator is not None else contextlib.nullcontext()
    try:
        from videoadapt.utils.progress import track

        batches = list(_shards(len(data), batch_size, rank, world))
        with mixed:
            for indices in track(batches, len(batches), f"eval {data.split}", enabled=progress):
                # Decoded (or read from the cache) a batch at a time, predicted an item at a time: in a batch, an
                # item's numbers move by ~1e-6 with its neighbours (BLAS picks its kernel by the row count), so
                # metrics and predictions would depend on the batch size and on the process count.
                for single in builder.each_item(builder.build(indices)):
                    single = single.to(device)
                    indexed.extend(zip(single.indices, model.predict(single), strict=True))
    finally:
        model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        indexed = gather_object(indexed)
    predictions = dict(indexed)
    if len(predictions) < len(data):
        # Unreadable clips were skipped (skip_bad): score the items that have a prediction.
        scored = sorted(predictions)  # not ``keep``: that is the caller's list of what was scored
        data = data.subset(scored)
        ordered = [predictions[i] for i in scored]
    else:
        ordered = [predictions[i] for i in range(len(data))]
    if keep is not None:
        keep.extend(sorted(predictions.items()))
    return model.task.evaluate(ordered, data)
