"""A split's items as a model reads them: loaded through the data set's reader, checked by the task, and their frame
features from the feature cache when the backbone is frozen."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from videoadapt.data.checks import require_readable_videos
from videoadapt.data.records import TaskData
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.model.config import to_plain
from videoadapt.tasks import Task


def load_split(config: Any, split: str) -> TaskData:
    from videoadapt.data.formats import load_task_data

    options = to_plain(config.data.options)
    if bool(config.data.skip_bad):
        # The reader skips (and counts) malformed annotation rows too, not only the trainer bad clips.
        options.setdefault("skip_bad", True)
    return load_task_data(str(config.data.source), split, str(config.run.task), **options)


def load_checked_split(config: Any, task: Task, split: str) -> TaskData:
    """The items of ``split`` a model can use: the reader's, those the task accepts, and (``data.check_videos``)
    those whose video opens — every bad one named at once, or left out and counted with ``data.skip_bad``."""
    skip_bad = bool(config.data.skip_bad)
    data = check_items(task, load_split(config, split), skip_bad)
    if bool(config.data.get("check_videos", True)):
        data = require_readable_videos(data, skip_bad)
    return data


def check_items(task: Task, data: TaskData, skip_bad: bool) -> TaskData:
    """Refuse (naming the item) or, with ``skip_bad``, drop and count the items the task cannot use."""
    kept, reasons = [], []
    for index, item in enumerate(data.items):
        reason = task.check_item(item, data)
        if reason is None:
            kept.append(item)
            continue
        name = getattr(item, "question_id", None) or getattr(item, "query_id", None) or item.video.video_id
        message = f"{data.origin}: {data.split} item {index} ({name!r}): {reason}"
        if not skip_bad:
            raise VideoadaptError(f"{message} (set data.skip_bad=true to skip bad items)")
        reasons.append(message)
    if not reasons:
        return data
    if not kept:
        raise VideoadaptError(f"{data.origin}: every item of split {data.split!r} is bad, e.g. {reasons[0]}")
    extra = dict(data.extra)
    extra["skipped_by_task"] = {"count": len(reasons), "reasons": reasons[:5]}
    return replace(data, items=kept, extra=extra)


def open_cache(
    ilfm: ImageLanguageModel,
    data: TaskData,
    sampler_spec: str,
    directory: Path,
    all_layers: bool,
    accelerator: Any = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> Any:
    """Frame features of ``data``'s clips under ``directory``: extracted on first use (every process encodes its
    share), reused as they are afterwards when backbone, sampler and videos match
    (videoadapt.foundation.feature_cache)."""
    from videoadapt.foundation.feature_cache import extract_features

    return extract_features(
        ilfm,
        data,
        sampler_spec,
        directory,
        all_layers=all_layers,
        accelerator=accelerator,
        skip_bad=skip_bad,
        progress=progress,
    )
