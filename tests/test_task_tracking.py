"""Open-vocabulary multi-object tracking as a task: the quasi-dense losses and the bi-softmax against hand-derived
values, the tracker's birth, death, momentum and class vote on hand-made detections, the head learning on a
SynthWorld tracking batch through a frozen and an adapted backbone, the zero-shot row equal to TinyOWL's own
detections followed by IoU, predictions in the documented form, bad items named."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import ObjectTrack, TrackingItem, VideoRef
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.data.transforms import ProcessorSettings, preprocess
from videoadapt.foundation.base import FrameFeatures
from videoadapt.foundation.loading import load_backbone
from videoadapt.model.batches import BatchBuilder, item_rng
from videoadapt.model.data import check_items
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import Request, TextEncoder, build_task, feature_widths, task_names
from videoadapt.tasks.base import SAMPLED_FRAMES, frames_of_samples
from videoadapt.tasks.tracking import category_prompt, uncropped_pixels
from videoadapt.temporal.appearance_embedding import cosine_l2_loss, multi_positive_cross_entropy, quasi_dense_loss
from videoadapt.temporal.association import bisoftmax, box_iou_matrix, hungarian_match, nms
from videoadapt.temporal.box_refinement import BoxRefinement, box_refinement_loss
from videoadapt.temporal.tracker import Tracker, TrackerConfig

FRAMES = 8
SYNTH = {"videos": 40, "size": 64, "frames": FRAMES}
PARADIGMS = {"post_network": {"post_network": {"temporal": "mean"}}, "lora": {"lora": {"r": 2}}}


@pytest.fixture(scope="module")
def owl():
    return load_backbone("tiny-owl")


@pytest.fixture(scope="module")
def train_data():
    return load_task_data("synth", "train", "tracking", **SYNTH)


def model_for(ilfm, paradigm: str, data, **head) -> TaskModel:
    torch.manual_seed(0)
    encoder = build_video_encoder(ilfm, paradigm, PARADIGMS[paradigm])
    feature_widths(encoder, FRAMES)
    task = build_task("tracking", **head)
    return TaskModel(encoder, task.build_head(ilfm, encoder, data), task, TextEncoder(ilfm))


def batch_of(model: TaskModel, data, indices: list[int], train: bool = True):
    sampler = sampler_from_spec(f"uniform:{FRAMES}")
    return BatchBuilder(data, model.task, model.encoder.ilfm.processor, sampler, train=train).build(indices)


def test_targets_carry_the_frames_each_clip_was_decoded_at(owl, train_data):
    """A random-offset sampler draws other frames each epoch: the targets name the frames decoded, not those of
    the evaluation sampler (training on targets one frame off cost the LoRA recipe half its novel ClsA)."""
    sampler = sampler_from_spec("uniform:4:random")
    builder = BatchBuilder(train_data, build_task("tracking"), owl.processor, sampler, train=True, seed=3)
    indices = list(range(6))
    batch = builder.build(indices, epoch=1)
    recorded = batch.targets[SAMPLED_FRAMES]
    world = train_data.source
    for j, index in enumerate(indices):
        expected = sampler.indices(FRAMES, 8.0, item_rng(3, 1, index))
        assert recorded[j].tolist() == expected.tolist()
        fixed = sampler_from_spec(f"uniform:{FRAMES}")  # decode every frame, then take the recorded ones
        every = world.frames(train_data.items[index].video, fixed)
        assert torch.equal(batch.video[int(batch.rows[j])], preprocess(every[recorded[j]], owl.processor))
    assert any(r.tolist() != frames_of_samples({}, 0, FRAMES, 4) for r in recorded)  # not the middle frames
    single = builder.each_item(batch, epoch=1)[2]
    assert single.targets[SAMPLED_FRAMES][0].tolist() == recorded[2].tolist()


def test_cached_rows_name_their_video_frames(train_data):
    """From a feature cache of ``uniform:8`` with ``cache_sampler`` picking 4 of its rows at random, the targets
    name the video frames of the rows picked (and, time-reversed, in reverse)."""

    class Cache:
        key = SimpleNamespace(parts={"sampler_spec": f"uniform:{FRAMES}"})

        def __contains__(self, video_id):
            return True

        def get(self, video_ids, patches=True):
            frame = torch.arange(FRAMES, dtype=torch.float32)[None, :, None].expand(len(video_ids), FRAMES, 2)
            return FrameFeatures(cls=frame.clone(), patches=frame[:, :, None].clone(), embeds=frame.clone())

    builder = BatchBuilder(
        train_data,
        build_task("tracking"),
        ProcessorSettings(image_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        sampler_from_spec(f"uniform:{FRAMES}"),
        train=True,
        cache=Cache(),
        pixels=False,
        cache_sampler=sampler_from_spec("uniform:4:random"),
    )
    batch = builder.build([0, 1, 2, 3])
    base = sampler_from_spec(f"uniform:{FRAMES}").indices(FRAMES, 1.0)
    for j, frames in enumerate(batch.targets[SAMPLED_FRAMES]):
        rows_picked = batch.cached.cls[int(batch.rows[j]), :, 0].long()
        assert frames.tolist() == base[rows_picked.numpy()].tolist()


# --- building blocks against hand-derived values ------------------------------------------------------------------


def test_multi_positive_cross_entropy_is_log_one_plus_pairwise_exponentials():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    positive = torch.tensor([[True, False, True], [False, False, False]])  # row 2 has no positive: left out
    expected = math.log(1 + math.exp(0.5 - 2.0) + math.exp(0.5 + 1.0))
    assert float(multi_positive_cross_entropy(s, positive)) == pytest.approx(expected, rel=1e-6)
    assert float(multi_positive_cross_entropy(s, torch.zeros_like(positive))) == 0.0


def test_cosine_l2_and_quasi_dense_pairs_skip_background_keys():
    key = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    ref = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    positive = torch.tensor([[True, False], [False, False]])
    # positives: cos 1 -> 0; negatives: cos(k0,r1)=0.7071, cos(k1,r0)=0, cos(k1,r1)=0.7071 -> mean of squares 1/3
    assert float(cosine_l2_loss(key[:2], ref, positive)) == pytest.approx(1 / 3, rel=1e-5)
    ids_key, ids_ref = torch.tensor([7, 8, -1]), torch.tensor([7, 9])
    contrastive, auxiliary = quasi_dense_loss(key, ref, ids_key, ids_ref)
    # Only key 0 has a positive and a negative: log(1 + exp(s01 - s00)) = log(1 + exp(1 - 2)).
    assert float(contrastive) == pytest.approx(math.log(1 + math.exp(-1.0)), rel=1e-6)
    assert float(auxiliary) == pytest.approx(1 / 3, rel=1e-5)


def test_bisoftmax_hungarian_iou_and_nms():
    det, tracks = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    s = det @ tracks.T
    expected = (s.softmax(1) + s.softmax(0)) / 2
    assert torch.allclose(bisoftmax(det, tracks), expected)
    assert hungarian_match(torch.tensor([[0.9, 0.8], [0.85, 0.1]]), 0.5) == [(0, 1), (1, 0)]  # total 1.65 > 1.0
    assert hungarian_match(torch.tensor([[0.9, 0.8], [0.85, 0.1]]), 0.82) == [(1, 0)]
    assert hungarian_match(torch.zeros(0, 3), 0.5) == []
    iou = box_iou_matrix(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3], [0.0, 0, 2, 2]]))
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0])
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 10, 10], [20.0, 20, 30, 30]])
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.4]), 0.5).tolist() == [1, 2]


def test_tracker_births_matches_ages_out_and_votes():
    config = TrackerConfig(init_score=0.5, match_score=0.4, max_age=1, momentum=0.8, min_cosine=0.5)
    tracker = Tracker(config)
    a, b = torch.tensor([1.0, 0.0]) * 5, torch.tensor([0.0, 1.0]) * 5
    box = torch.tensor([[0.0, 0, 4, 4], [10.0, 10, 14, 14]])
    labels = torch.tensor([0, 1])
    assert tracker.step(0, box, torch.tensor([0.9, 0.3]), labels, torch.stack([a, b])) == [1, 0]  # 0.3: no birth
    # Frame 1: the detections come in the other order; the embedding decides, not the position in the list.
    ids = tracker.step(1, box.flip(0), torch.tensor([0.8, 0.9]), labels.flip(0), torch.stack([b, a]))
    assert ids == [2, 1]
    memory = tracker.tracks[0].memory
    assert torch.allclose(memory, a)  # momentum of identical embeddings keeps them
    # Track 1 is unseen on frames 2 and 3 (more than max_age=1 frames): a similar detection on frame 4 is new.
    # Track 2 is alive, and a one-to-one bi-softmax is 1, but its memory is orthogonal: the cosine gate refuses.
    tracker.step(2, box[1:], torch.tensor([0.9]), labels[1:], b[None])
    assert tracker.step(4, box[:1], torch.tensor([0.9]), torch.tensor([2]), a[None]) == [3]
    ungated = Tracker(TrackerConfig(init_score=0.5, match_score=0.4))
    ungated.step(0, box[:1], torch.tensor([0.9]), labels[:1], b[None])
    assert ungated.step(1, box[:1], torch.tensor([0.9]), labels[:1], a[None]) == [1]
    # The vote weighs labels by score: track 1 saw label 0 at 0.9 and at 0.9 -> category 0.
    assert tracker.tracks[0].category(3) == 0
    voter = tracker.tracks[2]
    voter.labels, voter.scores = [2, 1, 1], [0.9, 0.5, 0.5]
    assert voter.category(3) == 1
    momentum = Tracker(TrackerConfig(init_score=0.0, match_score=0.0, momentum=0.8))
    momentum.step(0, box[:1], torch.tensor([1.0]), labels[:1], torch.tensor([[1.0, 0.0]]))
    momentum.step(1, box[:1], torch.tensor([1.0]), labels[:1], torch.tensor([[0.0, 1.0]]))
    assert momentum.tracks[0].memory.tolist() == pytest.approx([0.2, 0.8])


def test_a_track_keeps_the_score_weighted_sum_of_its_unit_class_embeddings():
    tracker = Tracker(TrackerConfig(metric="iou", init_score=0.1, match_score=0.3))
    box = torch.tensor([[0.0, 0, 4, 4]])
    tracker.step(0, box, torch.tensor([0.5]), torch.tensor([0]), class_embeds=torch.tensor([[3.0, 4.0]]))
    tracker.step(1, box, torch.tensor([0.25]), torch.tensor([1]), class_embeds=torch.tensor([[0.0, -2.0]]))
    (track,) = tracker.tracks
    # 0.5 * (0.6, 0.8) + 0.25 * (0, -1)
    assert track.class_sum.tolist() == pytest.approx([0.3, 0.15])
    assert Tracker(TrackerConfig(metric="iou")).tracks == [] and track.category(2) == 0  # the vote is still there


def test_iou_tracker_follows_boxes_and_suppresses_a_second_box_on_a_followed_object():
    tracker = Tracker(TrackerConfig(metric="iou", init_score=0.5, match_score=0.3))
    labels = torch.tensor([0, 0])
    assert tracker.step(0, torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), labels[:1]) == [1]
    # A moved box is followed; a near-duplicate of it is a distractor, not a new object.
    boxes = torch.tensor([[2.0, 0, 12, 10], [3.0, 0, 12, 10]])
    assert tracker.step(1, boxes, torch.tensor([0.9, 0.8]), labels) == [1, 0]
    with pytest.raises(Exception, match="unknown"):
        TrackerConfig(metric="cosine")


def test_frames_prompts_and_pixels():
    # Without a record from the batch builder: the frames the evaluation sampler uniform:t decodes.
    assert frames_of_samples({}, 0, 16, 16) == list(range(16))
    assert frames_of_samples({}, 0, 16, 4) == [2, 6, 10, 14]
    # The frames the sampler uniform:8 really decodes of 16 (a rounded formula once said 0, 2, 4, ...).
    assert frames_of_samples({}, 0, 16, 8) == [1, 3, 5, 7, 9, 11, 13, 15]
    recorded = {SAMPLED_FRAMES: [None, np.array([0, 5, 9, 12])]}
    assert frames_of_samples(recorded, 1, 16, 4) == [0, 5, 9, 12]
    assert frames_of_samples(recorded, 0, 16, 4) == [2, 6, 10, 14]
    with pytest.raises(Exception, match="sampled at 4 frames but its features have 8"):
        frames_of_samples(recorded, 1, 16, 8)
    assert category_prompt("ellipse", "auto") == "an ellipse" and category_prompt("star", "auto") == "a star"
    assert category_prompt("star", "a photo of a {}") == "a photo of a star"
    with pytest.raises(Exception, match="needs a"):
        category_prompt("star", "a photo")
    # A 128 x 64 frame resized to 64 x 32 is centre-cropped to 32 x 32 (columns 16..48 of the resized frame).
    settings = ProcessorSettings(image_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pixels = uncropped_pixels(torch.tensor([[0.0, 0.0, 1.0, 0.5]]), 128, 64, settings)
    assert pixels[0].tolist() == pytest.approx([32.0, 0.0, 96.0, 32.0])


# --- the task ------------------------------------------------------------------------------------------------------


def test_tracking_is_registered_and_needs_a_grounding_ilfm(train_data):
    assert "tracking" in task_names()
    ilfm = load_backbone("hf-config:clip-tiny")
    encoder = build_video_encoder(ilfm, "post_network", {})
    with pytest.raises(Exception, match="needs a grounding ILFM"):
        build_task("tracking").build_head(ilfm, encoder, train_data)


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_loss_goes_down(owl, train_data, paradigm):
    model = model_for(owl, paradigm, train_data, embed_dim=32, hidden=64, refine_hidden=64)
    batch = batch_of(model, train_data, list(range(4)))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(5):
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    if paradigm == "lora":  # the adapted backbone learns through the same loss
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters() if p.requires_grad)
    # The class prior: the running mean of the matched regions' unit class embeddings, saved with the weights.
    assert float(model.head.region_count) > 0
    assert 0 < float(model.head.region_mean.norm()) <= 1.0 + 1e-6
    assert "region_mean" in model.head.state_dict()


def test_tracks_are_named_by_their_mean_embedding_against_synonym_prompts_less_the_prior(owl, train_data):
    model = model_for(owl, "post_network", train_data, embed_dim=32, hidden=64, refine_hidden=64)
    task, head, text = model.task, model.head, model.text
    assert head.spec["classify"] == "track"
    assert head.spec["category_synonyms"]["heart"] == ["love heart", "heart symbol"]
    embeds = task._class_embeds(head, text, ["heart", "star"])
    phrases = ["a heart", "a love heart", "a heart symbol"]
    expected = torch.nn.functional.normalize(text.embeds(phrases).float(), dim=-1).mean(0)
    assert torch.allclose(embeds[0], expected / expected.norm(), atol=1e-5)
    assert task._class_prior(head, embeds).tolist() == [0.0, 0.0]  # nothing seen yet: no prior
    head.region_mean.copy_(embeds[1] * 0.5)
    head.region_count.fill_(3)
    assert task._class_prior(head, embeds).tolist() == pytest.approx((embeds @ embeds[1] * 0.5).tolist(), abs=1e-6)
    plain = build_task("tracking", synonyms=False, classify="vote").build_head(owl, model.encoder, train_data)
    assert plain.spec["category_synonyms"] == {} and plain.spec["classify"] == "vote"
    with pytest.raises(Exception, match="classify"):
        build_task("tracking", classify="mode").build_head(owl, model.encoder, train_data)


def test_seen_margin_is_taken_from_the_categories_the_head_was_adapted_on(owl, train_data):
    """Calibrated stacking: the margin lowers only the names adapted on (the vocabulary less the data's held-out
    categories), never a novel name or one asked at prediction time, and not at all for the zero-shot head; a
    margin larger than any cosine gap names every track by a name never adapted on."""
    model = model_for(owl, "post_network", train_data, embed_dim=32, hidden=64, refine_hidden=64, seen_margin=0.04)
    task, head = model.task, model.head
    novel = set(head.spec["novel"])
    assert novel == {"hourglass", "heart"}
    names = [*head.spec["categories"], "teapot"]
    margin = task._seen_margin(head, names).tolist()
    assert margin == pytest.approx([0.0 if n in novel or n == "teapot" else 0.04 for n in names])
    zero_shot = build_task("tracking", head="detection").build_head(owl, model.encoder, train_data)
    assert task._seen_margin(zero_shot, names).tolist() == [0.0] * len(names)
    batch = batch_of(model, train_data, [0, 1, 2], train=False)
    head.spec["seen_margin"] = 0.0
    plain = {box.category for video in model.predict(batch) for box in video}
    head.spec["seen_margin"] = 10.0
    stacked = {box.category for video in model.predict(batch) for box in video}
    assert plain and not plain <= novel  # untrained, the head names some tracks by adapted names ...
    assert stacked and stacked <= novel  # ... which a margin beyond any cosine gap leaves to the novel ones


def test_tracks_are_named_from_the_ilfm_regions_not_the_refined_ones(owl, train_data):
    model = model_for(owl, "post_network", train_data, embed_dim=32, hidden=64, refine_hidden=64)
    head = model.head
    assert head.spec["name_from"] == "refined"
    head.spec["name_from"] = "ilfm"
    with torch.no_grad():  # a refinement that has learnt something
        head.refine_out.weight.normal_(0, 0.5)
    features = model.features(batch_of(model, train_data, [0], train=False))
    out = head(features)
    b, t = features.patches.shape[:2]
    own = owl.regions_from_frame_features(features.cls.flatten(0, 1), features.patches.flatten(0, 1))
    assert torch.allclose(out["naming"], own.embeds, atol=1e-5)
    assert not torch.allclose(out["regions"].embeds, own.embeds, atol=1e-3)
    head.spec["name_from"] = "refined"  # runs saved before the setting (spec without it) name from the refined
    assert torch.equal(head(features)["naming"], head(features)["regions"].embeds)
    with pytest.raises(Exception, match="name_from"):
        build_task("tracking", name_from="text").build_head(owl, model.encoder, train_data)


def test_box_refinement_starts_at_the_detector_boxes_and_learns_toward_the_truth():
    torch.manual_seed(0)
    refine = BoxRefinement(16, (2, 3), hidden=8)
    tokens = torch.randn(2, 6, 16)
    boxes = torch.rand(2, 6, 4) * 0.5 + 0.25
    assert torch.allclose(refine(tokens, boxes), boxes, atol=1e-5)  # zero-initialised: unchanged
    with pytest.raises(Exception, match="2x3 patch grid"):
        refine(torch.randn(1, 5, 16), torch.rand(1, 5, 4))
    # L1 x5 + gIoU x2 by hand: (0.5, 0.5, 0.2, 0.2) vs (0.5, 0.5, 0.4, 0.2): L1 = 0.2, IoU = 0.5 = gIoU.
    loss = box_refinement_loss(torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([[0.5, 0.5, 0.4, 0.2]]))
    assert float(loss) == pytest.approx(5 * 0.2 + 2 * 0.5, rel=1e-5)
    assert float(box_refinement_loss(torch.zeros(0, 4), torch.zeros(0, 4))) == 0.0
    target = (boxes + 0.05).flatten(0, 1)
    optimizer = torch.optim.Adam(refine.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = box_refinement_loss(refine(tokens, boxes).flatten(0, 1), target)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first


def test_box_refinement_trains_with_the_head(owl, train_data):
    model = model_for(owl, "post_network", train_data, embed_dim=32, hidden=64, refine_hidden=64, box_refine=True)
    assert model.head.box_refine is not None and model.head.spec["box_refine"] is True
    batch = batch_of(model, train_data, list(range(2)))
    model.train()
    loss = model(batch)
    loss.backward()
    assert model.head.box_refine.out.weight.grad.abs().sum() > 0
    out = model.head(model.features(batch))
    coarse = out["regions"].aux["cxcywh"]  # the ILFM's boxes stay for its set loss; untrained: equal
    assert torch.allclose(out["regions"].aux["refined_cxcywh"], coarse, atol=1e-5)


def test_trains_and_tracks_under_bf16_autocast(owl, train_data):
    """The bench runs cells under bf16 autocast: Hungarian costs and bi-softmax scores must reach scipy as floats."""
    model = model_for(owl, "post_network", train_data, embed_dim=32, hidden=64, refine_hidden=64)
    batch = batch_of(model, train_data, [0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.train()
        loss = model(batch)
        model.eval()
        predictions = model.predict(batch_of(model, train_data, [0, 1], train=False))
    assert math.isfinite(float(loss.detach())) and len(predictions) == 2


def test_zero_shot_row_is_tinyowl_detections_followed_by_iou(owl, train_data):
    test = load_task_data("synth", "test", "tracking", **SYNTH)
    model = model_for(owl, "post_network", train_data, head="detection", score_threshold=0.3)
    assert not any(True for _ in model.head.parameters())
    model.eval()
    batch = batch_of(model, test, [0, 1], train=False)
    predictions = model.predict(batch)
    assert len(predictions) == 2
    item = test.items[0]
    categories = list(test.classes)
    # Every predicted box of frame 0 is a TinyOWL region of that frame whose best category score passes 0.3.
    with torch.no_grad():
        regions = owl.detect(batch.video[batch.rows[0]], [category_prompt(c, "auto") for c in categories])
    best = regions.logits[0].sigmoid().max(-1).values
    candidates = regions.boxes[0][best >= 0.3] * 64
    first = [p for p in predictions[0] if p.frame == 0]
    assert first, "expected detections on frame 0"
    for p in first:
        assert float(box_iou_matrix(torch.tensor([p.box]), candidates).max()) == pytest.approx(1.0, abs=1e-4)
        assert p.score >= 0.3
    check_prediction_form(predictions, test.subset([0, 1]))
    assert item.video.video_id == test.items[0].video.video_id


def check_prediction_form(predictions, data) -> None:
    for boxes, item in zip(predictions, data.items, strict=True):
        categories: dict[int, str] = {}
        seen: set[tuple[int, int]] = set()
        for p in boxes:
            assert 0 <= p.frame < item.num_frames and p.category in data.classes and 0 <= p.score <= 1
            x1, y1, x2, y2 = p.box
            assert 0 <= x1 <= x2 <= item.width and 0 <= y1 <= y2 <= item.height
            assert categories.setdefault(p.track_id, p.category) == p.category  # one category per track
            assert (p.frame, p.track_id) not in seen  # one box per track and frame
            seen.add((p.frame, p.track_id))


def test_trained_head_predicts_tracks_scored_by_the_metrics(owl, train_data, tmp_path):
    test = load_task_data("synth", "test", "tracking", **SYNTH)
    model = model_for(owl, "post_network", train_data, embed_dim=32, hidden=64, refine_hidden=64)
    model.eval()
    predictions = model.predict(batch_of(model, test, list(range(len(test))), train=False))
    check_prediction_form(predictions, test)
    assert any(len({p.track_id for p in boxes}) < len(boxes) for boxes in predictions), "no track spans two frames"
    records = model.task.item_records(predictions, test)
    assert [r["id"] for r in records] == [i.video.video_id for i in test.items]
    metrics_module = pytest.importorskip("videoadapt.metrics.tracking")
    if not hasattr(metrics_module, "tracking_metrics_from_sums"):
        pytest.skip("videoadapt.metrics.tracking has no tracking_metrics_from_sums yet")
    metrics = model.task.evaluate(predictions, test)
    assert {"teta", "loca", "assoca", "clsa", "hota"} <= set(metrics)
    sums = {k: v.sum(0) for k, v in model.task.item_statistics(predictions, test).items()}
    for key, value in model.task.metrics_from_sums(sums).items():
        if key in metrics and math.isfinite(metrics[key]):
            assert float(value) == pytest.approx(metrics[key], abs=1e-6), key
    # The bench scores saved statistics with a task that never saw the data (and resamples: leading axes).
    fresh = build_task("tracking").metrics_from_sums({k: np.stack([v, v]) for k, v in sums.items()})
    for key in ("teta", "clsa_base", "clsa_novel"):
        if math.isfinite(metrics[key]):
            assert fresh[key].tolist() == pytest.approx([metrics[key]] * 2, abs=1e-6), key
    with pytest.raises(Exception, match="item_statistics first"):
        build_task("tracking").metrics_from_sums({k: v for k, v in sums.items() if k != "category_novel"})
    # eval --save-predictions: the two TAO jsons, which `videoadapt score --task tracking` scores the same.
    from videoadapt.commands.score import score_files

    documents = model.task.score_documents(predictions, test)
    assert sorted(documents) == ["ground_truth.json", "predictions.json"]
    for name, text in documents.items():
        (tmp_path / name).write_text(text)
    scored = score_files("tracking", tmp_path / "predictions.json", tmp_path / "ground_truth.json")
    assert scored["counts"]["videos"] == len(test.items) and scored["counts"]["novel_categories"] == 2
    assert scored["counts"]["boxes"] == sum(len(boxes) for boxes in predictions)
    for key in ("teta", "loca", "assoca", "clsa", "teta_novel", "clsa_novel", "hota", "idf1"):
        assert scored["metrics"][key] == pytest.approx(metrics[key], abs=1e-9, nan_ok=True), key


def test_the_ground_truth_writer_keeps_ids_frames_and_the_novel_split():
    from videoadapt.data.records import TaskData
    from videoadapt.metrics.tracking_files import tracking_ground_truth_document

    heart = ObjectTrack(1, "heart", (1, 3), ((0.0, 0.0, 2.0, 4.0), (1.0, 1.0, 3.0, 3.0)))
    first = _item(annotated_frames=(0, 1))  # the star's frames 0 and 1 are kept
    second = _item(video=VideoRef("w", None), tracks=(heart,), annotated_frames=(3,))
    extra = {"novel_categories": ["heart"]}
    data = TaskData("tracking", "test", [first, second], None, "mem", classes=["star", "heart"], extra=extra)
    document = tracking_ground_truth_document(data)
    assert document["categories"] == [
        {"id": 1, "name": "star", "frequency": "f"},
        {"id": 2, "name": "heart", "frequency": "r"},
    ]
    assert [(i["id"], i["video_id"], i["frame_index"]) for i in document["images"]] == [(1, 1, 0), (2, 1, 1), (8, 2, 3)]
    # Track ids are unique across the file; the heart's box on unannotated frame 1 is left out.
    assert [(a["image_id"], a["track_id"], a["category_id"], a["bbox"]) for a in document["annotations"]] == [
        (1, 1, 1, [1.0, 1.0, 4.0, 4.0]),
        (2, 1, 1, [2.0, 1.0, 4.0, 4.0]),
        (8, 2, 2, [1.0, 1.0, 2.0, 2.0]),
    ]
    crowd = dataclasses.replace(data, items=[_item(tracks=(dataclasses.replace(heart, iscrowd=True),))])
    with pytest.raises(Exception, match="crowd region"):
        tracking_ground_truth_document(crowd)


def _item(**changes) -> TrackingItem:
    track = ObjectTrack(1, "star", (0, 1), ((1.0, 1.0, 5.0, 5.0), (2.0, 1.0, 6.0, 5.0)))
    fields = {"video": VideoRef("v", None), "num_frames": 4, "fps": 4.0, "width": 8, "height": 8, "tracks": (track,)}
    fields.update(changes)
    return TrackingItem(**fields)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tracks": (ObjectTrack(3, "star", (7,), ((1.0, 1.0, 5.0, 5.0),)),)}, "frame 7 is outside"),
        ({"tracks": (ObjectTrack(3, "star", (0,), ((5.0, 1.0, 5.0, 5.0),)),)}, "is not a box"),
        ({"tracks": (ObjectTrack(3, "blob", (0,), ((1.0, 1.0, 5.0, 5.0),)),)}, "'blob' is not one of"),
        ({"width": 0}, "must be positive"),
    ],
)
def test_bad_items_are_named_or_skipped(train_data, changes, reason):
    task = build_task("tracking")
    data = dataclasses.replace(train_data, items=[_item(), _item(video=VideoRef("bad", None), **changes)])
    with pytest.raises(Exception, match=reason):
        check_items(task, data, skip_bad=False)
    assert [i.video.video_id for i in check_items(task, data, skip_bad=True).items] == ["v"]


def test_a_users_video_names_its_categories(owl, train_data):
    task = build_task("tracking")
    video = VideoRef("user", None)
    request = Request(texts=("star", " ", "heart"), duration=2.0, fps=4.0, width=32, height=16)
    (item,) = task.user_items(video, request, {})
    assert (item.num_frames, item.width, item.height, item.tracks) == (8, 32, 16, ())
    user_data = dataclasses.replace(train_data, classes=None)
    assert task.targets([item], user_data, None, False)["categories"] == ["star", "heart"]
    with pytest.raises(Exception, match="name the categories"):
        task.user_items(video, Request(duration=2.0, fps=4.0, width=32, height=16), {})
    from videoadapt.metrics.tracking import TrackedBox

    described = task.describe([TrackedBox(2, 5, "star", (1.0, 2.0, 3.0, 4.0), 0.7)], item, {})
    assert described["tracks"] == [
        {"track_id": 5, "category": "star", "boxes": {2: [1.0, 2.0, 3.0, 4.0]}, "start_s": 0.5, "end_s": 0.75}
    ]


def test_unknown_head_options_are_refused(owl, train_data):
    encoder = build_video_encoder(owl, "post_network", {})
    with pytest.raises(Exception, match="unknown tracking option"):
        build_task("tracking", treshold=0.3).build_head(owl, encoder, train_data)
    with pytest.raises(Exception, match="unknown tracking head"):
        build_task("tracking", head="dense").build_head(owl, encoder, train_data)
    assert np.isfinite(build_task("tracking").build_head(owl, encoder, train_data).spec["score_threshold"])


def test_the_bench_preset_covers_table_ii_tracking():
    from videoadapt.bench.matrix import BENCH_PRESETS, ZERO_SHOT, build_matrix

    preset = BENCH_PRESETS["tracking"]
    tables, cells = build_matrix(preset)
    assert [t.name for t in tables][0] == "tracking"  # the preset also carries segmentation's table
    assert [c[0] for c in tables[0].columns][:4] == ["TETA", "LocA", "AssocA", "ClsA"]
    zero = [c for c in cells if c.arm == ZERO_SHOT and c.table == "tracking"]
    assert len(zero) == 1 and zero[0].head == {"head": "detection"} and zero[0].backbone == "tiny-owl"
