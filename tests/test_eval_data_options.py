"""`videoadapt eval --data-option`: a run scored on its data with some options changed (SynthWorld's larger test
split of the same world), kept apart from the run's own evaluation."""

from __future__ import annotations

import json

import pytest

from videoadapt.cli import main

DATA = ["data.options.videos=40", "data.options.size=32", "data.options.frames=8", "data.frames=4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-options") / "run"
    argv = ["train", "--task", "recognition", "--backbone", "hf-config:clip-tiny", "--out", str(out), *DATA]
    assert main([*argv, "run.batch_size=8", "run.max_steps=1", "run.progress=false"]) == 0
    return out


def test_a_larger_synthworld_test_split_holds_the_runs_own_test_videos(run, tmp_path, capsys):
    assert main(["eval", "--run", str(run), "--json", "--save-predictions", str(tmp_path / "own")]) == 0
    own = json.loads(capsys.readouterr().out)
    argv = ["eval", "--run", str(run), "--json", "--data-option", "videos=80"]
    assert main([*argv, "--save-predictions", str(tmp_path / "big")]) == 0
    big = json.loads(capsys.readouterr().out)
    assert own["items"] < big["items"] and big["data_options"] == {"videos": 80} and "data_options" not in own
    # Written beside the run's own evaluation, which keeps its figures.
    assert json.loads((run / "eval-test.json").read_text())["items"] == own["items"]
    assert json.loads((run / "eval-test+videos=80.json").read_text())["items"] == big["items"]
    # Video i of the split is the same video: the run's test videos get the same scores.
    small = json.loads((tmp_path / "own" / "predictions.json").read_text())
    large = json.loads((tmp_path / "big" / "predictions.json").read_text())
    assert small["classes"] == large["classes"] and small["scores"]
    assert all(large["scores"][video] == scores for video, scores in small["scores"].items())


def test_the_file_name_of_options_holds_no_folders():
    from videoadapt.inference.evaluate import options_suffix

    assert options_suffix({"videos": 80, "video_dir": "/x/my clips"}) == "+video_dir=_x_my_clips+videos=80"


@pytest.mark.parametrize(
    ("option", "message"),
    [("videos", "--data-option expects KEY=VALUE, got 'videos'"), ("videos=0", "videos must be at least 1, got 0")],
)
def test_a_bad_data_option_is_a_one_line_error(run, capsys, option, message):
    assert main(["eval", "--run", str(run), "--data-option", option]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
