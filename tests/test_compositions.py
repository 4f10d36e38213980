"""The compositions the bench builds: every paradigm that adapts the backbone gets the same video head by
composition (``X+post_network`` with a one-layer zero-initialised temporal transformer over joint-space frame
embeddings); side_tuning and extra_models keep their own heads, in the joint space; distillation's small student
gets the same head through its options. Built on ``tiny``; where the design starts at the identity, the initial
video embedding is the zero-shot one: the mean of the ILFM's frame embeddings."""

from __future__ import annotations

import pytest
import torch

from paradigm_helpers import make_backbone, video_for
from videoadapt.paradigms import build_video_encoder
from videoadapt.paradigms.temporal_head import TemporalHead

HEAD = {"temporal": "transformer", "layers": 1}

# arm -> (composition, options, starts at the zero-shot answer)
ARMS = {
    "full_finetune": ("full_finetune+post_network", {}, True),
    "partial_tuning": ("partial_tuning+post_network", {"partial_tuning": {"subset": "bias_norm"}}, True),
    "partial_tuning-temporal_attention": (
        "partial_tuning+post_network",
        {"partial_tuning": {"subset": "temporal_attention"}},
        True,
    ),
    "adapter-st_adapter": ("adapter+post_network", {"adapter": {"variant": "st_adapter"}}, True),
    "adapter-aim": ("adapter+post_network", {"adapter": {"variant": "aim", "temporal_embedding": 4}}, True),
    "adapter-adaptformer": ("adapter+post_network", {"adapter": {"variant": "adaptformer"}}, True),
    "adapter-linear": ("adapter+post_network", {"adapter": {"variant": "linear"}}, True),
    "lora": ("lora+post_network", {"lora": {"r": 4}}, True),
    # Prompts are new tokens every block attends to: the features change from the first step.
    "prompt_tuning": ("prompt_tuning+post_network", {"prompt_tuning": {"depth": "deep"}}, False),
    "post_network": ("post_network", {}, True),
    # Own heads: zero-initialised cross-stream fusion (extra models) starts at the image stream ...
    "extra_models": ("extra_models", {"extra_models": {"temporal": "transformer", "channels": [8, 16]}}, True),
    # ... EVL's decoder query does not (its frames do, through the ILFM's norm and projection, see test_side_tuning),
    "side_tuning-evl": ("side_tuning", {"side_tuning": {"design": "evl", "frames": 3}}, False),
    # ... R²-Tuning's state enters through a zero-initialised map added to the frame embeddings.
    "side_tuning-r2_tuning": ("side_tuning", {"side_tuning": {"design": "r2_tuning", "width": 16, "heads": 2}}, True),
    # A shallower copy of the image tower is another function; the backbone student is the ILFM itself.
    "distillation-small": ("distillation", {"distillation": {"student": "small", **HEAD}}, False),
    "distillation-backbone": ("distillation", {"distillation": {"student": "backbone", **HEAD}}, True),
}


def compose(arm: str, text_tower):
    spec, options, _ = ARMS[arm]
    options = {name: dict(values) for name, values in options.items()}
    if "post_network" in spec.split("+"):
        options["post_network"] = dict(HEAD)
    ilfm = make_backbone("tiny", text_tower)
    return build_video_encoder(ilfm, spec, options).eval()


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_bench_arm_starts_where_its_design_says(arm, text_tower):
    encoder = compose(arm, text_tower)
    plain = make_backbone("tiny", text_tower)
    video = video_for(plain, batch=2, frames=3)
    with torch.no_grad():
        zero_shot = plain.encode_frames(video).embeds.mean(dim=1)
        got = encoder(video).video
    assert got.shape == zero_shot.shape  # every arm's video embedding is in the joint space
    if ARMS[arm][2]:
        torch.testing.assert_close(got, zero_shot, rtol=1e-5, atol=1e-5)
    else:
        assert not torch.allclose(got, zero_shot, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arm", sorted(a for a, (spec, _, _) in ARMS.items() if "post_network" in spec))
def test_every_backbone_adapting_arm_reads_the_same_head(arm, text_tower):
    encoder = compose(arm, text_tower)
    reference = compose("post_network", text_tower)
    # post_network's head, never the adapting paradigm's own default head (lora's would be another transformer,
    # prompt_tuning's mean pooling): the same modules, shapes and starting values.
    assert isinstance(encoder.head, TemporalHead) and encoder.head.space == "joint"
    assert len(encoder.head.temporal.layers) == 1
    shapes = {k: tuple(v.shape) for k, v in encoder.head.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in reference.head.state_dict().items()}
    head_names = [n for n, _ in encoder.trainable_named_parameters() if n.startswith("head.")]
    assert head_names == [n for n, _ in reference.trainable_named_parameters()]


def test_the_small_student_reads_the_same_head(text_tower):
    encoder = compose("distillation-small", text_tower)
    reference = compose("post_network", text_tower)
    ours = {k: tuple(v.shape) for k, v in encoder.head.temporal_head.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in reference.head.state_dict().items()}


def test_partial_tuning_of_norms_uses_batch_statistics_in_train_mode(text_tower):
    # Partial tuning of norms on TinyCLIP: its stem's BatchNorms train, so in training mode they normalise with
    # the batch's statistics; the zero-shot equality above holds in eval mode (running statistics).
    encoder = compose("partial_tuning", text_tower).train()
    plain = make_backbone("tiny", text_tower)
    video = video_for(plain, batch=2, frames=3)
    with torch.no_grad():
        zero_shot = plain.encode_frames(video).embeds.mean(dim=1)
        got = encoder(video).video
    assert not torch.allclose(got, zero_shot, rtol=1e-5, atol=1e-5)
