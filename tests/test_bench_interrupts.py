"""Issue 19, items 2 and 3 for the bench: SIGTERM (a cluster's preemption) or Ctrl-C stop `videoadapt bench` with
the running cell checkpointed and the command that continues it; rerun, finished cells are reused and the stopped
one resumes from its checkpoint to the weights of an uninterrupted run. A full disk stops the bench the same way,
naming the file, with every result file whole (the old one or the new one).

Tiny settings: the micro preset on a random tiny HF CLIP, one table, the post_network arm and its shared head
(two cells, each in its own process as the bench runs them by default)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from videoadapt.bench import cell as cell_module
from videoadapt.bench.matrix import BENCH_PRESETS, with_budget
from videoadapt.bench.runner import BenchInterrupted, run_bench
from videoadapt.utils import safe_io
from videoadapt.utils.safe_io import load_tensors

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = "hf-config:clip-tiny"
STEPS = 240  # ~10 ms a step here: long enough to land a signal mid-cell, log row every 4 steps


def bench_command(out: Path, steps: int = STEPS) -> list[str]:
    return [
        *("bench", "--preset", "micro", "--out", str(out), "--backbone", TINY, "--tables", "recognition"),
        *("--paradigms", "post_network", "--no-baselines", "--steps", str(steps), "--precision", "fp32"),
    ]


def cells(out: Path) -> list[Path]:
    return sorted((out / "cells" / "recognition").glob("*/seed0"))


def log_rows(cell: Path) -> list[str]:
    try:
        return (cell / "run" / "log.csv").read_text().splitlines()[1:]
    except OSError:
        return []


def run_videoadapt(words: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    # A session of its own: signalling its process group is what a terminal's Ctrl-C or a cluster's preemption
    # does, without signalling the test too.
    return subprocess.Popen(
        [sys.executable, "-m", "videoadapt", *words],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_bench_keeps_its_cells_and_resumes_the_interrupted_one(tmp_path, sent):
    """SUBPROCESSES (SIGTERM about 40 s, SIGINT 15 s on an idle machine): the signal goes to the bench's whole
    process group (the fork server included, as a cluster or a terminal sends it) once the first cell is done
    and the second has trained a few steps. The bench exits naming the signal, the cell, its step and the
    command; the finished cell has its ``done`` marker, the stopped one a checkpoint and no marker. After
    SIGTERM the same command then reuses the first cell (its files unchanged) and resumes the second, whose log
    keeps the rows written before the stop and whose weights equal an uninterrupted run's byte for byte."""
    out = tmp_path / "bench"
    bench = run_videoadapt(bench_command(out))
    try:
        deadline = time.monotonic() + 120
        while True:
            found = cells(out)
            done = [c for c in found if (c / cell_module.DONE).is_file()]
            running = [c for c in found if c not in done and len(log_rows(c)) >= 2]
            if done and running:
                break
            assert bench.poll() is None, f"the bench ended before the signal: {bench.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "the second cell did not start training within 120 s"
            time.sleep(0.01)
        os.killpg(bench.pid, sent)
        _, err = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    assert bench.returncode == 2, err
    first, second = done[0], running[0]
    assert f"bench stopped by {sent.name}: cell recognition/" in err, err
    assert "continue with: videoadapt bench --preset micro" in err and f"--out {out}" in err, err
    result = json.loads((second / cell_module.RESULT).read_text())
    assert result["status"] == cell_module.INTERRUPTED and not (second / cell_module.DONE).exists()
    stopped_at = result["step"]
    assert 8 <= stopped_at < STEPS and f"after step {stopped_at} of training (checkpoint kept)" in err, err
    assert (second / "run" / "checkpoints" / "last").is_dir()
    if sent == signal.SIGINT:
        return  # what follows, the rerun, does not depend on which signal stopped the cell
    kept = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    rows_before = log_rows(second)

    again = run_videoadapt([*bench_command(out), "--json"])
    summary, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    summary = json.loads(summary)
    assert summary["complete"] and len(summary["reused"]) == len(summary["ran"]) == 1
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == kept  # reused as it was
    result = json.loads((second / cell_module.RESULT).read_text())
    assert result["status"] == "ok" and result["resumed"] is True and result["steps"] == STEPS
    assert (second / cell_module.DONE).is_file()
    rows = log_rows(second)
    assert rows[: len(rows_before)] == rows_before and rows[-1].startswith(f"{STEPS},")

    straight = tmp_path / "straight"
    alone = run_videoadapt(bench_command(straight))
    _, err = alone.communicate(timeout=180)
    assert alone.returncode == 0, err
    a = load_tensors(second / "run" / "model.safetensors")
    b = load_tensors(straight / "cells" / "recognition" / second.parent.name / "seed0" / "run" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_sigterm_while_the_stop_is_recorded_is_noted_not_raised(tmp_path, monkeypatch):
    """IN-PROCESS (about 10 s): a cell usually gets SIGTERM twice (forwarded by the bench, and from its fork server
    dying with the process group), and on a loaded machine the second can come a training step after the first,
    while the cell is recording where it stopped. The trainer stops on the first; the second, arriving in the
    middle of that bookkeeping, must not cut it short: the cell's result is written (interrupted, its step and
    checkpoint named) and the bench stops naming it. (Before the fix the second raised out of the cell and left
    no result, as seen once in a full run.)"""
    from videoadapt.train.trainer import Trainer

    out = tmp_path / "bench"
    preset = with_budget(BENCH_PRESETS["micro"], steps=40)
    real_setup, real_disk_full = Trainer.setup, cell_module._disk_full
    late: list[str] = []

    def setup_then_sigterm(self, *args, **kwargs):
        done = real_setup(self, *args, **kwargs)
        signal.raise_signal(signal.SIGTERM)  # the first: the trainer stops after its step in progress
        return done

    def sigterm_while_recording(error):
        late.append(type(error).__name__)
        signal.raise_signal(signal.SIGTERM)  # the second, while the cell records the stop
        return real_disk_full(error)

    monkeypatch.setattr(Trainer, "setup", setup_then_sigterm)
    monkeypatch.setattr(cell_module, "_disk_full", sigterm_while_recording)
    with pytest.raises(BenchInterrupted, match=r"bench stopped by SIGTERM: cell recognition/"):
        run_bench(
            out,
            preset,
            paradigms=["post_network"],
            tables=["recognition"],
            backbone=TINY,
            baselines=False,
            isolate=False,
            progress=False,
            command="videoadapt bench (again)",
        )
    assert late == ["TrainingInterrupted"]
    (stopped,) = [c for c in cells(out) if (c / cell_module.RESULT).is_file()]
    result = json.loads((stopped / cell_module.RESULT).read_text())
    assert result["status"] == cell_module.INTERRUPTED and result["stopped_by"] == "SIGTERM"
    assert result["step"] >= 1 and (stopped / "run" / "checkpoints" / "last").is_dir()
    assert not (stopped / cell_module.DONE).exists()


# --- a full disk ------------------------------------------------------------------------------------------------


def test_a_full_disk_stops_the_bench_with_every_result_whole_and_a_rerun_finishes(tmp_path, monkeypatch):
    """IN-PROCESS (about 15 s): the disk fills while the second cell writes its per-item statistics. The bench
    stops naming the file and the space it needed; the first cell's result is as it was, the second has no
    ``done`` marker and no half-written file; freed, the same bench reuses the first and finishes the second."""
    out = tmp_path / "bench"
    preset = with_budget(BENCH_PRESETS["micro"], steps=4)
    kwargs = dict(paradigms=["post_network"], tables=["recognition"], backbone=TINY, baselines=False)
    kwargs.update(isolate=False, progress=False, command="videoadapt bench (again)")
    written: list[str] = []
    real_open = open

    def full_open(path, mode="r", *args, **kw):
        name = str(path)
        if "w" in mode and name.endswith(f".{cell_module.ITEM_STATS}.partial"):
            written.append(name)
            if len(written) > 1:  # the first cell's statistics fit; the second's do not
                raise OSError(errno.ENOSPC, "No space left on device", name)
        return real_open(path, mode, *args, **kw)

    monkeypatch.setattr(safe_io, "open", full_open, raising=False)
    with pytest.raises(BenchInterrupted, match=r"bench stopped on a full disk: cell recognition/") as stopped:
        run_bench(out, preset, **kwargs)
    message = str(stopped.value)
    assert f"{cell_module.ITEM_STATS}: the disk is full: writing it needs" in message and "MB free" in message
    assert "continue with: videoadapt bench (again)" in message
    first, second = (Path(w).parent for w in written)
    assert (first / cell_module.DONE).is_file() and not (second / cell_module.DONE).exists()
    kept = (first / cell_module.RESULT).read_bytes()
    assert json.loads((second / cell_module.RESULT).read_text())["status"] == cell_module.INTERRUPTED
    assert not list(second.glob(".*.partial")) and not (second / cell_module.ITEM_STATS).exists()
    monkeypatch.undo()
    summary = run_bench(out, preset, **kwargs)
    assert summary["complete"] and len(summary["reused"]) == 1 and len(summary["ran"]) == 1
    assert (first / cell_module.RESULT).read_bytes() == kept
    assert json.loads((second / cell_module.RESULT).read_text())["status"] == "ok"


def test_prediction_files_and_the_report_are_the_old_file_or_the_new_on_a_full_disk(tmp_path, monkeypatch):
    """A prediction file (`videoadapt eval --save-predictions`, score's formats) and the bench's report files are
    written atomically: a full disk names the file and leaves the previous one whole."""
    from videoadapt.bench.report import write_csv
    from videoadapt.metrics.prediction_files import write_moment_predictions

    moments, table = tmp_path / "predictions.jsonl", tmp_path / "results.csv"
    write_moment_predictions(moments, {"1": {"windows": [(0.0, 2.0, 0.9)]}})
    write_csv(table, [{"table": "recognition", "arm": "lora"}])
    before = moments.read_bytes(), table.read_bytes()

    def full_open(path, mode="r", *args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(safe_io, "open", full_open, raising=False)
    with pytest.raises(safe_io.DiskFullError, match=r"predictions\.jsonl: the disk is full: writing it needs"):
        write_moment_predictions(moments, {str(q): {"windows": [(0.0, 1.0, 0.5)] * 50} for q in range(100)})
    with pytest.raises(safe_io.DiskFullError, match=r"results\.csv: the disk is full"):
        write_csv(table, [{"table": "retrieval", "arm": "adapter"}] * 100)
    assert (moments.read_bytes(), table.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl", "results.csv"]
