"""Command-line and config errors from issue 16: overrides anywhere among the flags, overrides of the wrong type as
one-line errors, and data paths a run folder keeps usable from any working directory."""

from __future__ import annotations

import pytest

from videoadapt.cli import build_parser, main, parse_command_line
from videoadapt.train import trainer as trainer_module


@pytest.fixture
def trained(monkeypatch):
    """``videoadapt train`` without training: the resolved config it would train on."""
    seen = {}

    def fake_train(config, out, resume=False):
        seen["config"] = config
        return {"steps": 0, "train": {"final_loss": 0.0}, "best": {"metrics": {}}}

    monkeypatch.setattr(trainer_module, "train", fake_train)
    return seen


# --- (d) overrides before, between and after flags ---------------------------------------------------------


def test_overrides_may_come_before_between_and_after_the_flags(tmp_path, trained):
    argv = ["train", "run.lr=1e-3", "--task", "recognition", "data.frames=4", "--out", str(tmp_path / "r")]
    argv += ["run.lr=5e-4"]
    args = parse_command_line(build_parser(), argv)
    assert args.overrides == ["run.lr=1e-3", "data.frames=4", "run.lr=5e-4"]  # command-line order: the last wins
    assert main(argv) == 0
    config = trained["config"]
    assert config.run.lr == pytest.approx(5e-4) and config.data.frames == 4 and config.run.task == "recognition"


def test_unknown_options_and_stray_words_are_still_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "run.lr=1e-3", "--out", str(tmp_path / "r"), "--bogus"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # eval takes no overrides
        main(["eval", "--run", str(tmp_path), "run.lr=1e-3"])
    assert "unrecognized arguments: run.lr=1e-3" in capsys.readouterr().err
