"""The bench's outputs: ``results.csv`` (one row per cell and seed), ``report.md`` (one table per task in the
survey's columns, cost columns on every row, mean ± std over seeds), ``summary.json`` and the plots.

Every number of ``report.md`` is computed from the rows of ``results.csv`` by :func:`aggregate` and printed by
:func:`fmt_mean_std` / :func:`fmt_cost`, so the two always agree (the tests recompute the report from the CSV).
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoadapt.bench import cell as cell_module
from videoadapt.bench.matrix import (
    RANDOM_INIT,
    RANDOM_INIT_PARADIGM,
    RESERVED_TABLES,
    ZERO_SHOT,
    Cell,
    Table,
    cell_dir,
)
from videoadapt.utils.safe_io import load_json, save_json

RESULTS, REPORT, SUMMARY, PLOTS = "results.csv", "report.md", "summary.json", "plots"
COST_FIELDS = ("trainable_parameters", "gflops_per_view", "train_s", "peak_memory_mb")
COST_LABELS = {
    "trainable_parameters": "trainable params",
    "gflops_per_view": "GFLOPs/view",
    "train_s": "train s",
    "peak_memory_mb": "peak train MB",
}
BASE_FIELDS = (
    "table",
    "task",
    "arm",
    "seed",
    "status",
    "reason",
    "composition",
    "video_head",
    "backbone",
    "steps",
    "batch_size",
    "frames",
    "train_items",
    "test_items",
    *COST_FIELDS,
    "setup_s",
    "eval_s",
    "cached_features",
    "device",
    "memory_measure",
)
ARM_LABELS = {ZERO_SHOT: "zero-shot ILFM", RANDOM_INIT: f"random init ({RANDOM_INIT_PARADIGM})"}


# --- numbers ------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int] | None:
    """(mean, sample standard deviation (0 for one value), count) of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return statistics.fmean(present), std, len(present)


def fmt_mean_std(stats: tuple[float, float, int] | None, digits: int = 1) -> str:
    if stats is None:
        return "—"
    mean, std, count = stats
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if count > 1 else f"{mean:.{digits}f}"


def fmt_cost(field: str, stats: tuple[float, float, int] | None) -> str:
    if stats is None:
        return "—"
    if field == "trainable_parameters":
        return f"{round(stats[0]):,}"
    if field == "gflops_per_view":
        return f"{stats[0]:.3f}"
    if field == "peak_memory_mb":
        return fmt_mean_std(stats, 0)
    return fmt_mean_std(stats, 1)


# --- rows ---------------------------------------------------------------------------------------------------


def cell_rows(out: Path, cells: Sequence[Cell], budget: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell that has a result (finished, incompatible or failed)."""
    rows = []
    for cell in cells:
        path = cell_dir(out, cell) / cell_module.RESULT
        if not path.is_file():
            continue
        result = load_json(path)
        row: dict[str, Any] = {
            "table": cell.table,
            "task": cell.task,
            "arm": cell.arm,
            "seed": cell.seed,
            "status": result.get("status", "failed"),
            "reason": result.get("reason", ""),
            "composition": describe(cell),
            "video_head": result.get("video_head", ""),
            "backbone": cell.backbone,
            "steps": result.get("steps", ""),
            "batch_size": budget["batch_size"],
            "frames": budget["frames"],
            "train_items": result.get("train_items", ""),
            "test_items": result.get("test_items", ""),
            "setup_s": result.get("setup_s", ""),
            "eval_s": result.get("eval_s", ""),
            "cached_features": result.get("cached_features", ""),
            "device": result.get("device", ""),
            "memory_measure": result.get("memory_measure", ""),
        }
        for field in COST_FIELDS:
            value = result.get(field)
            row[field] = "" if value is None else value
        for key, value in (result.get("metrics") or {}).items():
            row[f"metric:{key}"] = value
        rows.append(row)
    return rows


def describe(cell: Cell) -> str:
    """What a row trained: the composition with its options (and the random backbone of the random-init row)."""
    import json

    from videoadapt.bench.matrix import composition

    if cell.arm == ZERO_SHOT:
        head = f" {json.dumps(cell.head, sort_keys=True)}" if cell.head else ""
        return f"nothing trains: frozen ILFM, mean of frame embeddings, untrained head{head}"
    if cell.arm == RANDOM_INIT:
        return f"{composition(cell)} on {cell.backbone}"
    return composition(cell)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    metric_fields = sorted({k for r in rows for k in r if k.startswith("metric:")})
    fields = [*BASE_FIELDS, *metric_fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    return fields


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def table_columns(table: Table, rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The table's survey columns; a task that declares none shows every metric it reported."""
    if table.columns:
        return list(table.columns)
    mine = [r for r in rows if r["table"] == table.name]
    keys = sorted({k.removeprefix("metric:") for r in mine for k in r if k.startswith("metric:")})
    return [(k, k) for k in keys]


def aggregate(table: Table, rows: Sequence[dict[str, Any]], arms: Sequence[str]) -> list[dict[str, Any]]:
    """Per arm of ``table``: status, composition, mean/std/count of every column and cost, over its seeds."""
    columns = table_columns(table, rows)
    out = []
    for arm in arms:
        mine = [r for r in rows if r["table"] == table.name and r["arm"] == arm]
        if not mine:
            continue
        ok = [r for r in mine if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "arm": arm,
            "composition": mine[0]["composition"],
            "video_head": mine[0].get("video_head", ""),
            "seeds": len(ok),
            "status": "ok" if ok else mine[0]["status"],
            "reason": "" if ok else mine[0]["reason"],
            "metrics": {},
            "costs": {},
        }
        for _, key in columns:
            entry["metrics"][key] = mean_std([_number(r.get(f"metric:{key}")) for r in ok])
        for field in COST_FIELDS:
            entry["costs"][field] = mean_std([_number(r.get(field)) for r in ok])
        out.append(entry)
    return out


def leader(table: Table, entries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The paradigm with the best mean on the table's primary metric, with the runner-up and the baselines."""
    key = table.primary_metric
    ranked = [e for e in entries if e["arm"] not in (ZERO_SHOT, RANDOM_INIT) and e["metrics"].get(key)]
    if not ranked:
        return None
    ranked.sort(key=lambda e: e["metrics"][key][0], reverse=True)
    best = ranked[0]
    out: dict[str, Any] = {"metric": key, "arm": best["arm"], "stats": best["metrics"][key]}
    if len(ranked) > 1:
        second = ranked[1]
        out.update(runner_up=second["arm"], runner_up_stats=second["metrics"][key])
        out["margin"] = best["metrics"][key][0] - second["metrics"][key][0]
        out["clear"] = out["margin"] > max(best["metrics"][key][1], second["metrics"][key][1])
    for arm in (ZERO_SHOT, RANDOM_INIT):
        found = next((e for e in entries if e["arm"] == arm and e["metrics"].get(key)), None)
        if found:
            out[arm] = found["metrics"][key]
    return out


def _label(table: Table, key: str) -> str:
    return next((label for label, k in table.columns if k == key), key)


def summary_line(table: Table, lead: dict[str, Any] | None) -> str:
    if lead is None:
        return f"- **{table.name}**: no paradigm finished."
    label = _label(table, lead["metric"])
    text = f"- **{table.name}**: **{lead['arm']}** leads on {label} with {fmt_mean_std(lead['stats'])}"
    if "runner_up" in lead:
        text += f", {lead['margin']:.1f} ahead of {lead['runner_up']} ({fmt_mean_std(lead['runner_up_stats'])})" + (
            "" if lead["clear"] or lead["runner_up_stats"][2] < 2 else "; within one standard deviation"
        )
    extras = []
    if ZERO_SHOT in lead:
        extras.append(f"zero-shot {fmt_mean_std(lead[ZERO_SHOT])}")
    if RANDOM_INIT in lead:
        gain = lead["stats"][0] - lead[RANDOM_INIT][0]
        extras.append(f"random init {fmt_mean_std(lead[RANDOM_INIT])} (pretraining buys {gain:+.1f})")
    if extras:
        text += "; " + ", ".join(extras)
    return text + "."


# --- the report ---------------------------------------------------------------------------------------------


def render_table(table: Table, entries: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = table_columns(table, rows)
    header = ["arm", "composition", *[label for label, _ in columns], *[COST_LABELS[f] for f in COST_FIELDS]]
    lines = [f"### {table.name} — {table.title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|")
    skipped = []
    for entry in entries:
        name = ARM_LABELS.get(entry["arm"], entry["arm"])
        if entry["status"] != "ok":
            skipped.append(f"- {name}: {entry['status']}: {entry['reason']}")
            cells = [f"{name} ({entry['status']})", entry["composition"], *["—"] * (len(header) - 2)]
        else:
            head = f" → {entry['video_head']}" if entry["video_head"] else ""
            cells = [
                name,
                f"`{entry['composition']}`{head}",
                *[fmt_mean_std(entry["metrics"][key]) for _, key in columns],
                *[fmt_cost(field, entry["costs"][field]) for field in COST_FIELDS],
            ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if table.zero_shot_head is None:
        lines += ["", f"No zero-shot row: {table.zero_shot_note or 'the task declares none'}."]
    if skipped:
        lines += ["", "Not in the comparison:", *skipped]
    return lines


def write_report(
    out: Path,
    tables: Sequence[Table],
    cells: Sequence[Cell],
    settings: dict[str, Any],
    missing_tables: Sequence[str] = (),
) -> dict[str, Any]:
    """Write results.csv, report.md, summary.json and the plots from the cells' results in ``out``."""
    from videoadapt.bench.plots import plot_table
    from videoadapt.utils.machine import machine_description

    rows = cell_rows(out, cells, settings["budget"])
    write_csv(out / RESULTS, rows)
    # The report is rebuilt from the CSV just written: what report.md says is what results.csv holds.
    rows = [dict(r) for r in read_csv(out / RESULTS)]
    for row in rows:
        row["seed"] = int(row["seed"])
    arms = list(dict.fromkeys(c.arm for c in cells))
    machine = machine_description()
    budget = settings["budget"]
    total = len(cells)
    done = sum(1 for r in rows if r["status"] in ("ok", "incompatible"))
    cell_seconds = 0.0
    for cell in cells:
        path = cell_dir(out, cell) / cell_module.RESULT
        if path.is_file():
            result = load_json(path)
            if "started" in result and "finished" in result:
                cell_seconds += float(result["finished"]) - float(result["started"])
    data = settings["data"]
    sources = sorted({d["source"] for d in data.values()})
    lines = [
        "# videoadapt bench",
        "",
        f"Preset `{settings['preset']}` on backbone `{settings['backbone']}`, data {', '.join(sources)}; "
        f"{settings['seeds']} seed(s); every cell: {_budget_text(budget)}. "
        f"{done} of {total} cells finished; the cells took {cell_seconds / 60:.1f} min.",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs, "
        f"{'GPU ' + machine['cuda'] if machine['cuda'] else 'no GPU'}; torch {machine['torch']}, "
        f"Python {machine['python']}. Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Metrics in percent on the test split (mean ± sample std over seeds when there are several). Costs: "
        "trainable parameters (task head included); GFLOPs of the video path for one view (fvcore convention); "
        "train s = wall time of the training steps (feature extraction for frozen backbones excluded: it runs once "
        "per table and is shared, see `setup_s` in results.csv); peak train MB = peak memory of the training steps "
        "above the built model (gradients, optimizer state, activations).",
        "",
        "## Summary",
        "",
    ]
    summary_tables: dict[str, Any] = {}
    bodies: list[str] = []
    for table in tables:
        if table.name in missing_tables:
            continue
        entries = aggregate(table, rows, arms)
        lead = leader(table, entries)
        lines.append(summary_line(table, lead))
        bodies += ["", *render_table(table, entries, rows)]
        plots = plot_table(out / PLOTS, table, entries)
        if plots:
            bodies += ["", " ".join(f"![{p.stem}]({PLOTS}/{p.name})" for p in plots)]
        summary_tables[table.name] = {
            "title": table.title,
            "primary_metric": table.primary_metric,
            "leader": lead,
            "rows": entries,
            "plots": [str(p.relative_to(out)) for p in plots],
        }
    lines += ["", "## Tables", *bodies]
    notes = []
    for name in missing_tables:
        notes.append(f"- {name}: no data given for it (`--data {name}=SPEC`), not run.")
    registered = {t.task for t in tables}
    reserved = [n for n in RESERVED_TABLES if n not in registered]
    if reserved:
        notes.append(
            "- Table II (" + ", ".join(RESERVED_TABLES[n][0].split(": ", 1)[1] for n in reserved) + "): those tasks "
            "are not registered yet; their tables appear here when they are."
        )
    if notes:
        lines += ["", "## Not covered", "", *notes]
    (out / REPORT).write_text("\n".join(lines) + "\n")
    summary = {
        "out": str(out),
        "report": str(out / REPORT),
        "results": str(out / RESULTS),
        "settings": settings,
        "machine": machine,
        "cells": total,
        "cells_finished": done,
        "cell_seconds": cell_seconds,
        "tables": summary_tables,
    }
    save_json(out / SUMMARY, summary)
    return summary


def _budget_text(budget: dict[str, Any]) -> str:
    text = (
        f"{budget['steps']} optimizer steps of {budget['batch_size']} clips x {budget['frames']} frames, AdamW lr "
        f"{budget['lr']:g}, cosine decay"
    )
    if budget.get("warmup_steps"):
        text += f" after {budget['warmup_steps']} warm-up steps"
    text += ", best validation weights" if budget.get("validate") else ", last weights"
    return text + f"; SynthWorld {budget['videos']} videos of {budget['size']} px (80/10/10) when generated"
