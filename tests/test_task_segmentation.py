"""Open-vocabulary video instance segmentation (issue 17, deliverable 3): the query mask head, its per-frame set
loss, identities kept by matching queries across frames, the zero-shot row and the prediction format."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from videoadapt.commands.score import score_files
from videoadapt.data.formats import load_task_data
from videoadapt.data.records import ObjectTrack, TaskData, TrackingItem, VideoRef
from videoadapt.data.sampling import UniformSegments, sampler_from_spec
from videoadapt.foundation.loading import load_backbone
from videoadapt.metrics.video_segmentation import VideoInstance, vis_metrics
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.config import TASK_DEFAULTS
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import Request, TextEncoder, build_task, feature_widths, task_class, task_names
from videoadapt.tasks.segmentation import (
    _QueryDecoder,
    class_text,
    encode_masks,
    frame_geometry,
    ground_truth_frames,
    mask_quality,
    nearest_sampled,
)
from videoadapt.temporal.iou_linking import link_by_iou
from videoadapt.temporal.mask_criterion import MaskSetCriterion, bce_cost, dice_cost
from videoadapt.temporal.mask_decoder import MaskQueryDecoder
from videoadapt.temporal.query_association import associate_queries

FRAMES = 8
SMALL_HEAD = {"hidden": 32, "layers": 1, "queries": 6, "pixel_dim": 8}
PARADIGMS = {"post_network": {"post_network": {"temporal": "mean"}}, "lora": {"lora": {"r": 2}}}


@pytest.fixture(scope="module")
def train_data() -> TaskData:
    return load_task_data("synth", "train", "segmentation", videos=40, size=32, frames=FRAMES)


@pytest.fixture(scope="module")
def test_data() -> TaskData:
    return load_task_data("synth", "test", "segmentation", videos=60, size=32, frames=FRAMES)


def model_for(paradigm: str, head_options: dict, data: TaskData, backbone: str = "hf-config:clip-tiny") -> TaskModel:
    torch.manual_seed(0)
    ilfm = load_backbone(backbone)
    encoder = build_video_encoder(ilfm, paradigm, PARADIGMS[paradigm])
    feature_widths(encoder, FRAMES)
    task = build_task("segmentation", **head_options)
    return TaskModel(encoder, task.build_head(ilfm, encoder, data), task, TextEncoder(ilfm))


def batch_of(model: TaskModel, data: TaskData, indices: list[int], train: bool = True):
    builder = BatchBuilder(
        data, model.task, model.encoder.ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=train
    )
    return builder.build(indices)


def test_registered_with_its_table_and_recipe():
    assert "segmentation" in task_names()
    table = task_class("segmentation").survey[0]
    assert [key for _, key in table.columns] == ["ap", "ap_base", "ap_novel", "ap50", "ar10"]
    assert table.zero_shot_head == {"head": "detection"}
    assert TASK_DEFAULTS["segmentation"]["run"]["cache"] is True


# --- building blocks ---------------------------------------------------------------------------------------------


def test_mask_decoder_outputs_finer_masks_than_its_patches():
    decoder = MaskQueryDecoder(width=24, embed_dim=16, grid=(4, 4), hidden=32, queries=5, layers=1, upsample=4)
    out = decoder(torch.randn(3, 16, 24))
    assert out["masks"].shape == (3, 5, 16, 16)
    assert out["class_embeds"].shape == (3, 5, 16) and out["no_object"].shape == (3, 5)
    # The sub-patch cells of one patch differ: the pixel decoder reads detail inside a patch.
    pixels = decoder.pixel_features(decoder.token_in(torch.randn(1, 16, 24)))
    assert pixels[0, :, 0:4, 0:4].std() > 0
    # With context layers a patch's cells depend on the other patches; without, only on its own token (the 3x3
    # refinement reaches the neighbours only).
    tokens = torch.randn(1, 16, 24)
    changed = tokens.clone()
    changed[0, 15] = torch.randn(24)  # the last patch, far from the first
    for context in (0, 1):
        torch.manual_seed(0)
        deeper = MaskQueryDecoder(
            24, 16, (4, 4), hidden=32, queries=5, layers=1, context_layers=context, fine_hidden=64
        )
        with torch.no_grad():
            first = [deeper.pixel_features(deeper.project(t))[0, :, 0:4, 0:4] for t in (tokens, changed)]
        assert bool((first[0] - first[1]).abs().max() > 1e-6) is bool(context)
    assert deeper(tokens)["masks"].shape == (1, 5, 16, 16)


def test_costs_are_the_hand_derived_values():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])  # p = (0.5, 0.5) and ~(1, 0)
    targets = torch.tensor([[1.0, 0.0]])
    # dice = 1 - (2 * sum(p t) + 1) / (sum p + sum t + 1)
    assert dice_cost(logits, targets)[:, 0].tolist() == pytest.approx([1 - 2 / 3, 1 - 3 / 3], abs=1e-4)
    assert bce_cost(logits, targets)[0, 0] == pytest.approx(math.log(2), abs=1e-6)
    assert bce_cost(logits, targets)[1, 0] == pytest.approx(0.0, abs=1e-4)


def test_hungarian_matching_pairs_each_object_with_its_query():
    criterion = MaskSetCriterion()
    masks = torch.zeros(2, 4, 4)
    masks[0, :2, :2] = 1
    masks[1, 2:, 2:] = 1
    mask_logits = torch.full((3, 4, 4), -8.0)
    mask_logits[2][masks[0].bool()] = 8.0  # query 2 draws object 0
    mask_logits[0][masks[1].bool()] = 8.0  # query 0 draws object 1
    class_logits = torch.zeros(3, 4)
    rows, cols = criterion.match(class_logits, mask_logits, torch.tensor([1, 2]), masks)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {2: 0, 0: 1}
    # Perfect masks and classes give a loss near zero; the unmatched query targets the no-object class.
    class_logits = torch.full((1, 3, 4), -10.0)
    class_logits[0, 2, 1] = class_logits[0, 0, 2] = class_logits[0, 1, 3] = 10.0
    loss = criterion(class_logits, mask_logits[None], [torch.tensor([1, 2])], [masks])
    assert float(loss["loss_total"]) < 0.01
    assert float(criterion(class_logits, mask_logits[None], [torch.tensor([2, 1])], [masks])["loss_class"]) > 5


def test_queries_are_matched_across_frames_like_minvis():
    torch.manual_seed(0)
    base = torch.randn(5, 16)
    permutations = [torch.arange(5), torch.tensor([3, 0, 4, 1, 2]), torch.tensor([1, 2, 0, 4, 3])]
    frames = torch.stack([base[p] + 0.05 * torch.randn(5, 16) for p in permutations])
    order = associate_queries(frames)
    for t, p in enumerate(permutations):
        # Slot q holds, in every frame, the query that shows object q of frame 0.
        assert p[order[t]].tolist() == list(range(5))


def test_zero_shot_linking_follows_overlap_and_starts_new_tracks():
    boxes = [
        np.array([[0, 0, 10, 10], [30, 30, 40, 40]]),
        np.array([[32, 31, 42, 41], [1, 0, 11, 10]]),
        np.array([[60, 60, 64, 64], [2, 0, 12, 10]]),  # the second object vanished, a new one appears
    ]
    ids = link_by_iou(boxes, threshold=0.3)
    assert [i.tolist() for i in ids] == [[0, 1], [1, 0], [2, 0]]


def test_frames_and_geometry():
    uniform = UniformSegments(8).indices(16, 8.0).tolist()  # 1, 3, ..., 15
    assert nearest_sampled(16, uniform).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7]
    # Frames a random-offset sampler drew: each video frame goes to the nearest of them.
    assert nearest_sampled(8, [0, 5, 6]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    processor = {"image_size": 64, "resize": "shortest_edge", "crop": "center"}
    assert dataclasses.astuple(frame_geometry(64, 64, processor)) == (0, 0, 64, 64)
    # 128x64 (wide): resized to 128x64 -> 64 high, centre crop of 64 wide = columns 32..96 of the original
    assert dataclasses.astuple(frame_geometry(128, 64, processor)) == (0, 32, 64, 64)
    assert dataclasses.astuple(frame_geometry(256, 128, processor)) == (0, 64, 128, 128)


def test_instances_are_the_best_query_category_pairs_scored_with_mask_quality():
    logits = torch.full((2, 3, 4, 4), -5.0)  # [T,Q,h,w]
    logits[:, 0, :2, :2] = 5.0  # a confident mask
    logits[:, 1, :2, :2] = 0.5  # an unsure one
    quality = mask_quality(logits)
    assert float(quality[0]) == pytest.approx(1 / (1 + math.exp(-5.0)), abs=1e-5)
    assert float(quality[1]) == pytest.approx(1 / (1 + math.exp(-0.5)), abs=1e-5)
    assert quality[2] == 0  # empty on every frame
    scores = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.45, 0.05], [0.2, 0.1, 0.7]])  # [Q,C]
    item = TrackingItem(VideoRef("v"), 2, 8.0, 16, 16, ())
    processor = {"image_size": 16, "resize": "shortest_edge", "crop": "center"}
    one = _QueryDecoder(scores, 1, logits, processor)(item, 10, [0, 1])
    assert [(c, round(s, 2)) for c, s, _ in one] == [(2, 0.7), (0, 0.6), (0, 0.5)]
    two = _QueryDecoder(scores, 2, logits, processor)(item, 4, [0, 1])
    assert [(c, round(s, 2)) for c, s, _ in two] == [(2, 0.7), (0, 0.6), (0, 0.5), (1, 0.45)]
    assert two[2][2] is not two[0][2] and two[2][2][0] == two[3][2][0]  # one query's masks, two categories
    assert abs(int(mask_utils.area(two[1][2][0])) - 64) <= 8  # query 0: 2x2 of 4x4 cells -> about 8x8 pixels


def test_names_are_ensembled_with_their_synonyms():
    class Text:
        table = {"circle": [1.0, 0.0], "disc": [0.0, 2.0], "star": [3.0, 4.0]}

        def embeds(self, texts):
            return torch.tensor([self.table[t] for t in texts])

    plain = class_text(Text(), ["circle", "star"], {})
    assert plain.flatten().tolist() == pytest.approx([1.0, 0.0, 0.6, 0.8])
    mixed = class_text(Text(), ["circle", "star"], {"circle": ["disc"]})
    assert mixed[0].tolist() == pytest.approx([2**-0.5, 2**-0.5]) and mixed[1].tolist() == pytest.approx([0.6, 0.8])


def _item(masks: list[np.ndarray], size: int = 16, frames: int = 2, category: str = "circle") -> TrackingItem:
    tracks = []
    for k, m in enumerate(masks):
        rles = encode_masks(np.stack([m] * frames))
        boxes = tuple((0.0, 0.0, float(size), float(size)) for _ in range(frames))
        tracks.append(ObjectTrack(k, category, tuple(range(frames)), boxes, tuple(rles)))
    return TrackingItem(VideoRef(f"v{len(masks)}"), frames, 8.0, size, size, tuple(tracks))


def test_ground_truth_is_area_downsampled_in_the_models_view():
    m = np.zeros((16, 16), dtype=bool)
    m[0:3, 0:4] = True  # 12 pixels: cell (0,0) of a 4x4 grid wholly, cell (1? no) -> rows 0..2 of cell (0,0)
    labels, masks = ground_truth_frames(
        _item([m]), [0, 1], (4, 4), {"image_size": 16, "resize": "shortest_edge", "crop": "center"}, {"circle": 3}
    )
    assert [x.tolist() for x in labels] == [[3], [3]]
    assert masks[0].shape == (1, 4, 4)
    assert float(masks[0][0, 0, 0]) == pytest.approx(12 / 16)
    assert float(masks[0].sum()) == pytest.approx(12 / 16)


def test_bad_items_are_named(train_data):
    task = build_task("segmentation")
    item = train_data.items[0]
    assert task.check_item(item, train_data) is None
    track = item.tracks[0]
    wrong = dataclasses.replace(track, masks=({"size": [8, 8], "counts": "PP4"},) * len(track.frames))
    bad = dataclasses.replace(item, tracks=(wrong, *item.tracks[1:]))
    assert "mask of size [8, 8]" in task.check_item(bad, train_data)
    no_masks = dataclasses.replace(item, tracks=(dataclasses.replace(track, masks=None),))
    assert "no mask" in task.check_item(no_masks, train_data)


# --- the task ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_loss_goes_down(paradigm, train_data):
    model = model_for(paradigm, SMALL_HEAD, train_data)
    # The training vocabulary leaves the novel categories out.
    assert not set(model.head.spec["classes"]) & set(train_data.extra["novel_categories"])
    batch = batch_of(model, train_data, list(range(4)))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        torch.manual_seed(1)
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


def test_predictions_are_video_instances_on_every_frame(train_data, test_data):
    model = model_for("post_network", {**SMALL_HEAD, "top_k": 4}, train_data)
    model.eval()
    batch = batch_of(model, test_data, [0, 1], train=False)
    with torch.no_grad():
        predictions = model.predict(batch)
    item = test_data.items[0]
    assert len(predictions) == 2 and len(predictions[0]) == 4
    scores = [p.score for p in predictions[0]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for p in predictions[0]:
        assert p.category in test_data.classes  # the test vocabulary, novel names included
        assert sorted(p.masks) == list(range(item.num_frames))
        assert all(list(r["size"]) == [item.height, item.width] for r in p.masks.values())
        mask_utils.decode(list(p.masks.values()))
    documents = model.task.score_documents(predictions, test_data.subset([0, 1]))
    results = json.loads(documents["predictions.json"])
    truth = json.loads(documents["ground_truth.json"])
    assert len(results) == 8 and len(truth["videos"]) == 2
    assert len(results[0]["segmentations"]) == item.num_frames
    assert {c["name"] for c in truth["categories"]} == set(test_data.classes)
    metrics = model.task.evaluate(predictions, test_data.subset([0, 1]))
    assert {"ap", "ap_base", "ap_novel"} <= set(metrics)


def _scored_predictions(data: TaskData) -> list[list[VideoInstance]]:
    """Per video: each object's own masks (category right or wrong, score by index), a shifted copy, a miss."""
    rng = np.random.default_rng(0)
    out = []
    for item in data.items:
        instances = []
        for track in item.tracks:
            category = track.category if rng.random() < 0.7 else data.classes[int(rng.integers(len(data.classes)))]
            instances.append(
                VideoInstance(category, float(rng.random()), dict(zip(track.frames, track.masks, strict=True)))
            )
            m = mask_utils.decode(list(track.masks)).transpose(2, 0, 1)
            shifted = np.roll(m, int(rng.integers(1, 6)), axis=2).astype(bool)
            instances.append(
                VideoInstance(
                    track.category, float(rng.random()), dict(zip(track.frames, encode_masks(shifted), strict=True))
                )
            )
        instances.append(
            VideoInstance(data.classes[0], 0.05, {0: encode_masks(np.ones((1, item.height, item.width), bool))[0]})
        )
        out.append(instances)
    return out


def test_metrics_are_the_real_vis_metrics_and_the_bootstrap_sums_agree(test_data):
    task = build_task("segmentation")
    predictions = _scored_predictions(test_data)
    metrics = task.evaluate(predictions, test_data)
    by_video = {i.video.video_id: p for i, p in zip(test_data.items, predictions, strict=True)}
    novel = test_data.extra["novel_categories"]
    assert metrics == pytest.approx(vis_metrics(test_data.items, by_video, test_data.classes, novel), nan_ok=True)
    assert 20 < metrics["ap"] < 95 and metrics["ap_novel"] > 0
    stats = task.item_statistics(predictions, test_data)
    assert all(v.shape[0] == len(test_data.items) for v in stats.values())
    from_sums = task.metrics_from_sums({k: v.sum(0) for k, v in stats.items()})
    for key in ("ap", "ap50", "ap75", "ar1", "ar10", "ap_base", "ap_novel"):
        assert float(from_sums[key]) == pytest.approx(metrics[key], abs=1e-6), key
    # A resample repeating the first video is a different data set: its sums give that set's metrics.
    rows = [0, *range(len(test_data.items))]
    repeated = test_data.subset(rows)
    repeated = dataclasses.replace(
        repeated, items=[dataclasses.replace(item, video=VideoRef(f"r{k}")) for k, item in enumerate(repeated.items)]
    )
    expected = task.evaluate([predictions[r] for r in rows], repeated)
    resampled = task.metrics_from_sums({k: v[rows].sum(0) for k, v in stats.items()})
    assert float(resampled["ar10"]) == pytest.approx(expected["ar10"], abs=1e-6)
    assert float(resampled["ap"]) == pytest.approx(expected["ap"], abs=0.5)


def test_saved_predictions_scored_by_the_score_command_give_evaluate(test_data, tmp_path):
    task = build_task("segmentation")
    data = test_data.subset(list(range(min(20, len(test_data.items)))))
    predictions = _scored_predictions(data)
    for name, text in task.score_documents(predictions, data).items():
        (tmp_path / name).write_text(text)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert {c["name"] for c in truth["categories"] if c["partition"] == "novel"} == set(data.extra["novel_categories"])
    scored = score_files("segmentation", tmp_path / "predictions.json", tmp_path / "ground_truth.json")
    assert scored["counts"]["predictions"] == sum(len(p) for p in predictions)
    assert scored["metrics"] == pytest.approx(task.evaluate(predictions, data), nan_ok=True)


def test_zero_shot_masks_are_the_grounding_ilfms_boxes_linked_by_overlap(test_data):
    data = load_task_data("synth", "test", "segmentation", videos=40, size=64, frames=FRAMES)
    model = model_for("post_network", {"head": "detection", "detection_threshold": 0.0}, data, backbone="tiny-owl")
    assert not list(model.head.parameters())
    model.eval()
    batch = batch_of(model, data, [0], train=False)
    with torch.no_grad():
        predictions = model.predict(batch)
        frames = batch.video[batch.rows[0]]
        regions = model.encoder.ilfm.detect(frames, list(data.classes))
    best = regions.logits.sigmoid().amax(-1)[0].argmax()
    x1, y1, x2, y2 = (regions.boxes[0, best] * 64).tolist()
    top = predictions[0][0]
    # The best detection of frame 0 starts a track, its mask the filled box.
    masks0 = [mask_utils.decode(p.masks[0]) for p in predictions[0]]
    expected = np.zeros((64, 64), dtype=np.uint8)
    expected[max(0, math.floor(y1)) : math.ceil(y2), max(0, math.floor(x1)) : math.ceil(x2)] = 1
    assert any(np.array_equal(m, expected) for m in masks0)
    assert 0 <= top.score <= 1 and len(predictions[0]) <= model.head.spec["top_k"]
    with pytest.raises(Exception, match="needs a grounding ILFM"):
        model_for("post_network", {"head": "detection"}, data)


def test_a_users_video_gets_the_named_categories(train_data):
    task = build_task("segmentation")
    request = Request(texts=("circle", "star", "circle"), duration=2.0, fps=8.0, width=64, height=48)
    items = task.user_items(VideoRef("mine.mp4"), request, {})
    assert len(items) == 1 and items[0].num_frames == 16 and items[0].categories == ("circle", "star")
    empty = TaskData("segmentation", "predict", items, train_data.source, "mine.mp4")
    assert task.targets(items, empty, None, False)["classes"] == ["circle", "star"]
    with pytest.raises(Exception, match="category names"):
        task.user_items(VideoRef("mine.mp4"), Request(duration=2.0, fps=8.0, width=64, height=48), {})

    @dataclasses.dataclass
    class Instance:
        category: str
        score: float
        masks: dict

    m = np.zeros((1, 48, 64), dtype=bool)
    m[0, 10:20, 5:15] = True
    described = task.describe([Instance("star", 0.9, {3: encode_masks(m)[0]})], items[0], {})
    instance = described["instances"][0]
    assert instance["boxes_xyxy"] == {3: [5.0, 10.0, 15.0, 20.0]}
    assert instance["start_s"] == pytest.approx(3 / 8) and instance["category"] == "star"


def test_the_tracking_bench_preset_holds_the_segmentation_table():
    from videoadapt.bench.matrix import BENCH_PRESETS, build_matrix

    tables, cells = build_matrix(BENCH_PRESETS["tracking"])
    assert [t.name for t in tables] == ["tracking", "segmentation"]
    arms = {c.arm for c in cells if c.task == "segmentation"}
    assert {"zero_shot", "post_network", "lora"} <= arms
