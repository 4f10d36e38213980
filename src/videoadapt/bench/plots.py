"""Per task table, two PNGs: the primary metric against trainable parameters and against training time, one
labelled point per paradigm (error bars: std over seeds), the zero-shot ILFM as a dashed line. Matplotlib's Agg
backend: no display needed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoadapt.bench.matrix import RANDOM_INIT, ZERO_SHOT, Table, slug

AXES = (
    ("trainable_parameters", "trainable parameters", "params", True),
    ("train_s", "training wall time (s)", "time", False),
)


def plot_table(folder: Path, table: Table, entries: Sequence[dict[str, Any]]) -> list[Path]:
    """Write the table's plots into ``folder``; returns their paths (none when no arm has the metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = table.primary_metric
    label = next((name for name, k in table.columns if k == key), key)
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
            mean, std, _ = entry["metrics"][key]
            x = max(cost[0], 1.0) if log else cost[0]
            marker = "s" if entry["arm"] == RANDOM_INIT else "o"
            axes.errorbar(x, mean, yerr=std or None, fmt=marker, capsize=3)
            name = "random init" if entry["arm"] == RANDOM_INIT else entry["arm"]
            axes.annotate(name, (x, mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if zero is not None:
            axes.axhline(zero["metrics"][key][0], linestyle="--", color="grey", linewidth=1)
            axes.annotate(
                "zero-shot ILFM",
                (0.99, zero["metrics"][key][0]),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 3),
                ha="right",
                fontsize=8,
                color="grey",
            )
        if log:
            axes.set_xscale("log")
        axes.set_xlabel(axis_label)
        percent = "sum" not in label and ("acc" in label.lower() or label.startswith(("R@", "top")))
        axes.set_ylabel(f"{label} (%)" if percent else label)
        axes.set_title(f"{table.name}: {label} vs {axis_label.split(' (')[0]}", fontsize=10)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        path = folder / f"{slug(table.name)}-vs-{suffix}.png"
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths
