"""Issue 19, items 3 and 4 for the feature cache: a full disk is found before any video is encoded (the arrays'
space is reserved: a full disk under a memory mapping is SIGBUS, not an error) or, while logging rows, stops
naming the file, with the cache left incomplete and resumable; one writer per cache folder (a second
extraction refuses at once, naming the holder; a stale lock is taken over), while the processes of one
`accelerate launch` share it (tests/test_feature_cache.py, sharded extraction)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_feature_cache import SAMPLER, CountingEncoder, live, make_data
from videoadapt.foundation.feature_cache import FeatureCache, IncompleteCacheError, extract_features
from videoadapt.foundation.feature_cache import store as store_module
from videoadapt.foundation.hf import from_architecture
from videoadapt.utils.folder_lock import LOCK_NAME, FolderBusyError
from videoadapt.utils.safe_io import DiskFullError

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture(scope="module")
def ilfm():
    return from_architecture("clip-tiny").eval()


def extract(ilfm, data, directory: Path, **options):
    return extract_features(ilfm, data, SAMPLER, directory, batch_size=4, progress=False, **options)


def same_features(cache: FeatureCache, ilfm, data) -> None:
    ids = [r.video_id for r in data.videos()]
    got, want = cache.get(ids), live(ilfm, data, ids)
    assert torch.equal(got.patches, want.patches) and torch.equal(got.embeds, want.embeds)
    assert cache.verify() == []


# --- a full disk ------------------------------------------------------------------------------------------------


def test_a_cache_that_does_not_fit_is_refused_before_encoding_naming_the_space(ilfm, tmp_path, monkeypatch):
    """The arrays' blocks are reserved when the cache is made: no room is an error naming the folder and the
    megabytes needed, before any video is encoded, and nothing is left that could pass for a cache."""
    data = make_data(10)

    def no_room(descriptor, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    counter = CountingEncoder(ilfm)
    try:
        with pytest.raises(DiskFullError, match=r"cache: the disk is full: writing it needs \d+\.\d MB .*free") as full:
            extract(ilfm, data, tmp_path / "cache")
    finally:
        counter.restore()
    assert counter.videos == 0 and "nothing was extracted" in str(full.value)
    assert full.value.needed > 10 * 4 * 64 * 4  # at least the 10 videos' frame embeddings
    left = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert left == ["rows"], left  # no arrays, no layout, and the lock released
    monkeypatch.undo()
    same_features(extract(ilfm, data, tmp_path / "cache"), ilfm, data)


class FillingLog:
    """A row log whose disk fills after ``room`` more bytes: the write that crosses it lands in part, then fails
    as a full disk does."""

    def __init__(self, handle, room: list[int]) -> None:
        self.handle, self.room = handle, room

    def write(self, text: str) -> int:
        if len(text) > self.room[0]:
            self.handle.write(text[: self.room[0]])
            self.handle.flush()
            self.room[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room[0] -= len(text)
        return self.handle.write(text)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_a_full_disk_while_logging_rows_leaves_an_incomplete_cache_that_resumes(ilfm, tmp_path, monkeypatch):
    """The disk fills in the middle of the second batch's log lines: the error names the log file; the cache has
    no manifest (open refuses it as incomplete); the cut line does not count its row as written; rerun, the
    extraction keeps the first batch and encodes the rest, to the features of a clean extraction."""
    data = make_data(10)
    real_open = open
    room = [0]

    def full_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return FillingLog(handle, room) if "a" in mode and str(path).endswith(".jsonl") else handle

    monkeypatch.setattr(store_module, "open", full_open, raising=False)
    first_batch = len(
        "".join(json.dumps({"id": f"v{i}", "row": i, "sha256": "0" * 64, "t": 10**18}) + "\n" for i in range(4))
    )
    room[0] = first_batch + 30  # the first batch's lines, then part of the second's
    with pytest.raises(DiskFullError, match=r"writer-0\.jsonl: the disk is full: .*rows logged before are kept"):
        extract(ilfm, data, tmp_path / "cache")
    with pytest.raises(IncompleteCacheError, match="4 of 10 rows logged"):
        FeatureCache.open(tmp_path / "cache")
    assert not (tmp_path / "cache" / LOCK_NAME).exists()
    monkeypatch.undo()
    counter = CountingEncoder(ilfm)
    try:
        cache = extract(ilfm, data, tmp_path / "cache")
    finally:
        counter.restore()
    assert cache.run_stats == {"encoded": 6, "reused": 4, "skipped": 0} and counter.videos == 6
    same_features(cache, ilfm, data)


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


EXTRACT_ON_SMALL_DISK = """
import sys
from test_feature_cache import SAMPLER, make_data
from videoadapt.foundation.feature_cache import extract_features
from videoadapt.foundation.hf import from_architecture
from videoadapt.utils.safe_io import DiskFullError
try:
    ilfm = from_architecture("clip-tiny").eval()
    extract_features(ilfm, make_data(10), SAMPLER, sys.argv[1], all_layers=True, batch_size=4, progress=False)
except DiskFullError as error:
    print(error, file=sys.stderr)
    sys.exit(3)
"""


def test_on_a_real_small_disk_the_cache_is_refused_and_a_file_write_keeps_the_old_one(tmp_path):
    """A 128 KB tmpfs (needs root and mount; skipped elsewhere) and a 264 KB cache: the reservation meets a real
    ENOSPC. The extraction runs in a child process: without the reservation its first row written through the
    memory mapping dies of SIGBUS. Then an atomic write on the same full disk keeps the old file."""
    from videoadapt.utils.safe_io import atomic_write_bytes

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "128k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
        child = subprocess.run(
            [sys.executable, "-c", EXTRACT_ON_SMALL_DISK, str(disk / "cache")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 3, (child.returncode, child.stderr[-2000:])
        assert re.search(r"cache: the disk is full: writing it needs \d+\.\d MB", child.stderr), child.stderr
        assert not (disk / "cache" / "layout.json").exists() and not list((disk / "cache").glob("*.npy"))
        atomic_write_bytes(disk / "result.json", b"the good one")
        with pytest.raises(DiskFullError, match=r"result\.json: the disk is full: writing it needs 1\.0 MB"):
            atomic_write_bytes(disk / "result.json", b"x" * 1_000_000)
        assert (disk / "result.json").read_bytes() == b"the good one"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --- one writer per cache folder ----------------------------------------------------------------------------------


def _lock_of(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": socket.gethostname(), "started": time.time() - 60, "command": "extract"}
    (folder / LOCK_NAME).write_text(json.dumps(record))


def test_a_second_extraction_into_a_busy_cache_folder_is_refused_naming_the_holder(ilfm, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_of(tmp_path / "cache", holder.pid)
        counter = CountingEncoder(ilfm)
        try:
            with pytest.raises(FolderBusyError, match=rf"feature cache folder .* pid {holder.pid} on .*since .*"):
                extract(ilfm, make_data(6), tmp_path / "cache")
        finally:
            counter.restore()
        assert counter.videos == 0 and not (tmp_path / "cache" / "layout.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_cache_lock_is_taken_over_and_a_finished_cache_is_read_without_one(ilfm, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data = make_data(6)
    _lock_of(tmp_path / "cache", dead.pid)
    cache = extract(ilfm, data, tmp_path / "cache")
    assert f"taking over the lock of a process that no longer runs (pid {dead.pid}" in capsys.readouterr().err
    assert not (tmp_path / "cache" / LOCK_NAME).exists()
    same_features(cache, ilfm, data)
    # Reading a finished cache writes nothing: a holder (another job extracting elsewhere in it) does not block it.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_of(tmp_path / "cache", holder.pid)
        assert extract(ilfm, data, tmp_path / "cache").run_stats["encoded"] == 0
    finally:
        holder.kill()
        holder.wait()
