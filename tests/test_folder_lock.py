"""Issue 19, item 4: one writer per run folder and bench folder. A second process refuses at once, naming the
holder (pid, host, start time); a lock left by a process that no longer runs is taken over."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from videoadapt.cli import main
from videoadapt.utils.folder_lock import LOCK_NAME, FolderBusyError, FolderLock

SMALL = ["data.options.videos=40", "data.options.size=32", "run.max_steps=1", "run.progress=false"]


def _lock_of(folder, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "started": time.time() - 60, "command": "train"}
    (folder / LOCK_NAME).write_text(json.dumps(record))


@pytest.fixture
def live_pid():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_folder_held_by_a_live_process_is_refused_naming_it(tmp_path, live_pid, capsys):
    run = tmp_path / "run"
    _lock_of(run, live_pid)
    assert main(["train", "--task", "recognition", "--out", str(run), *SMALL]) == 2
    error = capsys.readouterr().err
    assert f"pid {live_pid} on {socket.gethostname()}, since" in error and "wait for it or stop it" in error
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()


def test_a_stale_lock_is_taken_over_and_released_at_the_end(tmp_path, dead_pid, capsys):
    run = tmp_path / "run"
    _lock_of(run, dead_pid)
    assert main(["train", "--task", "recognition", "--out", str(run), *SMALL]) == 0
    assert f"taking over the lock of a process that no longer runs (pid {dead_pid}" in capsys.readouterr().err
    assert (run / "model.safetensors").is_file() and not (run / LOCK_NAME).exists()


def test_a_holder_on_another_host_says_how_to_free_it(tmp_path, live_pid):
    _lock_of(tmp_path, live_pid, host="node-17")
    with pytest.raises(FolderBusyError, match=rf"pid {live_pid} on node-17.*delete .*{LOCK_NAME}"):
        FolderLock(tmp_path, "bench folder").acquire()


def test_a_bench_folder_has_one_writer(tmp_path, live_pid, capsys):
    _lock_of(tmp_path / "bench", live_pid)
    args = ["bench", "--preset", "micro", "--out", str(tmp_path / "bench"), "--tables", "recognition", "--steps", "1"]
    assert main(args) == 2
    assert f"bench folder {tmp_path / 'bench'} is being written by another process: pid {live_pid}" in (
        capsys.readouterr().err
    )


def test_a_garbled_lock_counts_as_stale(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{not json")
    with FolderLock(tmp_path, "run folder") as lock:
        assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"]
    assert not (tmp_path / LOCK_NAME).exists()
