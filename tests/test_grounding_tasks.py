"""Temporal grounding and spatio-temporal grounding as tasks: every head learns on a SynthWorld grounding batch
through several paradigms, predictions have the documented form and are scored by the reference metrics, per-item
sums give the metrics, frames map to and from the sampled clip as documented, bad items are named.
Backbone: ``hf-config:clip-tiny`` (random, 32 px), so nothing depends on the shipped weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import GroundingItem, TaskData, Tube, VideoRef
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.foundation.loading import load_backbone
from videoadapt.metrics import temporal_grounding as tg
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.data import check_items
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import TextEncoder, build_task, feature_widths, task_names
from videoadapt.tasks.st_grounding import metric_inputs, patches_inside, sampled_tube
from videoadapt.tasks.temporal_grounding import frames_inside, similarity_windows

SYNTH = {"videos": 40, "size": 32, "frames": 8}
FRAMES = 8
PARADIGMS = {
    "post_network": {},
    "lora": {"lora": {"r": 2}},
    "side_tuning": {},
    # R2-Tuning's side network pooling with the query's words: the trainer hands the encoder one query per item.
    "side_tuning-r2": {"side_tuning": {"design": "r2_tuning", "text": True, "width": 32}},
}


def synth(task: str, split: str = "train") -> TaskData:
    return load_task_data("synth", split, task, **SYNTH)


def model_for(task_name: str, paradigm: str, head_options: dict, data: TaskData) -> TaskModel:
    torch.manual_seed(0)
    ilfm = load_backbone("hf-config:clip-tiny")
    encoder = build_video_encoder(ilfm, paradigm.split("-")[0], PARADIGMS[paradigm])
    feature_widths(encoder, FRAMES)
    task = build_task(task_name, **head_options)
    head = task.build_head(ilfm, encoder, data)
    return TaskModel(encoder, head, task, TextEncoder(ilfm))


def batch_of(model: TaskModel, data: TaskData, indices: list[int], train: bool = True):
    builder = BatchBuilder(
        data, model.task, model.encoder.ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=train
    )
    return builder.build(indices)


def test_grounding_tasks_are_registered():
    assert {"temporal_grounding", "st_grounding"} <= set(task_names())


CASES = [
    ("temporal_grounding", {"head": "dense", "hidden": 32, "layers": 1}),
    ("temporal_grounding", {"head": "moment_detr", "hidden": 32}),
    ("st_grounding", {"hidden": 32, "layers": 1}),
]


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
@pytest.mark.parametrize(("task_name", "head_options"), CASES)
def test_loss_goes_down(task_name, head_options, paradigm):
    data = synth(task_name)
    model = model_for(task_name, paradigm, head_options, data)
    batch = batch_of(model, data, list(range(8)))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        torch.manual_seed(1)  # the same dropout masks every step: only the parameters change
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize(
    ("task_name", "head_options", "keys"),
    [
        ("temporal_grounding", {"head": "dense", "hidden": 32, "layers": 1}, {"R1@0.5", "mIoU", "MR-mAP"}),
        ("temporal_grounding", {"head": "moment_detr", "hidden": 32}, {"R1@0.7", "MR-R1@0.5", "MR-mAP@0.75"}),
        ("temporal_grounding", {"head": "similarity"}, {"R1@0.3", "mIoU"}),
        ("st_grounding", {"hidden": 32, "layers": 1}, {"m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"}),
    ],
)
def test_predictions_are_scored_and_sums_give_the_metrics(task_name, head_options, keys):
    train, test = synth(task_name), synth(task_name, "test")
    model = model_for(task_name, "post_network", head_options, train)
    model.eval()
    predictions = []
    for start in range(0, len(test), 4):
        predictions += model.predict(batch_of(model, test, list(range(start, min(start + 4, len(test)))), False))
    assert len(predictions) == len(test)
    metrics = model.task.evaluate(predictions, test)
    assert keys <= set(metrics) and all(math.isfinite(v) for v in metrics.values())
    sums = {k: v.sum(0) for k, v in model.task.item_statistics(predictions, test).items()}
    for key, value in model.task.metrics_from_sums(sums).items():
        assert float(value) == pytest.approx(metrics[key], abs=1e-9), key
    records = model.task.item_records(predictions, test)
    assert [r["id"] for r in records] == [i.query_id for i in test.items]
    item = test.items[0]
    if task_name == "temporal_grounding":
        windows = predictions[0]["windows"]
        assert windows and all(0 <= s <= e <= item.duration for s, e, _ in windows)
        assert len(predictions[0]["saliency"]) == FRAMES
    else:
        p = predictions[0]
        assert 0 <= p["start"] <= p["end"]
        n = round(item.duration * item.tube.fps)
        assert sorted(p["boxes"]) == list(range(n))  # a box on every frame, as TubeDETR
        for x1, y1, x2, y2 in p["boxes"].values():
            assert 0 <= x1 <= x2 <= item.tube.width and 0 <= y1 <= y2 <= item.tube.height


def test_temporal_metrics_match_the_reference_functions_on_fixed_predictions():
    test = synth("temporal_grounding", "test")
    rng = np.random.default_rng(0)
    predictions = []
    for item in test.items:
        d = item.duration
        s = float(rng.uniform(0, d / 2))
        predictions.append({"windows": [[s, s + d / 3, 0.9], [0.0, d, 0.5]], "saliency": [0.0] * FRAMES})
    task = build_task("temporal_grounding")
    metrics = task.evaluate(predictions, test)
    preds = {i: p["windows"] for i, p in enumerate(predictions)}
    reference = tg.charades_sta_metrics(preds, {i: list(it.windows[0]) for i, it in enumerate(test.items)})
    mr = tg.moment_retrieval_metrics(preds, {i: [list(w) for w in it.windows] for i, it in enumerate(test.items)})
    for key, value in reference.items():
        assert metrics[key] == pytest.approx(value)
    for key, value in mr.items():
        assert metrics[f"MR-{key}"] == pytest.approx(value)


def test_similarity_head_finds_the_run_of_similar_frames():
    scores = torch.tensor([0.1, 0.1, 0.9, 0.8, 0.9, 0.1, 0.1, 0.1])
    windows = similarity_windows(scores, duration=8.0)
    assert windows[0][:2] == [2.0, 5.0]
    assert len(windows) <= 10 and all(w[2] <= windows[0][2] for w in windows)


def test_frames_inside_a_window_use_the_even_cover_of_the_clip():
    # 8 frames over 4 s: frame k covers [k/2, (k+1)/2); the window 1.2-2.1 s overlaps frames 2, 3 and 4.
    assert frames_inside(torch.tensor([[1.2, 2.1]]), 4.0, 8) == [2, 3, 4]


def test_tube_maps_to_sampled_frames_and_back():
    boxes = tuple((float(f), 0.0, float(f) + 4.0, 8.0) for f in range(4, 12))
    tube = Tube(frames=tuple(range(4, 12)), boxes=boxes, fps=8.0, width=32, height=16)
    first, last, sampled = sampled_tube(tube, duration=2.0, t=8)  # 16 frames, 8 sampled: k covers 2k, 2k+1
    assert (first, last) == (2, 5)
    # sampled frame k's centre is video frame 2k + 0.5: nearest annotated frame 2k (the first of ties)
    assert torch.allclose(sampled[0], torch.tensor([4 / 32, 0.0, 8 / 32, 0.5]))
    assert torch.allclose(sampled[-1], torch.tensor([10 / 32, 0.0, 14 / 32, 0.5]))
    inside = patches_inside(torch.tensor([[0.0, 0.0, 0.5, 0.5]]), rows=2, cols=2)
    assert inside.tolist() == [[True, False, False, False]]
    item = GroundingItem("q", VideoRef("v"), "the red star", 2.0, ((0.5, 1.5),), tube=tube)
    pred, gt = metric_inputs({"start": 3, "end": 9, "boxes": {f: list(boxes[0]) for f in range(16)}}, item)
    assert gt["frames"] == list(range(12))  # every frame up to both tubes' ends is evaluated
    assert (pred["start"], pred["end"], gt["start"], gt["end"]) == (3, 10, 4, 12)  # end-exclusive for the metric


def _item(**changes) -> GroundingItem:
    tube = Tube(frames=(0, 1), boxes=((1.0, 1.0, 5.0, 5.0), (1.0, 1.0, 5.0, 5.0)), fps=4.0, width=8, height=8)
    fields = {
        "query_id": "q",
        "video": VideoRef("v"),
        "query": "the red star moves left",
        "duration": 2.0,
        "windows": ((0.0, 1.0),),
        "tube": tube,
    }
    fields.update(changes)
    return GroundingItem(**fields)


@pytest.mark.parametrize(
    ("task_name", "changes", "reason"),
    [
        ("temporal_grounding", {"windows": ((1.0, 0.5),)}, "reversed or has zero length"),
        ("temporal_grounding", {"windows": ((1.0, 1.0),)}, "reversed or has zero length"),
        ("temporal_grounding", {"windows": ((0.5, 3.0),)}, "outside the video"),
        ("temporal_grounding", {"query": "  "}, "empty query"),
        ("st_grounding", {"tube": None}, "no tube"),
        (
            "st_grounding",
            {"tube": Tube((0,), ((1.0, 1.0, 9.0, 5.0),), 4.0, 8, 8)},
            "outside the 8x8 frame",
        ),
        ("st_grounding", {"tube": Tube((0,), ((3.0, 1.0, 3.0, 5.0),), 4.0, 8, 8)}, "non-positive size"),
    ],
)
def test_bad_items_are_named_or_skipped(task_name, changes, reason):
    good, bad = _item(query_id="good"), _item(query_id="bad", **changes)
    data = TaskData(task_name, "train", [good, bad], source=None, origin="hand.json")  # type: ignore[arg-type]
    task = build_task(task_name)
    with pytest.raises(Exception, match=reason):
        check_items(task, data, skip_bad=False)
    kept = check_items(task, data, skip_bad=True)
    assert [i.query_id for i in kept.items] == ["good"]


def test_zero_shot_tubes_come_from_the_grounding_ilfm_on_cached_features():
    """The STVG zero-shot row: TinyOWL's regions from the frames' CLS and patch tokens, scored against the
    sentence; its boxes are the best region of each frame."""
    from videoadapt.tasks.st_grounding import best_run

    data = load_task_data("synth", "test", "st_grounding", videos=20, size=64, frames=8)
    ilfm = load_backbone("tiny-owl")
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": {"temporal": "mean"}})
    task = build_task("st_grounding", head="detection")
    model = TaskModel(encoder, task.build_head(ilfm, encoder, data), task, TextEncoder(ilfm))
    assert not any(p.requires_grad for p in model.head.parameters())
    model.eval()
    batch = batch_of(model, data, [0, 1], train=False)
    predictions = model.predict(batch)
    item = data.items[0]
    # The predicted box of a frame is the best-scoring TinyOWL region for the sentence on that frame.
    with torch.no_grad():
        frames = batch.video[batch.rows[0]]
        regions = ilfm.detect(frames, [item.query])
        best = regions.logits[..., 0].argmax(-1)
        expected = regions.boxes[torch.arange(len(best)), best] * 64
    for f in range(8):
        assert predictions[0]["boxes"][f] == pytest.approx(expected[f].tolist(), abs=1e-3)
    metrics = task.evaluate(predictions, data.subset([0, 1]))
    assert set(metrics) >= {"m_tIoU", "m_vIoU"}
    assert best_run(torch.tensor([0.1, 0.2, 0.9, 0.8, 0.1])) == (2, 3)
    with pytest.raises(Exception, match="needs a grounding ILFM"):
        task.build_head(load_backbone("hf-config:clip-tiny"), encoder, data)


def test_a_saved_head_of_another_task_is_refused():
    data = synth("temporal_grounding")
    model = model_for("temporal_grounding", "post_network", {"head": "dense", "hidden": 32, "layers": 1}, data)
    st = build_task("st_grounding")
    with pytest.raises(Exception, match="unknown st_grounding head 'dense'"):
        st.build_head(model.encoder.ilfm, model.encoder, data, spec=dict(model.head.spec))
    recognition_spec = {"classes": ["a", "b"], "classifier": "linear"}
    with pytest.raises(Exception, match="lacks head"):
        build_task("temporal_grounding").build_head(model.encoder.ilfm, model.encoder, data, spec=recognition_spec)
