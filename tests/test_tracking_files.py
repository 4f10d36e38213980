"""Tracking prediction files (TAO result json) and `videoadapt score --task tracking`."""

from __future__ import annotations

import json

import pytest

from test_formats_tracking import TAO, write_mot, write_tao
from videoadapt.cli import main
from videoadapt.commands.score import score_files
from videoadapt.data.formats import load_task_data
from videoadapt.errors import InputFileError
from videoadapt.metrics.prediction_files import Items
from videoadapt.metrics.tracking import TrackedBox, tracking_metrics
from videoadapt.metrics.tracking_files import read_tracking_predictions, tracking_ids, write_tracking_predictions


def perfect(data):
    """Every ground-truth box as a prediction of its own track and category."""
    out = {}
    for item in data.items:
        tracks = item.tracks
        out[item.video.video_id] = [
            TrackedBox(f, t.track_id, t.category, b) for t in tracks for f, b in zip(t.frames, t.boxes, strict=True)
        ]
    return out


def test_tao_round_trip_uses_the_jsons_ids(tmp_path):
    data = load_task_data(write_tao(tmp_path, TAO), "val", "tracking")
    boxes = perfect(data)
    boxes["val/YFCC/v_a"].append(TrackedBox(3, 50, "cat", (0.0, 0.0, 5.0, 5.0), 0.2))  # frame 3: no image, not written
    out = tmp_path / "results.json"
    assert write_tracking_predictions(out, boxes, data) == 4
    entries = json.loads(out.read_text())
    assert entries[0] == {
        "video_id": 1,
        "image_id": 11,
        "category_id": 3,
        "track_id": 7,
        "bbox": [1.0, 2.0, 10.0, 20.0],
        "score": 1.0,
    }
    back = read_tracking_predictions(out, data)
    assert back == perfect(data)
    result = score_files("tracking", out, tmp_path / "validation.json", split="val")
    assert result["metrics"]["teta"] == pytest.approx(100.0)
    assert result["metrics"]["hota_novel"] == pytest.approx(100.0)  # aardvark: LVIS rare
    assert result["counts"]["boxes"] == 4


def test_numbered_ids_for_other_ground_truth(tmp_path):
    spec = write_mot(tmp_path)
    data = load_task_data(spec, "train", "tracking")
    ids = tracking_ids(data)
    assert ids.videos == {"MOT17-02": 1} and ids.categories == {"pedestrian": 1}
    assert ids.images["MOT17-02"] == {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}  # every frame, numbered from 1
    out = tmp_path / "pred.json"
    write_tracking_predictions(out, perfect(data), data)
    assert json.loads(out.read_text())[0]["image_id"] == 1
    assert score_files("tracking", out, spec, split="train")["metrics"]["idf1"] == pytest.approx(100.0)


@pytest.mark.parametrize("text", ["", "  \n", "[]"])
def test_empty_prediction_file_scores_zero(tmp_path, text):
    (tmp_path / "empty.json").write_text(text)
    write_tao(tmp_path, TAO)
    result = score_files("tracking", tmp_path / "empty.json", tmp_path / "validation.json")
    assert result["metrics"]["teta"] == 0.0 and result["metrics"]["hota"] == 0.0
    assert result["counts"]["boxes"] == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image_id": 99, "category_id": 3, "track_id": 1, "bbox": [0, 0, 1, 1]}, "unknown image_id 99"),
        ({"image_id": 11, "category_id": 4, "track_id": 1, "bbox": [0, 0, 1, 1]}, "unknown category_id 4"),
        ({"video_id": 8, "image_id": 11, "category_id": 3, "track_id": 1, "bbox": [0, 0, 1, 1]}, "unknown video_id"),
        ({"video_id": 2, "image_id": 11, "category_id": 3, "track_id": 1, "bbox": [0, 0, 1, 1]}, "not of video_id 2"),
        ({"image_id": 11, "category_id": 3, "track_id": 1, "bbox": [0, 0, -1, 1]}, "negative width"),
        ({"image_id": 11, "category_id": 3, "track_id": "a", "bbox": [0, 0, 1, 1]}, "track_id 'a'"),
        ({"image_id": 11, "category_id": 3, "bbox": [0, 0, 1, 1]}, "missing track_id"),
    ],
)
def test_bad_entries_name_file_and_entry_or_are_skipped(tmp_path, entry, message):
    data = load_task_data(write_tao(tmp_path, TAO), "val", "tracking")
    good = {"image_id": 12, "category_id": 3, "track_id": 7, "bbox": [3, 2, 10, 20], "score": 0.5}
    (tmp_path / "pred.json").write_text(json.dumps([good, entry]))
    with pytest.raises(InputFileError, match=message) as error:
        read_tracking_predictions(tmp_path / "pred.json", data)
    assert "pred.json" in str(error.value) and "[1]" in str(error.value)
    items = Items(skip_bad=True)
    assert len(read_tracking_predictions(tmp_path / "pred.json", data, items)["val/YFCC/v_a"]) == 1
    assert len(items.skipped) == 1


def test_score_command_prints_tracking_figures(tmp_path, capsys):
    data = load_task_data(write_tao(tmp_path, TAO), "val", "tracking")
    boxes = perfect(data)
    boxes["val/YFCC/v_b"] = []  # the bus of video b missed
    write_tracking_predictions(tmp_path / "pred.json", boxes, data)
    gt = str(tmp_path / "validation.json")
    assert main(["score", "--task", "tracking", "--pred", str(tmp_path / "pred.json"), "--gt", gt, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = tracking_metrics(data.items, boxes, data.classes, data.extra["novel_categories"])
    assert printed["metrics"] == pytest.approx(expected)
    assert 0 < printed["metrics"]["teta_base"] < 100 and printed["metrics"]["teta_novel"] == pytest.approx(100)
    assert main(["score", "--task", "tracking", "--pred", str(tmp_path / "pred.json"), "--gt", gt]) == 0
    assert "teta" in capsys.readouterr().out
