"""Readers of standard video-text benchmarks and of SynthWorld, behind one call.

>>> data = load_task_data("synth", "train", "recognition", videos=200)          # SynthWorld, in memory
>>> data = load_task_data("synth:/data/sw", "val", "qa", qa="open_ended")      # a set written by `videoadapt synth`
>>> data = load_task_data("msrvtt:/data/MSRVTT", "test", "retrieval", video_dir="/data/MSRVTT/videos/all")

Spec grammar (``data``)::

    synth              SynthWorld generated in memory (options seed=0, videos=2000, size=64, frames=16)
    synth:DIR          a SynthWorld set on disk (same as synthworld:DIR)
    folder:DIR         one's own videos in DIR with labels.csv, captions.csv/.jsonl or questions.jsonl (folder.py)
    NAME:PATH          benchmark NAME; PATH is its annotation folder or file (see each format, docs/datasets.md)

Options common to the benchmark formats: ``video_dir`` (where the clips are; default a conventional subfolder of
the annotation folder), ``skip_bad`` (skip and count bad items instead of raising), ``skip_missing`` (drop items
whose video file is not found instead of keeping the expected path). Unknown options are an error listing the
accepted ones; option values given as strings (from a command line) are converted to the option's type.
Splits are ``train``, ``val`` and ``test`` for every format (mapped to the benchmark's own split names), plus two
made from the training split for benchmarks whose ``val`` is the set papers report on (MSR-VTT 1k-A, Kinetics-400):
``holdout`` (a seeded ``holdout_fraction`` of the training split's videos, default 10 %) and ``fit`` (the rest), so
that validation never touches the split a model is scored on. A video's items stay together on one side.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from videoadapt.data.formats import (  # noqa: F401  (importing a module registers its format)
    activitynet_captions,
    charades_sta,
    folder,
    hcstvg,
    kinetics,
    mot,
    msrvtt,
    msvd,
    nextqa,
    qvhighlights,
    ssv2,
    synthworld,
    tao,
    videoqa,
    vidstg,
    youtube_vis,
)
from videoadapt.data.records import TaskData
from videoadapt.errors import VideoadaptError
from videoadapt.registry import registry

__all__ = ["format_names", "load_task_data", "parse_spec"]

SYNTH_ALIAS = "synth"


def format_names() -> list[str]:
    """Registered format names (the NAME of ``NAME:PATH``); ``synth`` is an alias of ``synthworld``."""
    return registry.names("format")


def parse_spec(data: str) -> tuple[str, str | None]:
    """``(format name, path or None)`` of a data spec; unknown names raise listing the known ones."""
    if not isinstance(data, str) or not data.strip():
        raise VideoadaptError(f"empty data spec {data!r}; expected synth, synth:DIR or NAME:PATH")
    name, sep, path = data.strip().partition(":")
    name = name.strip().lower()
    if name == SYNTH_ALIAS:
        name = "synthworld"
    known = format_names()
    if name not in known:
        raise VideoadaptError(
            f"unknown data format {name!r} in {data!r}; known: synth, synth:DIR, "
            + ", ".join(f"{n}:PATH" for n in known if n != "synthworld")
        )
    if not sep or not path.strip():
        if name != "synthworld":
            raise VideoadaptError(f"data spec {data!r} needs a path: {name}:PATH")
        return name, None
    return name, path.strip()


HOLDOUT, FIT = "holdout", "fit"
HOLDOUT_FRACTION = 0.1


def load_task_data(data: str, split: str, task: str, **options: Any) -> TaskData:
    """The items of ``split`` for ``task`` from the data set ``data`` (see the module docstring for the grammar).

    Raises :class:`VideoadaptError` for an unknown format, task, split or option, and
    :class:`~videoadapt.errors.InputFileError` naming the file (and row or item) for bad annotation files.
    """
    name, path = parse_spec(data)
    reader = registry.get("format", name)
    fraction = options.pop("holdout_fraction", None)
    if split in (HOLDOUT, FIT):
        train = reader(path, "train", task, **_coerce_options(name, reader, options))
        return holdout_split(train, split, HOLDOUT_FRACTION if fraction is None else fraction)
    # holdout_fraction describes the data set (how its holdout is made): the other splits ignore it.
    return reader(path, split, task, **_coerce_options(name, reader, options))


def holdout_split(train: TaskData, split: str, fraction: Any) -> TaskData:
    """``holdout``: a seeded ``fraction`` of ``train``'s videos (all their items); ``fit``: the other videos."""
    import hashlib

    import numpy as np

    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise VideoadaptError(f"holdout_fraction {fraction!r} is not a number") from None
    if not 0.0 < fraction < 1.0:
        raise VideoadaptError(f"holdout_fraction must be between 0 and 1 (exclusive), got {fraction}")
    videos = sorted({item.video.video_id for item in train.items})
    count = max(1, round(fraction * len(videos)))
    if count >= len(videos):
        raise VideoadaptError(f"{train.origin}: {len(videos)} training videos leave none to fit after the holdout")
    # Seeded by the video ids themselves: the same split whatever the order of the annotation file.
    digest = hashlib.sha256("\n".join(videos).encode()).digest()
    order = np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(len(videos))
    held = {videos[i] for i in order[:count]}
    keep = [item for item in train.items if (item.video.video_id in held) == (split == HOLDOUT)]
    return TaskData(
        train.task,
        split,
        keep,
        train.source,
        f"{train.origin} ({split}: {fraction:g} of the training videos held out)",
        train.classes,
        train.answers,
        dict(train.extra),
    )


def _coerce_options(name: str, reader: Any, options: dict[str, Any]) -> dict[str, Any]:
    parameters = {
        p.name: p for p in inspect.signature(reader).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise VideoadaptError(
            f"format {name!r} does not take option(s) {', '.join(unknown)}; options: {', '.join(sorted(parameters))}"
        )
    out = {}
    for key, value in options.items():
        default = parameters[key].default
        if isinstance(value, str) and isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no") and "str" in str(parameters[key].annotation):
                out[key] = value  # a flag that also takes names (reversal_copies=test): the reader checks them
                continue
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise VideoadaptError(f"option {key}={value!r} of format {name!r} must be true or false")
            value = lowered in ("true", "1", "yes")
        elif isinstance(value, str) and isinstance(default, int) and not isinstance(default, bool):
            try:
                value = int(value)
            except ValueError:
                raise VideoadaptError(f"option {key}={value!r} of format {name!r} must be an integer") from None
        elif isinstance(value, str) and value.strip().startswith("["):
            # A list from the command line (--data-option split_fractions=[16,1,1]).
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise VideoadaptError(f"option {key}={value!r} of format {name!r} is not a JSON list") from None
        out[key] = value
    return out
