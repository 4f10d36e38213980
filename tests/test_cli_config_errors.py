"""Command-line and config errors from issue 16: overrides anywhere among the flags, overrides of the wrong type as
one-line errors, and data paths a run folder keeps usable from any working directory."""

from __future__ import annotations

import pytest

from videoadapt.cli import build_parser, main, parse_command_line

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


# --- (e) overrides of the wrong type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("run.max_steps=two", "run.max_steps must be a whole number (or null), got 'two'"),
        ("run.patience=soon", "run.patience must be a whole number (or null), got 'soon'"),
        ("run.eval_batch_size=[1]", "run.eval_batch_size must be a whole number (or null), got [1]"),
        ("data.frames=x", "data.frames must be a whole number, got 'x'"),
        ("run.epochs=1.5", "run.epochs must be a whole number, got 1.5"),
        ("run.epochs=null", "run.epochs must be a whole number, got None"),
        ("run.weight_decay=lots", "run.weight_decay must be a number, got 'lots'"),
        ("run.clip_grad=true", "run.clip_grad must be a number (or null), got True"),
        ("run.cpu=maybe", "run.cpu must be true or false, got 'maybe'"),
        ("run.betas=0.9", "run.betas must be a list of 2 numbers, got 0.9"),
        ("run.betas=[0.9,x]", "run.betas must be a list of 2 numbers, got [0.9, 'x']"),
        ("run.lr=fast", "run.lr must be a positive, finite learning rate, got 'fast'"),
        ("run.backbone_lr=slow", "run.backbone_lr must be a positive, finite learning rate, got 'slow'"),
    ],
)
def test_an_override_of_the_wrong_type_is_a_one_line_error(tmp_path, trained, capsys, override, message):
    assert main(["train", "--out", str(tmp_path / "r"), override]) == 2
    err = capsys.readouterr().err
    assert err == f"videoadapt train: error: {message}\n"
    assert "config" not in trained  # refused before training


def test_values_of_the_right_type_still_load(tmp_path, trained):
    overrides = ["run.max_steps=null", "run.epochs=2.0", "run.cpu=1", "run.progress=off", "run.clip_grad=null"]
    overrides += ["run.worker_timeout=0.5", "run.betas=[0.8,0.99]", "run.patience=3", "run.backbone_lr=1e-5"]
    assert main(["train", "--out", str(tmp_path / "r"), *overrides]) == 0
    run = trained["config"].run
    assert run.max_steps is None and run.epochs == 2 and isinstance(run.epochs, int)
    assert run.cpu is True and run.progress is False and run.clip_grad is None and run.worker_timeout == 0.5
    assert list(run.betas) == [0.8, 0.99] and run.patience == 3 and run.backbone_lr == pytest.approx(1e-5)


def test_an_override_yaml_cannot_read_is_named_in_a_one_line_error(tmp_path, trained, capsys):
    # A text holding ": " is a mapping to YAML: the error names the key and says to quote, with no traceback.
    assert main(["train", "--out", str(tmp_path / "r"), "model.mllm.template=<video> say\nCaption: x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videoadapt train: error: override model.mllm.template: its value is not valid YAML (")
    assert "quote the whole value" in err and err.count("\n") == 1 and "config" not in trained
    quoted = 'model.mllm.template="<video> say\\nCaption: x"'  # double-quoted YAML reads \n as a line break
    from videoadapt.model.config import load_config

    config = load_config(overrides=[quoted])
    assert config.model.mllm.template == "<video> say\nCaption: x"


def test_a_config_file_yaml_cannot_read_is_named_in_a_one_line_error(tmp_path, trained, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {paradigm: lora\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"videoadapt train: error: {bad}: not valid YAML: ") and "line 2" in err
    assert err.count("\n") == 1 and "config" not in trained


# --- (b) relative data paths in a run's config.yaml ---------------------------------------------------------


def test_a_run_keeps_absolute_data_paths_so_eval_works_from_elsewhere(tmp_path, monkeypatch, capsys):
    from videoadapt.model.config import load_config

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(work)
    assert main(["synth", "--out", "sets/sw", "--videos", "20", "--size", "32", "--frames", "8"]) == 0
    run = tmp_path / "run"
    argv = ["train", "--data", "synth:sets/sw", "--backbone", "hf-config:clip-tiny", "--out", str(run)]
    assert main([*argv, "data.frames=4", "run.batch_size=8", "run.max_steps=1", "run.progress=false"]) == 0
    saved = load_config(run / "config.yaml")
    assert saved.data.source == f"synth:{work / 'sets' / 'sw'}"
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--split", "test", "--json"]) == 0


def test_only_relative_paths_that_exist_become_absolute(tmp_path, monkeypatch):
    from videoadapt.model.config import absolute_data_paths, load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ann").mkdir()
    (tmp_path / "clips").mkdir()
    (tmp_path / "lengths.csv").write_text("id,length\n")
    options = ["data.options.video_dir=clips", "data.options.durations=lengths.csv", "data.options.qa=clips"]
    config = load_config(overrides=["data.source=charades_sta:ann", *options])
    saved = absolute_data_paths(config)
    assert saved.data.source == f"charades_sta:{tmp_path / 'ann'}"
    assert saved.data.options.video_dir == str(tmp_path / "clips")
    assert saved.data.options.durations == str(tmp_path / "lengths.csv")
    assert saved.data.options.qa == "clips"  # not a path option
    assert config.data.source == "charades_sta:ann"  # the config trained on is left as given
    for source in ("synth", "synth:missing/dir", "hf_grounding:org/name", f"kinetics:{tmp_path / 'ann'}"):
        config = load_config(overrides=[f"data.source={source}", "data.options.video_dir=elsewhere"])
        saved = absolute_data_paths(config)
        assert saved.data.source == source and saved.data.options.video_dir == "elsewhere"


def test_one_flag_convention_with_old_spellings_for_one_release(capsys):
    """Issue 16 (g): --batch-size everywhere; extract's and pretrain's former --batch still works, says so, and is
    gone from --help."""
    from videoadapt.cli import build_parser, parse_command_line

    parser = build_parser()
    for command in ("extract", "pretrain"):
        required = ["--backbone", "tiny", "--data", "synth", "--out", "x"] if command == "extract" else ["--out", "x"]
        new = parse_command_line(parser, [command, *required, "--batch-size", "3"])
        old = parse_command_line(parser, [command, *required, "--batch", "3"])
        assert new.batch_size == old.batch_size == 3
        assert "--batch is now --batch-size" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            parse_command_line(parser, [command, "--help"])
        shown = capsys.readouterr().out
        assert "--batch-size" in shown and "--batch " not in shown
