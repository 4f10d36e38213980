"""TinyOWL: region shapes and clipping, the box bias, Hungarian matching by hand, training steps, exact resume,
the pretrain CLI, the backbone specs and the shipped checkpoint with its card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videoadapt.cli import main
from videoadapt.foundation import GroundingModel, load_backbone
from videoadapt.foundation.tinyclip import TinyCLIP, TinyCLIPConfig
from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint
from videoadapt.foundation.tinyowl import TinyOWL, TinyOWLConfig
from videoadapt.foundation.tinyowl import checkpoint as owl_checkpoint
from videoadapt.foundation.tinyowl.losses import Targets, match, pairwise_giou, set_loss
from videoadapt.foundation.tinyowl.pretrain import (
    DetectionRecipe,
    make_batch,
    pretrain_detection,
    training_queries,
    training_world,
)
from videoadapt.utils.safe_io import load_tensors

SMALL = TinyCLIPConfig(
    image_size=32, patch_size=8, width=32, layers=1, heads=2, embed_dim=16, stem_channels=(8, 16), text_head_hidden=0
).to_dict()


@pytest.fixture(autouse=True)
def shared_text_tower(text_tower, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Every TinyCLIP built here (checkpoint loads, training starts) reuses the session's MiniLM instead of loading
    its 90 MB again: the tests then take seconds, not minutes."""
    import videoadapt.foundation.tinyclip.model as tinyclip_model

    monkeypatch.setattr(tinyclip_model, "MiniLMTextTower", lambda *args, **kwargs: text_tower)


@pytest.fixture(scope="module")
def small_clip_dir(tmp_path_factory: pytest.TempPathFactory, text_tower) -> Path:  # noqa: ANN001
    """A small random TinyCLIP checkpoint to start detection training from (fast; no shipped weights needed)."""
    path = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    tiny_checkpoint.save(TinyCLIP(TinyCLIPConfig.from_dict(SMALL), text_tower=text_tower), path)
    return path


@pytest.fixture
def small_owl(text_tower) -> TinyOWL:  # noqa: ANN001
    torch.manual_seed(0)
    return TinyOWL(TinyOWLConfig(clip=SMALL, box_hidden=16), text_tower=text_tower).eval()  # BatchNorm: eval


def recipe(init: Path, steps: int = 3, **overrides: object) -> DetectionRecipe:
    values = {"steps": steps, "batch": 4, "warmup": 1, "checkpoint_every": 1, "init": str(init), "box_hidden": 16}
    return DetectionRecipe(**{**values, **overrides})  # type: ignore[arg-type]


def test_regions_have_one_clipped_box_and_embedding_per_patch(small_owl: TinyOWL) -> None:
    images = torch.randn(3, 3, 32, 32) * 3
    with torch.no_grad():
        small_owl.box_head.layers[-1].weight.normal_(std=5.0)  # push boxes well outside the image
        regions = small_owl.detect(images, ["a star", "an hourglass"])
    assert regions.boxes.shape == (3, 16, 4) and regions.embeds.shape == (3, 16, 16)
    assert regions.logits.shape == (3, 16, 2) and regions.queries == ["a star", "an hourglass"]
    assert regions.boxes.min() >= 0 and regions.boxes.max() <= 1
    assert torch.all(regions.boxes[..., 2:] >= regions.boxes[..., :2])
    assert regions.pixel_boxes(32, 32).max() <= 32


def test_box_bias_puts_initial_boxes_on_their_patches(small_owl: TinyOWL) -> None:
    with torch.no_grad():
        cxcywh = small_owl.encode_regions(torch.randn(2, 3, 32, 32)).aux["cxcywh"]
    centres = (torch.arange(4) + 0.5) / 4
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    expected = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # row-major: the token order
    torch.testing.assert_close(cxcywh[0, :, :2], expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(cxcywh[1, :, 2:], torch.full((16, 2), 0.25), atol=1e-3, rtol=0)


def test_matching_picks_the_obvious_assignment() -> None:
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1], [0.21, 0.2, 0.1, 0.1]])
    logits = torch.full((4, 3), -5.0)
    logits[3, 0] = 5.0  # region 3 is confident about query 0 and sits on object 0, like region 0
    logits[1, 2] = 5.0
    targets = Targets(
        boxes=torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.2, 0.2]]),
        positives=torch.tensor([[True, False, False], [False, False, True]]),
    )
    rows, cols = match(logits, boxes, targets)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 3, 1: 1}
    empty = Targets(torch.zeros(0, 4), torch.zeros(0, 3, dtype=torch.bool))
    assert len(match(logits, boxes, empty)[0]) == 0


def test_giou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]])
    iou, giou = pairwise_giou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 0.0]]))
    # Hulls: 3x3 = 9 (union 7) and 5x2 = 10 (union 5).
    torch.testing.assert_close(giou, torch.tensor([[1 / 7 - 2 / 9, -0.5]]))


def test_set_loss_is_small_for_a_perfect_prediction_and_large_for_a_wrong_one() -> None:
    targets = [Targets(torch.tensor([[0.3, 0.3, 0.2, 0.2]]), torch.tensor([[True, False]]))]
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]])
    good = torch.tensor([[[9.0, -9.0], [-9.0, -9.0]]])
    bad = torch.tensor([[[-9.0, 9.0], [9.0, 9.0]]])
    low, parts = set_loss(good, boxes, targets)
    assert low.item() < 1e-3 and parts["l1"] == pytest.approx(0) and parts["giou"] == pytest.approx(0, abs=1e-6)
    assert set_loss(bad, boxes, targets)[0].item() > 10


def test_held_out_categories_are_never_training_queries(small_clip_dir: Path) -> None:
    r = recipe(small_clip_dir)
    world = training_world(r, 32)
    queries, index = training_queries(world.config.held_out_shapes)
    assert len(queries) == 8 * 9 and "a star" in queries and "a red star" in queries
    for shape in world.config.held_out_shapes:
        assert not any(shape in q for q in queries)
    batch = make_batch(world, r, 5)
    assert len(batch) == 4 and not any(image.novel for image in batch)
    assert [im.id for im in make_batch(world, r, 5)] == [im.id for im in batch]  # a pure function of the step


def test_training_steps_lower_the_loss(small_clip_dir: Path) -> None:
    from videoadapt.foundation.tinyowl.pretrain import _optimizer, freeze_text, initial_model, train_step

    r = recipe(small_clip_dir, lr=3e-3)
    model = initial_model(r)
    freeze_text(model)
    optimizer = _optimizer(model, r)
    for group in optimizer.param_groups:
        group["lr"] = r.lr * group["lr_scale"]
    world = training_world(r, 32)
    queries, index = training_queries(world.config.held_out_shapes)
    with torch.no_grad():
        text = model.embed_texts(queries).float()
    images = make_batch(world, r, 0)
    losses = [train_step(model, optimizer, images, text, index, bf16=False)[0] for _ in range(8)]
    assert losses[-1] < losses[0]


def test_resume_is_exact(small_clip_dir: Path, tmp_path: Path) -> None:
    r = recipe(small_clip_dir)
    straight = pretrain_detection(tmp_path / "straight", r, progress=False, eval_images=0, log=lambda _: None)
    assert straight is not None
    assert pretrain_detection(tmp_path / "resumed", r, progress=False, eval_images=0, stop_after=2) is None
    resumed = pretrain_detection(tmp_path / "resumed", r, progress=False, eval_images=0, log=lambda _: None)
    assert resumed is not None and resumed["loss"] == straight["loss"]
    a = load_tensors(tmp_path / "straight" / owl_checkpoint.WEIGHTS)
    b = load_tensors(tmp_path / "resumed" / owl_checkpoint.WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="different recipe"):
        pretrain_detection(tmp_path / "resumed", recipe(small_clip_dir, steps=4), progress=False, eval_images=0)


def test_checkpoint_round_trip_and_backbone_specs(small_owl: TinyOWL, tmp_path: Path) -> None:
    owl_checkpoint.save(small_owl, tmp_path, card={"model": "TinyOWL"})
    images = torch.randn(2, 3, 32, 32)
    for spec in (f"tiny-owl:{tmp_path}", str(tmp_path)):
        loaded = load_backbone(spec)
        assert isinstance(loaded, TinyOWL) and isinstance(loaded, GroundingModel)
        with torch.no_grad():
            torch.testing.assert_close(loaded.encode_regions(images).boxes, small_owl.encode_regions(images).boxes)
            # Every other paradigm sees TinyCLIP.
            torch.testing.assert_close(loaded.encode_images(images).embeds, small_owl.clip.encode_images(images).embeds)
    assert "clip.text_tower.encoder.layer.0.attention.self.query.weight" not in load_tensors(
        tmp_path / "model.safetensors"
    )


def test_pretrain_cli_help_and_bad_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["pretrain", "--help"])
    assert done.value.code == 0 and "--detection" in capsys.readouterr().out
    with pytest.raises(SystemExit) as failed:
        main(["pretrain", "--detection", "--out", str(tmp_path), "--no-such-flag"])
    assert failed.value.code == 2 and "--no-such-flag" in capsys.readouterr().err


def test_pretrain_cli_detection_stop_then_resume(small_clip_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    args = ["pretrain", "--detection", "--out", str(tmp_path), "--steps", "2", "--batch-size", "2"]
    args += ["--init", str(small_clip_dir), "--eval-images", "4"]
    assert main([*args, "--stop-after", "1"]) == 0
    assert main(args) == 0
    assert "held_out: AP" in capsys.readouterr().out
    card = owl_checkpoint.card(tmp_path)
    assert card["steps"] == 2 and "zero_shot_detection" in card and card["command"].startswith("videoadapt")


def test_zeroshot_detection_refuses_a_contrastive_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zeroshot", "--detection", "--backbone", "tiny-random", "--images", "2"]) != 0
    assert "grounding backbone" in capsys.readouterr().err


SHIPPED = Path(owl_checkpoint.__file__).parent / "weights"


@pytest.mark.skipif(not owl_checkpoint.is_checkpoint(SHIPPED), reason="no shipped TinyOWL checkpoint")
def test_shipped_checkpoint_loads_and_matches_its_card() -> None:
    from videoadapt.foundation.zeroshot_detection import evaluate_detection

    card = owl_checkpoint.card(SHIPPED)
    assert (SHIPPED / owl_checkpoint.WEIGHTS).stat().st_size <= 30 * 2**20
    model = load_backbone("tiny-owl")
    assert isinstance(model, TinyOWL) and model.config.box_hidden == card["recipe"]["box_hidden"]
    assert card["model"] == "TinyOWL" and card["steps"] == card["recipe"]["steps"]
    assert card["command"].startswith("videoadapt pretrain --detection")
    figures = card["zero_shot_detection"]
    # The card's figures are reproduced (deterministic up to the order of float sums, which the thread count sets).
    result = evaluate_detection(model, images=figures["images"], seed=figures["seed"])
    for group in ("seen", "held_out"):
        for key in ("AP", "AP50"):
            assert result[group][key] == pytest.approx(figures[group][key], abs=0.5)  # thread count: sum order
    # TinyOWL is a normal ImageLanguageModel too.
    assert model.encode_images(torch.zeros(1, 3, 64, 64)).embeds.shape == (1, 256)
    assert np.isfinite(figures["seen"]["AP50"])


def test_detect_frames_maps_boxes_back_to_frames_of_any_size(small_owl: TinyOWL) -> None:
    """A decoded clip goes in as it is: the resize and centre crop are undone, so boxes are fractions of the
    original frame and lie inside the part the model saw."""
    import numpy as np

    from videoadapt.data.transforms import preprocess

    rng = np.random.default_rng(0)
    size = small_owl.processor.image_size
    square = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    direct = small_owl.detect(preprocess(square, small_owl.processor), ["a star"])
    assert torch.allclose(small_owl.detect_frames(square, ["a star"]).boxes, direct.boxes, atol=1e-6)
    wide = np.concatenate(
        [
            rng.integers(0, 256, (2, size, size // 2, 3), dtype=np.uint8),
            square,
            rng.integers(0, 256, (2, size, size // 2, 3), dtype=np.uint8),
        ],
        axis=2,
    )  # 2S wide
    boxes = small_owl.detect_frames(wide, ["a star"]).boxes
    # The centre crop of the wide frame is the square: x maps to (x * S + S/2) / 2S, y is unchanged.
    expected = direct.boxes * torch.tensor([0.5, 1.0, 0.5, 1.0]) + torch.tensor([0.25, 0.0, 0.25, 0.0])
    assert torch.allclose(boxes, expected, atol=1e-6)
