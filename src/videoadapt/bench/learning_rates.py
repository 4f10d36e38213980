"""Learning rates per (table, arm): the published defaults, the sweep's grids, and the files that hold the rates a
sweep chose on the validation split.

Every arm has its own rates, as the papers train them: a frozen-backbone arm one rate (``run.lr``) for what trains;
an arm that adapts the backbone a rate for the backbone group (``run.backbone_lr``: pretrained weights being tuned,
modules inserted into the ILFM, a student's copy of the tower) and one for the heads (``run.lr``). Without a file the
bench uses :data:`DEFAULTS` (values from the published recipes, said so in the report); ``videoadapt bench --sweep
lr`` tries :data:`GRIDS` and writes a file (:class:`LearningRates`) with the values it chose on validation and the
command that produced them. The presets' files ship in ``bench/rates/<preset>.json``.

A file::

    {"format": "videoadapt-bench-learning-rates", "version": 1, "preset": "quick",
     "command": "videoadapt bench --preset quick --sweep lr --out runs/sweep-quick",
     "selected_on": "val", "written": "...", "machine": {...},
     "tables": {"recognition": {"post_network": {"lr": 0.003}, "adapter": {"lr": 0.003, "backbone_lr": 0.001}, ...}},
     "sweep": {"recognition": {"adapter": [{"backbone_lr": 0.0003, "lr": 0.003, "val": 41.2}, ...]}}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from videoadapt.errors import InputFileError, VideoadaptError

FORMAT = "videoadapt-bench-learning-rates"
VERSION = 1

HEAD_LR = 1e-3  # the heads' default rate (CLIP4Clip's new modules 1e-4 at batch 128; EVL 4e-4 at batch 256)
# Published starting points for the backbone group (AdamW): full fine-tuning of CLIP tunes at 1e-7..1e-5
# (CLIP4Clip 1e-7, ViFi-CLIP 2e-6, ActionCLIP 5e-6, X-CLIP 8e-6); inserted modules at 1e-4..1e-3 (ST-Adapter,
# AIM 3e-4, AdaptFormer, LoRA 2e-4..1e-3); prompts higher (VPT); BitFit 1e-4..1e-3; a random tower from scratch 1e-3.
DEFAULTS: dict[str, float] = {
    "full_finetune": 1e-5,
    "distillation": 1e-5,
    "partial_tuning": 1e-3,
    "adapter": 1e-3,
    "lora": 1e-3,
    "prompt_tuning": 3e-3,
    "random_init": 1e-3,
    # Video-MLLM rows (bench --mllm): the language model is tuned as LLaVA-1.5 tunes it (LoRA 2e-4, full 2e-5); the
    # projector, a new module, always trains at the head rate.
    "mllm:lora": 2e-4,
    "mllm:full_finetune": 2e-5,
    "mllm:partial_tuning": 1e-3,
    "mllm:adapter": 1e-3,
    "mllm:prompt_tuning": 3e-3,
}
DEFAULT_BACKBONE_LR = 1e-3

# The sweep's grids (backbone group for arms that adapt the backbone, the single rate for frozen ones), each
# spanning the published recipes above and the values a small model trained briefly may want.
HEAD_GRID = (3e-4, 1e-3, 3e-3, 1e-2)
GRIDS: dict[str, tuple[float, ...]] = {
    "full_finetune": (1e-6, 1e-5, 1e-4, 1e-3),
    "distillation": (1e-6, 1e-5, 1e-4, 1e-3),
    "partial_tuning": (3e-4, 1e-3, 3e-3, 1e-2),
    "adapter": (1e-4, 3e-4, 1e-3, 3e-3),
    "lora": (1e-4, 3e-4, 1e-3, 3e-3),
    "prompt_tuning": (3e-4, 1e-3, 3e-3, 1e-2),
    "random_init": (1e-4, 3e-4, 1e-3, 3e-3),
}
DEFAULT_GRID = (1e-4, 3e-4, 1e-3, 3e-3)


def grid_for(arm: str, role: str) -> tuple[float, ...]:
    """The values the sweep tries for ``arm``: its backbone rate (role "backbone") or its one rate (frozen)."""
    if role == "frozen":
        return HEAD_GRID
    return GRIDS.get(arm, DEFAULT_GRID)


def check_rate(value: Any, where: str) -> float:
    """A learning rate: a finite positive number, else an error naming ``where`` and the value."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise VideoadaptError(f"{where}: learning rate {value!r} is not a number") from None
    if not math.isfinite(rate) or rate <= 0:
        raise VideoadaptError(f"{where}: learning rate {value!r} must be a positive number")
    return rate


def parse_grid(text: str, where: str = "--grid") -> tuple[float, ...]:
    """``"1e-4,3e-4"`` -> (0.0001, 0.0003); every value positive."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise VideoadaptError(f"{where}: empty learning-rate grid {text!r}")
    return tuple(check_rate(v, where) for v in values)


@dataclass
class LearningRates:
    """Rates per table and arm (``tables[table][arm] = {"lr": ..., "backbone_lr": ...}``); arms absent from it
    get the defaults. ``source`` says where the values come from (a file, "defaults", "--lr")."""

    tables: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    source: str = "defaults"
    command: str = ""
    head_lr: float | None = None  # --lr: one head rate for every arm (then nothing was selected)
    backbone_lr: float | None = None

    @classmethod
    def defaults(cls) -> LearningRates:
        return cls()

    @classmethod
    def fixed(cls, lr: float, backbone_lr: float | None) -> LearningRates:
        """One rate for every arm (``--lr``/``--backbone-lr``): nothing is chosen per arm."""
        return cls(source="--lr", head_lr=check_rate(lr, "--lr"), backbone_lr=backbone_lr)

    def for_arm(self, table: str, arm: Any) -> tuple[float | None, float | None]:
        """``(lr, backbone_lr)`` of ``arm`` (a :class:`~videoadapt.bench.matrix.Arm`) on ``table``."""
        if arm.role == "none":
            return None, None
        if self.head_lr is not None:
            backbone = self.backbone_lr if self.backbone_lr is not None else self.head_lr
            return self.head_lr, (backbone if arm.role == "backbone" else None)
        chosen = self.tables.get(table, {}).get(arm.name)
        if chosen is not None:
            return chosen["lr"], chosen.get("backbone_lr") if arm.role == "backbone" else None
        if arm.role == "backbone":
            return HEAD_LR, DEFAULTS.get(arm.name, DEFAULT_BACKBONE_LR)
        return HEAD_LR, None

    def describe(self) -> str:
        if self.source == "--lr":
            return f"one rate for every arm (--lr {self.head_lr:g}), not selected per arm"
        if self.source == "defaults":
            return "the published defaults (bench/learning_rates.py), not swept"
        return f"chosen on the validation split by `{self.command}` ({self.source})"

    # --- files ---

    @classmethod
    def load(cls, path: str | Path, tables: list[str] | None = None, arms: list[Any] | None = None) -> LearningRates:
        """Read a rates file, checking it names known tables and arms (when given) and positive rates."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputFileError(path, "learning-rate file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputFileError(path, f"not a learning-rate file: {error}") from None
        return cls.from_json(data, str(path), tables, arms)

    @classmethod
    def from_json(
        cls, data: Any, origin: str, tables: list[str] | None = None, arms: list[Any] | None = None
    ) -> LearningRates:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputFileError(origin, f"not a learning-rate file (format must be {FORMAT!r})")
        raw = data.get("tables")
        if not isinstance(raw, dict):
            raise InputFileError(origin, "'tables' must map table names to arms")
        roles = {a.name: a.role for a in arms} if arms is not None else None
        out: dict[str, dict[str, dict[str, float]]] = {}
        for table, by_arm in raw.items():
            if tables is not None and table not in tables:
                raise InputFileError(origin, f"unknown table {table!r}; this bench has {', '.join(tables)}")
            if not isinstance(by_arm, dict):
                raise InputFileError(origin, f"tables.{table} must map arm names to rates")
            out[table] = {}
            for arm, rates in by_arm.items():
                if roles is not None and arm not in roles:
                    raise InputFileError(
                        origin, f"tables.{table} names unknown arm {arm!r}; arms: {', '.join(sorted(roles))}"
                    )
                if not isinstance(rates, dict) or "lr" not in rates:
                    raise InputFileError(origin, f"tables.{table}.{arm} must be {{'lr': ..., ['backbone_lr': ...]}}")
                try:
                    entry = {"lr": check_rate(rates["lr"], f"tables.{table}.{arm}.lr")}
                    if rates.get("backbone_lr") is not None:
                        where = f"tables.{table}.{arm}.backbone_lr"
                        entry["backbone_lr"] = check_rate(rates["backbone_lr"], where)
                except VideoadaptError as error:
                    raise InputFileError(origin, str(error)) from None
                if roles is not None and roles[arm] == "backbone" and "backbone_lr" not in entry:
                    raise InputFileError(origin, f"tables.{table}.{arm} adapts the backbone: give its backbone_lr")
                out[table][arm] = entry
        return cls(out, source=origin, command=str(data.get("command", "")))

    @classmethod
    def shipped(cls, preset: str) -> LearningRates | None:
        """The rates the preset's sweep chose, shipped with the package (None when there are none)."""
        resource = resources.files("videoadapt.bench").joinpath("rates", f"{preset}.json")
        if not resource.is_file():
            return None
        rates = cls.from_json(json.loads(resource.read_text()), f"videoadapt/bench/rates/{preset}.json")
        return rates


def rates_file(
    preset: str,
    command: str,
    chosen: dict[str, dict[str, dict[str, float]]],
    sweep: dict[str, Any],
    machine: dict[str, Any],
    written: str,
) -> dict[str, Any]:
    """The JSON of a rates file (what ``--sweep lr`` writes)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "preset": preset,
        "command": command,
        "selected_on": "val",
        "written": written,
        "machine": machine,
        "tables": chosen,
        "sweep": sweep,
    }
