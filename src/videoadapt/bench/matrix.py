"""The bench's matrix: every registered paradigm x every task table of a preset, plus two baselines per table.

Nothing here names a task or a paradigm it must know: tables come from each task's ``survey`` declaration
(:class:`videoadapt.tasks.SurveyTable`), paradigms from the registry. A task registered later joins the matrix
with its declared tables (or, without a declaration, one table of every metric it reports); a paradigm
registered later joins with its default options.

A :class:`Cell` is one (table, arm, seed): an arm is a paradigm with the bench's options for it, the zero-shot
ILFM (``zero_shot``: no training; the untrained head on mean-pooled frame embeddings), or ``random_init`` (the same
architecture with the image tower re-initialised at random, trained end to end by ``full_finetune``: what
image-language pretraining buys). Every cell of a bench shares one :class:`Budget`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from videoadapt.errors import VideoadaptError
from videoadapt.registry import registry

# The survey's order (Fig. 4): frozen-feature paradigms, then those that adapt the features. A paradigm registered
# later and absent here comes after these.
PARADIGM_ORDER = (
    "distillation",
    "post_network",
    "side_tuning",
    "full_finetune",
    "partial_tuning",
    "extra_models",
    "adapter",
    "lora",
    "prompt_tuning",
)

# What each paradigm runs with in the bench: its documented default, written out so that results.csv records the
# exact composition (a paradigm with a head of its own needs a module choice; post_network's is CLIP4Clip's
# seqTransf). A paradigm missing here runs with {} (its own defaults).
PARADIGM_OPTIONS: dict[str, dict[str, Any]] = {
    "distillation": {"student": "backbone"},
    "post_network": {"temporal": "transformer"},
    "side_tuning": {"design": "evl"},
    "full_finetune": {},
    "partial_tuning": {"subset": "bias_norm"},
    "extra_models": {"stream": "motion"},
    "adapter": {"variant": "st_adapter"},
    "lora": {"r": 8},
    "prompt_tuning": {"depth": "deep"},
}

ZERO_SHOT, RANDOM_INIT = "zero_shot", "random_init"
BASELINES = (ZERO_SHOT, RANDOM_INIT)
RANDOM_INIT_PARADIGM = "full_finetune"  # a random image tower must train end to end to learn anything

# The survey's Table II columns, for tasks not registered yet: a task registered under one of these names without
# a ``survey`` declaration of its own gets this table.
RESERVED_TABLES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "tracking": (
        "Table II: multiple object tracking",
        (("TETA", "TETA"), ("LocA", "LocA"), ("AssocA", "AssocA"), ("ClsA", "ClsA")),
    ),
    "st_grounding": (
        "Table II: spatio-temporal video grounding",
        (("m_vIoU", "m_vIoU"), ("vIoU@0.3", "vIoU@0.3"), ("vIoU@0.5", "vIoU@0.5"), ("m_tIoU", "m_tIoU")),
    ),
    "temporal_grounding": (
        "Table II: temporal grounding",
        (("R@0.3", "R@0.3"), ("R@0.5", "R@0.5"), ("R@0.7", "R@0.7"), ("mIoU", "mIoU")),
    ),
    "segmentation": ("Table II: video segmentation", ()),
}


@dataclass(frozen=True)
class Budget:
    """What every cell gets: the same data, frames, steps and batch. ``videos``/``size``/``source_frames`` describe
    the SynthWorld set generated on the fly (ignored for benchmark data)."""

    steps: int = 8
    batch_size: int = 8
    frames: int = 4
    lr: float = 1e-3
    warmup_steps: int = 0
    videos: int = 240
    size: int = 64
    source_frames: int = 8
    eval_batch_size: int = 32
    validate: bool = False  # validate at the end and keep the best weights (more time); else the last weights

    def describe(self) -> str:
        return (
            f"{self.steps} optimizer steps of {self.batch_size} clips x {self.frames} frames, AdamW lr {self.lr:g}"
            f"{f' with {self.warmup_steps} warm-up steps' if self.warmup_steps else ''}, cosine decay"
        )


@dataclass(frozen=True)
class Preset:
    name: str
    tables: tuple[str, ...] | None  # table names; None: every table of every registered task
    budget: Budget
    seeds: int = 1
    description: str = ""


PRESETS: dict[str, Preset] = {
    "micro": Preset(
        "micro",
        ("recognition", "retrieval"),
        Budget(steps=2, batch_size=4, frames=2, videos=40, size=64, source_frames=8),
        description="a smoke test: 2 steps of 4 clips x 2 frames on 40 videos (use with --paradigms)",
    ),
    "quick": Preset(
        "quick",
        ("recognition", "retrieval", "qa-mc"),
        Budget(steps=16, batch_size=8, frames=4, videos=240, size=64, source_frames=8),
        description="every paradigm on recognition, retrieval and multiple-choice QA; ~10 minutes on 2 CPU cores",
    ),
    "full": Preset(
        "full",
        None,
        Budget(steps=150, batch_size=16, frames=8, videos=1200, size=64, source_frames=16, warmup_steps=10),
        seeds=3,
        description="every table of every registered task (captioning and open-ended QA included), 3 seeds",
    ),
}


@dataclass(frozen=True)
class Table:
    """One task table of the bench (a task's :class:`SurveyTable` bound to its task name). Its fields repeat
    SurveyTable's instead of subclassing it so that importing this module does not load torch (tasks.base does):
    benchmarks/paradigm_cost.py reads PARADIGM_ORDER in a parent process that measures its children's memory."""

    task: str
    name: str
    title: str
    columns: tuple[tuple[str, str], ...]
    data: dict[str, Any] = field(default_factory=dict)
    zero_shot_head: dict[str, Any] | None = None
    zero_shot_note: str = ""
    primary: str | None = None
    monitor: str = ""

    @property
    def primary_metric(self) -> str:
        return self.primary or (self.columns[0][1] if self.columns else self.monitor)


@dataclass(frozen=True)
class Cell:
    table: str
    task: str
    arm: str  # a paradigm name, zero_shot or random_init
    seed: int
    paradigm: str  # the composition trained ("" for zero-shot)
    options: dict[str, Any] = field(default_factory=dict)
    backbone: str = "tiny"
    head: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # the table's reader options

    @property
    def key(self) -> str:
        return f"{self.table}/{self.arm}/seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        return cls(**data)


def task_tables() -> list[Table]:
    """Every table of every registered task, in task-name order."""
    from videoadapt.tasks import load_tasks

    load_tasks()
    tables: list[Table] = []
    for name, task in registry.items("task"):
        declared = tuple(getattr(task, "survey", ()) or ())
        monitor = str(getattr(task, "monitor", ""))
        if declared:
            for t in declared:
                tables.append(
                    Table(
                        name,
                        t.name,
                        t.title,
                        tuple(t.columns),
                        dict(t.data),
                        t.zero_shot_head,
                        t.zero_shot_note,
                        t.primary,
                        monitor,
                    )
                )
        elif name in RESERVED_TABLES:
            title, columns = RESERVED_TABLES[name]
            tables.append(Table(name, name, title, columns, monitor=monitor, zero_shot_note="not declared"))
        else:
            # No declaration: one table whose columns are whatever the task reports (filled in by the report).
            tables.append(Table(name, name, f"{name}", (), monitor=monitor, zero_shot_note="not declared"))
    return tables


def paradigms_in_order(names: list[str] | None = None) -> list[str]:
    from videoadapt.paradigms import paradigm_names

    known = paradigm_names()
    if names is not None:
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise VideoadaptError(f"unknown paradigm(s) {', '.join(unknown)}; registered: {', '.join(known)}")
        known = [n for n in known if n in names]
    return sorted(known, key=lambda n: (PARADIGM_ORDER.index(n) if n in PARADIGM_ORDER else len(PARADIGM_ORDER), n))


def random_counterpart(backbone: str) -> str:
    """The backbone spec of the same architecture with a random image tower (videoadapt.foundation.loading)."""
    if backbone.startswith(("random:", "hf-config:")) or backbone == "tiny-random":
        return backbone  # already random
    return f"random:{backbone}"


def build_matrix(
    preset: Preset,
    backbone: str = "tiny",
    seeds: int | None = None,
    paradigms: list[str] | None = None,
    tables: list[str] | None = None,
    baselines: bool = True,
) -> tuple[list[Table], list[Cell]]:
    """The tables and cells of a bench, in run order: per table, the baselines, then every paradigm; per arm,
    every seed."""
    every = task_tables()
    wanted = list(tables) if tables is not None else (list(preset.tables) if preset.tables is not None else None)
    if wanted is not None:
        names = {t.name for t in every}
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise VideoadaptError(f"unknown table(s) {', '.join(unknown)}; registered: {', '.join(sorted(names))}")
        every = [t for t in every if t.name in wanted]
        every.sort(key=lambda t: wanted.index(t.name))
    count = seeds if seeds is not None else preset.seeds
    if count < 1:
        raise VideoadaptError(f"--seeds must be at least 1, got {count}")
    names = paradigms_in_order(paradigms)
    cells: list[Cell] = []
    for table in every:
        arms: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = []
        if baselines:
            if table.zero_shot_head is not None:
                arms.append((ZERO_SHOT, "post_network", {"temporal": "mean"}, backbone, dict(table.zero_shot_head)))
            arms.append((RANDOM_INIT, RANDOM_INIT_PARADIGM, {}, random_counterpart(backbone), {}))
        for name in names:
            arms.append((name, name, dict(PARADIGM_OPTIONS.get(name, {})), backbone, {}))
        for arm, paradigm, options, spec, head in arms:
            # Zero-shot has nothing random to vary: one seed.
            for seed in range(1 if arm == ZERO_SHOT else count):
                cells.append(Cell(table.name, table.task, arm, seed, paradigm, options, spec, head, dict(table.data)))
    return every, cells


def composition(cell: Cell) -> str:
    """``paradigm{options}`` as the config says it (the built head is recorded beside it by the runner)."""
    options = json.dumps(cell.options, sort_keys=True, separators=(",", ":")) if cell.options else ""
    return f"{cell.paradigm}{options}"


def cell_dir(out: Path, cell: Cell) -> Path:
    """Where a cell's files live: ``OUT/cells/<table>/<arm>/seed<k>``."""
    return out / "cells" / slug(cell.table) / slug(cell.arm) / f"seed{cell.seed}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def with_budget(preset: Preset, **changes: Any) -> Preset:
    """``preset`` with some budget fields changed (None values ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(preset, budget=replace(preset.budget, **changes)) if changes else preset
