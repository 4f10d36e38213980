"""TinyCLIP pretraining: the loss falls, zero-shot accuracy rises above chance, and a resumed run is the
uninterrupted run, bit for bit."""

from __future__ import annotations

import json

import pytest
import torch

from videoadapt.cli import main
from videoadapt.foundation import load_backbone
from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint
from videoadapt.foundation.tinyclip.model import TinyCLIPConfig
from videoadapt.foundation.tinyclip.pretrain import (
    PretrainRecipe,
    contrastive_loss,
    make_batch,
    positive_targets,
    pretrain,
    training_world,
)

# A small tower so that the test takes seconds; the frozen MiniLM is the real one.
SMALL = TinyCLIPConfig(width=64, layers=2, heads=2, embed_dim=64, stem_channels=(16, 32), text_head_hidden=128)


def recipe(steps: int, **overrides) -> PretrainRecipe:
    # fp32: bf16 autocast is emulated, and several times slower, on CPUs without native bf16 (the tests need neither).
    settings = dict(steps=steps, batch=48, lr=2e-3, warmup=5, checkpoint_every=4, bf16=False, model=SMALL.to_dict())
    return PretrainRecipe(**{**settings, **overrides})


def test_short_pretraining_learns(tmp_path):
    card = pretrain(tmp_path, recipe(40), progress=False, eval_images=120, log=lambda _: None)
    assert card["loss"]["end"] < card["loss"]["start"] - 0.3
    # Colour is learnt first; chance is 1/8 over colours (an untrained tower scores about that, see below).
    assert card["zero_shot"]["colour"] > 2 / 8
    written = json.loads((tmp_path / "model_card.json").read_text())
    assert written["steps"] == 40 and written["machine"]["cpu"]
    model = load_backbone(f"tiny:{tmp_path}")
    assert model.config == SMALL


def test_untrained_tower_is_at_chance():
    from videoadapt.foundation.tinyclip import TinyCLIP
    from videoadapt.foundation.zeroshot import evaluate

    torch.manual_seed(0)
    assert evaluate(TinyCLIP(SMALL), images=120)["colour"] < 2 / 8


def test_resume_is_bitwise_identical(tmp_path):
    plan = recipe(8)
    pretrain(tmp_path / "straight", plan, progress=False, eval_images=10, log=lambda _: None)
    assert (
        pretrain(tmp_path / "resumed", plan, progress=False, eval_images=10, stop_after=5, log=lambda _: None) is None
    )
    assert not (tmp_path / "resumed" / tiny_checkpoint.WEIGHTS).exists()
    messages = []
    pretrain(tmp_path / "resumed", plan, progress=False, eval_images=10, log=messages.append)
    assert any("resuming" in m and "step 5" in m for m in messages)
    straight = tiny_checkpoint.load(tmp_path / "straight").trainable_state_dict()
    resumed = tiny_checkpoint.load(tmp_path / "resumed").trainable_state_dict()
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_resume_refuses_a_different_recipe(tmp_path):
    # bf16 autocast here (the shipped recipe's), so that its path too is run.
    pretrain(tmp_path, recipe(4, bf16=True), progress=False, eval_images=10, stop_after=2, log=lambda _: None)
    with pytest.raises(ValueError, match="different recipe"):
        pretrain(tmp_path, recipe(4, bf16=True, lr=1e-4), progress=False, eval_images=10, log=lambda _: None)


def test_batches_are_a_pure_function_of_the_step():
    plan = recipe(3, batch=12)
    first = make_batch(training_world(plan), plan, 2)
    again = make_batch(training_world(plan), plan, 2)
    assert first.captions == again.captions and (first.images == again.images).all()
    assert len(first.captions) == 12
    # Every scene has a twin (twin_fraction 1.0): canonical captions come in pairs that differ.
    assert len(set(first.keys)) > len(first.keys) // 2


def test_equal_captions_are_positives_of_each_other():
    targets = positive_targets(["a", "b", "a", "c"])
    expected = torch.tensor([[0.5, 0, 0.5, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1]])
    assert torch.equal(targets, expected)


def test_contrastive_loss_is_small_when_aligned_and_large_when_shuffled():
    embeddings = torch.eye(4)
    scale = torch.tensor(30.0)
    keys = ["a", "b", "c", "d"]
    assert contrastive_loss(embeddings, embeddings, scale, keys) < 1e-3
    assert contrastive_loss(embeddings, embeddings.roll(1, 0), scale, keys) > 10


def test_cli_stop_after_then_resume(tmp_path, capsys):
    args = ["pretrain", "--out", str(tmp_path), "--steps", "3", "--batch-size", "8", "--eval-images", "8", "--no-bf16"]
    # The full-size default tower is used here; three steps of eight images keep it quick.
    assert main([*args, "--stop-after", "2"]) == 0
    assert not (tmp_path / "model_card.json").exists()
    assert main([*args, "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["steps"] == 3 and set(card["zero_shot_targets_met"]) >= {"shape", "colour", "position"}
