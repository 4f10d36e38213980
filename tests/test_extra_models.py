"""Fine-tuning with extra models: a motion stream (3D CNN over frame differences) or another model's per-frame
structure (boxes, labels, scores, masks), fused into the image stream by zero-initialised cross-attention."""

from __future__ import annotations

import pytest
import torch

from paradigm_helpers import (
    assert_exactly_declared_parameters_have_gradients,
    make_backbone,
    perturb,
    round_trip_trainable,
    video_for,
)
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder
from videoadapt.temporal.motion import frame_differences

SMALL_MOTION = {"channels": [8, 16], "grid": 2}
STRUCTURE = {"stream": "structure", "inputs": ["boxes", "labels", "scores"], "num_labels": 5}
SALIENCY = {"stream": "saliency", "temporal": "transformer"}

CASES = [
    ("extra_models", {"extra_models": SMALL_MOTION}),
    ("extra_models", {"extra_models": {**SMALL_MOTION, "temporal": "transformer", "fusion_layers": 2}}),
    ("extra_models", {"extra_models": STRUCTURE}),
    ("extra_models", {"extra_models": SALIENCY}),
    ("extra_models", {"extra_models": {**SMALL_MOTION, "stream": "motion+saliency"}}),
    ("adapter+extra_models", {"adapter": {"variant": "st_adapter"}, "extra_models": SMALL_MOTION}),
    ("lora+extra_models", {"lora": {"r": 2}, "extra_models": SMALL_MOTION}),
    ("lora+extra_models", {"lora": {"r": 2}, "extra_models": STRUCTURE}),
]


def detections(batch: int = 2, frames: int = 3, objects: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    corner = torch.rand(batch, frames, objects, 2, generator=g) * 0.5
    boxes = torch.cat([corner, corner + 0.1 + 0.4 * torch.rand(batch, frames, objects, 2, generator=g)], dim=-1)
    valid = torch.ones(batch, frames, objects, dtype=torch.bool)
    valid[:, :, -1] = False  # padding
    return {
        "boxes": boxes,
        "labels": torch.randint(0, 5, (batch, frames, objects), generator=g).masked_fill(~valid, -1),
        "scores": torch.rand(batch, frames, objects, generator=g),
        "valid": valid,
    }


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("spec,options", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_extra_models_contract(kind, spec, options, text_tower, tmp_path):
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, spec, options).train()
    structure = options["extra_models"].get("stream") == "structure"
    extras = detections() if structure else {}
    video = video_for(ilfm)
    features = encoder(video, **extras)
    e = ilfm.dims.embed_dim
    assert features.frames.shape == (2, 3, e) and features.video.shape == (2, e)
    assert features.losses == {}

    # Exactly the declared parameters receive gradients; the image model's own weights only through an adaptation.
    features.video.square().sum().backward()
    assert_exactly_declared_parameters_have_gradients(encoder)
    adapted = "+" in spec
    assert encoder.backbone_frozen == (not adapted)
    # Only the saliency stream pools patch tokens, so only with it does the cache read them.
    assert encoder.head.needs_patches == ("saliency" in options["extra_models"].get("stream", "motion"))

    # A frozen image model: its features come from the cache (with the pixels for the motion stream).
    encoder.eval()
    with torch.no_grad():
        live = encoder(video, **extras)
        if encoder.cacheable:
            assert structure
            cached = encoder(cached=ilfm.encode_frames(video), **extras)
            torch.testing.assert_close(cached.video, live.video)
        elif encoder.cache_with_pixels:
            assert not structure
            cached = encoder(video, cached=ilfm.encode_frames(video))
            torch.testing.assert_close(cached.video, live.video)
        else:
            assert adapted

    restored = build_video_encoder(make_backbone(kind, text_tower), spec, options)
    round_trip_trainable(encoder, restored, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(video, **extras).video, live.video)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("stream", ["motion", "saliency", "structure"])
def test_untrained_fusion_returns_the_image_stream(kind, stream, text_tower):
    ilfm = make_backbone(kind, text_tower)
    options = {"motion": SMALL_MOTION, "saliency": {"stream": "saliency"}, "structure": STRUCTURE}[stream]
    encoder = build_video_encoder(ilfm, "extra_models", {"extra_models": options}).eval()
    video = video_for(ilfm)
    extras = detections() if stream == "structure" else {}
    with torch.no_grad():
        expected = ilfm.encode_frames(video).embeds
        got = encoder(video, **extras)
    torch.testing.assert_close(got.frames, expected)
    torch.testing.assert_close(got.video, expected.mean(dim=1))


def test_motion_stream_sees_other_frames_and_only_motion(text_tower):
    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "extra_models", {"extra_models": SMALL_MOTION}).eval()
    perturb(encoder, scale=0.1)
    video = video_for(ilfm, batch=1)
    changed = video.clone()
    changed[:, 2] = torch.randn_like(changed[:, 2])
    with torch.no_grad():
        a = encoder(video).frames[0, 0]
        b = encoder(changed).frames[0, 0]
        # Frame 0's image features are the same in both; only the motion stream carries the change of frame 2.
        assert not torch.allclose(a, b)
        # The stream reads differences: a constant offset on every frame is invisible to it.
        motion = encoder.head.motion
        torch.testing.assert_close(motion(video + 0.5), motion(video))
    assert torch.equal(frame_differences(video)[:, 0], torch.zeros_like(video[:, 0]))


def test_structure_tokens_follow_the_boxes_and_ignore_padding(text_tower):
    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "extra_models", {"extra_models": STRUCTURE})
    encoder.eval()
    perturb(encoder, scale=0.1)
    video = video_for(ilfm)
    extras = detections()
    cached = ilfm.encode_frames(video)
    with torch.no_grad():
        base = encoder(cached=cached, **extras).video
        padded = {**extras, "boxes": extras["boxes"].clone()}
        padded["boxes"][:, :, -1] = torch.rand_like(padded["boxes"][:, :, -1])  # only padding moves
        torch.testing.assert_close(encoder(cached=cached, **padded).video, base)
        moved = {**extras, "boxes": extras["boxes"].clone()}
        moved["boxes"][:, :, 0] = moved["boxes"][:, :, 0].flip(-1)
        assert not torch.allclose(encoder(cached=cached, **moved).video, base)
        # No detection at all in a clip is fine: the learned "no object" token is always there.
        empty = {**extras, "valid": torch.zeros_like(extras["valid"])}
        assert torch.isfinite(encoder(cached=cached, **empty).video).all()
    # Masks alone (a segmenter's output) are enough, and every declared branch learns.
    segments = build_video_encoder(ilfm, "extra_models", {"extra_models": {"stream": "structure", "inputs": ["masks"]}})
    segments.train()(cached=cached, masks=torch.rand(2, 3, 4, 16, 16)).video.square().sum().backward()
    assert all(p.grad is not None for _, p in segments.trainable_named_parameters())


def test_fused_stream_trains(text_tower):
    # A few steps on a fixed batch move the fused video embeddings towards a target: the extra model learns.
    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "extra_models", {"extra_models": SMALL_MOTION}).train()
    video = video_for(ilfm)
    cached = ilfm.encode_frames(video)
    target = torch.randn(2, ilfm.dims.embed_dim, generator=torch.Generator().manual_seed(3))
    optimizer = torch.optim.Adam([p for _, p in encoder.trainable_named_parameters()], lr=1e-2)
    history = []
    for _ in range(8):
        loss = (encoder(video, cached=cached).video - target).square().mean()
        history.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert history[-1] < 0.9 * history[0], history


def test_extra_models_errors_are_clear(text_tower):
    with pytest.raises(VideoadaptError, match="or several joined by"):
        build_video_encoder(
            make_backbone("hf", text_tower), "extra_models", {"extra_models": {"stream": "motion+motion"}}
        )
    with pytest.raises(VideoadaptError, match=r"options \['floor'\] belong to another stream; known: stream"):
        build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": {"floor": 0.1}})
    with pytest.raises(VideoadaptError, match=r"unknown option 'chanels' \(did you mean 'channels'\?\)"):
        build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": {"chanels": [8]}})
    with pytest.raises(VideoadaptError, match="option channels must be a list, each an integer, got 8"):
        build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": {"channels": 8}})
    with pytest.raises(VideoadaptError, match="unknown stream 'flow'; known: motion, saliency, structure"):
        build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": {"stream": "flow"}})
    with pytest.raises(VideoadaptError, match="options \\['num_labels'\\] belong to another stream"):
        build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": {"num_labels": 3}})
    with pytest.raises(VideoadaptError, match="option temporal must be one of mean, transformer, got 'lstm'"):
        build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": {"temporal": "lstm"}})
    with pytest.raises(VideoadaptError, match="both put a module after the backbone"):
        build_video_encoder(make_backbone("hf", text_tower), "post_network+extra_models")

    ilfm = make_backbone("hf", text_tower)
    structure = build_video_encoder(ilfm, "extra_models", {"extra_models": {"stream": "structure"}})
    video = video_for(ilfm)
    with pytest.raises(VideoadaptError, match="pass boxes= \\[B,T,K,4\\]"):
        structure(video)
    with pytest.raises(VideoadaptError, match="boxes must start with \\[B,T,K\\]"):
        structure(video, boxes=torch.rand(2, 5, 4, 4))
    with pytest.raises(VideoadaptError, match="add them to the extra_models option inputs"):
        structure(video, **detections())
    with pytest.raises(VideoadaptError, match="set num_labels"):
        build_video_encoder(
            make_backbone("hf", text_tower),
            "extra_models",
            {"extra_models": {"stream": "structure", "inputs": ["boxes", "labels"]}},
        )
    with pytest.raises(VideoadaptError, match="boxes and/or masks"):
        build_video_encoder(
            make_backbone("hf", text_tower),
            "extra_models",
            {"extra_models": {"stream": "structure", "inputs": ["scores"]}},
        )
    with pytest.raises(VideoadaptError, match="unexpected inputs \\['box'\\]"):
        structure(video, box=torch.rand(2, 3, 4, 4))

    motion = build_video_encoder(make_backbone("hf", text_tower), "extra_models", {"extra_models": SMALL_MOTION})
    with pytest.raises(VideoadaptError, match="pass video= along with cached="):
        motion(cached=ilfm.encode_frames(video))
    with pytest.raises(VideoadaptError, match="this head takes: none"):
        motion(video, boxes=torch.rand(2, 3, 4, 4))
    adapted = build_video_encoder(make_backbone("hf", text_tower), "lora+extra_models", {"extra_models": SMALL_MOTION})
    with pytest.raises(VideoadaptError, match="cached features cannot stand in$"):
        adapted(video, cached=ilfm.encode_frames(video))


def test_saliency_finds_the_object_that_moves():
    """Two squares on a dark field, only one of them moving: the saliency mass, and so the pooling weights, sit
    on the moving square's patch cells; a still clip pools every patch evenly."""
    from videoadapt.temporal.saliency import motion_saliency, saliency_weights

    video = torch.zeros(1, 4, 3, 32, 32)
    for t in range(4):
        video[0, t, :, 20:26, 2 + 2 * t : 8 + 2 * t] = 1.0  # moves right along the bottom rows
        video[0, t, :, 2:8, 20:26] = 1.0  # still, top right
    saliency = motion_saliency(video, (4, 4))
    assert saliency.shape == (1, 4, 16)
    cells = saliency.view(1, 4, 4, 4)
    assert cells[0, :, 0, 2:].sum() == 0  # the still square's cells never light up
    assert (cells[0, :, 2:, :3].sum(dim=(1, 2)) > 0).all()  # the moving square's do, in every frame
    weights = saliency_weights(saliency, floor=0.05)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4))
    assert (weights.view(1, 4, 4, 4)[0, :, 2:, :3].sum(dim=(1, 2)) > 0.8).all()

    still = saliency_weights(motion_saliency(video[:, :1].expand(1, 4, 3, 32, 32), (4, 4)), floor=0.05)
    torch.testing.assert_close(still, torch.full((1, 4, 16), 1 / 16))


def test_saliency_tokens_pool_the_moving_objects_patches(text_tower):
    """The actor token of a frame is the projection of the patch tokens under the motion: changing the patch
    tokens where nothing moves leaves it unchanged (with no floor), changing them under the motion does not."""
    ilfm = make_backbone("tiny", text_tower)
    encoder = build_video_encoder(ilfm, "extra_models", {"extra_models": {"stream": "saliency", "floor": 0.0}})
    saliency = encoder.head.saliency.eval()
    rows, cols = ilfm.dims.patch_grid
    size = ilfm.processor.image_size
    video = torch.zeros(1, 3, 3, size, size)
    cell = size // rows
    for t in range(3):
        video[0, t, :, :cell, t * cell : (t + 1) * cell] = 1.0  # one patch cell a frame, moving right
    patches = torch.randn(1, 3, rows * cols, ilfm.dims.width, generator=torch.Generator().manual_seed(0))
    base = saliency(video, patches)
    # A random change of direction (a constant shift would vanish in the LayerNorm).
    change = 5.0 * torch.randn(ilfm.dims.width, generator=torch.Generator().manual_seed(1))
    still_changed = patches.clone()
    still_changed[:, :, -1] += change  # the bottom-right cell never moves
    torch.testing.assert_close(saliency(video, still_changed), base)
    moving_changed = patches.clone()
    moving_changed[:, :, 1] += change  # the cell the object passes through in frame 1
    assert not torch.allclose(saliency(video, moving_changed), base)


def test_pixel_and_structure_streams_fuse_together(text_tower):
    """motion+structure: the frames read motion tokens and object tokens at once; padded objects stay unread."""
    ilfm = make_backbone("hf", text_tower)
    options = {**STRUCTURE, **SMALL_MOTION, "stream": "motion+structure"}
    encoder = build_video_encoder(ilfm, "extra_models", {"extra_models": options}).eval()
    perturb(encoder, scale=0.1)
    assert encoder.head.needs_pixels and not encoder.head.needs_patches and "boxes" in encoder.head.extra_inputs
    video = video_for(ilfm)
    extras = detections()
    changed = {**extras, "boxes": extras["boxes"].clone()}
    changed["boxes"][:, :, -1] = 0.9  # only the padded object moves
    with torch.no_grad():
        out = encoder(video, **extras)
        assert out.video.shape == (2, ilfm.dims.embed_dim)
        torch.testing.assert_close(encoder(video, **changed).video, out.video)
