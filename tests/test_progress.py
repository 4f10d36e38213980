"""Progress on a stderr that is not a terminal: plain lines a log file can hold, not a live bar."""

from __future__ import annotations

import io

from videoadapt.utils.progress import LineProgress, make_progress


def test_line_progress_writes_plain_lines_with_count_and_info():
    stream = io.StringIO()
    with LineProgress(every=0.0, stream=stream) as progress:
        task = progress.add_task("train recognition", total=4, info="")
        progress.update(task, completed=1, info="loss 0.5000 · 10.0 clips/s")
        progress.advance(task)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("train recognition 1/4 (25%) · 0:00:00 elapsed")
    assert lines[0].endswith("loss 0.5000 · 10.0 clips/s")
    assert lines[1].startswith("train recognition 2/4 (50%)")
    assert lines[-1].startswith("train recognition 2/4 (50%)")  # the closing line
    assert "\x1b" not in stream.getvalue()  # no terminal control codes in a log


def test_line_progress_waits_between_lines():
    stream = io.StringIO()
    with LineProgress(every=3600.0, stream=stream) as progress:
        task = progress.add_task("extract", total=100, info="")
        for _ in range(100):
            progress.advance(task)
    assert stream.getvalue().splitlines() == ["extract 100/100 (100%) · 0:00:00 elapsed"]


def test_make_progress_picks_lines_for_a_log_file(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(make_progress(), LineProgress)
    assert not isinstance(make_progress(disable=True), LineProgress)
