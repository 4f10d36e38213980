"""Progress bars for long work. They draw on stderr, so `--json` output on stdout stays machine-readable."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


LINE_SECONDS = 30.0
"""How often a progress report goes to a stderr that is not a terminal (a log file, a pipe)."""


class LineProgress(Progress):
    """Progress for a stderr that is not a terminal: a live bar cannot redraw in a log file, so (with the live
    display off) every ``every`` seconds, and once at the end, each task writes one plain line, e.g. ``train
    recognition 210/1500 (14%) · 0:02:10 elapsed · 0:13:20 left · loss 0.86 · 64.1 clips/s``."""

    def __init__(self, every: float = LINE_SECONDS, stream: Any = None) -> None:
        super().__init__(disable=True)
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self._last: dict[Any, float] = {}

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> Any:
        task = super().add_task(description, *args, **kwargs)
        self._last[task] = time.monotonic()
        return task

    def update(self, task_id: Any, *args: Any, **kwargs: Any) -> None:
        super().update(task_id, *args, **kwargs)
        if time.monotonic() - self._last.get(task_id, 0.0) >= self.every:
            self._line(task_id)

    def advance(self, task_id: Any, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def stop(self) -> None:
        for task_id in self._last:
            self._line(task_id)
        super().stop()

    def _line(self, task_id: Any) -> None:
        task = self._tasks[task_id]
        self._last[task_id] = time.monotonic()
        parts = [f"{task.description} {task.completed:.0f}/{task.total:.0f}" if task.total else task.description]
        if task.total:
            parts[0] += f" ({100 * task.completed / task.total:.0f}%)"
        parts.append(f"{_clock(task.elapsed or 0.0)} elapsed")
        if task.time_remaining is not None and task.completed < (task.total or 0):
            parts.append(f"{_clock(task.time_remaining)} left")
        if task.fields.get("info"):
            parts.append(str(task.fields["info"]))
        print(" · ".join(parts), file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def make_progress(transient: bool = False, disable: bool = False) -> Progress:
    """A rich progress display on stderr with count, elapsed time, ETA and a free ``info`` field; plain lines
    every half minute instead when stderr is not a terminal (:class:`LineProgress`)."""
    if not disable and not transient and not sys.stderr.isatty():
        return LineProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(file=sys.stderr),
        transient=transient,
        disable=disable,
        # Redraws cost CPU we would rather give to the work on a 2-core machine.
        refresh_per_second=4,
    )


def track(items: Iterable[T], total: int | None, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (none when ``enabled`` is false)."""
    if not enabled:
        yield from items
        return
    with make_progress() as progress:
        task = progress.add_task(description, total=total, info="")
        for item in items:
            yield item
            progress.advance(task)
