"""Segmentation's pixel stem: the mask head reads the clips' pixels beside the cached patch tokens."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from videoadapt.data.formats import load_task_data
from videoadapt.data.sampling import sampler_from_spec
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.loading import load_backbone
from videoadapt.inference.evaluate import evaluate_run
from videoadapt.model.batches import BatchBuilder
from videoadapt.model.config import load_config
from videoadapt.model.task_model import TaskModel
from videoadapt.paradigms import build_video_encoder
from videoadapt.tasks import TextEncoder, build_task, feature_widths
from videoadapt.temporal.mask_decoder import MaskQueryDecoder
from videoadapt.train.trainer import train

SMALL = {"width": 24, "embed_dim": 16, "grid": (4, 4), "hidden": 32, "queries": 5, "layers": 1, "upsample": 2}


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_masks_follow_the_pixels_and_start_as_the_token_only_head(stride):
    torch.manual_seed(0)
    decoder = MaskQueryDecoder(**SMALL, pixel_stride=stride, stem_dim=8)
    tokens, pixels = torch.randn(3, 16, 24), torch.randn(3, 3, 32, 32)
    out = decoder(tokens, pixels)
    assert out["masks"].shape == (3, 5, 32 // stride, 32 // stride)
    # The fusion's last convolution starts at zero: the masks are the token-only masks, bilinearly upsampled.
    with torch.no_grad():
        x = decoder.project(tokens)
        states = decoder.norm(decoder.decoder(decoder.query_content.expand(3, -1, -1) + decoder.query_position, x))
        coarse = torch.einsum("nqc,nchw->nqhw", decoder.mask_embed(states), decoder.pixel_features(x))
    expected = F.interpolate(coarse, size=(32 // stride,) * 2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["masks"], expected, atol=1e-5, rtol=1e-4)


def test_a_pixel_changes_the_masks_near_it_only():
    torch.manual_seed(0)
    decoder = MaskQueryDecoder(**SMALL, pixel_stride=2, stem_dim=8)
    torch.nn.init.normal_(decoder.fuse[-1].weight, std=0.5)  # as after training: the pixels count
    tokens, pixels = torch.randn(1, 16, 24), torch.randn(1, 3, 32, 32)
    changed = pixels.clone()
    changed[0, :, 4, 4] += 3.0
    with torch.no_grad():
        delta = (decoder(tokens, changed)["masks"] - decoder(tokens, pixels)["masks"]).abs()[0].amax(0)  # [16,16]
    assert float(delta[2, 2]) > 1e-4  # the cell holding the pixel (stride 2)
    # Two 3x3 convolutions in the stem and one in the fusion reach a few cells, not the far corner.
    assert float(delta[10:, 10:].max()) == 0.0


def test_bad_strides_and_missing_pixels_are_refused():
    with pytest.raises(VideoadaptError, match="pixel_stride"):
        MaskQueryDecoder(**SMALL, pixel_stride=3)
    decoder = MaskQueryDecoder(**SMALL, pixel_stride=2)
    with pytest.raises(VideoadaptError, match="pixels"):
        decoder(torch.randn(2, 16, 24))
    with pytest.raises(VideoadaptError, match="pixels"):
        decoder(torch.randn(2, 16, 24), torch.randn(1, 3, 32, 32))
    # Without a stem the decoder is the token-only head: its masks are the patch cells.
    assert MaskQueryDecoder(**SMALL)(torch.randn(2, 16, 24))["masks"].shape == (2, 5, 8, 8)


def test_the_model_hands_each_item_its_clip_and_asks_for_pixels_beside_the_cache():
    data = load_task_data("synth", "train", "segmentation", videos=20, size=32, frames=8)
    ilfm = load_backbone("hf-config:clip-tiny")
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": {"temporal": "mean"}})
    feature_widths(encoder, 4)
    models = {}
    for stride in (0, 2):
        task = build_task("segmentation", hidden=32, layers=1, queries=4, pixel_dim=8, pixel_stride=stride)
        models[stride] = TaskModel(encoder, task.build_head(ilfm, encoder, data), task, TextEncoder(ilfm)).eval()
    # The frozen backbone's features stay cacheable; only the pixel head needs the clips beside them.
    assert encoder.cacheable and not encoder.cache_with_pixels
    assert models[2].head.needs_pixels and models[2].cache_with_pixels
    assert not models[0].head.needs_pixels and not models[0].cache_with_pixels
    builder = BatchBuilder(data, models[2].task, ilfm.processor, sampler_from_spec("uniform:4"), train=False)
    batch = builder.build([0, 1])
    batch.rows = torch.tensor([1, 0, 1])  # items sharing clips, in another order
    with torch.no_grad():
        features = models[2].features(batch)
        assert models[0].features(batch).pixels is None
    assert features.pixels is not None and features.pixels.shape[0] == 3
    torch.testing.assert_close(features.pixels[0], batch.video[1])
    torch.testing.assert_close(features.pixels[1], batch.video[0])
    cached = dataclasses.replace(batch, video=None, cached=ilfm.encode_frames(batch.video))
    with pytest.raises(VideoadaptError, match="pixels"):
        models[2].features(cached)


def test_trains_and_evaluates_from_cached_tokens_with_decoded_pixels(tmp_path):
    """The whole path: a frozen backbone's tokens come from the feature cache, the clips are decoded beside them
    (the task head asks for pixels), in training, validation and ``videoadapt eval``."""
    overrides = [
        "model.backbone=tiny-owl",
        "model.paradigm=post_network",
        "model.options.post_network.temporal=mean",
        "run.task=segmentation",
        "data.source=synth",
        "data.options.videos=20",
        "data.options.size=32",
        "data.options.frames=8",
        "data.frames=4",
        "model.head.hidden=32",
        "model.head.queries=4",
        "model.head.layers=1",
        "model.head.pixel_dim=8",
        "model.head.fine_hidden=0",
        "model.head.pixel_stride=4",
        "model.head.stem_dim=8",
        "run.cache=true",
        "run.epochs=1",
        "run.batch_size=4",
        "run.progress=false",
        "run.cpu=true",
    ]
    config = load_config(None, overrides=overrides)
    metrics = train(config, tmp_path / "run")
    assert metrics["steps"] >= 1 and "ap" in metrics["best"]["metrics"]
    assert any((tmp_path / "run" / "cache").rglob("*")), "the backbone's features were cached"
    spec = json.loads((tmp_path / "run" / "vocabulary.json").read_text())
    assert spec["pixel_stride"] == 4
    result = evaluate_run(tmp_path / "run", split="val")
    assert 0.0 <= result["metrics"]["ap"] <= 100.0
