"""metrics/prediction_files: every writer's text reads back as what was written, and for every task the files
``score_documents`` writes (``eval --save-predictions``) give, through ``score``, the task's own ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videoadapt.commands.score import score_files
from videoadapt.data.formats import load_task_data
from videoadapt.errors import InputFileError
from videoadapt.metrics import prediction_files as pf
from videoadapt.tasks import build_task


def _write(folder: Path, documents: dict[str, str]) -> tuple[Path, Path]:
    """The documents as files; (predictions, ground truth)."""
    for name, text in documents.items():
        (folder / name).write_text(text, encoding="utf-8")
    pred, gt = sorted(folder / name for name in documents)[::-1]  # predictions.* sorts after ground_truth.*
    return pred, gt


# --- round trips: write, then read gives the same -------------------------------------------------------------


def test_recognition_round_trip(tmp_path):
    classes = ["jump", "run", "swim"]
    scores = {"a": [0.1, 2.5, -1.0], "b": [3.0, 0.0, 0.25], "c": [0.0, 0.0, 1e-300]}
    labels = {"a": "run", "b": 2, "c": "swim"}
    pred, gt = _write(
        tmp_path,
        pf.documents(
            pf.recognition_predictions_text(scores, classes), pf.recognition_ground_truth_text(labels, classes)
        ),
    )
    read = pf.read_recognition(pred, gt, pf.Items())
    assert read.ids == ["a", "b", "c"] and read.classes == 3 and not read.hard
    np.testing.assert_array_equal(read.scores, np.array(list(scores.values())))
    np.testing.assert_array_equal(read.targets, [1, 2, 2])
    # hard labels
    pred.write_text(pf.recognition_predictions_text(labels={"a": "jump", "b": 2, "c": "swim"}))
    hard = pf.read_recognition(pred, gt, pf.Items())
    assert hard.hard
    np.testing.assert_array_equal(hard.scores.argmax(axis=1), [0, 2, 2])


def test_retrieval_round_trip(tmp_path):
    similarity = np.random.default_rng(0).normal(size=(5, 3))
    texts, videos = ["t0", "t1", "t2", "t3", "t4"], ["v0", "v1", "v2"]
    text_to_video = {"t0": "v0", "t1": "v0", "t2": "v1", "t3": "v2", "t4": "v2"}
    pred, gt = _write(
        tmp_path,
        pf.documents(
            pf.retrieval_predictions_text(texts, videos, similarity),
            pf.retrieval_ground_truth_text(text_to_video, videos),
        ),
    )
    read = pf.read_retrieval(pred, gt, pf.Items())
    assert read.texts == texts and read.videos == videos and read.captioned == 3
    np.testing.assert_array_equal(read.similarity, similarity)  # JSON floats are exact
    np.testing.assert_array_equal(read.targets, [0, 0, 1, 2, 2])


def test_qa_round_trip(tmp_path):
    questions = {
        "q1": {"question": "which?", "candidates": ["a red cube", "a blue ball"], "answer_index": 1},
        "q2": {"question": "which one?", "candidates": ["one", "two"], "answer_index": 0},
    }
    pred, gt = _write(
        tmp_path, pf.documents(pf.qa_predictions_text({"q1": 1, "q2": 1}), pf.qa_ground_truth_text(questions))
    )
    read = pf.read_qa(pred, gt, pf.Items())
    assert (read.mode, read.ids, read.predicted, read.gold) == ("multiple_choice", ["q1", "q2"], [1, 1], [1, 0])
    open_ended = {"q1": {"question": "how many?", "answer": "2"}, "q2": {"question": "what?", "answer": "guitar"}}
    pred, gt = _write(
        tmp_path,
        pf.documents(pf.qa_predictions_text({"q1": "two", "q2": "guitar"}), pf.qa_ground_truth_text(open_ended)),
    )
    read = pf.read_qa(pred, gt, pf.Items())
    assert (read.mode, read.predicted, read.gold) == ("open_ended", ["two", "guitar"], ["2", "guitar"])


def test_captioning_round_trip(tmp_path):
    captions = {"a": "a man plays a guitar", "b": "a dog runs"}
    references = {"a": ["A man is playing a guitar.", "Someone plays."], "b": ["A dog is running."]}
    pred, gt = _write(
        tmp_path, pf.documents(pf.captioning_predictions_text(captions), pf.captioning_ground_truth_text(references))
    )
    assert pf.read_captioning(pred, gt, pf.Items()) == (captions, references)


def test_moment_round_trip(tmp_path):
    data = load_task_data("synth", "test", "temporal_grounding", videos=24, size=32, frames=8)
    items = data.items[:3]
    predictions = {
        item.query_id: {
            "query": item.query,
            "vid": item.video.video_id,
            "windows": [(0.0, item.duration / 2, 0.9), (0.25, item.duration, 0.1)],
            "saliency": None,
        }
        for item in items
    }
    pred = tmp_path / "predictions.jsonl"
    pred.write_text(pf.moment_predictions_text(predictions))
    assert pf.read_moment_predictions(pred, pf.durations_of(items)) == predictions
    gt = tmp_path / "ground_truth.jsonl"
    gt.write_text(pf.moment_ground_truth_text(items))
    back = load_task_data(f"qvhighlights:{gt}", "test", "temporal_grounding").items
    assert [(i.query_id, i.query, i.video.video_id) for i in back] == [
        (i.query_id, i.query, i.video.video_id) for i in items
    ]
    assert [tuple(map(tuple, i.windows)) for i in back] == [tuple(map(tuple, i.windows)) for i in items]
    assert [i.duration for i in back] == pytest.approx([i.duration for i in items])


def test_moment_ground_truth_keeps_the_annotators_saliency(tmp_path):
    rows = [
        {"qid": 7, "query": "a man talks", "duration": 10, "vid": "v1", "relevant_windows": [[2, 6]],
         "relevant_clip_ids": [1, 2], "saliency_scores": [[4, 2, 1], [3, 4, 4]]},
        {"qid": "x9", "query": "a dog runs", "duration": 8, "vid": "v2", "relevant_windows": [[0, 4], [6, 8]],
         "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 1, 1], [4, 4, 4]]},
    ]  # fmt: skip
    source = tmp_path / "source.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_task_data(f"qvhighlights:{source}", "val", "temporal_grounding")
    written = tmp_path / "ground_truth.jsonl"
    written.write_text(pf.moment_ground_truth_text(data.items, data.extra["saliency_annotators"]))
    assert [json.loads(line) for line in written.read_text().splitlines()] == [
        {**r, "relevant_windows": [[float(v) for v in w] for w in r["relevant_windows"]]} for r in rows
    ]
    back = load_task_data(f"qvhighlights:{written}", "val", "temporal_grounding")
    assert back.extra["saliency_annotators"] == data.extra["saliency_annotators"]
    assert [(i.query_id, i.windows, i.saliency) for i in back.items] == [
        (i.query_id, i.windows, i.saliency) for i in data.items
    ]


def test_stvg_round_trip_and_a_ground_truth_span_that_is_not_its_boxes(tmp_path):
    data = load_task_data("synth", "test", "st_grounding", videos=24, size=32, frames=8)
    tubes = {i.query_id: pf.stvg_tube_of(i) for i in data.items[:3]}
    pred, gt = tmp_path / "predictions.json", tmp_path / "ground_truth.json"
    pred.write_text(pf.stvg_predictions_text(tubes))
    gt.write_text(pf.stvg_ground_truth_text(tubes))
    bare = {q: {"span": t["span"], "boxes": t["boxes"]} for q, t in tubes.items()}
    assert pf.read_stvg_predictions(pred) == bare
    assert pf.read_stvg_ground_truth(gt) == bare
    assert {q: e["query"] for q, e in json.loads(gt.read_text()).items()} == {q: t["query"] for q, t in tubes.items()}
    first = next(iter(tubes))
    document = json.loads(gt.read_text())
    document[first]["span"][1] += 1  # one frame past its last box
    gt.write_text(json.dumps(document))
    with pytest.raises(InputFileError, match=rf"ground_truth\.json.*{first!r}.*not the first and last frame"):
        pf.read_stvg_ground_truth(gt)


# --- eval --save-predictions -> score == evaluate ---------------------------------------------------------------


def test_retrieval_documents_score_as_the_task_evaluates(tmp_path):
    task = build_task("retrieval")
    data = load_task_data("synth", "test", "retrieval", videos=24, size=32, frames=8)
    generator = torch.Generator().manual_seed(0)
    predictions = []
    for item in data.items:
        count = len(item.captions)
        predictions.append(
            {"video": torch.randn(8, generator=generator), "texts": torch.randn(count, 8, generator=generator)}
        )
    expected = task.evaluate(predictions, data)
    documents = task.score_documents(predictions, data)
    assert set(documents) == {"predictions.json", "ground_truth.json"}
    pred, gt = _write(tmp_path, documents)
    scored = score_files("retrieval", pred, gt)
    assert scored["metrics"] == pytest.approx(expected)
    assert scored["counts"]["videos"] == len(data.items) and scored["skipped"] == 0


def test_st_grounding_documents_score_as_the_task_evaluates(tmp_path):
    task = build_task("st_grounding")
    data = load_task_data("synth", "test", "st_grounding")  # what --gt synth reads
    rng = np.random.default_rng(0)
    predictions = []
    for item in data.items:
        frames, boxes = item.tube.frames, item.tube.boxes
        shift = int(rng.integers(-2, 3))
        start = max(0, frames[0] + shift)
        end = max(start, frames[-1] + int(rng.integers(-2, 3)))
        moved = {}
        for f in range(max(end, frames[-1]) + 1):
            x1, y1, x2, y2 = boxes[min(range(len(frames)), key=lambda k: abs(frames[k] - f))]
            dx = float(rng.uniform(-2, 2))
            moved[f] = [max(0.0, x1 + dx), y1, x2 + dx + 1.0, y2]
        predictions.append({"start": start, "end": end, "boxes": moved})
    expected = task.evaluate(predictions, data)
    assert 0 < expected["m_vIoU"] < 100
    documents = task.score_documents(predictions, data)
    assert set(documents) == {"predictions.json", "ground_truth.json"}
    pred, gt = _write(tmp_path, documents)
    assert score_files("st_grounding", pred, gt)["metrics"] == pytest.approx(expected)
    assert score_files("st_grounding", pred, "synth")["metrics"] == pytest.approx(expected)  # the data set itself
