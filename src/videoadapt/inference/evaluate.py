"""``videoadapt eval``: a trained run's metrics on a split of its data, optionally with the scored predictions in
``videoadapt score``'s formats."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from videoadapt.data.checks import skip_counts
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.model.build import load_run
from videoadapt.model.config import sampler_specs
from videoadapt.model.data import load_checked_split, open_cache
from videoadapt.model.evaluation import evaluate_data
from videoadapt.utils.safe_io import atomic_write_bytes, save_json, writable_folder


def options_suffix(options: Mapping[str, Any]) -> str:
    """``{"videos": 3000}`` -> ``"+videos=3000"``, for file names: any character but letters, digits and ``._=+,-``
    becomes ``_`` (a path as a value must not make folders of the name)."""
    suffix = "".join(f"+{key}={value}" for key, value in sorted(options.items()))
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", suffix)


def evaluate_run(
    run: str | Path,
    split: str = "test",
    ilfm: ImageLanguageModel | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    save_predictions: str | Path | None = None,
    data_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of a trained run on ``split`` of its data (written to ``RUN/eval-<split>.json``); with
    ``save_predictions`` a folder, the scored items' predictions and ground truth in ``videoadapt score``'s formats
    (:meth:`Task.score_documents`) go there too. ``data_options`` change the run's ``data.options`` for this
    evaluation only (e.g. ``{"videos": 3000}``: SynthWorld's test split of the same world, five times larger);
    the result then says so and goes to ``RUN/eval-<split>+<key>=<value>....json``, its cache beside the run's."""
    if save_predictions is not None:
        writable_folder(save_predictions, "--save-predictions")
    loaded = load_run(run, ilfm)
    config, model = loaded.config, loaded.model
    suffix = ""
    if data_options:
        from omegaconf import OmegaConf

        config = OmegaConf.merge(config, {"data": {"options": dict(data_options)}})
        suffix = options_suffix(data_options)
    data = load_checked_split(config, model.task, split)
    _, eval_spec = sampler_specs(config)
    cache = None
    if bool(config.run.cache) and (model.encoder.cacheable or model.encoder.cache_with_pixels):
        root = Path(config.run.cache_dir) if config.run.cache_dir else Path(run) / "cache"
        encoder = model.encoder
        cache = open_cache(
            encoder.ilfm,
            data,
            eval_spec,
            root / f"{split}{suffix}",
            all_layers=encoder.head.needs_layers,
            skip_bad=bool(config.data.skip_bad),
            progress=progress,
        )
    device = torch.device("cuda" if torch.cuda.is_available() and not bool(config.run.cpu) else "cpu")
    model.to(device)
    scored: list[tuple[int, Any]] = []
    metrics = evaluate_data(
        model,
        data,
        eval_spec,
        None,
        int(batch_size or config.run.eval_batch_size or config.run.batch_size),
        cache=cache,
        skip_bad=bool(config.data.skip_bad),
        progress=progress,
        keep=scored,
    )
    # "items" is what was scored; every item left out says where it went (skip_bad), so the counts add up.
    skipped = {**skip_counts(data), "unreadable_clips": len(data) - len(scored)}
    result = {
        "run": str(run),
        "split": split,
        "items": len(scored),
        "skipped": skipped,
        "task": str(config.run.task),
        "metrics": metrics,
    }
    if data_options:
        result["data_options"] = dict(data_options)
    if save_predictions is not None:
        folder = Path(save_predictions)
        folder.mkdir(parents=True, exist_ok=True)
        scored_data = data.subset([i for i, _ in scored])
        documents = model.task.score_documents([p for _, p in scored], scored_data)
        for name, text in documents.items():
            atomic_write_bytes(folder / name, text.encode("utf-8"))  # on a full disk: the old file or the new
        result["predictions"] = {name: str(folder / name) for name in documents}
    save_json(Path(run) / f"eval-{split}{suffix}.json", result)
    return result
