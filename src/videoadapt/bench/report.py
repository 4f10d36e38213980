"""The bench's outputs: ``results.csv`` (one row per cell and seed), ``report.md`` (one table per task in the
survey's columns, each figure with its 95 % confidence interval, the learning rates and cost columns on every row,
who leads or who is tied, what each row changes), ``summary.json`` and the plots.

Every point figure of ``report.md`` is computed from the rows of ``results.csv`` (mean over seeds); intervals and
ties come from the per-item statistics each cell kept (:mod:`videoadapt.bench.statistics`). The tests recompute
the report's numbers from the CSV.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoadapt.bench import cell as cell_module
from videoadapt.bench.matrix import (
    BASELINES,
    RANDOM_INIT,
    ZERO_SHOT,
    Cell,
    Table,
    bench_arms,
    cell_dir,
    composition,
    mllm_arms,
)
from videoadapt.utils.safe_io import atomic_write_bytes, load_json, save_json

RESULTS, REPORT, SUMMARY, PLOTS = "results.csv", "report.md", "summary.json", "plots"
COST_FIELDS = ("trainable_parameters", "gflops_per_view", "train_s", "peak_memory_mb")
COST_LABELS = {
    "trainable_parameters": "trainable params (paradigm + heads)",
    "gflops_per_view": "GFLOPs/view",
    "train_s": "train s",
    "peak_memory_mb": "peak train MB",
}
BASE_FIELDS = (
    "table",
    "task",
    "arm",
    "seed",
    "data_seed",
    "status",
    "reason",
    "composition",
    "video_head",
    "backbone",
    "lr",
    "backbone_lr",
    "steps",
    "batch_size",
    "frames",
    "train_items",
    "test_items",
    *COST_FIELDS,
    "paradigm_parameters",
    "head_parameters",
    "train_gflops_per_step",
    "setup_s",
    "eval_s",
    "cached_features",
    "device",
    "memory_measure",
)
ARM_LABELS = {ZERO_SHOT: "zero-shot ILFM", RANDOM_INIT: "random init"}
# A paradigm arm must beat random init by this much on recognition top-1 (issue 14's bar for "pretraining helps").
RANDOM_INIT_MARGIN = 10.0


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


def fmt_interval(point: float | None, interval: tuple[float, float] | None, digits: int = 1) -> str:
    """``62.3 [59.5, 65.0]``; the point alone when there is no interval."""
    if point is None:
        return "—"
    if interval is None:
        return f"{point:.{digits}f}"
    return f"{point:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def fmt_difference(diff: tuple[float, float, float, int] | None) -> str:
    if diff is None:
        return "no interval"
    return f"{diff[0]:+.1f} [{diff[1]:+.1f}, {diff[2]:+.1f}]"


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


def fmt_rate(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.0e}".replace("e-0", "e-")


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
            "data_seed": cell.data_seed,
            "status": result.get("status", "failed"),
            "reason": result.get("reason", ""),
            "composition": describe(cell),
            "video_head": result.get("video_head", ""),
            "backbone": cell.backbone,
            "lr": "" if cell.lr is None else cell.lr,
            "backbone_lr": "" if cell.backbone_lr is None else cell.backbone_lr,
            "steps": result.get("steps", ""),
            "batch_size": budget["batch_size"],
            "frames": budget["frames"],
            "train_items": result.get("train_items", ""),
            "test_items": result.get("test_items", ""),
        }
        for field in (*COST_FIELDS, "paradigm_parameters", "head_parameters", "train_gflops_per_step", "setup_s"):
            value = result.get(field)
            row[field] = "" if value is None else value
        for field in ("eval_s", "cached_features", "device", "memory_measure"):
            row[field] = result.get(field, "")
        for key, value in (result.get("metrics") or {}).items():
            row[f"metric:{key}"] = value
        rows.append(row)
    return rows


def describe(cell: Cell) -> str:
    """What a row trained: the composition with its options (and the random backbone of the random-init row)."""
    if cell.arm == ZERO_SHOT:
        return f"{composition(cell)}, head {cell.head} untrained"
    if cell.arm == RANDOM_INIT:
        return f"{composition(cell)} on {cell.backbone}"
    return composition(cell)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    metric_fields = sorted({k for r in rows for k in r if k.startswith("metric:")})
    fields = [*BASE_FIELDS, *metric_fields]
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    atomic_write_bytes(path, handle.getvalue().encode())  # on a full disk: the old file or the new
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


# --- statistics ---------------------------------------------------------------------------------------------


def table_statistics(out: Path, table: Table, cells: Sequence[Cell], rows: Sequence[dict[str, Any]]) -> Any:
    """The bootstrap of ``table`` from the item statistics of its scored cells (None when none kept any)."""
    from videoadapt.bench.statistics import TableStatistics, load_item_stats
    from videoadapt.tasks import build_task

    stats = TableStatistics(build_task(table.task), table.name)
    ok = {(r["arm"], int(r["seed"])) for r in rows if r["table"] == table.name and r["status"] == "ok"}
    found = False
    for cell in cells:
        if cell.table != table.name or (cell.arm, cell.seed) not in ok:
            continue
        path = cell_dir(out, cell) / cell_module.ITEM_STATS
        if path.is_file():
            stats.add(cell.arm, cell.seed, load_item_stats(path))
            found = True
    return stats if found else None


def aggregate(
    table: Table, rows: Sequence[dict[str, Any]], arms: Sequence[str], stats: Any = None
) -> list[dict[str, Any]]:
    """Per arm of ``table``: status, composition, rates, and every column (mean over seeds, 95 % interval) and
    cost (mean, std, count over seeds)."""
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
            "lr": _number(mine[0].get("lr")),
            "backbone_lr": _number(mine[0].get("backbone_lr")),
            "seeds": len(ok),
            "status": "ok" if ok else mine[0]["status"],
            "reason": "" if ok else mine[0]["reason"],
            "metrics": {},
            "intervals": {},
            "costs": {},
            "parameter_split": None,
        }
        for _, key in columns:
            entry["metrics"][key] = mean_std([_number(r.get(f"metric:{key}")) for r in ok])
            summary = stats.summary(arm, key) if stats is not None else None
            entry["intervals"][key] = None if summary is None else (summary[1], summary[2])
        for field in COST_FIELDS:
            entry["costs"][field] = mean_std([_number(r.get(field)) for r in ok])
        paradigm = mean_std([_number(r.get("paradigm_parameters")) for r in ok])
        heads = mean_std([_number(r.get("head_parameters")) for r in ok])
        if paradigm is not None and heads is not None:
            entry["parameter_split"] = (round(paradigm[0]), round(heads[0]))
        out.append(entry)
    return out


def standings(table: Table, entries: Sequence[dict[str, Any]], stats: Any) -> dict[str, Any] | None:
    """Who leads the table's primary metric (or who is tied), and every arm against the two baselines."""
    key = table.primary_metric
    ok = [e for e in entries if e["status"] == "ok" and e["metrics"].get(key)]
    paradigms = [e["arm"] for e in ok if e["arm"] not in BASELINES]
    if not paradigms:
        return None
    result: dict[str, Any] = {"metric": key, "baselines": {}}
    if stats is not None:
        result["ranking"] = stats.ranking(paradigms, key)
    else:
        best = max((e for e in ok if e["arm"] in paradigms), key=lambda e: e["metrics"][key][0])
        result["ranking"] = {"metric": key, "best": best["arm"], "stats": None, "tied": [], "behind": []}
    for baseline in BASELINES:
        if not any(e["arm"] == baseline for e in ok):
            continue
        versus = {}
        for arm in paradigms:
            diff = stats.difference(arm, baseline, key) if stats is not None else None
            point = (
                next(e for e in ok if e["arm"] == arm)["metrics"][key][0]
                - next(e for e in ok if e["arm"] == baseline)["metrics"][key][0]
            )
            versus[arm] = {"point": point, "difference": diff}
        result["baselines"][baseline] = versus
    return result


def _label(table: Table, key: str) -> str:
    return next((label for label, k in table.columns if k == key), key)


def _name(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


ORDER_METRIC = "reversal_pair_accuracy"  # balanced time-reversal pairs: 50 % is what an order-blind model gets
STILL_LEARNING = 1.0  # validation points gained over the last stretch of the curve that count as "still learning"


def diagnose(arm: str, entry: dict[str, Any], curve: Sequence[dict[str, float]], metric: str) -> str:
    """Why an arm falls short, from what the bench measured: blind to frame order (balanced reversal pairs at
    chance), still learning when the budget ended (its validation curve), or settled below."""
    reasons = []
    interval = entry.get("intervals", {}).get(ORDER_METRIC)
    stats = entry.get("metrics", {}).get(ORDER_METRIC)
    if interval is not None and stats is not None and interval[0] <= 50.0:
        # Not demonstrably above chance on balanced pairs (an order-blind model is at <= 50 by construction).
        reasons.append(
            f"does not tell time-reversed actions apart (reversal pair acc. {fmt_interval(stats[0], interval)}, "
            "an order-blind model is at 50)"
        )
    points = [p for p in curve if metric in p]
    if len(points) >= 2:
        gain = points[-1][metric] - points[-2][metric]
        steps = int(points[-1]["step"] - points[-2]["step"])
        if gain > STILL_LEARNING:
            reasons.append(f"still learning when the budget ended (validation {gain:+.1f} over its last {steps} steps)")
        elif not reasons:
            reasons.append(f"settled (validation {gain:+.1f} over its last {steps} steps)")
    return "; ".join(reasons) or "no learning curve to tell why"


def summary_lines(
    table: Table,
    entries: Sequence[dict[str, Any]],
    standing: dict[str, Any] | None,
    curves: dict[str, list[dict[str, float]]] | None = None,
) -> list[str]:
    if standing is None:
        return [f"- **{table.name}**: no paradigm finished."]
    key = standing["metric"]
    label = _label(table, key)
    by_arm = {e["arm"]: e for e in entries}

    def figure(arm: str) -> str:
        entry = by_arm[arm]
        return fmt_interval(entry["metrics"][key][0], entry["intervals"].get(key))

    ranking = standing["ranking"]
    best = ranking["best"]
    if not ranking["tied"]:
        nearest = ranking["behind"][0] if ranking["behind"] else None
        text = f"- **{table.name}** ({label}): **{best}** leads with {figure(best)}"
        if nearest is not None:
            text += (
                f", ahead of every other arm (the nearest, {nearest['arm']}, by "
                f"{fmt_difference(nearest['difference'])}, paired)"
            )
        text += "."
    else:
        tied = [best, *[t["arm"] for t in ranking["tied"]]]
        text = (
            f"- **{table.name}** ({label}): no single leader: **{', '.join(tied)}** are tied (each one's paired "
            f"difference with {best}, {figure(best)}, has an interval that includes 0: "
            + "; ".join(f"{t['arm']} {fmt_difference(t['difference'])}" for t in ranking["tied"])
            + ")."
        )
    lines = [text]
    for baseline, versus in standing["baselines"].items():
        if baseline not in by_arm:
            continue
        margin = RANDOM_INIT_MARGIN if baseline == RANDOM_INIT and table.task == "recognition" else 0.0
        # A difference whose interval holds the bar is a tie with it: only an interval wholly under the bar is
        # "below", and only one wholly over it is "above".
        below, tied = [], []
        for arm, v in versus.items():
            low, high = (v["difference"][1], v["difference"][2]) if v["difference"] else (v["point"], v["point"])
            if high < margin:
                below.append(arm)
            elif low <= margin:
                tied.append(arm)
        worst = min(versus, key=lambda a: versus[a]["point"])
        head = f"  - vs {_name(baseline)} ({figure(baseline)}): "
        bar = f"+{margin:g} points" if margin else "its figure"
        if not below and not tied:
            lines.append(
                head + f"every arm is above {bar} (the lowest, {worst}, {fmt_difference(versus[worst]['difference'])})."
            )
            continue
        parts = []
        if below:
            parts.append(f"{len(below)} arm(s) below {bar}")
        if tied:
            parts.append(f"{len(tied)} arm(s) tied with {bar} (the paired interval holds it)")
        rest = len(versus) - len(below) - len(tied)
        parts.append(f"{rest} above" if rest else "none above")
        lines.append(head + ", ".join(parts) + ":")
        for arm in below + tied:
            word = "below" if arm in below else "tied"
            why = diagnose(arm, by_arm[arm], (curves or {}).get(arm, []), key)
            lines.append(f"    - {arm} {fmt_difference(versus[arm]['difference'])} ({word}): {why}.")
    return lines


# --- the report ---------------------------------------------------------------------------------------------


def render_table(table: Table, entries: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = table_columns(table, rows)
    header = ["arm", *[label for label, _ in columns], "lr", "backbone lr", *[COST_LABELS[f] for f in COST_FIELDS]]
    lines = [f"### {table.name} — {table.title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    skipped = []
    for entry in entries:
        name = _name(entry["arm"])
        if entry["status"] != "ok":
            skipped.append(f"- {name}: {entry['status']}: {entry['reason']}")
            cells = [f"{name} ({entry['status']})", *["—"] * (len(header) - 1)]
        else:
            split = entry["parameter_split"]
            params = fmt_cost("trainable_parameters", entry["costs"]["trainable_parameters"])
            if split is not None and entry["arm"] != ZERO_SHOT:
                params = f"{params} ({split[0]:,} + {split[1]:,})"
            cells = [
                name,
                *[fmt_interval(_mean(entry["metrics"][key]), entry["intervals"].get(key)) for _, key in columns],
                fmt_rate(entry["lr"]),
                fmt_rate(entry["backbone_lr"]),
                params,
                *[fmt_cost(field, entry["costs"][field]) for field in COST_FIELDS[1:]],
            ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if table.zero_shot_head is None:
        lines += ["", f"No zero-shot row: {table.zero_shot_note or 'the task declares none'}."]
    if skipped:
        lines += ["", "Not in the comparison:", *skipped]
    return lines


def _mean(stats: tuple[float, float, int] | None) -> float | None:
    return None if stats is None else stats[0]


def changes_section(
    settings: dict[str, Any], entries_by_table: dict[str, list[dict[str, Any]]], tables: Sequence[Table] = ()
) -> list[str]:
    """What each row changes relative to the zero-shot row (same data, frames, steps and task head for all)."""
    budget = settings["budget"]
    arms = {a.name: a for a in bench_arms(settings.get("paradigms"), budget["video_head"], True)}
    arms.update({a.name: a for a in mllm_arms(settings.get("paradigms"))})  # rows of bench --mllm, when run
    seen: list[str] = []
    for entries in entries_by_table.values():
        for entry in entries:
            if entry["arm"] not in seen:
                seen.append(entry["arm"])
    lines = [
        "## What each row changes relative to the zero-shot row",
        "",
        "Every row sees the same data, frames, steps and batch, and is scored by the same task head (for each table "
        "the options in the composition column of results.csv); the zero-shot row trains nothing.",
        "",
    ]
    for name in seen:
        arm = arms.get(name)
        example = next((e for es in entries_by_table.values() for e in es if e["arm"] == name), None)
        what = arm.changes if arm is not None else "(not a standard arm)"
        comp = f" — `{example['composition']}`" if example else ""
        by_note: dict[str, list[str]] = {}
        for t in tables:
            if name in t.arm_notes:
                by_note.setdefault(t.arm_notes[name], []).append(t.name)
        notes = "".join(f" In {' and '.join(names)}: {note}." for note, names in by_note.items())
        lines.append(f"- **{_name(name)}**: {what}{comp}.{notes}")
    return lines


def write_report(
    out: Path,
    tables: Sequence[Table],
    cells: Sequence[Cell],
    settings: dict[str, Any],
    missing_tables: Sequence[str] = (),
) -> dict[str, Any]:
    """Write results.csv, report.md, summary.json and the plots from the cells' results in ``out``."""
    from videoadapt.bench.plots import learning_curves, plot_curves, plot_table
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
    sources = sorted({d["source"] for d in settings["data"].values()})
    seeds = int(settings["seeds"])
    first = int(settings.get("first_seed", 0))
    rates = settings.get("learning_rates", {}).get("describe", "")
    head = budget.get("video_head", {})
    lines = [
        "# videoadapt bench",
        "",
        f"Preset `{settings['preset']}` on backbone `{settings['backbone']}`, data {', '.join(sources)}; "
        f"{seeds} seed(s) ({first}..{first + seeds - 1}; on SynthWorld each seed is also the data seed); every "
        f"cell: {_budget_text(budget)}; the shared video head: `post_network {head}`; learning rates: {rates}. "
        f"{done} of {total} cells finished; the cells took {cell_seconds / 60:.1f} min.",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs, "
        f"{'GPU ' + machine['cuda'] if machine['cuda'] else 'no GPU'}; torch {machine['torch']}, "
        f"Python {machine['python']}. Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "How to read it: every metric is in percent on the test split, the mean over seeds with its 95 % confidence "
        "interval [low, high] from a paired bootstrap over test items (1,000 resamples; with several seeds the "
        "seeds are resampled too). A paradigm leads only when its paired difference with every other arm has an "
        "interval that excludes 0; otherwise the arms it cannot be told apart from are called tied. "
        + (
            "Learning rates were chosen per arm on the validation split (never on test). "
            if rates.startswith("chosen")
            else f"Learning rates were not chosen per arm here ({rates}): a ranking can reflect them. "
        )
        + "Costs: trainable parameters (of the "
        "paradigm + of the shared heads: the task head and, for arms that adapt the backbone, the shared temporal "
        "head); GFLOPs of the video path for one view (fvcore convention); train s = wall time of the training "
        "steps (validations and the one-off feature extraction for frozen backbones excluded, see `setup_s` in "
        "results.csv); peak train MB = peak memory of the training steps above the built model.",
        "",
        "## Summary",
        "",
    ]
    summary_tables: dict[str, Any] = {}
    bodies: list[str] = []
    entries_by_table: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        if table.name in missing_tables:
            continue
        stats = table_statistics(out, table, cells, rows)
        entries = aggregate(table, rows, arms, stats)
        entries_by_table[table.name] = entries
        standing = standings(table, entries, stats)
        lines += summary_lines(table, entries, standing, learning_curves(table, cells, out))
        bodies += ["", *render_table(table, entries, rows)]
        plots = plot_table(out / PLOTS, table, entries)
        curves = plot_curves(out / PLOTS, table, cells, out)
        shown = [*plots, *curves]
        if shown:
            bodies += ["", " ".join(f"![{p.stem}]({PLOTS}/{p.name})" for p in shown)]
        summary_tables[table.name] = {
            "title": table.title,
            "primary_metric": table.primary_metric,
            "standing": standing,
            "rows": entries,
            "plots": [str(p.relative_to(out)) for p in shown],
        }
    lines += ["", "## Tables", *bodies, "", *changes_section(settings, entries_by_table, tables)]
    notes = []
    for name in missing_tables:
        notes.append(f"- {name}: no data given for it (`--data {name}=SPEC`), not run.")
    if notes:
        lines += ["", "## Not covered", "", *notes]
    atomic_write_bytes(out / REPORT, ("\n".join(lines) + "\n").encode())
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
    text = f"{budget['steps']} optimizer steps of {budget['batch_size']} clips x {budget['frames']} frames, AdamW"
    if budget.get("warmup_steps"):
        text += f" with {budget['warmup_steps']} warm-up steps"
    text += ", cosine decay"
    text += ", best validation weights" if budget.get("validate") else ", last weights"
    fractions = budget.get("split_fractions")
    split = "/".join(f"{f:g}" for f in fractions) if fractions else "0.8/0.1/0.1"
    return text + f"; SynthWorld {budget['videos']} videos of {budget['size']} px ({split}) when generated"
