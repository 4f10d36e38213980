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

# Every setting, its default and what it means (one line each): DEFAULTS below and `videoadapt train --help` are
# both made from this table, so the help cannot drift from the defaults.
SETTINGS: tuple[tuple[str, Any, str], ...] = (
    ("model.backbone", "tiny", "the ILFM (--backbone): tiny, tiny-owl, hf:ID, a local DIR, hf-config:NAME"),
    (
        "model.paradigm",
        "post_network",
        "the paradigm (--paradigm), or a composition a+b (lora+post_network); ignored with a preset",
    ),
    ("model.preset", None, "a registered published design instead (--preset; videoadapt params --list)"),
    ("model.options", {}, "per-paradigm options {paradigm: {key: value}}, e.g. model.options.lora.r=8"),
    ("model.head", {}, "task head options (classifier, temperature, text_adapter, beam_size, ...)"),
    (
        "model.mllm",
        {},
        "video MLLM settings (--backbone mllm): pooling, pool_output, feature_layer, max_context, template, chat",
    ),
    ("model.teacher_run", None, "a trained run folder whose video encoder teaches distillation (teacher: run)"),
    (
        "model.init_run",
        None,
        "a trained run folder (same backbone) whose trained weights this run starts from, e.g. the projector of an "
        "image-caption stage (LLaVA's stage 1 -> 2); what it did not train keeps its initialisation",
    ),
    (
        "data.source",
        "synth",
        "the data (--data): synth, synth:DIR, msrvtt:PATH, charades_sta:PATH, ... (docs/datasets.md)",
    ),
    ("data.options", {}, "reader options (SynthWorld: videos, size, frames, qa; files: video_dir, ...)"),
    ("data.frames", 8, "frames per clip"),
    (
        "data.train_sampler",
        None,
        "training frame sampler; null: uniform:FRAMES:random (TSN segments, a random frame of each)",
    ),
    ("data.eval_sampler", None, "evaluation frame sampler; null: uniform:FRAMES"),
    (
        "data.cache_sampler",
        None,
        "with run.cache: cache this denser clip (uniform:16) and draw the train sampler's frames from it each step",
    ),
    ("data.train_split", "train", "the split trained on"),
    ("data.val_split", "val", "the split validated on (best weights, early stopping); null: none, keep the last"),
    ("data.skip_bad", False, "skip and count bad items instead of stopping with an error (--skip-bad)"),
    ("data.check_videos", True, "open every video's header before training or eval; list every bad one at once"),
    (
        "run.task",
        "recognition",
        "the task (--task): recognition, retrieval, qa, captioning, temporal_grounding, st_grounding, tracking, "
        "segmentation",
    ),
    ("run.seed", 0, "seed of the weights, the data order and every random draw"),
    ("run.epochs", 1, "epochs over the training split"),
    ("run.max_steps", None, "optimizer steps; stops earlier than run.epochs when set"),
    ("run.batch_size", 8, "global batch per micro-step (split across processes)"),
    ("run.grad_accum", 1, "micro-steps per optimizer step"),
    ("run.lr", 1e-3, "learning rate of the head group: everything that is not the backbone"),
    (
        "run.backbone_lr",
        None,
        "learning rate of the ILFM's trainable parameters (unfrozen weights, adapters, LoRA, prompts); null: run.lr",
    ),
    ("run.weight_decay", 0.01, "AdamW weight decay"),
    ("run.betas", [0.9, 0.999], "AdamW betas"),
    ("run.warmup_steps", 0, "optimizer steps of linear warm-up before the cosine decay"),
    ("run.min_lr_ratio", 0.0, "the cosine decays to lr * min_lr_ratio"),
    ("run.clip_grad", 1.0, "max gradient norm; null: no clipping"),
    ("run.precision", "no", "no (fp32), bf16 (autocast) or auto (bf16 where the hardware runs it natively)"),
    ("run.cpu", False, "force CPU even where an accelerator is present"),
    ("run.checkpoint_every", 100, "optimizer steps between checkpoints (0: only at the end)"),
    ("run.eval_every", 1, "epochs between validations (0: never)"),
    ("run.eval_every_steps", None, "also validate every N optimizer steps (learning curves); null: never"),
    ("run.patience", None, "validations without improvement before stopping early; null: never stop early"),
    ("run.monitor", None, "validation metric for the best weights and early stopping; null: the task's"),
    ("run.cache", False, "frozen backbone: extract frame features once, never run the backbone in training"),
    ("run.cache_dir", None, "where the feature cache lives; null: RUN/cache"),
    ("run.num_workers", 0, "DataLoader worker processes decoding clips"),
    ("run.worker_start", "forkserver", "how workers start: forkserver, fork or spawn"),
    ("run.worker_timeout", 300, "seconds a worker may make no progress (a hung decode) before it is stopped; 0: never"),
    ("run.max_nonfinite_steps", 5, "consecutive NaN/inf-loss steps (each skipped) before training stops; 0: never"),
    ("run.log_every", 10, "optimizer steps between log.csv rows"),
    ("run.progress", True, "show a progress bar on stderr"),
    ("run.eval_batch_size", None, "batch size of validation and evaluation; null: run.batch_size"),
)


def _tree(rows: Sequence[tuple[str, Any, str]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, default, _ in rows:
        section, key = dotted.split(".")
        tree.setdefault(section, {})[key] = copy.deepcopy(default)
    return tree


DEFAULTS: dict[str, Any] = _tree(SETTINGS)

# The recipe of each task: what `videoadapt train --task T` trains with when neither --config nor an override says
# otherwise (user values always win). A recipe names no paradigm: it is the budget, data, head and early stopping
# (validation every epoch, run.patience) of the task; the paradigm and its options stay the user's (--paradigm,
# model.options), and configs/<task>-post_network.yaml are the recipe plus model.options (a test keeps them equal).
# Frozen-backbone paradigms read the feature cache (run.cache); a paradigm that trains the backbone ignores it with
# a notice. What the plain command gives per task: docs/training.md (task defaults).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "recognition": {
        "model": {"head": {"classifier": "linear"}},
        "data": {"frames": 8, "cache_sampler": "uniform:16"},
        "run": {"epochs": 25, "batch_size": 32, "lr": 1e-3, "warmup_steps": 20, "cache": True, "patience": 5},
    },
    "retrieval": {
        "model": {"head": {"temperature": "learnable", "text_adapter": "tokens", "train_captions": "all"}},
        "data": {"frames": 8, "cache_sampler": "uniform:16"},
        "run": {"epochs": 25, "batch_size": 128, "lr": 1e-3, "warmup_steps": 50, "cache": True, "patience": 4},
    },
    "qa": {
        "model": {"head": {"text_adapter": True}},
        "data": {"frames": 8, "cache_sampler": "uniform:16"},
        "run": {"epochs": 20, "batch_size": 32, "lr": 1e-3, "cache": True, "patience": 4},
    },
    "captioning": {
        "model": {"head": {"layers": 2, "width": 256, "heads": 4, "beam_size": 3, "max_length": 24}},
        "data": {"frames": 8},
        "run": {"epochs": 15, "batch_size": 32, "lr": 5e-4, "warmup_steps": 20, "cache": True, "eval_every": 5},
    },
    "temporal_grounding": {
        "model": {"head": {"head": "dense"}},
        "data": {"frames": 16},
        "run": {"epochs": 20, "batch_size": 16, "lr": 1e-3, "warmup_steps": 50, "cache": True, "patience": 5},
    },
    "st_grounding": {
        "data": {"frames": 16},
        "run": {"epochs": 8, "batch_size": 16, "lr": 1e-3, "warmup_steps": 50, "cache": True, "patience": 3},
    },
    "tracking": {
        "data": {"frames": 16},
        "run": {"epochs": 4, "batch_size": 8, "lr": 1e-3, "warmup_steps": 20, "cache": True, "patience": 2},
    },
    "segmentation": {
        "model": {"head": {"head": "queries"}},
        "data": {"frames": 8},
        "run": {"epochs": 18, "batch_size": 8, "lr": 1e-3, "warmup_steps": 50, "cache": True, "patience": 3},
    },
}

# SynthWorld's reader options per task (data.options when data.source is synth or synth:DIR; a set on disk keeps
# its own size): the size of the set the recipe was measured on. 5,000 videos: 4,000 train, 500 val, 500 test.
SYNTH_DEFAULTS: dict[str, dict[str, Any]] = {
    "recognition": {"videos": 5000, "size": 64, "frames": 16},
    "retrieval": {"videos": 5000, "size": 64, "frames": 16},
    "qa": {"videos": 5000, "size": 64, "frames": 16, "qa": "multiple_choice"},
    "captioning": {"videos": 600, "size": 64, "frames": 16},
    "temporal_grounding": {"videos": 2000, "size": 64, "frames": 16},
    "st_grounding": {"videos": 2000, "size": 64, "frames": 16},
    "tracking": {"videos": 1000, "size": 64, "frames": 16},
    "segmentation": {"videos": 1000, "size": 64, "frames": 8},
}
SYNTH_FORMATS = ("synth", "synthworld")


def task_defaults(task: Any, source: Any) -> dict[str, Any]:
    """The recipe layer of ``task`` (:data:`TASK_DEFAULTS`, plus :data:`SYNTH_DEFAULTS` as ``data.options`` when
    ``source`` is SynthWorld); empty for an unknown task (refused later, naming the known ones)."""
    recipe = copy.deepcopy(TASK_DEFAULTS.get(str(task), {}))
    name = str(source or "").partition(":")[0].strip().lower()
    if name in SYNTH_FORMATS and str(task) in SYNTH_DEFAULTS:
        recipe.setdefault("data", {})["options"] = copy.deepcopy(SYNTH_DEFAULTS[str(task)])
    return recipe


def settings_help(width: int = 100) -> str:
    """Every setting with its default and meaning, then each task's recipe: the epilog of `videoadapt train`."""
    import textwrap

    def wrapped(head: str, text: str, indent: int) -> list[str]:
        return textwrap.wrap(text, width, initial_indent=head, subsequent_indent=" " * indent, break_on_hyphens=False)

    lines = wrapped(
        "", "settings (KEY=DEFAULT: meaning; change one with the override KEY=VALUE or in a --config file):", 0
    )
    for dotted, default, meaning in SETTINGS:
        lines += wrapped(f"  {dotted}={_shown(default)}: ", meaning, 6)
    lines += [""] + wrapped(
        "",
        "task defaults (each task's recipe, applied under --config and overrides; the data.options ones only with "
        "--data synth or synth:DIR):",
        0,
    )
    for task in TASK_DEFAULTS:
        recipe = _flat(task_defaults(task, "synth"))
        lines += wrapped(f"  {task}: ", " ".join(f"{k}={_shown(v)}" for k, v in recipe.items()), 6)
    lines += [""] + wrapped(
        "",
        "reader options: data.options.KEY=VALUE or --data-option KEY=VALUE (SynthWorld: videos, size, frames, qa, "
        "seed, split_fractions, reversal_copies; benchmark formats: video_dir, skip_missing, ...; docs/datasets.md)",
        2,
    )
    return "\n".join(lines)


def _shown(value: Any) -> str:
    import json

    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else json.dumps(value)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


PRECISIONS = ("no", "bf16", "auto")
FREE_FORM = (("model", "options"), ("model", "head"), ("model", "mllm"), ("data", "options"))

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


def _yaml_problem(error: Exception) -> str:
    """PyYAML's message in one line: the problem and where (line, column)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def override_layers(overrides: Sequence[str]) -> list[Any]:
    """``section.key=value`` overrides as omegaconf layers, each value read as YAML; one at a time, so that a value
    YAML cannot read is named in a one-line error (merged in order, they are what one dotlist would give)."""
    import yaml
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise VideoadaptError(f"overrides must look like section.key=value, got {bad}")
    layers = []
    for override in overrides:
        try:
            layers.append(OmegaConf.from_dotlist([override]))
        except yaml.YAMLError as error:
            key = override.split("=", 1)[0]
            raise VideoadaptError(
                f"override {key}: its value is not valid YAML ({_yaml_problem(error)}); quote the whole value, e.g. "
                f"{key}='\"...\"' (a text holding ': ' or braces needs the quotes)"
            ) from None
    return layers


def data_option_overrides(pairs: Sequence[str]) -> list[str]:
    """``--data-option KEY=VALUE`` flags as ``data.options.KEY=VALUE`` overrides (train and eval read them alike)."""
    out = []
    for pair in pairs:
        if "=" not in pair or not pair.partition("=")[0].strip():
            raise VideoadaptError(f"--data-option expects KEY=VALUE, got {pair!r}")
        out.append(f"data.options.{pair.strip()}")
    return out


def load_config(
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    recipe: bool = False,
) -> Any:
    """The resolved run config (an omegaconf DictConfig) from defaults, a YAML file, flags and overrides.

    With ``recipe`` (what `videoadapt train` asks for), the task's recipe (:func:`task_defaults`) lies between the
    defaults and the file: the task and the data source are read from the layers above it first.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def base() -> Any:
        config = OmegaConf.create(DEFAULTS)
        OmegaConf.set_struct(config, True)
        for section, key in FREE_FORM:
            OmegaConf.set_struct(config[section][key], False)
        return config

    config = base()
    layers = []
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise VideoadaptError(f"{path}: config file not found")
            try:
                layers.append(OmegaConf.load(path))
            except yaml.YAMLError as error:
                raise VideoadaptError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
        if flags:
            layers.append(OmegaConf.create({k: v for k, v in _nest(flags).items()}))
        if overrides:
            layers.extend(override_layers(overrides))
        if recipe:
            chosen = OmegaConf.merge(config, *layers) if layers else config
            config = OmegaConf.merge(base(), task_defaults(chosen.run.task, chosen.data.source))
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
