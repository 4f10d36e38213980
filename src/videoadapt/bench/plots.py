"""Per task table, the bench's pictures (matplotlib's Agg backend: no display needed):

* ``<table>-vs-params.png`` and ``<table>-vs-time.png``: the primary metric on test against trainable parameters
  and against training time, one labelled point per arm with its 95 % interval as error bar, the zero-shot ILFM as
  a dashed line, random init as a square;
* ``<table>-curves.png``: the learning curves, the primary metric on the *validation* split during training
  against optimizer steps, against training compute (GFLOPs of the steps so far) and against training wall time,
  one line per arm (mean over seeds): the equal-compute view beside the equal-steps one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoadapt.bench.matrix import RANDOM_INIT, ZERO_SHOT, Cell, Table, cell_dir, slug

AXES = (
    ("trainable_parameters", "trainable parameters", "params", True),
    ("train_s", "training wall time (s)", "time", False),
)
CURVE_AXES = (
    ("step", "optimizer steps", False),
    ("train_gflops", "training compute (GFLOPs)", True),
    ("train_seconds", "training wall time (s)", False),
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(table: Table, key: str) -> str:
    return next((name for name, k in table.columns if k == key), key)


def plot_table(folder: Path, table: Table, entries: Sequence[dict[str, Any]]) -> list[Path]:
    """Write the table's two cost plots into ``folder``; returns their paths (none when no arm has the metric)."""
    plt = _pyplot()
    key = table.primary_metric
    label = _label(table, key)
    points = [e for e in entries if e["status"] == "ok" and e["metrics"].get(key) and e["arm"] != ZERO_SHOT]
    zero = next((e for e in entries if e["arm"] == ZERO_SHOT and e["metrics"].get(key)), None)
    if not points:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for field, axis_label, suffix, log in AXES:
        figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        for entry in points:
            cost = entry["costs"].get(field)
            if cost is None:
                continue
            mean = entry["metrics"][key][0]
            interval = entry.get("intervals", {}).get(key)
            yerr = [[mean - interval[0]], [interval[1] - mean]] if interval else None
            x = max(cost[0], 1.0) if log else cost[0]
            marker = "s" if entry["arm"] == RANDOM_INIT else "o"
            axes.errorbar(x, mean, yerr=yerr, fmt=marker, capsize=3)
            name = "random init" if entry["arm"] == RANDOM_INIT else entry["arm"]
            axes.annotate(name, (x, mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if zero is not None:
            _zero_line(axes, zero["metrics"][key][0])
        if log:
            axes.set_xscale("log")
        axes.set_xlabel(axis_label)
        axes.set_ylabel(_unit(label))
        axes.set_title(f"{table.name}: {label} (test, 95 % interval) vs {axis_label.split(' (')[0]}", fontsize=10)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        path = folder / f"{slug(table.name)}-vs-{suffix}.png"
        _save(figure, path)
        plt.close(figure)
        paths.append(path)
    return paths


def _unit(label: str) -> str:
    percent = "sum" not in label and ("acc" in label.lower() or label.startswith(("R@", "top")))
    return f"{label} (%)" if percent else label


def _zero_line(axes: Any, value: float) -> None:
    axes.axhline(value, linestyle="--", color="grey", linewidth=1)
    axes.annotate(
        "zero-shot ILFM",
        (0.99, value),
        xycoords=("axes fraction", "data"),
        textcoords="offset points",
        xytext=(0, 3),
        ha="right",
        fontsize=8,
        color="grey",
    )


def learning_curves(table: Table, cells: Sequence[Cell], out: Path) -> dict[str, list[dict[str, float]]]:
    """Per arm, the validation curve of the table's primary metric, averaged over seeds step by step."""
    from videoadapt.bench import cell as cell_module
    from videoadapt.utils.safe_io import load_json

    key = table.primary_metric
    by_arm: dict[str, dict[int, list[dict[str, float]]]] = {}
    for cell in cells:
        if cell.table != table.name:
            continue
        path = cell_dir(out, cell) / cell_module.RESULT
        if not path.is_file():
            continue
        result = load_json(path)
        if result.get("status") != "ok":
            continue
        for point in result.get("curve") or []:
            if key in point and "step" in point:
                by_arm.setdefault(cell.arm, {}).setdefault(int(point["step"]), []).append(point)
    curves: dict[str, list[dict[str, float]]] = {}
    for arm, steps in by_arm.items():
        curve = []
        for step in sorted(steps):
            points = steps[step]
            mean = {"step": float(step), key: sum(p[key] for p in points) / len(points)}
            for field in ("train_gflops", "train_seconds"):
                values = [p[field] for p in points if field in p]
                if len(values) == len(points):
                    mean[field] = sum(values) / len(values)
            curve.append(mean)
        curves[arm] = curve
    return curves


def plot_curves(folder: Path, table: Table, cells: Sequence[Cell], out: Path) -> list[Path]:
    """``<table>-curves.png``: validation metric against steps, compute and wall time (none without curves)."""
    curves = learning_curves(table, cells, out)
    if not any(len(c) > 1 for c in curves.values()):
        return []
    plt = _pyplot()
    key = table.primary_metric
    label = _label(table, key)
    folder.mkdir(parents=True, exist_ok=True)
    figure, panels = plt.subplots(1, len(CURVE_AXES), figsize=(15, 4.4), dpi=100, sharey=True)
    for panel, (field, axis_label, log) in zip(panels, CURVE_AXES, strict=True):
        for arm, curve in curves.items():
            points = [(p[field], p[key]) for p in curve if field in p]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            style = "s--" if arm == RANDOM_INIT else "o-"
            panel.plot(xs, ys, style, markersize=3, linewidth=1.2, label="random init" if arm == RANDOM_INIT else arm)
        if log:
            panel.set_xscale("log")
        panel.set_xlabel(axis_label)
        panel.grid(True, alpha=0.3)
    panels[0].set_ylabel(f"validation {_unit(label)}")
    panels[-1].legend(fontsize=7, loc="best")
    figure.suptitle(f"{table.name}: learning curves on the validation split (mean over seeds)", fontsize=10)
    figure.tight_layout()
    path = folder / f"{slug(table.name)}-curves.png"
    _save(figure, path)
    plt.close(figure)
    return [path]


def _save(figure: Any, path: Path) -> None:
    """The PNG written atomically: on a full disk (DiskFullError naming it) the previous plot stays whole."""
    from videoadapt.utils.safe_io import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
