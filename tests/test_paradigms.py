"""Paradigms on TinyCLIP and on a tiny random transformers CLIP: shapes, exactly the declared parameters train,
frozen paradigms agree with the feature cache, compositions, trainable-only checkpoints."""

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
from videoadapt.paradigms import build_video_encoder, paradigm_names

# (composition, options): every paradigm at least once, plus compositions.
CASES = [
    ("post_network", {}),
    ("post_network", {"post_network": {"temporal": "mean"}}),
    ("full_finetune", {}),
    ("full_finetune", {"full_finetune": {"temporal": "transformer"}}),
    ("partial_tuning", {"partial_tuning": {"subset": "bias_norm"}}),
    ("partial_tuning", {"partial_tuning": {"subset": "norm"}}),
    ("partial_tuning", {"partial_tuning": {"subset": "last_blocks", "blocks": 1}}),
    ("partial_tuning+post_network", {}),
    ("adapter", {"adapter": {"variant": "st_adapter", "before": ["attention", "mlp"]}}),
    ("adapter", {"adapter": {"variant": "aim"}}),
    ("adapter", {"adapter": {"variant": "adaptformer", "blocks": 1}}),
    ("adapter+post_network", {"adapter": {"variant": "st_adapter"}}),
    ("adapter+partial_tuning", {"adapter": {"variant": "aim"}, "partial_tuning": {"subset": "norm"}}),
    ("lora", {}),
    ("lora+post_network", {"lora": {"r": 4, "targets": ["q_proj", "k_proj", "v_proj", "out_proj"]}}),
    ("prompt_tuning", {"prompt_tuning": {"depth": "deep", "tokens": 4}}),
    ("prompt_tuning", {"prompt_tuning": {"depth": "shallow"}}),
    ("prompt_tuning+lora", {}),
    ("side_tuning", {}),
    ("distillation", {}),
    ("distillation", {"distillation": {"student": "small"}}),
    ("extra_models", {}),
    ("lora+extra_models", {"extra_models": {"stream": "structure"}}),
]


def head_inputs(encoder, video: torch.Tensor) -> dict:
    """The named inputs a head declares: a detector's boxes for the structure stream (two per frame)."""
    inputs = {}
    if "boxes" in encoder.head.extra_inputs:
        corners = torch.rand(*video.shape[:2], 2, 2, 2, generator=torch.Generator().manual_seed(2))
        inputs["boxes"] = torch.cat([corners.amin(dim=3), corners.amax(dim=3)], dim=-1)  # x1<x2, y1<y2
    return inputs


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("spec,options", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_paradigm_contract(kind, spec, options, text_tower, tmp_path):
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, spec, options).train()
    video = video_for(ilfm)
    inputs = head_inputs(encoder, video)
    features = encoder(video, **inputs)
    width = encoder.head.width if hasattr(encoder.head, "width") else ilfm.dims.embed_dim
    assert features.frames.shape == (2, 3, width) and features.video.shape == (2, width)

    # Exactly the declared parameters receive gradients (mean pooling on a frozen backbone has none: a linear
    # probe, where only the task head trains).
    trainable = dict(encoder.trainable_named_parameters())
    if not trainable:
        assert not features.video.requires_grad
    else:
        features.video.square().sum().backward()
    assert_exactly_declared_parameters_have_gradients(encoder)

    # Frozen paradigms: the live backbone and the feature cache give the same output.
    encoder.eval()
    if encoder.cacheable or encoder.cache_with_pixels:
        with torch.no_grad():
            live = encoder(video, **inputs)
            frame_features = ilfm.encode_frames(video, all_layers=encoder.head.needs_layers)
            pixels = video if encoder.cache_with_pixels else None
            cached = encoder(pixels, cached=frame_features, **inputs)
        torch.testing.assert_close(live.video, cached.video)

    # Only the trainable parts are saved, and they load back.
    restored = build_video_encoder(make_backbone(kind, text_tower), spec, options)
    round_trip_trainable(encoder, restored, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(video, **inputs).video, encoder(video, **inputs).video)


def test_frozen_backbone_is_cacheable_and_trains_no_backbone(text_tower):
    encoder = build_video_encoder(make_backbone("tiny", text_tower), "post_network")
    assert encoder.cacheable
    assert not any(p.requires_grad for p in encoder.ilfm.parameters())
    tuned = build_video_encoder(make_backbone("tiny", text_tower), "partial_tuning")
    assert not tuned.cacheable
    with pytest.raises(VideoadaptError, match="cached features"):
        tuned(cached=tuned.ilfm.encode_frames(video_for(tuned.ilfm)))


def test_conflicts_are_refused_with_a_reason(text_tower):
    with pytest.raises(VideoadaptError, match="already trains every backbone parameter"):
        build_video_encoder(make_backbone("hf", text_tower), "full_finetune+partial_tuning")
    with pytest.raises(VideoadaptError, match="named twice"):
        build_video_encoder(make_backbone("hf", text_tower), "post_network+post_network")
    with pytest.raises(VideoadaptError, match="known: .*post_network"):
        build_video_encoder(make_backbone("hf", text_tower), "post_netwrok")
    with pytest.raises(VideoadaptError, match="not in the composition"):
        build_video_encoder(make_backbone("hf", text_tower), "post_network", {"lora": {"r": 8}})


def test_registry_lists_the_nine_paradigms_of_the_survey():
    frozen = {"distillation", "post_network", "side_tuning"}
    adapted = {"full_finetune", "partial_tuning", "extra_models", "adapter", "lora", "prompt_tuning"}
    assert set(paradigm_names()) == frozen | adapted


def test_prompts_leave_output_shapes_and_change_features(text_tower):
    plain = make_backbone("hf", text_tower)
    video = video_for(plain)
    encoder = build_video_encoder(make_backbone("hf", text_tower), "prompt_tuning", {"prompt_tuning": {"tokens": 3}})
    with torch.no_grad():
        prompted = encoder.encode_frames(video)
        reference = plain.encode_frames(video)
    assert prompted.patches.shape == reference.patches.shape
    assert not torch.allclose(prompted.embeds, reference.embeds)


def test_lora_counts_match_the_rank(text_tower):
    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "lora", {"lora": {"r": 4, "temporal": "mean"}})
    width, blocks = ilfm.dims.width, ilfm.dims.layers
    # q and v of every block: A (r x D) and B (D x r).
    assert sum(p.numel() for _, p in encoder.trainable_named_parameters()) == blocks * 2 * 2 * 4 * width


@pytest.mark.parametrize("variant", ["st_adapter", "aim", "adaptformer"])
def test_adapters_start_as_the_pretrained_model(variant, text_tower):
    # Zero-initialised branches: before training, an adapted backbone computes what the frozen one does.
    plain = make_backbone("hf", text_tower)
    video = video_for(plain)
    with torch.no_grad():
        expected = plain.encode_frames(video).embeds
        encoder = build_video_encoder(make_backbone("hf", text_tower), "adapter", {"adapter": {"variant": variant}})
        got = encoder.eval().encode_frames(video).embeds
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_st_adapter_mixes_frames_and_aim_attends_over_time(text_tower):
    # Once trained (here: perturbed), the temporal modules make a frame's features depend on its neighbours.
    for variant in ("st_adapter", "aim"):
        encoder = build_video_encoder(
            make_backbone("hf", text_tower), "adapter", {"adapter": {"variant": variant}}
        ).eval()
        perturb(encoder, scale=0.05)
        with torch.no_grad():
            video = video_for(encoder.ilfm, batch=1, frames=3)
            changed = video.clone()
            changed[:, 1] = torch.randn_like(changed[:, 1])
            a = encoder.encode_frames(video).embeds[0, 0]
            b = encoder.encode_frames(changed).embeds[0, 0]
        assert not torch.allclose(a, b), f"{variant}: frame 0 ignores its neighbour, frame 1"
