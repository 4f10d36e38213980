"""The bench's matrix: every registered paradigm x every task table of a preset, plus two baselines per table.

Nothing here names a task it must know: tables come from each task's ``survey`` declaration
(:class:`videoadapt.tasks.SurveyTable`), paradigms from the registry. A task registered later joins the matrix
with its declared tables (or, without a declaration, one table of every metric it reports); a paradigm
registered later joins with its default options, read by the shared head if it adapts the backbone.

**The paradigm is the only thing that varies between two rows.** Every row of a table trains on the same data,
frames, steps and batch, and is scored by the same task head (the table's ``head`` options: for recognition a
classifier that starts at the zero-shot one). Every arm that adapts the backbone (full, partial, adapter, LoRA,
prompt tuning, the random-init baseline) is read by the same *shared video head*, composed as
``<paradigm>+post_network`` with the budget's ``video_head`` options (default: a one-layer temporal transformer
over the frame embeddings whose residual branches start at zero, so every arm starts at mean pooling of the
ILFM's frame embeddings, the zero-shot answer). Arms whose paradigm *is* the module after the backbone keep it:
post-network tuning (two arms, the head as its own axis: mean pooling alone and the shared head on the frozen
backbone), side-tuning, extra models, and distillation, whose small student is read by the same temporal head.

A :class:`Cell` is one (table, arm, seed); every cell of a bench shares one :class:`Budget`. Learning rates are
per (table, arm): chosen on the validation split by ``videoadapt bench --sweep lr`` (``bench/learning_rates.py``).
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

ZERO_SHOT, RANDOM_INIT = "zero_shot", "random_init"
BASELINES = (ZERO_SHOT, RANDOM_INIT)
HEAD_ONLY = "post_network:mean"  # the head axis' first point: mean pooling, only the task head trains
SHARED_HEAD = "post_network"  # the shared video head on the frozen backbone
TEACHER_ARM = "full_finetune"  # distillation's stronger teacher: this arm's trained run (same table and seed)

# Roles: which learning rates an arm has. "frozen": the backbone is frozen, one rate (run.lr) for everything that
# trains; "backbone": the backbone (or a copy of it) trains at run.backbone_lr, the heads at run.lr; "none".
ROLES = ("none", "frozen", "backbone")


@dataclass(frozen=True)
class Budget:
    """What every cell gets: the same data, frames, steps, batch and video head. ``videos``/``size``/
    ``source_frames``/``split_fractions`` describe the SynthWorld set generated on the fly (ignored for benchmark
    data); ``curve_points`` validations during training make the learning curves (0: none)."""

    steps: int = 8
    batch_size: int = 8
    frames: int = 4
    warmup_steps: int = 0
    videos: int = 240
    size: int = 64
    source_frames: int = 8
    split_fractions: tuple[float, ...] | None = None
    eval_batch_size: int = 64
    curve_points: int = 0
    video_head: dict[str, Any] = field(default_factory=lambda: {"temporal": "transformer", "layers": 1})
    precision: str = "auto"
    validate: bool = False  # keep the best validation weights (selected on val) instead of the last ones

    def describe(self) -> str:
        return (
            f"{self.steps} optimizer steps of {self.batch_size} clips x {self.frames} frames, AdamW"
            f"{f' with {self.warmup_steps} warm-up steps' if self.warmup_steps else ''}, cosine decay"
        )


@dataclass(frozen=True)
class BenchPreset:
    """A bench preset: which tables, what budget, how many seeds (each seed its own data seed too)."""

    name: str
    tables: tuple[str, ...] | None  # table names; None: every table of every registered task
    budget: Budget
    seeds: int = 1
    description: str = ""
    backbone: str = "tiny"  # what --backbone defaults to: a table's zero-shot row may need a kind of ILFM


BENCH_PRESETS: dict[str, BenchPreset] = {
    "micro": BenchPreset(
        "micro",
        ("recognition", "retrieval"),
        Budget(steps=2, batch_size=4, frames=2, videos=40, size=64, source_frames=8, eval_batch_size=32),
        description="a smoke test: 2 steps of 4 clips x 2 frames on 40 videos (use with --paradigms)",
    ),
    "quick": BenchPreset(
        "quick",
        ("recognition",),
        Budget(
            steps=200,
            batch_size=16,
            frames=4,
            warmup_steps=20,
            videos=4000,
            size=64,
            source_frames=8,
            split_fractions=(0.6, 0.1, 0.3),
            curve_points=4,
        ),
        description="every paradigm on action recognition, 1,200 test videos, one seed; ~10 minutes on 2 CPU cores",
    ),
    "standard": BenchPreset(
        "standard",
        ("recognition", "retrieval", "qa-mc", "qa-open", "captioning"),
        Budget(
            steps=80,
            batch_size=8,
            frames=4,
            warmup_steps=8,
            videos=1600,
            size=64,
            source_frames=8,
            split_fractions=(0.6, 0.15, 0.25),
            curve_points=2,
        ),
        seeds=3,
        description="every Table III table (recognition, retrieval, multiple-choice and open QA, captioning), "
        "3 seeds, each with its own SynthWorld set; ~60 minutes on 2 CPU cores (59 min measured)",
    ),
    "grounding": BenchPreset(
        "grounding",
        ("temporal_grounding", "st_grounding"),
        Budget(
            steps=200,
            batch_size=8,
            frames=8,
            warmup_steps=20,
            videos=1600,
            size=64,
            source_frames=16,
            split_fractions=(0.7, 0.1, 0.2),
            curve_points=2,
        ),
        description="Table II's temporal and spatio-temporal grounding on SynthWorld's grounding scenes (8 of 16 "
        "frames, 320 test videos = 640 queries), one seed, on TinyOWL (TinyCLIP with detection heads: the STVG "
        "zero-shot row needs its boxes); sized for 2 CPU cores",
        backbone="tiny-owl",
    ),
    "tracking": BenchPreset(
        "tracking",
        ("tracking", "segmentation"),
        Budget(
            steps=200,
            batch_size=8,
            frames=16,
            warmup_steps=20,
            videos=1000,
            size=64,
            source_frames=16,
            split_fractions=(0.7, 0.1, 0.2),
            curve_points=2,
        ),
        description="Table II's open-vocabulary multi-object tracking and video instance segmentation on SynthWorld's "
        "tracking scenes (all 16 frames, 200 test videos, held-out shapes as novel categories), one seed, on TinyOWL "
        "(its region heads are the detector; the zero-shot rows are its per-frame detections, boxes filled as masks "
        "for segmentation, associated by IoU); sized for 2 CPU cores",
        backbone="tiny-owl",
    ),
    "full": BenchPreset(
        "full",
        None,
        Budget(
            steps=1000,
            batch_size=32,
            frames=8,
            warmup_steps=50,
            videos=10000,
            size=64,
            source_frames=16,
            split_fractions=(0.7, 0.1, 0.2),
            curve_points=5,
        ),
        seeds=3,
        description="every table of every registered task, 3 seeds, a budget for a GPU",
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
    head: dict[str, Any] = field(default_factory=dict)  # the task head every trained arm gets
    arm_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per paradigm, on top of the arm's
    arm_notes: dict[str, str] = field(default_factory=dict)  # per arm: what the row is in this table
    mllm_head: dict[str, Any] | None = None  # the task head of the video-MLLM rows (--mllm); None: no such rows

    @property
    def primary_metric(self) -> str:
        return self.primary or (self.columns[0][1] if self.columns else self.monitor)


@dataclass(frozen=True)
class Arm:
    """One row of every table: what trains, and how it differs from the zero-shot row (``changes``)."""

    name: str
    paradigm: str  # the composition, e.g. "adapter+post_network"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per paradigm of the composition
    role: str = "frozen"  # see ROLES
    changes: str = ""
    random_backbone: bool = False
    zero_shot_head: bool = False  # scored with the table's zero-shot head options, untrained
    teacher: str | None = None  # the arm whose trained run (same table and seed) is the distillation teacher
    mllm: bool = False  # a row on the video MLLM (--mllm SPEC) with the table's mllm_head

    @property
    def trains(self) -> bool:
        return self.role != "none"


@dataclass(frozen=True)
class Cell:
    table: str
    task: str
    arm: str
    seed: int
    paradigm: str  # the composition trained
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    backbone: str = "tiny"
    head: dict[str, Any] = field(default_factory=dict)  # task head options
    data: dict[str, Any] = field(default_factory=dict)  # the table's reader options
    role: str = "frozen"
    lr: float | None = None  # the head group's rate (every trainable parameter when the backbone is frozen)
    backbone_lr: float | None = None  # the backbone group's rate (role "backbone")
    teacher: str | None = None  # cell key of the distillation teacher's cell
    data_seed: int = 0
    score_split: str = "test"  # "val" for the learning-rate sweep: its cells never read the test split
    tag: str = ""  # the sweep's grid point, part of the folder

    @property
    def key(self) -> str:
        return f"{self.table}/{self.arm}/{self.tag + '/' if self.tag else ''}seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _hands_a_query(task: type) -> bool:
    """The task gives one sentence per item to an encoder that fuses video and text (grounding): it overrides
    ``Task.query_texts``."""
    from videoadapt.tasks.base import Task

    return getattr(task, "query_texts", Task.query_texts) is not Task.query_texts


def _query_arms() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Arm options and notes for tables whose task hands a query sentence: side-tuning is then R2-Tuning's side
    network pooling with the query's words (the survey's temporal-grounding side-tuning design), not EVL's decoder."""
    options = {"side_tuning": {"design": "r2_tuning", "text": True}}
    notes = {
        "side_tuning": "R2-Tuning's side network over the frozen backbone's blocks, pooling each frame's tokens with "
        "the query's words"
    }
    return options, notes


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
                        dict(getattr(t, "head", {}) or {}),
                        *(_query_arms() if _hands_a_query(task) else ({}, {})),
                        mllm_head=None if t.mllm_head is None else dict(t.mllm_head),
                    )
                )
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


def _head_text(video_head: dict[str, Any]) -> str:
    temporal = video_head.get("temporal", "transformer")
    if temporal == "transformer":
        layers = video_head.get("layers", 4)
        return f"a {layers}-layer temporal transformer over the frame embeddings (residual branches start at zero)"
    return f"temporal module {temporal!r} {json.dumps(video_head, sort_keys=True)}"


def paradigm_arms(name: str, video_head: dict[str, Any]) -> list[Arm]:
    """The arms of one registered paradigm: how the bench runs it beside the others (module docstring)."""
    head = dict(video_head)
    shared = f"the shared head ({_head_text(head)})"
    if name == "post_network":
        return [
            Arm(
                HEAD_ONLY,
                "post_network",
                {"post_network": {"temporal": "mean"}},
                "frozen",
                "nothing in the video path: mean of the frozen frame embeddings; the task head trains",
            ),
            Arm(SHARED_HEAD, "post_network", {"post_network": head}, "frozen", f"{shared} on the frozen backbone"),
        ]
    if name == "distillation":
        return [
            Arm(
                name,
                "distillation",
                {"distillation": {"student": "small", "teacher": "run", **_prefixed_temporal(head)}},
                "backbone",
                "a student with half the image tower's blocks (weights inherited), distilled from the "
                f"{TEACHER_ARM} row's trained model (same table and seed) and read by the same temporal head; "
                "only the student runs at inference",
                teacher=TEACHER_ARM,
            )
        ]
    if name == "side_tuning":
        return [
            Arm(
                name,
                "side_tuning",
                {"side_tuning": {"design": "evl"}},
                "frozen",
                "EVL's side decoder over the frozen backbone's last blocks, into the joint space through the ILFM's "
                "own projection",
            )
        ]
    if name == "extra_models":
        return [
            Arm(
                name,
                "extra_models",
                {"extra_models": {"stream": "motion"}},
                "frozen",
                "a motion stream (frame differences) fused with the frozen frame embeddings",
            )
        ]
    options = BACKBONE_OPTIONS.get(name)
    if options is None:
        from videoadapt.paradigms import paradigm_class

        if not getattr(paradigm_class(name), "adapts_backbone", False):
            # A paradigm registered later that puts its own module after the backbone: alone, its defaults.
            return [Arm(name, name, {}, "frozen", f"{name} with its default options")]
        options = {}
    what = BACKBONE_CHANGES.get(name, f"{name} with its default options")
    return [
        Arm(
            name,
            f"{name}+post_network",
            {name: dict(options), "post_network": head},
            "backbone",
            f"{what}; {shared}",
        )
    ]


def _prefixed_temporal(video_head: dict[str, Any]) -> dict[str, Any]:
    """The shared head's temporal module as the distillation student's options."""
    return dict(video_head)


# What each backbone-adapting paradigm runs with (its documented default, written out so that results.csv
# records the exact composition) and what it changes in the backbone. A paradigm missing here runs with {}.
BACKBONE_OPTIONS: dict[str, dict[str, Any]] = {
    "full_finetune": {},
    "partial_tuning": {"subset": "bias_norm"},
    "adapter": {"variant": "st_adapter"},
    "lora": {"r": 8},
    "prompt_tuning": {"depth": "deep"},
}
BACKBONE_CHANGES = {
    "full_finetune": "every weight of the image tower trains",
    "partial_tuning": "the image tower's biases and LayerNorms train (BitFit-like)",
    "adapter": "ST-Adapters (bottleneck + depthwise temporal convolution) before every block's MLP",
    "lora": "rank-8 LoRA on the query and value projections of every vision block",
    "prompt_tuning": "8 learnable prompt tokens before every vision block (VPT-deep)",
}


def bench_arms(paradigms: list[str] | None, video_head: dict[str, Any], baselines: bool = True) -> list[Arm]:
    """Every arm of a table, in report order: the baselines, then each paradigm's arms in the survey's order."""
    arms: list[Arm] = []
    if baselines:
        arms.append(
            Arm(
                ZERO_SHOT,
                "post_network",
                {"post_network": {"temporal": "mean"}},
                "none",
                "the zero-shot ILFM: mean of the frozen frame embeddings, the task head untrained",
                zero_shot_head=True,
            )
        )
        arms.append(
            Arm(
                RANDOM_INIT,
                "full_finetune+post_network",
                {"full_finetune": {}, "post_network": dict(video_head)},
                "backbone",
                "the same architecture as full_finetune with the image tower re-initialised at random, trained end "
                "to end: what image-language pretraining buys",
                random_backbone=True,
            )
        )
    names = paradigms_in_order(paradigms)
    for name in names:
        arms.extend(paradigm_arms(name, video_head))
    teachers = {a.teacher for a in arms if a.teacher}
    missing = sorted(t for t in teachers if t not in {a.name for a in arms})
    if missing:
        # A distillation arm needs its teacher's row in the same bench.
        arms = [a for a in arms if a.teacher not in missing]
    return arms


MLLM_PREFIX = "mllm:"  # the MLLM rows' arm names: mllm:zero_shot, mllm:post_network, mllm:lora, ...
MLLM_CHANGES = {
    "post_network": "the projector (LLaVA's first stage); tower and language model frozen",
    "lora": "rank-8 LoRA on every linear layer of the language model, and the projector",
    "adapter": "ST-Adapters in the image tower, and the projector",
    "prompt_tuning": "8 learnable prompt tokens before every block of the image tower (VPT-deep), and the projector",
    "partial_tuning": "the image tower's biases and LayerNorms, and the projector",
    "full_finetune": "everything: image tower, projector and language model",
}


def mllm_arms(paradigms: list[str] | None) -> list[Arm]:
    """The video-MLLM rows of a table (``videoadapt bench --mllm SPEC``): the zero-shot MLLM (no visual training:
    the language model answers from the prompt alone), then each paradigm that applies to a video MLLM, whose
    head is always the MLLM's projector (paradigms/generative_head.py)."""
    from videoadapt.paradigms.generative_head import GENERATIVE_PARADIGMS

    arms = [
        Arm(
            f"{MLLM_PREFIX}{ZERO_SHOT}",
            "post_network",
            {},
            "none",
            "the video MLLM without visual training: its language model answers from the prompt alone",
            mllm=True,
        )
    ]
    for name in paradigms_in_order(paradigms):
        if name not in GENERATIVE_PARADIGMS:
            continue
        options = {name: dict(BACKBONE_OPTIONS[name])} if BACKBONE_OPTIONS.get(name) else {}
        role = "frozen" if name == "post_network" else "backbone"
        what = MLLM_CHANGES.get(name, f"{name} on the video MLLM")
        arms.append(Arm(f"{MLLM_PREFIX}{name}", name, options, role, f"video MLLM: {what}", mllm=True))
    return arms


def random_counterpart(backbone: str) -> str:
    """The backbone spec of the same architecture with a random image tower (videoadapt.foundation.loading)."""
    if backbone.startswith(("random:", "hf-config:")) or backbone == "tiny-random":
        return backbone  # already random
    return f"random:{backbone}"


def select_tables(preset: BenchPreset, tables: list[str] | None) -> list[Table]:
    every = task_tables()
    wanted = list(tables) if tables is not None else (list(preset.tables) if preset.tables is not None else None)
    if wanted is not None:
        names = {t.name for t in every}
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise VideoadaptError(f"unknown table(s) {', '.join(unknown)}; registered: {', '.join(sorted(names))}")
        every = [t for t in every if t.name in wanted]
        every.sort(key=lambda t: wanted.index(t.name))
    return every


def build_matrix(
    preset: BenchPreset,
    backbone: str | None = None,
    seeds: int | None = None,
    paradigms: list[str] | None = None,
    tables: list[str] | None = None,
    baselines: bool = True,
    rates: Any = None,
    first_seed: int = 0,
    mllm: str | None = None,
) -> tuple[list[Table], list[Cell]]:
    """The tables and cells of a bench, in report order: per table, the baselines, then every paradigm; per arm,
    every seed. ``rates`` (:class:`videoadapt.bench.learning_rates.LearningRates`) gives each (table, arm) its
    learning rates; None: the published defaults. ``mllm``: the backbone spec of a video MLLM (``mllm``): tables
    that declare an ``mllm_head`` get its rows (:func:`mllm_arms`) after the others."""
    from videoadapt.bench.learning_rates import LearningRates

    every = select_tables(preset, tables)
    backbone = backbone or preset.backbone
    count = seeds if seeds is not None else preset.seeds
    if count < 1:
        raise VideoadaptError(f"--seeds must be at least 1, got {count}")
    if first_seed < 0:
        raise VideoadaptError(f"--seed must be >= 0, got {first_seed}")
    rates = rates if rates is not None else LearningRates.defaults()
    arms = bench_arms(paradigms, preset.budget.video_head, baselines)
    generative = mllm_arms(paradigms) if mllm else []
    cells: list[Cell] = []
    for table in every:
        for arm in arms + (generative if table.mllm_head is not None else []):
            lr, backbone_lr = rates.for_arm(table.name, arm)
            head = dict(table.zero_shot_head or {}) if arm.zero_shot_head else dict(table.head)
            if arm.zero_shot_head and table.zero_shot_head is None:
                continue  # the task has no zero-shot predictor (the report says why)
            spec = random_counterpart(backbone) if arm.random_backbone else backbone
            if arm.mllm:
                spec = str(mllm)
                head = {**(table.mllm_head or {}), **({"video": False} if not arm.trains else {})}
            # Zero-shot has nothing random to vary, but each seed has its own data: one cell per seed all the same.
            for seed in range(first_seed, first_seed + count):
                teacher = f"{table.name}/{arm.teacher}/seed{seed}" if arm.teacher else None
                cells.append(
                    Cell(
                        table.name,
                        table.task,
                        arm.name,
                        seed,
                        arm.paradigm,
                        _table_options(arm.options, table),
                        spec,
                        head,
                        dict(table.data),
                        arm.role,
                        lr,
                        backbone_lr,
                        teacher,
                        data_seed=seed,
                    )
                )
    return every, cells


def _copy_options(options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in options.items()}


def _table_options(options: dict[str, dict[str, Any]], table: Table) -> dict[str, dict[str, Any]]:
    """An arm's paradigm options with the table's own for the same paradigms laid over them."""
    merged = _copy_options(options)
    for paradigm, extra in table.arm_options.items():
        if paradigm in merged:
            merged[paradigm].update(extra)
    return merged


def run_order(cells: list[Cell]) -> list[Cell]:
    """``cells`` in an order that trains every teacher before its students (otherwise the report order)."""
    keys = {c.key for c in cells}
    done: set[str] = set()
    ordered: list[Cell] = []
    waiting = list(cells)
    while waiting:
        progressed = False
        rest = []
        for cell in waiting:
            if cell.teacher is None or cell.teacher in done or cell.teacher not in keys:
                ordered.append(cell)
                done.add(cell.key)
                progressed = True
            else:
                rest.append(cell)
        if not progressed:
            raise VideoadaptError(f"the teachers of {[c.key for c in rest]} form a loop")
        waiting = rest
    return ordered


def composition(cell: Cell) -> str:
    """``paradigm{options}`` as the config says it (the built head is recorded beside it by the runner)."""
    if not cell.options:
        return cell.paradigm
    return f"{cell.paradigm} {json.dumps(cell.options, sort_keys=True, separators=(',', ':'))}"


def cell_dir(out: Path, cell: Cell) -> Path:
    """Where a cell's files live: ``OUT/cells/<table>/<arm>[/<grid point>]/seed<k>``."""
    folder = out / "cells" / slug(cell.table) / slug(cell.arm)
    if cell.tag:
        folder = folder / slug(cell.tag)
    return folder / f"seed{cell.seed}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def with_budget(preset: BenchPreset, **changes: Any) -> BenchPreset:
    """``preset`` with some budget fields changed (None values ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(preset, budget=replace(preset.budget, **changes)) if changes else preset
