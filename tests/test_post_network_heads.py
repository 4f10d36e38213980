"""Post-network temporal modules beyond pooling: the video Q-Former and Moment-DETR, on TinyCLIP and on a tiny random
transformers CLIP. The paradigm contract (shapes, exactly the declared parameters train, cache equality, trainable
checkpoints), the Q-Former's start as mean pooling, Moment-DETR's need for a query, and the preset count."""

from __future__ import annotations

import pytest
import torch

from paradigm_helpers import (
    assert_exactly_declared_parameters_have_gradients,
    make_backbone,
    round_trip_trainable,
    video_for,
)
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder

QFORMER = {"temporal": "qformer", "queries": 4, "layers": 2, "heads": 2, "width": 16}
MOMENT_DETR = {
    "temporal": "moment_detr",
    "hidden": 32,
    "heads": 4,
    "ffn": 64,
    "queries": 5,
    "encoder_layers": 2,
    "decoder_layers": 2,
}
SPACETIME = {"temporal": "spacetime", "width": 16, "heads": 2, "layers": 1, "grid": 2}
CASES = {
    "qformer": QFORMER,
    "spacetime": SPACETIME,
    "qformer-cross-every-2": {**QFORMER, "cross_every": 2, "width": None},
    "moment_detr": MOMENT_DETR,
    "moment_detr-align": {**MOMENT_DETR, "contrastive_align": True, "contrastive_dim": 8, "n_input_proj": 1},
}
B, T = 2, 3


def queries_for(ilfm, batch: int = B):
    with torch.no_grad():
        return ilfm.encode_text(["a red square moves left", "two circles"][:batch])


def expected_outputs(name: str, options: dict, ilfm, text) -> dict[str, tuple[int, ...]]:
    if name.startswith("qformer"):
        return {"queries": (B, options["queries"], options["width"] or ilfm.dims.width)}
    if name == "spacetime":
        return {"summary": (B, options["width"])}
    q, h, layers = options["queries"], options["hidden"], options["decoder_layers"]
    shapes = {
        "spans": (B, q, 2),
        "span_logits": (B, q, 2),
        "saliency": (B, T),
        "queries": (B, q, h),
        "aux_spans": (layers - 1, B, q, 2),
        "aux_span_logits": (layers - 1, B, q, 2),
        "video_memory": (B, T, h),
    }
    if options.get("contrastive_align"):
        c = options["contrastive_dim"]
        shapes |= {"align_queries": (B, q, c), "align_text": (B, text.tokens.shape[1], c), "align_video": (B, T, c)}
    return shapes


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_head_contract(kind, name, text_tower, tmp_path):
    options = CASES[name]
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": options}).train()
    assert encoder.cacheable and encoder.head.needs_text == name.startswith("moment_detr")
    video, text = video_for(ilfm), queries_for(ilfm)
    if name.startswith("qformer") or name == "spacetime":
        # Leave the zero start so that gradients reach the module with non-zero values too.
        torch.nn.init.normal_(encoder.head.temporal.out_proj.weight, std=0.1)

    features = encoder(video, text=text)
    embed = ilfm.dims.embed_dim
    assert features.frames.shape == (B, T, embed) and features.video.shape == (B, embed)
    assert {k: tuple(v.shape) for k, v in features.outputs.items()} == expected_outputs(name, options, ilfm, text)

    # Exactly the declared parameters receive gradients; the frozen backbone none.
    loss = features.video.square().sum() + sum(v.float().square().sum() for v in features.outputs.values())
    loss.backward()
    trainable = dict(encoder.trainable_named_parameters())
    assert trainable and all(n.startswith("head.temporal.") for n in trainable)
    assert_exactly_declared_parameters_have_gradients(encoder)
    if name.startswith("qformer"):
        assert encoder.head.temporal.query_tokens.grad.abs().sum() > 0

    # The live backbone and the feature cache agree (frozen backbone, dropout off in eval).
    encoder.eval()
    with torch.no_grad():
        live = encoder(video, text=text)
        cached = encoder(cached=ilfm.encode_frames(video), text=text)
    torch.testing.assert_close(live.video, cached.video)
    for key, value in live.outputs.items():
        torch.testing.assert_close(value, cached.outputs[key])

    # Only the trainable parts are saved, and they load back.
    restored = build_video_encoder(make_backbone(kind, text_tower), "post_network", {"post_network": options}).eval()
    round_trip_trainable(encoder, restored, tmp_path)
    with torch.no_grad():
        again = restored(video, text=text)
    torch.testing.assert_close(again.video, live.video)
    for key, value in live.outputs.items():
        torch.testing.assert_close(again.outputs[key], value)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_spacetime_starts_as_mean_pooling_and_then_sees_time_order(kind, text_tower):
    """Zero-initialised output: the video vector is exactly mean pooling at first, so playing the clip backwards
    changes nothing; once trained (here: perturbed), the space-time attention tells the two orders apart."""
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": SPACETIME}).eval()
    video = video_for(ilfm)
    with torch.no_grad():
        features = ilfm.encode_frames(video)
        start = encoder(cached=features)
        torch.testing.assert_close(start.video, features.embeds.mean(dim=1))
        torch.testing.assert_close(encoder(video.flip(1)).video, start.video)
        torch.nn.init.normal_(encoder.head.temporal.out_proj.weight, std=0.5)
        forward, backward = encoder(video).video, encoder(video.flip(1)).video
    assert not torch.allclose(forward, backward, atol=1e-4)


def test_spacetime_refuses_a_grid_larger_than_the_patch_grid(text_tower):
    ilfm = make_backbone("tiny", text_tower)
    with pytest.raises(VideoadaptError, match="grid must be between 1 and the patch grid"):
        build_video_encoder(ilfm, "post_network", {"post_network": {**SPACETIME, "grid": 99}})


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_qformer_starts_as_mean_pooling_and_then_reads_all_frames(kind, text_tower):
    ilfm = make_backbone(kind, text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": QFORMER}).eval()
    video = video_for(ilfm, batch=1)
    with torch.no_grad():
        frames = ilfm.encode_frames(video)
        out = encoder(cached=frames)
        # Zero-initialised output projection: exactly mean pooling of the pretrained frame embeddings.
        torch.testing.assert_close(out.video, frames.embeds.mean(dim=1), rtol=0, atol=0)
        torch.testing.assert_close(out.frames, frames.embeds, rtol=0, atol=0)
        # Once trained (here: perturbed), the queries' summary of every frame's patches moves the video vector.
        torch.nn.init.normal_(encoder.head.temporal.out_proj.weight, std=0.1)
        changed_patches = frames.patches.clone()
        changed_patches[:, 2] = torch.randn_like(changed_patches[:, 2])
        changed = type(frames)(cls=frames.cls, patches=changed_patches, embeds=frames.embeds)
        assert not torch.allclose(encoder(cached=frames).video, frames.embeds.mean(dim=1))
        assert not torch.allclose(encoder(cached=frames).video, encoder(cached=changed).video)


def test_moment_detr_needs_its_query(text_tower):
    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": MOMENT_DETR}).eval()
    video = video_for(ilfm)
    with pytest.raises(VideoadaptError, match="text"):
        encoder(video)
    with pytest.raises(VideoadaptError, match="pass text="):
        encoder.head.temporal(ilfm.encode_frames(video).embeds)
    with pytest.raises(VideoadaptError, match="one each"):
        encoder(video, text=queries_for(ilfm, batch=1))


def test_moment_detr_spans_are_normalised_and_frames_pass_through(text_tower):
    ilfm = make_backbone("tiny", text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": MOMENT_DETR}).eval()
    video = video_for(ilfm, frames=5)
    with torch.no_grad():
        frames = ilfm.encode_frames(video)
        # Far-from-zero span logits still decode into [0, 1] (center, width).
        encoder.head.temporal.span_embed.layers[-1].bias.fill_(50.0)
        out = encoder(cached=frames, text=queries_for(ilfm))
    for key in ("spans", "aux_spans"):
        assert out.outputs[key].min() >= 0 and out.outputs[key].max() <= 1
    assert out.outputs["saliency"].shape == (B, 5)
    torch.testing.assert_close(out.frames, frames.embeds, rtol=0, atol=0)
    torch.testing.assert_close(out.video, frames.embeds.mean(dim=1))


def test_moment_detr_saliency_depends_on_the_query(text_tower):
    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": MOMENT_DETR}).eval()
    video = video_for(ilfm, batch=1)
    with torch.no_grad():
        frames = ilfm.encode_frames(video)
        a = encoder(cached=frames, text=ilfm.encode_text(["a red square"])).outputs["saliency"]
        b = encoder(cached=frames, text=ilfm.encode_text(["three blue circles jump"])).outputs["saliency"]
    assert not torch.allclose(a, b)


# Derived from the official design on CLIP ViT-B/16 (E = 512 frame embeddings + 2-d tef, 512-d text tokens),
# hidden 256, FFN 1024, 10 queries; the arithmetic is spelled out in the preset's `source`.
LINEAR_LAYER = lambda i, o: 2 * i + i * o + o  # noqa: E731 — LayerNorm(in) + Linear(in, out)
ATTENTION = 3 * 256 * 256 + 3 * 256 + 256 * 256 + 256  # 263,168
FFN = 256 * 1024 + 1024 + 1024 * 256 + 256  # 525,568
MOMENT_DETR_COUNT = (
    LINEAR_LAYER(514, 256) + LINEAR_LAYER(256, 256)  # input_vid_proj: 199,172
    + LINEAR_LAYER(512, 256) + LINEAR_LAYER(256, 256)  # input_txt_proj: 198,656
    + 2 * (ATTENTION + FFN + 2 * 512)  # encoder: 1,579,520
    + 2 * (2 * ATTENTION + FFN + 3 * 512) + 512  # decoder + its final LayerNorm: 2,107,392
    + 10 * 256  # query_embed
    + 2 * (256 * 256 + 256) + 256 * 2 + 2  # span_embed: 132,098
    + 256 * 2 + 2  # class_embed
    + 256 + 1  # saliency_proj
)  # fmt: skip


def test_moment_detr_preset_count():
    from videoadapt.commands.params import count

    assert MOMENT_DETR_COUNT == 4_220_169
    result = count("hf-config:clip-vit-b16", "moment-detr", frames=8, classes=400, flops=False, preset=True)
    assert result["trainable_excluding_head"] == MOMENT_DETR_COUNT
    assert result["trainable"] - result["trainable_excluding_head"] == 512 * 400 + 400


def test_params_counts_flops_of_a_head_that_needs_text():
    from videoadapt.commands.params import count

    result = count("hf-config:clip-tiny", "moment-detr", frames=4, classes=10, flops=True, preset=True)
    assert result["gflops_per_view"] > 0


def test_flops_of_the_qformer_can_be_counted(text_tower):
    from videoadapt.bench.cost import count_flops

    ilfm = make_backbone("hf", text_tower)
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": QFORMER}).eval()
    video = video_for(ilfm)
    with torch.no_grad():
        plain = count_flops(lambda: ilfm.encode_frames(video))
    assert count_flops(lambda: encoder(video)) > plain
