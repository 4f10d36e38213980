"""The TinyCLIP checkpoint that ships with the package: it loads offline, its card records how it was made, and
a fresh zero-shot evaluation on other test images agrees with the figures on the card."""

from __future__ import annotations

import pytest

from videoadapt.foundation import load_backbone
from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint
from videoadapt.foundation.zeroshot import evaluate


@pytest.fixture(scope="module")
def shipped():
    return load_backbone("tiny"), tiny_checkpoint.card(tiny_checkpoint.shipped_directory())


def test_card_records_the_recipe_and_the_run(shipped):
    _, card = shipped
    assert card["model"] == "TinyCLIP"
    assert card["steps"] == card["recipe"]["steps"] > 0
    assert card["wall_time_s"] > 0 and card["machine"]["cpu"]
    assert card["loss"]["end"] < card["loss"]["start"]
    assert set(card["zero_shot"]) >= {"shape", "colour", "size", "position", "held_out_shapes", "colour_synonyms"}


def test_checkpoint_is_small_and_safetensors():
    directory = tiny_checkpoint.shipped_directory()
    weights = directory / tiny_checkpoint.WEIGHTS
    assert weights.stat().st_size <= 30 * 2**20
    assert not list(directory.glob("*.bin")) and not list(directory.glob("*.pt"))


def test_fresh_zero_shot_agrees_with_the_card(shipped):
    model, card = shipped
    # Other images than the card's (another seed), fewer of them: agreement within sampling noise.
    fresh = evaluate(model, images=150, seed=4321)
    for view in ("shape", "colour", "size", "position"):
        assert abs(fresh[view] - card["zero_shot"][view]) < 0.12, view
