"""Published designs (paradigms/presets.py): their trainable-parameter counts on CLIP ViT-B/16, computed here in
closed form from the architecture's dimensions (never read back from the code under test), and the parts that make
them faithful to the official code: AIM's and ZeroI2V's temporal embedding before ln_pre (so AIM sees frame order),
CLIP4Clip seqTransf initialised from the text tower."""

from __future__ import annotations

import pytest
import torch

from paradigm_helpers import make_backbone, make_clip_with_text_as_wide_as_joint, video_for
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder
from videoadapt.paradigms.presets import PublishedDesign
from videoadapt.registry import registry

# CLIP ViT-B/16 (openai/clip-vit-base-patch16 config.json): vision width D, joint dim E, 12 blocks, 14x14 patches
# of 16 px; text width 512, 12 blocks, vocabulary 49,408, context 77.
D, E, BLOCKS, PATCHES, PATCH = 768, 512, 12, 14 * 14, 16
TEXT, TEXT_BLOCKS, VOCAB, CONTEXT = 512, 12, 49_408, 77


def linear(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


def layer_norm(width: int) -> int:
    return 2 * width


def clip_block(width: int) -> int:
    """q, k, v, out projections, the 4x MLP and two LayerNorms (a CLIP residual attention block; torch's
    TransformerEncoderLayer with dim_feedforward 4x has the same shapes)."""
    return 4 * linear(width, width) + linear(width, 4 * width) + linear(4 * width, width) + 2 * layer_norm(width)


VISION_TOWER = (
    linear(3 * PATCH * PATCH, D, bias=False)  # patch embedding (conv without bias)
    + D  # class embedding
    + (PATCHES + 1) * D  # position embedding
    + layer_norm(D)  # ln_pre
    + BLOCKS * clip_block(D)
    + layer_norm(D)  # ln_post
    + linear(D, E, bias=False)  # proj
)
TEXT_TOWER = (
    VOCAB * TEXT + CONTEXT * TEXT + TEXT_BLOCKS * clip_block(TEXT) + layer_norm(TEXT) + linear(TEXT, E, bias=False)
)


def bottleneck(width: int, hidden: int) -> int:
    return linear(width, hidden) + linear(hidden, width)


# Trainable parameters excluding the 400-way classifier; the derivations are in each design's `source`.
PRESET_COUNTS = {
    # fc1 768->384, depthwise Conv3d (3,1,1) with bias, fc2 384->768, before the MLP of 12 blocks (24: and attention).
    "st-adapter-k400": 12 * (bottleneck(D, 384) + 384 * 3 + 384),
    "st-adapter-ssv2": 24 * (bottleneck(D, 384) + 384 * 3 + 384),
    # Three adapters per block, 768->192->768; the 8-frame temporal embedding; ln_post.
    "aim": 36 * bottleneck(D, 192) + 8 * D + layer_norm(D),
    "adaptformer": 12 * bottleneck(D, 64),
    # Every weight of both towers (the contrastive temperature belongs to the retrieval task).
    "clip4clip-meanp": VISION_TOWER + TEXT_TOWER,
    # + 4 text blocks as the temporal transformer and the 77-row text position table as frame positions.
    "clip4clip-seqtransf": VISION_TOWER + TEXT_TOWER + 4 * clip_block(TEXT) + CONTEXT * TEXT,
    "vpt-deep": 12 * 8 * D,
    # LoRA A (r x D) and B (D x r) on q and v of 12 blocks; a 1-layer temporal transformer of width E, 64 positions.
    "lora-r8": 12 * 2 * (8 * D + D * 8) + clip_block(E) + 64 * E,
}


def test_closed_form_dimensions_match_the_published_totals():
    # The totals the designs' papers and our docs state, as a check on the arithmetic above.
    assert VISION_TOWER + TEXT_TOWER == 149_620_736
    assert clip_block(TEXT) == 3_152_384
    assert PRESET_COUNTS["aim"] == 10_659_072 and PRESET_COUNTS["st-adapter-k400"] == 7_110_144


@pytest.mark.parametrize("name", sorted(PRESET_COUNTS))
def test_preset_counts_match_the_published_designs(name):
    from videoadapt.commands.params import count

    result = count("hf-config:clip-vit-b16", name, frames=8, classes=400, flops=False, preset=True)
    assert result["trainable_excluding_head"] == PRESET_COUNTS[name]
    classifier_width = D if name in ("st-adapter-k400", "st-adapter-ssv2", "aim", "adaptformer", "vpt-deep") else E
    assert result["trainable"] - result["trainable_excluding_head"] == linear(classifier_width, 400)


def test_every_design_is_a_published_design_with_a_source():
    from videoadapt.paradigms import load_paradigms

    load_paradigms()
    for name in registry.names("preset"):
        design = registry.get("preset", name)
        assert isinstance(design, PublishedDesign) and design.name == name
        assert design.source and design.paradigms, name


# -- AIM / ZeroI2V: the temporal embedding, before ln_pre ------------------------------------------------------

AIM_SMALL = {"variant": "aim", "temporal_embedding": 4, "train_post_norm": True}


def _reference_frame_embeddings(ilfm, video: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The un-adapted model's frame embeddings with ``table[t]`` added to every token of frame t right after the
    patch and position embeddings (before the pre-LayerNorm), computed step by step from the model's own parts."""
    b, t = video.shape[:2]
    images = video.flatten(0, 1)
    if hasattr(ilfm, "vision"):  # TinyCLIP
        tower = ilfm.vision
        patches = tower.stem(images)
        cls = tower.class_embedding.expand(patches.shape[0], 1, -1)
        tokens = torch.cat([cls, patches], dim=1) + tower.position_embedding
        tokens = tokens + table[:t].repeat(b, 1)[:, None, :]
        tokens = tower.pre_layernorm(tokens)
        for block in tower.layers:
            tokens = block(tokens, None)
        embeds = ilfm.visual_projection(tower.post_layernorm(tokens[:, 0]))
    else:  # transformers CLIP
        vision = ilfm.model.vision_model
        tokens = vision.embeddings(images) + table[:t].repeat(b, 1)[:, None, :]
        tokens = vision.pre_layrnorm(tokens)
        for block in vision.encoder.layers:
            out = block(tokens, None)
            tokens = out[0] if isinstance(out, tuple) else out
        embeds = ilfm.model.visual_projection(vision.post_layernorm(tokens[:, 0]))
    return embeds.view(b, t, -1)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("variant", ["aim", "linear"])
def test_temporal_embedding_is_added_before_the_pre_layernorm(kind, variant, text_tower):
    ilfm = make_backbone(kind, text_tower)
    plain = make_backbone(kind, text_tower)
    options = {"adapter": {"variant": variant, "temporal_embedding": 4}}
    encoder = build_video_encoder(ilfm, "adapter", options).eval()
    tables = [p for n, p in encoder.named_parameters() if n.endswith("table")]
    assert len(tables) == 1 and tables[0].shape == (4, ilfm.dims.width) and tables[0].requires_grad
    with torch.no_grad():
        tables[0].normal_()  # as after training; every adapter branch is still zero
        video = video_for(ilfm, frames=3)
        expected = _reference_frame_embeddings(plain, video, tables[0])
        got = encoder.encode_frames(video).embeds
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_temporal_embedding_on_siglip_goes_after_the_embeddings():
    # SigLIP has no pre-LayerNorm: the embeddings' output is where the tokens enter the blocks.
    ilfm = make_backbone("siglip", None)
    plain = make_backbone("siglip", None)
    encoder = build_video_encoder(ilfm, "adapter", {"adapter": {"variant": "linear", "temporal_embedding": 3}}).eval()
    table = next(p for n, p in encoder.named_parameters() if n.endswith("table"))
    with torch.no_grad():
        table.normal_()
        video = video_for(ilfm, batch=1, frames=3)
        vision = plain.model.vision_model
        tokens = vision.embeddings(video.flatten(0, 1)) + table[:, None, :]
        out = vision.encoder(inputs_embeds=tokens)
        expected = vision.head(vision.post_layernorm(out.last_hidden_state))
        got = encoder.encode_frames(video).embeds[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_aim_sees_frame_order_once_its_temporal_embedding_is_trained(kind, text_tower):
    video = video_for(make_backbone(kind, text_tower), batch=2, frames=4)
    flipped = video.flip(1)

    def video_embeddings(options: dict) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = build_video_encoder(make_backbone(kind, text_tower), "adapter", {"adapter": options}).eval()
        torch.manual_seed(5)
        with torch.no_grad():
            for name, parameter in encoder.trainable_named_parameters():
                if name.endswith("table"):
                    parameter.normal_()  # the temporal embedding, random as after training
                elif "post_layernorm" not in name:
                    parameter.add_(0.3 * torch.randn_like(parameter))  # trained-looking adapters
            return encoder(video).video, encoder(flipped).video

    # Mean pooling cancels what the embedding adds to each frame on its own; order shows through its interaction
    # with the frames' content (the temporal adapter's attention across frames), smaller on the random tiny tower.
    forward, backward = video_embeddings(AIM_SMALL)
    assert float((forward - backward).abs().max()) > 1e-4, "AIM's video embedding ignores frame order"
    # Without it, AIM's temporal adapter (the frozen attention across frames) is permutation-equivariant and mean
    # pooling forgets order: the same clip backwards gives the same embedding.
    forward, backward = video_embeddings({"variant": "aim"})
    torch.testing.assert_close(forward, backward, rtol=1e-5, atol=1e-6)


def test_aim_trains_its_adapters_temporal_embedding_and_ln_post(text_tower):
    encoder = build_video_encoder(make_backbone("hf", text_tower), "adapter", {"adapter": AIM_SMALL})
    names = [name for name, _ in encoder.trainable_named_parameters()]
    # AIM's tools/train.py: trainable iff the name holds temporal_embedding, ln_post (post_layernorm here),
    # cls_head or Adapter.
    assert all(
        any(part in name for part in (".temporal.", ".spatial.", ".joint.", "table", "post_layernorm"))
        for name in names
    ), names
    assert sum("post_layernorm" in n for n in names) == 2 and sum(n.endswith("table") for n in names) == 1


def test_a_clip_longer_than_the_temporal_embedding_is_refused(text_tower):
    encoder = build_video_encoder(make_backbone("hf", text_tower), "adapter", {"adapter": AIM_SMALL})
    with pytest.raises(VideoadaptError, match="temporal_embedding holds 4 frames, the video has 5"):
        encoder(video_for(encoder.ilfm, frames=5))


# -- CLIP4Clip seqTransf: the temporal transformer from the text tower -------------------------------------------


def test_seqtransf_starts_as_clip4clip_does():
    ilfm = make_clip_with_text_as_wide_as_joint()
    options = {"full_finetune": {"text": True, "temporal": "seqtransf", "layers": 2}}
    encoder = build_video_encoder(ilfm, "full_finetune", options).eval()
    text_model = ilfm.model.text_model
    module = encoder.head.temporal
    # The copies start equal to the text tower's first blocks and its position table, and are separate tensors.
    for copied, original in zip(module.blocks, text_model.encoder.layers[:2], strict=True):
        for (name, a), (_, b) in zip(copied.state_dict().items(), original.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    positions = text_model.embeddings.position_embedding.weight
    assert torch.equal(module.position, positions) and module.position.data_ptr() != positions.data_ptr()

    video = video_for(ilfm, frames=3)
    with torch.no_grad():
        frames = ilfm.encode_frames(video).embeds
        hidden = frames + positions[:3]
        for block in text_model.encoder.layers[:2]:  # the originals, without a mask (CLIP4Clip's video mask only)
            out = block(hidden, None)
            hidden = out[0] if isinstance(out, tuple) else out
        expected = frames + hidden  # visual_output + visual_output_original
        got = encoder(video)
    torch.testing.assert_close(got.frames, expected)
    torch.testing.assert_close(got.video, expected.mean(dim=1))
    assert not torch.allclose(got.video, frames.mean(dim=1))  # not the identity: the published initialisation


def test_seqtransf_trains_separately_from_the_text_tower():
    ilfm = make_clip_with_text_as_wide_as_joint()
    encoder = build_video_encoder(ilfm, "post_network", {"post_network": {"temporal": "seqtransf", "layers": 1}})
    trainable = dict(encoder.trainable_named_parameters())
    # One text block of that tower (width 16, MLP 32) and its 12-row position table, in closed form.
    block = 4 * linear(16, 16) + linear(16, 32) + linear(32, 16) + 2 * layer_norm(16)
    assert sum(p.numel() for p in trainable.values()) == block + 12 * 16
    assert all(name.startswith("head.temporal.") for name in trainable)
    assert not any(p.requires_grad for m in ilfm.text_modules() for p in m.parameters())


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_seqtransf_is_refused_where_the_text_tower_cannot_initialise_it(kind, text_tower):
    # TinyCLIP's text tower is MiniLM (384 wide, joint 32); clip-tiny's is CLIP-style but 32 wide for a 16-d space.
    with pytest.raises(VideoadaptError, match="seqtransf.*CLIP-style text transformer as wide as the joint space"):
        options = {"post_network": {"temporal": "seqtransf"}}
        build_video_encoder(make_backbone(kind, text_tower), "post_network", options)
    with pytest.raises(VideoadaptError, match="MiniLM|CLIPTextModel"):
        registry.get("preset", "clip4clip-seqtransf").build(make_backbone(kind, text_tower))
