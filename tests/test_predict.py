"""`videoadapt predict` and the Predictor (issue 16): a trained run answers on new videos — real clips (the ASL
fixtures, Matroska, 640x480), folders of them, frame arrays — and agrees with the evaluation path on the same
frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_trainer import TINY
from videoadapt.cli import main
from videoadapt.data.formats import load_task_data
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.inference.predictor import Predictor, video_files
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.build import load_run
from videoadapt.model.config import sampler_specs
from videoadapt.model.data import load_split

ASL = Path(__file__).resolve().parent / "fixtures" / "asl"
CLIPS = sorted(ASL.glob("*.mkv"))


def _train(root: Path, task: str, *extra: str) -> Path:
    run = root / task
    assert main(["train", "--task", task, "--out", str(run), *TINY, "run.max_steps=2", *extra]) == 0
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    grounding = ["model.head.hidden=32", "model.head.layers=1"]
    return {
        "recognition": _train(root, "recognition"),
        "retrieval": _train(root, "retrieval"),
        "qa": _train(root, "qa"),
        "temporal_grounding": _train(root, "temporal_grounding", *grounding),
    }


def test_a_frame_array_gets_the_prediction_the_evaluation_path_gives(runs):
    """The same frames through the Predictor and through the batches eval builds give the same class scores."""
    run = runs["recognition"]
    loaded = load_run(run)
    data = load_split(loaded.config, "test")
    predictor = Predictor(run, device="cpu")
    item = data.items[0]
    frames = data.source.frames(item.video, None)  # every frame; the predictor samples as eval does
    answer = predictor.predict(frames)
    model = loaded.model.eval()
    builder = BatchBuilder(
        data, model.task, model.encoder.ilfm.processor, sampler_from_spec(sampler_specs(loaded.config)[1]), train=False
    )
    scores = model.predict(builder.build([0]))[0]
    probabilities = torch.as_tensor(scores).softmax(-1)
    top = answer["predictions"][0]["top_k"]
    classes = data.classes
    assert top[0]["label"] == classes[int(probabilities.argmax())]
    assert top[0]["probability"] == pytest.approx(float(probabilities.max()), abs=1e-5)
    assert len(top) == 5 and all(a["probability"] >= b["probability"] for a, b in zip(top, top[1:], strict=False))
    assert answer["frames"] == sorted(answer["frames"]) and len(answer["frames"]) == 4  # data.frames=4


def test_predict_command_on_real_clips_and_a_folder(runs, tmp_path, capsys):
    run = runs["recognition"]
    folder = tmp_path / "clips"
    folder.mkdir()
    for clip in CLIPS:
        shutil.copy(clip, folder / clip.name)
    (folder / "notes.txt").write_text("not a video")  # ignored: not a video extension
    assert main(["predict", "--run", str(run), str(CLIPS[0]), str(folder), "--top-k", "3", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    classes = load_run(run).model.head.spec["classes"]
    assert output["task"] == "recognition" and len(output["videos"]) == 1 + len(CLIPS)
    for result in output["videos"]:
        assert len(result["predictions"][0]["top_k"]) == 3
        assert {p["label"] for p in result["predictions"][0]["top_k"]} <= set(classes)
    # Readable output too.
    assert main(["predict", "--run", str(run), str(CLIPS[0])]) == 0
    text = capsys.readouterr().out
    assert CLIPS[0].name in text and "%" in text


def test_a_broken_video_is_reported_and_the_others_go_on(runs, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(CLIPS[0], folder / "good.mkv")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    assert main(["predict", "--run", str(runs["recognition"]), str(folder), "--json"]) == 0
    results = {Path(r["video"]).name: r for r in json.loads(capsys.readouterr().out)["videos"]}
    assert "predictions" in results["good.mkv"]
    assert "broken.mp4" in results["broken.mp4"]["error"]


def test_bad_paths_and_requests_are_clear_errors(runs, tmp_path, capsys):
    assert main(["predict", "--run", str(runs["recognition"]), str(tmp_path / "absent.mp4")]) == 2
    assert "absent.mp4: no such file or folder" in capsys.readouterr().err
    assert main(["predict", "--run", str(runs["recognition"]), str(tmp_path)]) == 2
    assert "no video file in this folder" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path), str(CLIPS[0])]) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert main(["predict", "--run", str(runs["recognition"]), str(CLIPS[0]), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    # A QA run needs a question; a retrieval run needs texts.
    assert main(["predict", "--run", str(runs["qa"]), str(CLIPS[0]), "--json"]) == 1
    assert "give the question" in json.loads(capsys.readouterr().out)["videos"][0]["error"]
    assert main(["predict", "--run", str(runs["retrieval"]), str(CLIPS[0]), "--json"]) == 1
    assert "give the texts" in json.loads(capsys.readouterr().out)["videos"][0]["error"]
    with pytest.raises(Exception, match="uint8 array"):
        Predictor(runs["recognition"]).predict(np.zeros((4, 8, 8), np.uint8))


def test_retrieval_ranks_texts_per_video_and_videos_per_text(runs, capsys):
    texts = ["a red circle moves left", "a blue square grows", "nothing happens"]
    args = ["predict", "--run", str(runs["retrieval"]), *map(str, CLIPS), "--json"]
    assert main([*args, *(x for t in texts for x in ("--text", t))]) == 0
    output = json.loads(capsys.readouterr().out)
    for result in output["videos"]:
        ranked = result["predictions"][0]["texts"]
        assert sorted(t["text"] for t in ranked) == sorted(texts)
        assert all(a["similarity"] >= b["similarity"] for a, b in zip(ranked, ranked[1:], strict=False))
    # The videos ranked for each text use the same similarities as the per-video lists.
    for text, rows in output["ranking"].items():
        assert len(rows) == len(CLIPS)
        for row in rows:
            per_video = next(r for r in output["videos"] if r["video"] == row["video"])
            match = next(t for t in per_video["predictions"][0]["texts"] if t["text"] == text)
            assert match["similarity"] == pytest.approx(row["similarity"])


def test_qa_answers_one_of_the_choices_or_the_vocabulary(runs):
    predictor = Predictor(runs["qa"])
    data = load_task_data("synth", "test", "qa", videos=40, size=32, frames=8)
    item = data.items[0]
    frames = data.source.frames(item.video, None)
    answer = predictor.predict(frames, question=item.question, choices=item.candidates)["predictions"][0]
    if predictor.spec["mode"] == "multiple_choice":
        assert answer["answer"] == item.candidates[answer["choice"]]
    else:
        assert answer["answer"] in predictor.spec["answers"]


def test_temporal_grounding_moments_lie_inside_the_clip(runs):
    predictor = Predictor(runs["temporal_grounding"])
    result = predictor.predict(CLIPS[0], texts=["a hand moves", "the signer stops"], top_k=3)
    duration = 1.566  # the clip's length in seconds (container duration)
    assert len(result["predictions"]) == 2
    for prediction in result["predictions"]:
        assert 1 <= len(prediction["moments"]) <= 3
        for moment in prediction["moments"]:
            assert 0.0 <= moment["start_s"] <= moment["end_s"] <= duration + 0.05


def test_video_files_takes_folders_in_name_order(tmp_path):
    for name in ("b.webm", "a.mkv", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in video_files([tmp_path])] == ["a.mkv", "b.webm"]


def test_a_run_folder_from_another_version_is_named_or_loads(runs, tmp_path):
    """A run written before a setting existed loads with the setting's default; a setting this version does not
    know, a head description that does not fit and weights of another run are errors naming the file."""
    old = tmp_path / "old"
    shutil.copytree(runs["recognition"], old)
    text = (old / "config.yaml").read_text()
    (old / "config.yaml").write_text("\n".join(l for l in text.splitlines() if "check_videos" not in l) + "\n")
    assert "check_videos" not in (old / "config.yaml").read_text()
    assert Predictor(old).predict(CLIPS[0])["predictions"][0]["top_k"]
    (old / "config.yaml").write_text(text.replace("run:\n", "run:\n  retired_setting: 3\n", 1))
    with pytest.raises(Exception, match=r"config\.yaml.*retired_setting.*another videoadapt version"):
        Predictor(old)
    (old / "config.yaml").write_text(text)
    spec = json.loads((old / "vocabulary.json").read_text())
    (old / "vocabulary.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "classes"}))
    with pytest.raises(Exception, match=r"vocabulary\.json: cannot rebuild the task head"):
        Predictor(old)
    (old / "vocabulary.json").write_text(json.dumps(spec))
    shutil.copy(runs["retrieval"] / "model.safetensors", old / "model.safetensors")
    with pytest.raises(Exception, match=r"model\.safetensors: .*weights of another run"):
        Predictor(old)


def test_tracks_and_instances_read_as_lines_and_an_empty_answer_says_so():
    from videoadapt.commands.predict import render

    tracks = {"tracks": [{"track_id": 3, "category": "star", "start_s": 0.25, "end_s": 1.0, "boxes": {2: [], 3: []}}]}
    instances = {
        "instances": [{"category": "heart", "score": 0.5, "start_s": 0.0, "end_s": 0.5, "masks": {0: {}, 1: {}}}]
    }
    base = {"video": "a.mp4", "seconds": 0.1}
    line = render({**base, "predictions": [tracks]}).splitlines()[1]
    assert line == "  track 3: star, 0.25-1.00 s, a box on 2 frames"
    assert render({**base, "predictions": [instances]}).splitlines()[1] == (
        "  heart (score 0.500): a mask on 2 frames, 0.00-0.50 s"
    )
    assert "no track" in render({**base, "predictions": [{"tracks": []}]})
    assert "no instance" in render({**base, "predictions": [{"instances": []}]})
