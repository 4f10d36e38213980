"""``videoadapt bench --sweep lr``: each arm's learning rates, chosen on the validation split.

Per table, in three stages (one seed, the preset's budget, every cell scored on the validation split after
training; the test split is never read):

1. the shared video head on the frozen backbone (``post_network``) tries :data:`HEAD_GRID`; the best value on
   validation becomes the *head rate* of every arm that adapts the backbone (their heads are that same head);
2. every other arm tries its grid (:func:`grid_for`): a frozen-backbone arm its one rate, an arm that adapts the
   backbone its backbone rate with the head rate of stage 1;
3. distillation tries its backbone grid, taught by the stage-2 full fine-tuning cell that won its grid.

It writes ``OUT/learning_rates.json`` (the rates chosen, every grid point's validation figure, the command) and
``OUT/sweep.md``. ``videoadapt bench --learning-rates OUT/learning_rates.json`` uses them; the presets ship the
files their sweeps wrote (``bench/rates/<preset>.json``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from videoadapt.bench import cell as cell_module
from videoadapt.bench.learning_rates import HEAD_GRID, LearningRates, check_rate, grid_for, rates_file
from videoadapt.bench.matrix import (
    SHARED_HEAD,
    Arm,
    BenchPreset,
    Cell,
    Table,
    bench_arms,
    cell_dir,
    random_counterpart,
    select_tables,
    slug,
)
from videoadapt.bench.runner import SETTINGS, _check_settings, _check_splits, run_cells, table_data, test_split_of
from videoadapt.errors import VideoadaptError
from videoadapt.utils.safe_io import atomic_write_bytes, load_json, save_json

RATES, SWEEP_REPORT = "learning_rates.json", "sweep.md"
EXTENSIONS = 2  # grid steps a sweep may add beyond an end of the grid where the best value sits


def _tag(role: str, value: float) -> str:
    return f"{'backbone_lr' if role == 'backbone' else 'lr'}{value:g}"


def run_sweep(
    out: str | Path,
    preset: BenchPreset,
    *,
    command: str,
    backbone: str = "tiny",
    paradigms: list[str] | None = None,
    tables: list[str] | None = None,
    data: dict[str, str] | None = None,
    data_options: dict[str, dict[str, Any]] | None = None,
    grids: dict[str, Sequence[float]] | None = None,
    isolate: bool = True,
    device: str | None = None,
    precision: str | None = None,
    skip_bad: bool = False,
    splits: tuple[str, str, str | dict[str, str]] = ("train", "val", "test"),
    launcher: list[str] | None = None,
    progress: bool = True,
    max_cells: int | None = None,
    extend: int = EXTENSIONS,
) -> dict[str, Any]:
    """Run (or continue) the sweep in ``out``; returns what it chose (also in ``OUT/learning_rates.json``).
    ``extend``: how many grid steps an arm may add beyond an end of its grid where its best value sits."""
    out = Path(out)
    grids = {k: tuple(check_rate(v, f"--grid {k}") for v in values) for k, values in (grids or {}).items()}
    for name, values in grids.items():
        if not values:
            raise VideoadaptError(f"--grid {name}: empty learning-rate grid")
    every = select_tables(preset, tables)
    arms = [a for a in bench_arms(paradigms, preset.budget.video_head, baselines=True) if a.trains]
    unknown = sorted(set(grids) - {a.name for a in arms} - {"head"})
    if unknown:
        raise VideoadaptError(
            f"--grid names unknown arm(s) {', '.join(unknown)}; arms: head, {', '.join(a.name for a in arms)}"
        )
    # The sweep's own budget: no learning curves, no best-weights selection (scored on val once, at the end).
    sweep_preset = replace(preset, budget=replace(preset.budget, curve_points=0, validate=False))
    bound = {t.name: table_data(t, sweep_preset, data, data_options or {}, 0) for t in every}
    every = [t for t in every if bound[t.name] is not None]
    for table in every:
        _check_splits((splits[0], splits[1], test_split_of(splits[2], table)), table.name)
    settings = {
        "sweep": "lr",
        "preset": preset.name,
        "budget": asdict(sweep_preset.budget),
        "backbone": backbone,
        "paradigms": paradigms,
        "tables": [t.name for t in every],
        "data": bound,
        "grids": {k: list(v) for k, v in grids.items()},
        "extend": extend,
        "precision": precision or preset.budget.precision,
        "splits": {"train": splits[0], "val": splits[1]},
    }
    _check_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / SETTINGS, settings)

    def spec_of(cell: Cell) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "cell": cell.to_json(),
            "budget": asdict(sweep_preset.budget),
            "data": {**bound[cell.table], "skip_bad": skip_bad},
            "cache_dir": str(out / "cache" / slug(cell.table) / slug(cell.backbone)),
            "device": device,
            "precision": precision or preset.budget.precision,
            "train_split": splits[0],
            "val_split": splits[1],
        }
        if cell.teacher is not None:
            spec["teacher_run"] = str(out / "cells" / cell.teacher / cell_module.RUN)
        return spec

    began = time.perf_counter()
    chosen: dict[str, dict[str, dict[str, float]]] = {}
    tried: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ran: list[str] = []
    budget_left = max_cells

    def stage(cells: list[Cell]) -> bool:
        """Run a stage's cells; False when ``max_cells`` stopped it before the end."""
        nonlocal budget_left
        done, reused = run_cells(out, cells, spec_of, isolate, launcher, progress, budget_left, command=command)
        ran.extend(done)
        if budget_left is not None:
            budget_left -= len(done)
        return len(done) + len(reused) == len(cells)

    complete = True

    def sweep_arm(table: Table, arm: Arm, values: Sequence[float], head_lr: float | None, teacher: str | None) -> Any:
        """Run ``arm``'s grid; while the best value sits at an end of it, try one step further that way (at most
        :data:`EXTENSIONS` times), so that a grid that did not span the optimum does not choose its edge."""
        nonlocal complete
        values = sorted(values)
        extended = 0
        while True:
            cells = [replace(c, teacher=teacher) for c in _cells(table, arm, backbone, values, head_lr)]
            finished = stage(cells)
            complete &= finished
            best = _choose(out, table, arm, cells, chosen, tried)
            if best is None or not finished or len(values) < 2 or extended >= extend:
                return best
            if best == values[-1]:
                values = [*values, half_decade(values[-1], up=True)]
            elif best == values[0]:
                values = [half_decade(values[0], up=False), *values]
            else:
                return best
            extended += 1

    for table in every:
        chosen[table.name], tried[table.name] = {}, {}
        shared = next((a for a in arms if a.name == SHARED_HEAD), None)
        head_lr = None
        if shared is not None:
            head_grid = grids.get("head", grids.get(SHARED_HEAD, HEAD_GRID))
            head_lr = sweep_arm(table, shared, head_grid, None, None)
        for arm in (a for a in arms if a.name != SHARED_HEAD and a.teacher is None):
            sweep_arm(table, arm, grids.get(arm.name, grid_for(arm.name, arm.role)), head_lr, None)
        for arm in (a for a in arms if a.teacher is not None):
            teacher = chosen[table.name].get(arm.teacher)
            if teacher is None:
                continue  # no trained teacher to distil from (its sweep failed or is not in this bench)
            teacher_tag = slug(_tag("backbone", teacher["backbone_lr"]))
            teacher_key = f"{slug(table.name)}/{slug(arm.teacher)}/{teacher_tag}/seed0"
            sweep_arm(table, arm, grids.get(arm.name, grid_for(arm.name, arm.role)), head_lr, teacher_key)
    machine = _machine()
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    document = rates_file(preset.name, command, chosen, tried, machine, written)
    save_json(out / RATES, document)
    # Read back through the loader: what the sweep wrote is a valid rates file for this bench.
    LearningRates.from_json(document, str(out / RATES), [t.name for t in every], arms)
    atomic_write_bytes(out / SWEEP_REPORT, _report(every, tried, chosen, command, machine, written).encode())
    return {
        "out": str(out),
        "rates": str(out / RATES),
        "report": str(out / SWEEP_REPORT),
        "chosen": chosen,
        "tried": tried,
        "ran": ran,
        "complete": complete,
        "seconds": time.perf_counter() - began,
    }


def half_decade(value: float, up: bool) -> float:
    """The next rate on the 1-3-10 ladder above (or below) ``value``: 1e-3 -> 3e-3 -> 1e-2; off the ladder, a
    factor of sqrt(10)."""
    exponent = math.floor(math.log10(value))
    mantissa = round(value / 10**exponent, 6)
    if mantissa == 1.0:
        return float(f"{3 * 10**exponent:.1e}") if up else float(f"{3 * 10 ** (exponent - 1):.1e}")
    if mantissa == 3.0:
        return float(f"{10 ** (exponent + 1):.1e}") if up else float(f"{10**exponent:.1e}")
    return value * math.sqrt(10) if up else value / math.sqrt(10)


def _cells(table: Table, arm: Arm, backbone: str, values: Sequence[float], head_lr: float | None) -> list[Cell]:
    spec = random_counterpart(backbone) if arm.random_backbone else backbone
    cells = []
    for value in values:
        lr, backbone_lr = (head_lr or value, value) if arm.role == "backbone" else (value, None)
        cells.append(
            Cell(
                table.name,
                table.task,
                arm.name,
                0,
                arm.paradigm,
                {k: dict(v) for k, v in arm.options.items()},
                spec,
                dict(table.head),
                dict(table.data),
                arm.role,
                lr,
                backbone_lr,
                None,
                data_seed=0,
                score_split="val",
                tag=_tag(arm.role, value),
            )
        )
    return cells


def _choose(
    out: Path,
    table: Table,
    arm: Arm,
    cells: list[Cell],
    chosen: dict[str, dict[str, dict[str, float]]],
    tried: dict[str, dict[str, list[dict[str, Any]]]],
) -> float | None:
    """Record every grid point's validation figure; keep the best (on a tie, the smaller rate). Returns the rate
    that was swept (the head rate for a frozen arm, the backbone rate otherwise)."""
    metric = table.primary_metric
    points = []
    for cell in cells:
        path = cell_dir(out, cell) / cell_module.RESULT
        result = load_json(path) if path.is_file() else {}
        value = (result.get("metrics") or {}).get(metric) if result.get("status") == "ok" else None
        points.append(
            {"lr": cell.lr, "backbone_lr": cell.backbone_lr, "val": value, "status": result.get("status", "missing")}
        )
    tried[table.name][arm.name] = points
    scored = [p for p in points if p["val"] is not None]
    if not scored:
        return None
    swept = "backbone_lr" if arm.role == "backbone" else "lr"
    best = max(scored, key=lambda p: (p["val"], -p[swept]))
    entry = {"lr": float(best["lr"])}
    if arm.role == "backbone":
        entry["backbone_lr"] = float(best["backbone_lr"])
    chosen[table.name][arm.name] = entry
    return float(best[swept])


def _machine() -> dict[str, Any]:
    from videoadapt.utils.machine import machine_description

    return machine_description()


def _report(
    tables: Sequence[Table],
    tried: dict[str, dict[str, list[dict[str, Any]]]],
    chosen: dict[str, dict[str, dict[str, float]]],
    command: str,
    machine: dict[str, Any],
    written: str,
) -> str:
    lines = [
        "# videoadapt bench: learning-rate sweep",
        "",
        f"`{command}`, written {written} on {machine['cpu']} ({machine['usable_cpus']} usable CPUs, "
        f"{'GPU ' + machine['cuda'] if machine['cuda'] else 'no GPU'}). Every grid point trained once (seed 0) and "
        "was scored on the validation split; the test split was not read. The chosen value (bold) is the best on "
        "validation. Arms that adapt the backbone swept their backbone rate with the head rate the shared head "
        "chose.",
    ]
    for table in tables:
        lines += ["", f"## {table.name} ({table.primary_metric} on validation, %)", ""]
        lines += ["| arm | swept | values (rate: validation) | chosen |", "|---|---|---|---|"]
        for arm, points in tried.get(table.name, {}).items():
            swept = "backbone_lr" if any(p["backbone_lr"] is not None for p in points) else "lr"
            pick = chosen.get(table.name, {}).get(arm)
            cells = []
            for p in points:
                figure = "failed" if p["val"] is None else f"{p['val']:.1f}"
                text = f"{p[swept]:g}: {figure}"
                if pick is not None and p[swept] == pick.get(swept) and p["val"] is not None:
                    text = f"**{text}**"
                cells.append(text)
            verdict = "—" if pick is None else ", ".join(f"{k} {v:g}" for k, v in pick.items())
            lines.append(f"| {arm} | {swept} | {'; '.join(cells)} | {verdict} |")
    return "\n".join(lines) + "\n"
