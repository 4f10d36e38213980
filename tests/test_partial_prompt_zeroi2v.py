"""Divided temporal attention (partial tuning), propagated visual prompts and CoOp text context (prompt tuning),
ZeroI2V (linear adapters + STDHA, merging): the paradigm contract on both test backbones, plus each design's own
properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paradigm_helpers import (
    assert_exactly_declared_parameters_have_gradients,
    make_backbone,
    perturb,
    round_trip_trainable,
    video_for,
)
from videoadapt.paradigms import build_video_encoder
from videoadapt.paradigms.adapter import merge_linear_adapters
from videoadapt.paradigms.adapter.layer import LinearAdapter
from videoadapt.paradigms.prompt_tuning import encode_with_context

ZEROI2V_SMALL = {"variant": "linear", "stdha": 4, "temporal_embedding": 4, "train_post_norm": True}
TEXTS = ["archery.", "playing the guitar."]

CASES = [
    ("partial_tuning", {"partial_tuning": {"subset": "temporal_attention"}}),
    ("partial_tuning", {"partial_tuning": {"subset": "temporal_attention", "blocks": 1}}),
    ("prompt_tuning", {"prompt_tuning": {"propagation": "propagated", "tokens": 3}}),
    ("prompt_tuning", {"prompt_tuning": {"propagation": "propagated", "depth": "shallow"}}),
    ("prompt_tuning", {"prompt_tuning": {"tokens": 2, "text_context": 4}}),
    ("adapter", {"adapter": ZEROI2V_SMALL}),
    ("adapter", {"adapter": {"variant": "adaptformer", "stdha": 4}}),
]


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("spec,options", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_contract(kind, spec, options, text_tower, tmp_path):
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, spec, options).train()
    video = video_for(ilfm)
    features = encoder(video)
    width = encoder.head.width if hasattr(encoder.head, "width") else ilfm.dims.embed_dim
    assert features.frames.shape == (2, 3, width) and features.video.shape == (2, width)
    loss = features.video.square().sum()
    if options.get("prompt_tuning", {}).get("text_context"):
        loss = loss + encode_with_context(ilfm, TEXTS).embeds.square().sum()
    loss.backward()
    assert dict(encoder.trainable_named_parameters())
    assert_exactly_declared_parameters_have_gradients(encoder)

    encoder.eval()
    restored = build_video_encoder(make_backbone(kind, text_tower), spec, options)
    round_trip_trainable(encoder, restored, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(video).video, encoder(video).video)


# -- partial tuning: divided temporal attention ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_temporal_attention_starts_as_the_image_model_then_mixes_frames(kind, text_tower):
    plain = make_backbone(kind, text_tower)
    video = video_for(plain)
    options = {"partial_tuning": {"subset": "temporal_attention"}}
    encoder = build_video_encoder(make_backbone(kind, text_tower), "partial_tuning", options).eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_frames(video).embeds, plain.encode_frames(video).embeds)

    # Trained: only the inserted temporal attention and the vision tower's LayerNorms.
    for name, _ in encoder.trainable_named_parameters():
        module = encoder.get_submodule(name.rsplit(".", 1)[0])
        assert ".temporal." in name or isinstance(module, nn.LayerNorm), name

    perturb(encoder, scale=0.05, seed=3)
    changed = video.clone()
    changed[:, 1] = torch.randn_like(changed[:, 1])
    with torch.no_grad():
        a, b = encoder.encode_frames(video).embeds, encoder.encode_frames(changed).embeds
    assert not torch.allclose(a[:, 0], b[:, 0]), "frame 0 ignores its neighbour"


# -- prompt tuning: propagated prompts, CoOp text context -----------------------------------------------------


@pytest.mark.parametrize("depth", ["deep", "shallow"])
def test_propagated_prompts_are_causal(depth, text_tower):
    video = video_for(make_backbone("hf", text_tower), batch=1, frames=3)
    earlier, later = video.clone(), video.clone()
    earlier[:, 0] = torch.randn_like(earlier[:, 0])
    later[:, 2] = torch.randn_like(later[:, 2])
    for propagation in ("shared", "propagated"):
        options = {"prompt_tuning": {"depth": depth, "propagation": propagation, "tokens": 2}}
        encoder = build_video_encoder(make_backbone("hf", text_tower), "prompt_tuning", options).eval()
        with torch.no_grad():
            base, after_earlier, after_later = (encoder.encode_frames(v).embeds[0, 1] for v in (video, earlier, later))
        # Frame 1 never depends on frame 2; on frame 0 only when prompts propagate.
        torch.testing.assert_close(after_later, base)
        assert torch.allclose(after_earlier, base) == (propagation == "shared"), propagation


@pytest.mark.parametrize("kind", ["tiny", "hf", "siglip"])
def test_text_prefix_api(kind, text_tower):
    ilfm = make_backbone(kind, text_tower)
    texts = ["a dog runs", "cat", "a person is playing the guitar"]
    width = ilfm.dims.text_width
    with torch.no_grad():
        plain = ilfm.encode_text(texts)
        # An empty prefix reproduces the tower's own forward exactly (CLIP's EOS pooling and masks included).
        empty = ilfm.encode_text(texts, prefix_embeddings=torch.zeros(0, width))
        prefixed = ilfm.encode_text(texts, prefix_embeddings=0.5 * torch.randn(4, width))
    torch.testing.assert_close(empty.embeds, plain.embeds)
    assert prefixed.tokens.shape[1] == plain.tokens.shape[1] + (0 if kind == "siglip" else 4)
    assert prefixed.mask.shape == prefixed.tokens.shape[:2]
    assert not torch.allclose(prefixed.embeds, plain.embeds)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_coop_context_changes_text_and_alone_trains(kind, text_tower):
    ilfm = make_backbone(kind, text_tower)
    with torch.no_grad():
        plain = ilfm.encode_text(TEXTS).embeds
    encoder = build_video_encoder(ilfm, "prompt_tuning", {"prompt_tuning": {"text_context": 16}})
    assert ilfm.text_context.vectors.shape == (16, ilfm.dims.text_width)
    features = encode_with_context(ilfm, TEXTS)
    assert not torch.allclose(features.embeds, plain)
    features.embeds.square().sum().backward()
    with_grad = {n for n, p in encoder.named_parameters() if p.grad is not None}
    assert with_grad == {"ilfm.text_context.vectors"}
    assert all(not p.requires_grad for m in ilfm.text_modules() for p in m.parameters())


# -- ZeroI2V: linear adapters, STDHA, merging -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_zeroi2v_merges_into_the_frozen_weights(kind, text_tower):
    plain_count = sum(p.numel() for p in make_backbone(kind, text_tower).parameters())
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, "adapter", {"adapter": ZEROI2V_SMALL}).eval()
    # An adapted model starts as the image model except for STDHA's shifted heads.
    perturb(encoder, scale=0.05, seed=3)
    video = video_for(ilfm)
    with torch.no_grad():
        before = encoder(video).video
        assert merge_linear_adapters(ilfm) == ilfm.dims.layers
        after = encoder(video).video
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, LinearAdapter) for m in ilfm.modules())
    # No extra parameters but ZeroI2V's temporal embedding (T x D), which the official merge keeps too.
    assert sum(p.numel() for p in ilfm.parameters()) == plain_count + 4 * ilfm.dims.width


def test_stdha_mixes_frames_at_zero_parameters(text_tower):
    counts, dependent = {}, {}
    for stdha in (None, 4):
        options = {"adapter": {"variant": "linear", "stdha": stdha}}
        encoder = build_video_encoder(make_backbone("hf", text_tower), "adapter", options).eval()
        counts[stdha] = sum(p.numel() for p in encoder.parameters())
        video = video_for(encoder.ilfm, batch=1)
        changed = video.clone()
        changed[:, 1] = torch.randn_like(changed[:, 1])
        with torch.no_grad():
            a, b = encoder.encode_frames(video).embeds[0, 0], encoder.encode_frames(changed).embeds[0, 0]
        dependent[stdha] = not torch.allclose(a, b)
    assert counts[None] == counts[4]
    assert dependent == {None: False, 4: True}


def test_zeroi2v_preset_count():
    from videoadapt.commands.params import count

    result = count("hf-config:clip-vit-b16", "zeroi2v", frames=8, classes=400, flops=False, preset=True)
    # 12 blocks x 4 linear adapters x (768*192 + 192 + 192*768 + 768) + 8-frame temporal embedding + ln_post.
    assert result["trainable_excluding_head"] == 12 * 4 * (768 * 192 + 192 + 192 * 768 + 768) + 8 * 768 + 2 * 768
    assert result["trainable_excluding_head"] == 14_209_536
    assert result["trainable"] - result["trainable_excluding_head"] == 768 * 400 + 400
