"""Issue 19, item 6: an output that cannot be written (a file where a folder is expected, under a file, a folder
without write permission) fails before any work starts, in one line naming the path — not a traceback after the
work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videoadapt.cli import main
from videoadapt.errors import VideoadaptError
from videoadapt.utils.safe_io import writable_folder

SMALL = ["data.options.videos=40", "data.options.size=32", "run.max_steps=1", "run.progress=false"]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--task", "recognition", "--out", "{out}", *SMALL],
        ["extract", "--backbone", "tiny", "--data", "synth", "--data-option", "videos=40", "--out", "{out}"],
        ["bench", "--preset", "micro", "--out", "{out}", "--tables", "recognition", "--steps", "1"],
        ["synth", "--out", "{out}", "--videos", "4"],
        ["pretrain", "--out", "{out}", "--steps", "1"],
    ],
    ids=lambda c: c[0],
)
@pytest.mark.parametrize("where", ["the file itself", "under the file"])
def test_an_output_folder_that_is_a_file_is_refused_at_once(command, where, a_file, capsys):
    out = a_file if where == "the file itself" else a_file / "run"
    assert main([w.replace("{out}", str(out)) for w in command]) == 2
    error = capsys.readouterr().err
    assert f"{a_file} is a file" in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_eval_checks_where_it_will_save_predictions_before_scoring(tmp_path, a_file, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "recognition", "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--save-predictions", str(a_file / "pred")]) == 2
    assert f"--save-predictions {a_file / 'pred'}: {a_file} is a file" in capsys.readouterr().err
    assert not (run / "eval-test.json").exists()  # nothing was scored
    assert main(["eval", "--run", str(run), "--save-predictions", str(tmp_path / "pred"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"]


def test_a_folder_without_write_permission_is_named(tmp_path, monkeypatch):
    # As root every folder is writable; the refusal the disk would give is injected instead.
    def refuse(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(VideoadaptError, match=r"run folder .*out: cannot write there \(Permission denied\)"):
        writable_folder(tmp_path / "out", "run folder")
