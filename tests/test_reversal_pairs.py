"""SynthWorld's time-reversal pairs measured exactly: the reader's reversed copies (val/test only), the batch builder
playing a copy's sampled clip backwards (decoded frames and cached rows), and ``reversal_pair_accuracy`` on the
balanced set, at most 50 % for a frame-order-blind model (the zero-shot ILFM with mean pooling) and 100 % for an
order-aware scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoadapt.data.formats import load_task_data
from videoadapt.data.records import ClassificationItem, TaskData, time_reversal_copies
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.data.synthworld import ACTIONS, partner
from videoadapt.data.transforms import preprocess
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures
from videoadapt.foundation.loading import load_backbone
from videoadapt.metrics.bootstrap import sums
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import TextEncoder, build_task, feature_widths

SYNTH = {"videos": 200, "size": 32, "frames": 8}
FRAMES = 4


def copies_of(split: str = "test", **options) -> TaskData:
    return load_task_data("synth", split, "recognition", **{**SYNTH, **options}, reversal_copies=True)


def test_reader_adds_one_reversed_copy_per_video_of_a_paired_class():
    plain = load_task_data("synth", "test", "recognition", **SYNTH)
    data = copies_of()
    n = len(plain)
    assert data.items[:n] == plain.items  # the originals keep their indices
    paired = [i for i, item in enumerate(plain.items) if partner(ACTIONS[item.label]) != ACTIONS[item.label]]
    assert 0 < len(paired) < n  # bounce and collide have no distinct partner, so no copy
    assert data.extra["reversal_copies"] == [[i, n + k] for k, i in enumerate(paired)]
    assert time_reversal_copies(data.items) == {i: c for i, c in data.extra["reversal_copies"]}
    for original, copy in data.extra["reversal_copies"]:
        a, b = data.items[original], data.items[copy]
        assert b.video == a.video and b.time_reversed and not a.time_reversed
        assert ACTIONS[b.label] == partner(ACTIONS[a.label])
    assert len(data.extra["novel"]) == len(data)


def test_reader_never_gives_the_train_split_copies_and_refuses_other_tasks():
    train = load_task_data("synth", "train", "recognition", **SYNTH, reversal_copies=True)
    assert not any(item.time_reversed for item in train.items) and "reversal_copies" not in train.extra
    with pytest.raises(VideoadaptError, match="reversal_copies applies to recognition only"):
        load_task_data("synth", "test", "retrieval", **SYNTH, reversal_copies=True)
    with pytest.raises(VideoadaptError, match="reversal_copies must be true, false or evaluation split names"):
        load_task_data("synth", "test", "recognition", **SYNTH, reversal_copies=2)
    with pytest.raises(VideoadaptError, match="got 'maybe'"):
        load_task_data("synth", "test", "recognition", **SYNTH, reversal_copies="maybe")
    # Named splits: the test split gets copies, validation does not (it costs no extra clips there).
    test = load_task_data("synth", "test", "recognition", **SYNTH, reversal_copies="test")
    val = load_task_data("synth", "val", "recognition", **SYNTH, reversal_copies="test")
    assert any(item.time_reversed for item in test.items) and not any(item.time_reversed for item in val.items)
    assert load_task_data("synth", "val", "recognition", **SYNTH, reversal_copies="false").items == val.items


def test_pairing_comes_from_the_items_and_names_a_lone_copy():
    data = copies_of()
    original, copy = data.extra["reversal_copies"][0]
    kept = [item for i, item in enumerate(data.items) if i != original]
    with pytest.raises(VideoadaptError, match=r"time-reversed copy without its original"):
        time_reversal_copies(kept)
    twice = [*data.items, data.items[copy]]
    with pytest.raises(VideoadaptError, match="two time-reversed copies"):
        time_reversal_copies(twice)
    mislabelled = list(data.items)
    mislabelled[copy] = ClassificationItem(data.items[copy].video, data.items[original].label, time_reversed=True)
    broken = TaskData("recognition", "test", mislabelled, data.source, data.origin, data.classes, extra=data.extra)
    scores = [torch.zeros(len(data.classes)) for _ in mislabelled]
    with pytest.raises(
        VideoadaptError, match=rf"item {copy} is the time-reversed copy of item {original} .* not its reversal partner"
    ):
        build_task("recognition").evaluate(scores, broken)


def builder(data: TaskData, train: bool = False, **options) -> BatchBuilder:
    ilfm = load_backbone("hf-config:clip-tiny")
    return BatchBuilder(
        data, build_task("recognition"), ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=train, **options
    )


def test_a_copy_is_its_originals_sampled_clip_played_backwards():
    data = copies_of()
    original, copy = data.extra["reversal_copies"][0]
    build = builder(data)
    together = build.build([original, copy])
    assert together.video.shape[0] == 2 and together.rows.tolist() == [0, 1]  # two clips, not one
    torch.testing.assert_close(together.video[1], together.video[0].flip(0), rtol=0, atol=0)
    # In separate batches the copy is still exactly the reversed clip of its original.
    alone = build.build([copy])
    torch.testing.assert_close(alone.video[0], together.video[0].flip(0), rtol=0, atol=0)
    # Two items of one video and one direction still share a clip.
    again = build.build([original, original, copy])
    assert again.rows.tolist() == [0, 0, 1]


def test_training_refuses_a_reversed_copy():
    data = copies_of()
    _, copy = data.extra["reversal_copies"][0]
    with pytest.raises(VideoadaptError, match=r"item \d+ .*time-reversed copy is for evaluation"):
        builder(data, train=True).build([copy])


class FakeCache:
    """Cached features whose every value says which video and which frame it came from."""

    def __init__(self, data: TaskData, frames: int = 8) -> None:
        ids = [v.video_id for v in data.videos()]
        self.index = {v: i for i, v in enumerate(ids)}
        self.frames = frames

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.index

    def get(self, video_ids, patches: bool = True) -> FrameFeatures:
        base = torch.tensor([self.index[v] for v in video_ids], dtype=torch.float32)[:, None]
        code = base * 100 + torch.arange(self.frames, dtype=torch.float32)[None, :]  # [B,T]
        return FrameFeatures(
            cls=code[..., None].expand(-1, -1, 3).clone(),
            patches=code[..., None, None].expand(-1, -1, 2, 3).clone(),
            embeds=code[..., None].expand(-1, -1, 4).clone(),
            layers=[code[..., None, None].expand(-1, -1, 2, 3).clone()],
        )


@pytest.mark.parametrize("cache_sampler", [None, "uniform:4"])
def test_cached_rows_of_a_copy_are_reversed_in_time(cache_sampler):
    data = copies_of()
    original, copy = data.extra["reversal_copies"][0]
    sampler = None if cache_sampler is None else sampler_from_spec(cache_sampler)
    batch = builder(data, cache=FakeCache(data), pixels=False, cache_sampler=sampler).build([original, copy])
    assert batch.video is None and batch.rows.tolist() == [0, 1]
    features = batch.cached
    for tensor in (features.cls, features.patches, features.embeds, features.layers[0]):
        torch.testing.assert_close(tensor[1], tensor[0].flip(0), rtol=0, atol=0)
        assert not torch.equal(tensor[0], tensor[1])  # the frames really differ, so the flip is seen


def predict_all(model: TaskModel, data: TaskData, build: BatchBuilder) -> list:
    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(data), 16):
            predictions += model.predict(build.build(list(range(start, min(start + 16, len(data))))))
    return predictions


def test_a_frame_order_blind_zero_shot_ilfm_is_at_most_at_chance_on_the_balanced_pairs():
    """The shipped TinyCLIP, mean-pooled frames, text classifier (the bench's zero-shot arm): a clip and its
    reversal get the same class scores up to float rounding (the mean adds the frames in another order), so of
    the two clips of a pair at most one can score its class strictly above its partner, unless the two scores are
    within rounding of each other; such near-ties are counted and allowed for, none is expected."""
    data = copies_of(size=64, videos=400)
    ilfm = load_backbone("tiny")
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": {"temporal": "mean"}})
    feature_widths(encoder, FRAMES)
    task = build_task("recognition", classifier="text")
    model = TaskModel(encoder, task.build_head(ilfm, encoder, data), task, TextEncoder(ilfm))
    build = BatchBuilder(data, task, ilfm.processor, sampler_from_spec(f"uniform:{FRAMES}"), train=False)
    scores = torch.stack(predict_all(model, data, build))
    copies = time_reversal_copies(data.items)
    labels = [item.label for item in data.items]
    near_ties = 0
    for original, copy in copies.items():
        torch.testing.assert_close(scores[copy], scores[original], atol=1e-4, rtol=1e-5)  # order-blind
        gap = abs(float(scores[original, labels[original]] - scores[original, labels[copy]]))
        near_ties += gap < 1e-4
    result = task.evaluate(list(scores), data)
    assert result["reversal_clips"] == 2 * len(copies)
    assert result["reversal_pair_accuracy"] <= 100 * (len(copies) + near_ties) / (2 * len(copies))
    assert near_ties == 0 and result["reversal_pair_accuracy"] <= 50.0
    stats = task.metrics_from_sums(sums(task.item_statistics(list(scores), data)))
    assert float(stats["reversal_pair_accuracy"]) == pytest.approx(result["reversal_pair_accuracy"], abs=1e-9)


def test_an_order_aware_scorer_gets_every_pair_right():
    """A scorer that knows each video's clip in its true direction (decoded and preprocessed on its own, not by the
    batch builder) scores the original class for that clip and the partner for it played backwards; fed the batch
    builder's clips, it is right on every clip of every pair."""
    data = copies_of()
    build = builder(data)
    processor = load_backbone("hf-config:clip-tiny").processor
    sampler = sampler_from_spec(f"uniform:{FRAMES}")
    originals = {item.video: item.label for item in data.items if not item.time_reversed}

    def score(clip: torch.Tensor, video) -> torch.Tensor:
        forward = preprocess(data.source.frames(video, sampler), processor)
        row = torch.zeros(len(data.classes))
        if torch.equal(clip, forward):
            row[originals[video]] = 1.0
        elif torch.equal(clip, forward.flip(0)):
            row[ACTIONS.index(partner(ACTIONS[originals[video]]))] = 1.0
        return row

    predictions = []
    for start in range(0, len(data), 8):
        batch = build.build(list(range(start, min(start + 8, len(data)))))
        for index, row in zip(batch.indices, batch.rows.tolist(), strict=True):
            predictions.append(score(batch.video[row], data.items[index].video))
    result = build_task("recognition").evaluate(predictions, data)
    assert result["reversal_pair_accuracy"] == 100.0 and result["top1"] == 100.0


def test_without_copies_no_pair_accuracy_is_reported():
    data = load_task_data("synth", "test", "recognition", **SYNTH)
    scores = [torch.randn(len(data.classes), generator=torch.Generator().manual_seed(i)) for i in range(len(data))]
    result = build_task("recognition").evaluate(scores, data)
    assert "reversal_top1" in result and "reversal_pair_accuracy" not in result


def test_reversal_metrics_on_a_worked_example():
    from videoadapt.tasks.recognition import reversal_metrics

    # Classes 0<->1 form a pair, 2 has none. Items 0, 1, 2 are originals (labels 0, 1, 2); 3 copies 0 (label 1),
    # 4 copies 1 (label 0). Original 0: top-1 right, beats its partner. Copy 3: class 1 (2.0) beats 0 (1.0).
    # Original 1: class 2 wins top-1, class 1 (1.0) loses to 0 (3.0). Copy 4: class 0 (0.5) ties class 1: no.
    scores = torch.tensor([[3.0, 1.0, 0.0], [3.0, 1.0, 5.0], [0.0, 0.0, 1.0], [1.0, 2.0, 0.0], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 1, 2, 1, 0])
    result = reversal_metrics(scores, labels, [[0, 1]], {0: 3, 1: 4})
    assert result["reversal_videos"] == 2 and result["reversal_clips"] == 4
    assert result["reversal_top1"] == pytest.approx(50.0)
    assert result["reversal_pair_accuracy"] == pytest.approx(50.0)
    # A tie on top-1 goes to the higher class index, as top1 counts it.
    tied = reversal_metrics(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([1]), [[0, 1]])
    assert tied == {"reversal_top1": 100.0, "reversal_videos": 1.0}


def test_a_copy_is_folded_into_its_originals_row():
    data = copies_of()
    n = len(time_reversal_copies(data.items))
    rng = np.random.default_rng(0)
    scores = [torch.tensor(rng.normal(size=len(data.classes)), dtype=torch.float32) for _ in data.items]
    task = build_task("recognition")
    stats = task.item_statistics(scores, data)
    originals = len(data) - n
    assert all(v.shape[0] == originals for v in stats.values())
    assert stats["reversal_pairs"][:, 0].sum() == 2 * n
    records = task.item_records(scores, data)
    assert len(records) == originals and sum("reversed" in r for r in records) == n
    for record in records:
        if "reversed" in record:
            assert record["reversed"]["label"] == record["partner"] and record["reversed"]["partner"] == record["label"]
            assert record["pair"] == [
                record["label_score"] > record["partner_score"],
                record["reversed"]["label_score"] > record["reversed"]["partner_score"],
            ]
