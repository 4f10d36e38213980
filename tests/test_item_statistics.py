"""Per-item statistics of every task: their column sums give, through ``metrics_from_sums``, exactly what
``evaluate`` reports (realistic predictions from a model on SynthWorld, rounded so that ties occur), they cover the
bench's survey columns and R@sum, ``metrics_from_sums`` is vectorised over resamples, and ``item_records`` are
one JSON-able record per resampling unit. Backbone: ``hf-config:clip-tiny`` (random, 32 px)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import ClassificationItem, TaskData, VideoRef
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.loading import load_backbone
from videoadapt.metrics.bootstrap import bootstrap_metrics, resample_weights, sums
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import TextEncoder, build_task, feature_widths

SYNTH = {"videos": 200, "size": 32, "frames": 8}
FRAMES = 4
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer/METEOR need Java")


def model_predictions(task_name: str, head: dict, test: TaskData, train: TaskData) -> list:
    torch.manual_seed(0)
    ilfm = load_backbone("hf-config:clip-tiny")
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": {"temporal": "mean"}})
    feature_widths(encoder, FRAMES)
    task = build_task(task_name, **head)
    model = TaskModel(encoder, task.build_head(ilfm, encoder, train), task, TextEncoder(ilfm))
    model.eval()
    build = BatchBuilder(test, task, ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=False)
    out = []
    with torch.no_grad():
        for start in range(0, len(test), 16):
            out += model.predict(build.build(list(range(start, min(start + 16, len(test))))))
    return out


def assert_sums_give_evaluate(task_name: str, predictions: list, data: TaskData, **options) -> dict:
    task = build_task(task_name, **options)
    expected = task.evaluate(predictions, data)
    stats = task.item_statistics(predictions, data)
    rows = {v.shape[0] for v in stats.values()}
    assert len(rows) == 1 and all(v.ndim == 2 and v.dtype == np.float64 for v in stats.values())
    from_sums = task.metrics_from_sums(sums(stats))
    assert set(from_sums) <= set(expected)
    for key, value in from_sums.items():
        assert float(value) == pytest.approx(expected[key], abs=1e-9), key
    columns = {key for table in task.survey for _, key in table.columns}
    assert columns & set(expected) <= set(from_sums)
    # Vectorised: a stack of resampled sums gives each resample's metrics.
    weights = resample_weights(rows.pop(), 4, 0)
    stacked = bootstrap_metrics(stats, task.metrics_from_sums, weights)
    for row in range(4):
        one = task.metrics_from_sums({k: weights[row] @ v for k, v in stats.items()})
        for key in from_sums:
            np.testing.assert_allclose(stacked[key][row], one[key], rtol=1e-12)
    records = task.item_records(predictions, data)
    assert len(records) == len(weights[0]) and json.loads(json.dumps(records)) == records
    return {"stats": stats, "records": records, "metrics": expected, "from_sums": from_sums}


def rounded(scores: list[torch.Tensor], decimals: int) -> list[torch.Tensor]:
    return [torch.round(s * 10**decimals) / 10**decimals for s in scores]


@pytest.mark.parametrize("classifier", ["linear", "text"])
def test_recognition_sums_give_evaluate_with_ties_and_reversal_copies(classifier):
    test = load_task_data("synth", "test", "recognition", **SYNTH, reversal_copies=True)
    train = load_task_data("synth", "train", "recognition", **SYNTH)
    predictions = rounded(model_predictions("recognition", {"classifier": classifier}, test, train), 0)
    assert any(len(set(p.tolist())) < len(p) for p in predictions)  # ties occur
    out = assert_sums_give_evaluate("recognition", predictions, test)
    assert {"top1", "top5", "mean_class_accuracy", "reversal_top1", "reversal_pair_accuracy"} <= set(out["from_sums"])
    plain = load_task_data("synth", "test", "recognition", **SYNTH)
    out = assert_sums_give_evaluate("recognition", predictions[: len(plain)], plain)
    assert "reversal_pair_accuracy" not in out["from_sums"] and "reversal_top1" in out["from_sums"]


def test_recognition_with_fewer_than_five_classes_and_heavy_ties():
    rng = np.random.default_rng(1)
    items = [ClassificationItem(VideoRef(f"v{i}"), int(rng.integers(3))) for i in range(30)]
    data = TaskData("recognition", "test", items, None, "test", ["a", "b", "c"])  # type: ignore[arg-type]
    predictions = [torch.tensor(rng.integers(0, 2, size=3), dtype=torch.float32) for _ in items]
    out = assert_sums_give_evaluate("recognition", predictions, data)
    assert set(out["from_sums"]) == {"top1", "mean_class_accuracy"}


def test_mean_class_accuracy_counts_a_predicted_only_class_as_zero():
    """Labels 0, 0, 1; predictions 0, 2, 1: classes {0, 1, 2} are present, accuracies 1/2, 1, 0 -> 50 %."""
    items = [ClassificationItem(VideoRef(f"v{i}"), label) for i, label in enumerate([0, 0, 1])]
    data = TaskData("recognition", "test", items, None, "test", ["a", "b", "c"])  # type: ignore[arg-type]
    predictions = [torch.tensor(row, dtype=torch.float32) for row in ([1, 0, 0], [0, 0, 1], [0, 1, 0])]
    out = assert_sums_give_evaluate("recognition", predictions, data)
    assert float(out["from_sums"]["mean_class_accuracy"]) == pytest.approx(50.0)


def test_retrieval_sums_give_evaluate_with_ties():
    test = load_task_data("synth", "test", "retrieval", **SYNTH)
    train = load_task_data("synth", "train", "retrieval", **SYNTH)
    predictions = model_predictions("retrieval", {}, test, train)
    # Coarse embeddings make many captions tie with other videos.
    predictions = [
        {"video": torch.round(p["video"] * 2) / 2, "texts": torch.round(p["texts"] * 2) / 2} for p in predictions
    ]
    out = assert_sums_give_evaluate("retrieval", predictions, test)
    assert {"t2v_R1", "t2v_R5", "t2v_R10", "t2v_Rsum", "v2t_R1", "Rsum", "t2v_MnR"} <= set(out["from_sums"])
    assert "t2v_MdR" not in out["from_sums"]  # a median is no function of sums
    assert out["stats"]["t2v"][:, -1].sum() > sum(len(item.captions) for item in test.items)  # ties counted
    record = out["records"][0]
    assert len(record["t2v_ranks"]) == len(test.items[0].captions) and record["v2t_rank"] >= 1
    for record in out["records"]:  # the first-ranked item is the right one exactly when the rank is 1 (no tie)
        for rank, tied, top in zip(record["t2v_ranks"], record["t2v_tied"], record["t2v_top"], strict=True):
            if (rank, tied) == (1, 1):
                assert top == record["id"]
            if rank > 1:
                assert top != record["id"]
        if record["v2t_rank"] > 1:
            assert record["v2t_top"] != record["id"]
        elif record["v2t_tied"] == 1:
            assert record["v2t_top"] == record["id"]


def test_retrieval_records_rank_every_caption_on_the_full_gallery():
    """Two videos, three captions: caption 0 finds its video first, caption 1 ranks it second, caption 2 (video 1)
    ties with video 0. As a video-to-text query each video ties its own best caption with the other video's."""
    predictions = [
        {"video": torch.tensor([1.0, 0.0]), "texts": torch.tensor([[1.0, 0.0], [0.0, 1.0]])},
        {"video": torch.tensor([0.0, 1.0]), "texts": torch.tensor([[1.0, 1.0]])},
    ]
    items = [ClassificationItem(VideoRef("a"), 0), ClassificationItem(VideoRef("b"), 0)]
    data = TaskData("retrieval", "test", items, None, "test")  # type: ignore[arg-type]
    task = build_task("retrieval")
    records = task.item_records(predictions, data)
    assert records[0]["t2v_ranks"] == [1, 2] and records[0]["t2v_tied"] == [1, 1]
    assert records[0]["t2v_top"] == ["a", "b"] and records[1]["t2v_ranks"] == [1] and records[1]["t2v_tied"] == [2]
    assert [(r["v2t_rank"], r["v2t_tied"]) for r in records] == [(1, 2), (1, 2)]
    from_sums = task.metrics_from_sums(sums(task.item_statistics(predictions, data)))
    # t2v ranks {0}, {1}, {0, 1}: 2 of 4 ranks are rank 1; v2t ranks {0, 1}, {0, 1}: 2 of 4.
    assert float(from_sums["t2v_R1"]) == pytest.approx(50.0) and float(from_sums["v2t_R1"]) == pytest.approx(50.0)
    assert float(from_sums["t2v_MnR"]) == pytest.approx(1 + 2 / 4)


@pytest.mark.parametrize("qa", ["multiple_choice", "open_ended"])
def test_qa_sums_give_evaluate(qa):
    test = load_task_data("synth", "test", "qa", **SYNTH, qa=qa)
    rng = np.random.default_rng(3)
    if qa == "multiple_choice":
        predictions = [int(rng.integers(5)) if i % 3 else item.answer_index for i, item in enumerate(test.items)]
    else:  # right answers written differently (case, article, punctuation) must count after VQA normalisation
        predictions = [f"The {item.answer.upper()}." if i % 2 else "red" for i, item in enumerate(test.items)]
    out = assert_sums_give_evaluate("qa", predictions, test)
    assert 0 < float(out["from_sums"]["accuracy"]) < 100
    assert [r["correct"] for r in out["records"]] == [bool(v) for v in out["stats"]["correct"][:, 0]]


def test_a_wrong_number_of_predictions_is_named():
    test = load_task_data("synth", "test", "qa", **SYNTH)
    with pytest.raises(VideoadaptError, match=r"qa: 3 predictions for the \d+ items of .* expected one per item"):
        build_task("qa").item_statistics([0, 1, 2], test)


@needs_java
def test_captioning_sums_give_evaluate():
    test = load_task_data("synth", "test", "captioning", **SYNTH)
    words = "a the red blue small large circle star moves left right up grows while".split()
    rng = np.random.default_rng(4)
    predictions = []
    for i, item in enumerate(test.items):
        if i % 5 == 0:
            predictions.append(item.captions[0])  # a perfect match: METEOR's chunk rule applies
        else:
            predictions.append(" ".join(rng.choice(words, int(rng.integers(2, 9)))))
    out = assert_sums_give_evaluate("captioning", predictions, test)
    assert {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "BLEU-1"} <= set(out["from_sums"])
    record = out["records"][0]
    assert record["caption"] == predictions[0] and record["references"] == list(test.items[0].captions)
