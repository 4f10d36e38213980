"""Run configuration: three sections, ``model`` / ``data`` / ``run`` (LAVIS style), loaded with omegaconf.

Precedence, lowest first: the defaults below, a YAML file (``--config``), the command-line flags (``--task``,
``--paradigm``, ...), then dotted overrides (``run.lr=1e-3 data.frames=8``). Keys outside the defaults are refused
with the path of the key, except inside the free-form option maps (``model.options``, ``model.head``,
``data.options``), whose keys belong to a paradigm, a task head or a data format.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoadapt.errors import VideoadaptError

DEFAULTS: dict[str, Any] = {
    "model": {
        "backbone": "tiny",  # --backbone spec (videoadapt.foundation.loading)
        "paradigm": "post_network",  # a composition "a+b"; ignored when preset is set
        "preset": None,  # a registered preset (videoadapt.paradigms.presets)
        "options": {},  # per-paradigm options {paradigm: {key: value}}
        "head": {},  # task head options (classifier, temperature, beam_size, ...)
        "teacher_run": None,  # a trained run folder whose video encoder teaches distillation (teacher: run)
    },
    "data": {
        "source": "synth",  # load_task_data spec: synth, synth:DIR, msrvtt:PATH, ...
        "options": {},  # reader options (videos, size, qa, video_dir, ...)
        "frames": 8,  # frames per clip
        "train_sampler": None,  # default uniform:FRAMES:random
        "eval_sampler": None,  # default uniform:FRAMES
        # run.cache only: the training cache holds this denser clip (e.g. uniform:16) and each step draws the
        # train sampler's frames from it, keeping temporal jitter; null: train on the eval sampler's frames
        "cache_sampler": None,
        "train_split": "train",
        "val_split": "val",  # null: no validation (no early stopping; the last weights are kept)
        "skip_bad": False,  # skip and count bad items instead of stopping with an error
        "check_videos": True,  # open every video's header before training or eval; list every bad one at once
    },
    "run": {
        "task": "recognition",
        "seed": 0,
        "epochs": 1,
        "max_steps": None,  # optimizer steps; stops earlier than epochs when set
        "batch_size": 8,  # global batch per micro-step (split across processes)
        "grad_accum": 1,  # micro-steps per optimizer step
        "lr": 1e-3,  # the head group: everything that is not the backbone (temporal modules, side networks, task head)
        # The backbone group: every trainable parameter of the ILFM (unfrozen weights, adapters, LoRA, prompts, a
        # text context) and the head's declared copies of it; null: run.lr (CLIP4Clip tunes CLIP at 1e-7, its new
        # modules at 1e-4)
        "backbone_lr": None,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
        "warmup_steps": 0,
        "min_lr_ratio": 0.0,  # cosine decays to lr * min_lr_ratio
        "clip_grad": 1.0,  # max gradient norm; null: no clipping
        # "no" (fp32), "bf16" (autocast) or "auto": bf16 where the hardware runs it natively (train/precision.py)
        "precision": "no",
        "cpu": False,  # force CPU even where an accelerator is present
        "checkpoint_every": 100,  # optimizer steps between checkpoints (0: only at the end)
        "eval_every": 1,  # epochs between validations (0: never)
        "eval_every_steps": None,  # also validate every N optimizer steps (learning curves); null: never
        "patience": None,  # validations without improvement before stopping early
        "monitor": None,  # validation metric for early stopping (default: the task's)
        "cache": False,  # frozen backbone: extract frame features once, never run the backbone in training
        "cache_dir": None,  # default RUN/cache
        "num_workers": 0,  # DataLoader workers decoding clips
        "worker_start": "forkserver",  # how workers start: forkserver, fork or spawn (videoadapt.train.data)
        "worker_timeout": 300,  # seconds a worker may make no progress (a hung decode) before it is stopped; 0: never
        "max_nonfinite_steps": 5,  # consecutive NaN/inf-loss steps (each skipped) before training stops; 0: never
        "log_every": 10,  # optimizer steps between log.csv rows
        "progress": True,
        "eval_batch_size": None,  # default batch_size
    },
}

PRECISIONS = ("no", "bf16", "auto")
FREE_FORM = (("model", "options"), ("model", "head"), ("data", "options"))

# What a setting may hold where its default does not say (null defaults) or says too little: "int" a whole number,
# "float" any number, "bool" true/false, "list" a list of numbers as long as the default's; "|null" allows null.
# Settings not here and with a string or null default are free text (checked where they are used).
VALUE_TYPES: dict[str, str] = {
    "run.max_steps": "int|null",
    "run.eval_every_steps": "int|null",
    "run.patience": "int|null",
    "run.eval_batch_size": "int|null",
    "run.clip_grad": "float|null",  # null: no clipping
    "run.worker_timeout": "float",  # seconds; a default of 300 does not make it whole seconds only
}
# run.lr and run.backbone_lr: _check_rate (a positive, finite learning rate) says more than a type would.
RATES = ("run.lr", "run.backbone_lr")


def load_config(
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> Any:
    """The resolved run config (an omegaconf DictConfig) from defaults, a YAML file, flags and overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    config = OmegaConf.create(DEFAULTS)
    OmegaConf.set_struct(config, True)
    for section, key in FREE_FORM:
        OmegaConf.set_struct(config[section][key], False)
    layers = []
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise VideoadaptError(f"{path}: config file not found")
            layers.append(OmegaConf.load(path))
        if flags:
            layers.append(OmegaConf.create({k: v for k, v in _nest(flags).items()}))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise VideoadaptError(f"overrides must look like section.key=value, got {bad}")
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        for layer in layers:
            config = OmegaConf.merge(config, layer)
    except OmegaConfBaseException as error:
        raise VideoadaptError(f"bad config{f' {path}' if path else ''}: {error}".splitlines()[0]) from None
    check_types(config)
    check_config(config)
    return config


def _nest(flags: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _expected_types() -> dict[str, str]:
    types: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, default in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(default, dict):
                if tuple(dotted.split(".")) not in FREE_FORM:
                    walk(default, f"{dotted}.")
            elif isinstance(default, bool):
                types[dotted] = "bool"
            elif isinstance(default, int):
                types[dotted] = "int"
            elif isinstance(default, float):
                types[dotted] = "float"
            elif isinstance(default, list):
                types[dotted] = "list"

    walk(DEFAULTS, "")
    types.update(VALUE_TYPES)
    for key in RATES:
        types.pop(key, None)
    return types


def _allowed(kind: str, default: Any) -> str:
    base, _, null = kind.partition("|")
    words = {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "list": f"a list of {len(default) if isinstance(default, list) else 'some'} numbers",
    }[base]
    return words + (" (or null)" if null else "")


def _coerce(kind: str, value: Any, default: Any) -> tuple[bool, Any]:
    """``(ok, value)``: whether ``value`` fits ``kind``, and the value to keep (2.0 for a whole number: 2)."""
    base, _, null = kind.partition("|")
    if value is None:
        return bool(null), value
    if base == "bool":
        if isinstance(value, bool):
            return True, value
        return (True, bool(value)) if isinstance(value, int) and value in (0, 1) else (False, value)
    if base == "list":
        from omegaconf import ListConfig

        if not isinstance(value, (list, ListConfig)) or not isinstance(default, list) or len(value) != len(default):
            return False, value
        items = list(value)
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items)
        return ok, [float(v) for v in items] if ok else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False, value
    if base == "int":
        if isinstance(value, float):
            return (True, int(value)) if value.is_integer() else (False, value)
        return True, value
    return math.isfinite(value), value


def check_types(config: Any) -> None:
    """Every setting with a known kind of value holds one (``run.max_steps=two`` is an error naming the key, the
    value and what it may be, not a traceback where the trainer first reads it). Whole-number floats (``2.0``) of
    whole-number settings and 0/1 of true/false ones are normalized."""
    for dotted, kind in _expected_types().items():
        section, key = dotted.split(".")
        value = config[section][key]
        default = DEFAULTS[section][key]
        ok, normalized = _coerce(kind, value, default)
        if not ok:
            raise VideoadaptError(f"{dotted} must be {_allowed(kind, default)}, got {value!r}")
        if type(normalized) is not type(value):
            config[section][key] = normalized


def check_config(config: Any) -> None:
    run = config.run
    if int(run.batch_size) < 1 or int(run.grad_accum) < 1:
        raise VideoadaptError("run.batch_size and run.grad_accum must be >= 1")
    if run.precision is False:
        run.precision = "no"  # YAML 1.1 reads an unquoted `no` (run.precision=no) as false
    if run.precision not in PRECISIONS:
        raise VideoadaptError(f"run.precision must be one of {', '.join(PRECISIONS)}, got {run.precision!r}")
    for key in ("lr", "backbone_lr"):
        if run[key] is not None or key == "lr":
            _check_rate(f"run.{key}", run[key])
    every = run.eval_every_steps
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise VideoadaptError(f"run.eval_every_steps must be a whole number of steps >= 1 (or null), got {every!r}")
    if int(config.data.frames) < 1:
        raise VideoadaptError("data.frames must be >= 1")
    if run.patience is not None and int(run.patience) < 1:
        raise VideoadaptError("run.patience must be >= 1 (or null)")
    if int(run.max_nonfinite_steps or 0) < 0 or float(run.worker_timeout or 0) < 0:
        raise VideoadaptError("run.max_nonfinite_steps and run.worker_timeout must be >= 0")
    if run.worker_start not in ("forkserver", "fork", "spawn"):
        raise VideoadaptError(f"run.worker_start must be forkserver, fork or spawn, got {run.worker_start!r}")


def _check_rate(key: str, value: Any) -> None:
    try:
        rate = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise VideoadaptError(f"{key} must be a positive, finite learning rate, got {value!r}")


def to_plain(config: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]


# data.options naming a file or folder (the formats' video_dir, durations=FILE, classes=FILE, captions=FILE).
PATH_OPTIONS = ("video_dir", "durations", "classes", "captions")


def _absolute(value: str) -> str:
    """``value`` as an absolute path when it is a relative path that exists from here, else ``value`` unchanged."""
    path = Path(value.strip())
    if not value.strip() or path.is_absolute() or not path.exists():
        return value
    return os.path.abspath(path)


def absolute_data_paths(config: Any) -> Any:
    """A copy of ``config`` whose data paths are absolute, so a run folder's config.yaml works from any directory.

    The path of ``data.source`` (after ``FORMAT:``) and the path-valued ``data.options`` become absolute when they
    are relative paths that exist from the current directory; ``synth``, absolute paths and anything that is not
    a path here (a hub id) stay as written.
    """
    config = copy.deepcopy(config)
    data = config.data
    source = data.source
    if isinstance(source, str):
        name, sep, rest = source.partition(":")
        if sep and rest.strip():
            data.source = f"{name}:{_absolute(rest)}"
    for key in PATH_OPTIONS:
        value = data.options.get(key)
        if isinstance(value, str):
            data.options[key] = _absolute(value)
    return config


def save_config(config: Any, path: str | Path) -> None:
    from omegaconf import OmegaConf

    from videoadapt.utils.safe_io import atomic_write_bytes

    atomic_write_bytes(path, OmegaConf.to_yaml(config, resolve=True).encode())


def sampler_specs(config: Any) -> tuple[str, str]:
    """``(train sampler, eval sampler)`` specs: TSN segments, a random frame of each in training."""
    frames = int(config.data.frames)
    train = config.data.train_sampler or f"uniform:{frames}:random"
    evaluation = config.data.eval_sampler or f"uniform:{frames}"
    return str(train), str(evaluation)
