"""Running a bench: every cell in its own folder, resumable, then the report.

Layout of ``OUT``::

    OUT/bench.json                              settings (preset, budget, seeds, data, rates): a rerun must match
    OUT/cells/<table>/<arm>/seed<k>/cell.json   what the cell runs (videoadapt.bench.cell)
    OUT/cells/<table>/<arm>/seed<k>/run/        the trainer's run folder (config.yaml, model.safetensors, log.csv, ...)
    OUT/cells/<table>/<arm>/seed<k>/result.json metrics, costs, learning curve;  .../done  written last
    OUT/cells/<table>/<arm>/seed<k>/item_stats.safetensors, predictions.jsonl   per test item
    OUT/cache/<table>/data<k>/<backbone>/       frame features of the frozen backbone, shared by the frozen cells
    OUT/report.md, results.csv, summary.json, plots/*.png

Rerunning the same command skips every cell with a ``done`` marker and continues at the first cell without one:
a cell interrupted half-way (SIGTERM, Ctrl-C, a full disk, or killed outright after a checkpoint) resumes from
its trainer's last checkpoint; a failed cell is retried from scratch. Each cell runs in a fresh Python process by
default, so that its peak memory is its own and a crash stays inside it. A distillation cell runs after its
teacher's cell (the full fine-tuning row of the same table and seed), whose run it reads.

Interrupts. SIGTERM (a cluster's preemption) or a first Ctrl-C is passed on to the running cell, which finishes
its training step, checkpoints it, records itself ``interrupted`` and exits; the bench then stops with the command
that continues it. A second Ctrl-C stops the cell at once (its last finished step is still checkpointed). A cell's
process runs in its own process group, so that a terminal's Ctrl-C reaches it once, through the bench, and it gets
SIGTERM if the bench dies (Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from videoadapt.bench import cell as cell_module
from videoadapt.bench.learning_rates import LearningRates
from videoadapt.bench.matrix import BenchPreset, Cell, Table, build_matrix, cell_dir, run_order, slug
from videoadapt.bench.report import write_report
from videoadapt.errors import VideoadaptError
from videoadapt.utils.folder_lock import FolderLock
from videoadapt.utils.safe_io import DiskFullError, load_json, save_json

SETTINGS = "bench.json"


class BenchInterrupted(VideoadaptError):
    """The bench stopped on a signal or a full disk; the message says what was kept and the command to continue."""


def table_data(
    table: Table,
    preset: BenchPreset,
    data: dict[str, str] | None,
    data_options: dict[str, dict[str, Any]],
    data_seed: int = 0,
) -> dict[str, Any] | None:
    """The data a table's cells read: SynthWorld generated on the fly (the budget's size, the table's reader
    options, its own data seed) or the benchmark given for this table or its task; None when real data was given
    but not for it."""
    options = dict(data_options.get(table.name, data_options.get(table.task, {})))
    source = "synth" if not data else data.get(table.name, data.get(table.task))
    if source is None:
        return None
    if source.strip().lower() == "synth":
        budget = preset.budget
        synth: dict[str, Any] = {
            "seed": data_seed,
            "videos": budget.videos,
            "size": budget.size,
            "frames": budget.source_frames,
        }
        if budget.split_fractions is not None:
            synth["split_fractions"] = list(budget.split_fractions)
        return {"source": "synth", "options": {**synth, **table.data, **options}}
    # On a benchmark the task's variant follows the data set (MSRVTT-QA is open-ended): no SynthWorld options.
    return {"source": source, "options": options}


def run_bench(
    out: str | Path,
    preset: BenchPreset,
    *,
    backbone: str = "tiny",
    seeds: int | None = None,
    first_seed: int = 0,
    paradigms: list[str] | None = None,
    tables: list[str] | None = None,
    data: dict[str, str] | None = None,
    data_options: dict[str, dict[str, Any]] | None = None,
    rates: LearningRates | None = None,
    baselines: bool = True,
    isolate: bool = True,
    device: str | None = None,
    precision: str | None = None,
    skip_bad: bool = False,
    max_cells: int | None = None,
    splits: tuple[str, str, str | dict[str, str]] = ("train", "val", "test"),
    launcher: list[str] | None = None,
    progress: bool = True,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
    command: str | None = None,
    mllm: str | None = None,
) -> dict[str, Any]:
    """Run (or continue) the bench in ``out`` and write its report. ``command`` is the command line that
    continues it (said when a signal or a full disk stops it). Returns the summary with ``ran`` (cells run now)
    and ``reused`` (cells finished before). ``max_cells`` stops after that many cells were run (then the report
    covers what is done). ``splits`` are the (train, validation, test) split names: validation feeds the learning
    curves (and ``--validate``), never the test split; the test split may differ per table or task
    (``{"": default, "recognition": "val"}``). ``mllm``: a video MLLM's backbone spec; the captioning and QA tables
    then get its rows (each paradigm on it and its zero-shot row)."""
    out = Path(out)
    data_options = data_options or {}
    rates = rates if rates is not None else LearningRates.defaults()
    every, cells = build_matrix(preset, backbone, seeds, paradigms, tables, baselines, rates, first_seed, mllm)
    tests = {t.name: test_split_of(splits[2], t) for t in every}
    for table in every:
        _check_splits((splits[0], splits[1], tests[table.name]), table.name)
    bound = {
        (t.name, seed): table_data(t, preset, data, data_options, seed)
        for t in every
        for seed in sorted({c.seed for c in cells})
    }
    missing = sorted({name for (name, _), d in bound.items() if d is None})
    cells = [c for c in cells if bound[(c.table, c.seed)] is not None]
    settings = {
        "preset": preset.name,
        "budget": asdict(preset.budget),
        "backbone": backbone,
        "seeds": seeds if seeds is not None else preset.seeds,
        "first_seed": first_seed,
        "paradigms": paradigms,
        "tables": [t.name for t in every],
        "data": {f"{name}/seed{seed}": d for (name, seed), d in bound.items() if d is not None},
        "baselines": baselines,
        "precision": precision or preset.budget.precision,
        "splits": {"train": splits[0], "val": splits[1], "test": tests},
        "learning_rates": {"source": rates.source, "describe": rates.describe()},
    }
    # One writer per bench folder: a second bench on it refuses at once, naming the holder.
    lock = FolderLock(out, "bench folder").acquire()
    try:
        _check_settings(out, settings)
        out.mkdir(parents=True, exist_ok=True)
        save_json(out / SETTINGS, settings)

        def spec_of(cell: Cell) -> dict[str, Any]:
            bound_data = bound[(cell.table, cell.seed)]
            assert bound_data is not None
            spec: dict[str, Any] = {
                "cell": cell.to_json(),
                "budget": asdict(preset.budget),
                "data": {**bound_data, "skip_bad": skip_bad},
                "cache_dir": str(out / "cache" / slug(cell.table) / f"data{cell.data_seed}" / slug(cell.backbone)),
                "device": device,
                "precision": precision or preset.budget.precision,
                "train_split": splits[0],
                "val_split": splits[1],
                "test_split": tests[cell.table],
            }
            if cell.teacher is not None:
                teacher = next((c for c in cells if c.key == cell.teacher), None)
                if teacher is not None:
                    spec["teacher_run"] = str(cell_dir(out, teacher) / cell_module.RUN)
            return spec

        started = time.perf_counter()
        ran, reused = run_cells(out, cells, spec_of, isolate, launcher, progress, max_cells, on_cell, command)
        elapsed = time.perf_counter() - started
        summary = write_report(out, every, cells, settings, missing_tables=missing)
        summary.update(ran=ran, reused=reused, seconds=elapsed, complete=len(ran) + len(reused) == len(cells))
        return summary
    finally:
        lock.release()


def run_cells(
    out: Path,
    cells: Sequence[Cell],
    spec_of: Callable[[Cell], dict[str, Any]],
    isolate: bool,
    launcher: list[str] | None,
    progress: bool,
    max_cells: int | None = None,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
    command: str | None = None,
) -> tuple[list[str], list[str]]:
    """Run every unfinished cell (teachers before their students); returns the keys run now and those reused.
    An interrupted cell resumes; SIGTERM, Ctrl-C or a full disk raise :class:`BenchInterrupted` once the running
    cell has recorded where it stopped."""
    from videoadapt.utils.progress import make_progress

    ran: list[str] = []
    reused: list[str] = []
    bar_display = make_progress(disable=not progress)
    with bar_display, StopSignals() as stops:
        bar = bar_display.add_task("bench", total=len(cells), info="")
        for cell in run_order(list(cells)):
            folder = cell_dir(out, cell)
            if (folder / cell_module.DONE).is_file() and (folder / cell_module.RESULT).is_file():
                reused.append(cell.key)
                bar_display.update(bar, advance=1)
                continue
            if max_cells is not None and len(ran) >= max_cells:
                break
            if stops.requested is not None:
                _stop_bench(out, stops.requested, cell.key, None, len(reused) + len(ran), len(cells), command)
            bar_display.update(bar, info=cell.key)
            spec = spec_of(cell)
            if not _can_resume(folder, spec):
                if folder.exists():
                    shutil.rmtree(folder)  # a failed cell, or one stopped before any checkpoint, starts afresh
                folder.mkdir(parents=True)
                save_json(folder / cell_module.CELL, spec)
            (folder / cell_module.RESULT).unlink(missing_ok=True)  # an interrupted cell's: rewritten at its end
            result = _run_one(folder, isolate, launcher, stops)
            ran.append(cell.key)
            if on_cell is not None:
                on_cell(cell, result)
            if result.get("status") == cell_module.INTERRUPTED or stops.requested is not None:
                finished = len(reused) + len(ran) - (result.get("status") == cell_module.INTERRUPTED)
                _stop_bench(out, stops.requested, cell.key, result, finished, len(cells), command)
            if result.get("status") != "ok":
                bar_display.console.print(f"{cell.key}: {result.get('status')}: {result.get('reason')}")
            bar_display.update(bar, advance=1)
    return ran, reused


def _can_resume(folder: Path, spec: dict[str, Any]) -> bool:
    """An unfinished cell continues where it stopped when it was interrupted after a checkpoint and still
    describes the same work (its cell.json equals what would be written now)."""
    if not (folder / cell_module.CELL).is_file() or not cell_module.resumable(folder):
        return False
    try:
        saved = load_json(folder / cell_module.CELL)
    except VideoadaptError:
        return False
    return bool(json.loads(json.dumps(saved)) == json.loads(json.dumps(spec)))


def _stop_bench(
    out: Path,
    cause: str | None,
    key: str,
    result: dict[str, Any] | None,
    finished: int,
    total: int,
    command: str | None,
) -> None:
    stopped = result is not None and result.get("status") == cell_module.INTERRUPTED
    what = f"cell {key} {result.get('reason')}" if stopped and result is not None else f"before cell {key}"
    by = f" by {cause}" if cause else ""
    if stopped and result is not None and result.get("stopped_by") == "a full disk":
        by, what = " on a full disk", f"cell {key}: {result.get('reason')}"
    again = command or f"the same `videoadapt bench` command (--out {out})"
    raise BenchInterrupted(f"bench stopped{by}: {what}; {finished} of {total} cells finished; continue with: {again}")


class StopSignals:
    """While the bench runs: SIGTERM and Ctrl-C are noted (the bench stops before its next cell) and passed on to
    the running cell's process, which stops at its next step boundary; a Ctrl-C with no cell process running
    (between cells, or a second one in-process) interrupts at once. Only the main thread takes signals."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.forward: Callable[[int], None] | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        first = self.requested is None
        self.requested = self.requested or signal.Signals(number).name
        if self.forward is not None:
            self.forward(number)
        elif number == signal.SIGINT and not first:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {n: signal.signal(n, self._handle) for n in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


# Imported once by the fork server, so that a cell's process starts without importing torch and transformers
# again (seconds each on a busy 2-core machine). Importing runs no parallel region, so forking after it is safe.
PRELOAD = ["videoadapt.bench._preload"]
_CONTEXT: Any = None


def _cell_environment() -> dict[str, str]:
    """The environment of a cell's process. OpenMP threads that sleep instead of spinning while they wait: on a
    shared machine, spinning threads of one process starve the others and a training step took 7-10x longer
    (measured on the 2-core build machine under load: 24 s vs 2.2 s for the same 8 steps); but a short spin (~10 us,
    GOMP_SPINCOUNT=1000) before sleeping, because each of a step's ~1,500 parallel regions would otherwise start by
    waking the other thread (about 10 % of a bf16 step, benchmarks/train_rate.py). Set them yourself to override."""
    return {
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "1000"),
        "PYTHONUNBUFFERED": "1",
    }


def _fork_context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing

        # The fork server is a fresh interpreter started now: it (and every cell forked from it) inherits this.
        os.environ.update(_cell_environment())
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _detach() -> None:
    """In a cell's process, first thing: its own process group, so that a terminal's Ctrl-C reaches it only
    through the bench (once, not twice: a second Ctrl-C stops a trainer at once); and SIGTERM when its parent dies
    (Linux; the fork server's parent is the bench), so that a bench killed outright still lets the cell
    checkpoint instead of leaving it training alone."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # best effort: without it a cell outlives a bench killed with SIGKILL, as it did before


def _cell_process(folder: str) -> None:
    """A cell's own process (forked from the fork server): output to cell.log, then the cell."""
    _detach()
    log = os.open(os.path.join(folder, cell_module.LOG), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        cell_module.run_cell(folder)
    except DiskFullError as error:  # the cell's own bookkeeping did not fit: the bench stops, naming the file
        with contextlib.suppress(OSError):
            print(f"videoadapt bench cell: {error}", file=sys.stderr)
        sys.exit(cell_module.DISK_FULL_EXIT)


def _run_one(
    folder: Path, isolate: bool, launcher: list[str] | None = None, stops: StopSignals | None = None
) -> dict[str, Any]:
    if not isolate and not launcher:
        return cell_module.run_cell(folder)
    stops = stops or StopSignals()
    if launcher:
        # A launcher (``accelerate launch --multi_gpu --num_processes 8``) runs the cell's training on several
        # processes or GPUs; process 0 writes the result. A signal goes to the launcher, which passes it on to
        # its processes (torch's elastic agent does).
        with open(folder / cell_module.LOG, "w") as log:
            process = subprocess.Popen(
                [*launcher, "-m", "videoadapt.bench.cell", str(folder)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **_cell_environment()},
                preexec_fn=_detach,  # noqa: PLW1509 - only setpgid and prctl, safe between fork and exec
            )
            code = _wait(process.pid, process.wait, stops)
    else:
        child = _fork_context().Process(target=_cell_process, args=(str(folder),))
        child.start()

        def join() -> int | None:
            child.join()
            # A SIGTERM sent to the whole process group kills the fork server too, and the join then returns at
            # once (exit code unknown) while the cell is still finishing its step: wait for the cell itself.
            while _alive(child.pid):
                time.sleep(0.05)
            return child.exitcode

        code = _wait(child.pid, join, stops)
    if (folder / cell_module.RESULT).is_file():
        return load_json(folder / cell_module.RESULT)  # written by this run (an earlier one's was removed)
    tail = _log_tail(folder)
    if code == cell_module.DISK_FULL_EXIT:
        raise BenchInterrupted(f"bench stopped on a full disk: {folder}: {tail}; free some space, then rerun")
    if stops.requested is not None:
        # Stopped before it could record anything (the signal came during its start): resumed next time if a
        # checkpoint exists, else started again.
        step = "no checkpoint" if not cell_module.resumable(folder) else "its checkpoint kept"
        return {"status": cell_module.INTERRUPTED, "reason": f"stopped by {stops.requested} ({step})"}
    result = {
        "cell": load_json(folder / cell_module.CELL)["cell"],
        "status": "failed",
        "reason": f"cell process exited with {code}: {tail[:300]}",
    }
    save_json(folder / cell_module.RESULT, result)
    return result


def _wait(pid: int, wait: Callable[[], int | None], stops: StopSignals) -> int | None:
    """``wait()`` for the cell's process ``pid`` while passing the bench's stop signals on to it."""

    def forward(number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)

    if stops.requested is not None:
        forward(signal.SIGTERM)  # asked to stop while this one was starting
    stops.forward = forward
    try:
        return wait()
    finally:
        stops.forward = None


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` still runs (a zombie, exited but not yet reaped by whoever adopted it, does not)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: it answered the signal


def _log_tail(folder: Path) -> str:
    try:
        lines = (folder / cell_module.LOG).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def test_split_of(tests: str | dict[str, str], table: Table) -> str:
    """The split ``table`` is scored on: one name for all, or per table (then per task, then the default "")."""
    if isinstance(tests, str):
        return tests
    return tests.get(table.name, tests.get(table.task, tests.get("", "test")))


def _check_splits(splits: Sequence[str], table: str = "") -> None:
    train, val, test = splits
    if test in (train, val):
        where = f" of {table}" if table else ""
        raise VideoadaptError(
            f"the test split {test!r}{where} is also the {'training' if test == train else 'validation'} split: "
            "nothing may be selected or trained on the split a bench is scored on"
        )


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS
    if not path.is_file():
        return
    saved = load_json(path)
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(settings)):
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        raise VideoadaptError(
            f"{out} holds a bench with other settings ({', '.join(changed)} differ); rerun the same command to "
            "continue it, or use a new --out"
        )
