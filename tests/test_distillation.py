"""Distillation (TeachCLIP-style, text-free): the student trains, the frozen teacher never does; multi-grained losses
are present in training, zero where the student starts as the teacher, and go down when optimised."""

from __future__ import annotations

import functools

import pytest
import torch

from paradigm_helpers import assert_exactly_declared_parameters_have_gradients, make_backbone, round_trip_trainable
from paradigm_helpers import video_for as shared_video_for
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import build_video_encoder
from videoadapt.paradigms.distillation import distillation_loss

LOSS_NAMES = {"distill_frame", "distill_video"}
# Three videos by default here (the shared helper's default is two).
video_for = functools.partial(shared_video_for, batch=3)

CASES = [
    {"student": "backbone"},
    {"student": "backbone", "temporal": "mean", "frame_loss": "relation", "video_loss": "cosine"},
    {"student": "small"},
    {"student": "small", "temporal": "mean", "frame_loss": "mse", "video_loss": "mse", "frame_weight": 0.5},
]


def build(kind, text_tower, options):
    ilfm = make_backbone(kind, text_tower)
    return ilfm, build_video_encoder(ilfm, "distillation", {"distillation": dict(options)})


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("options", CASES, ids=[f"{c['student']}-{i}" for i, c in enumerate(CASES)])
def test_distillation_contract(kind, options, text_tower, tmp_path):
    ilfm, encoder = build(kind, text_tower, options)
    encoder.train()
    video = video_for(ilfm)
    features = encoder(video)
    e = ilfm.dims.embed_dim
    assert features.frames.shape == (3, 3, e) and features.video.shape == (3, e)
    assert set(features.losses) == LOSS_NAMES
    for loss in features.losses.values():
        assert loss.ndim == 0 and torch.isfinite(loss)

    # Exactly the declared parameters receive gradients: the student's, never the teacher's.
    (features.video.square().sum() + sum(features.losses.values())).backward()
    assert_exactly_declared_parameters_have_gradients(encoder)
    head = encoder.head
    teacher = head.teacher if options["student"] == "backbone" else encoder.ilfm
    assert not any(p.requires_grad for p in teacher.parameters())
    backbone_trains = any(p.requires_grad for m in ilfm.vision_modules() for p in m.parameters())
    assert backbone_trains == (options["student"] == "backbone")
    assert not any(".teacher." in name for name in encoder.trainable_state_dict())

    if options["student"] == "small":
        # The teacher's features may come from the cache while the student reads the pixels.
        assert not encoder.cacheable and encoder.cache_with_pixels
        with torch.no_grad():
            live = encoder(video)
            cached = encoder(video, cached=ilfm.encode_frames(video))
        torch.testing.assert_close(cached.video, live.video)
        for name in LOSS_NAMES:
            torch.testing.assert_close(cached.losses[name], live.losses[name])
    else:
        assert not encoder.cacheable and not encoder.cache_with_pixels

    # In eval mode no loss is computed (and the teacher need not run).
    encoder.eval()
    with torch.no_grad():
        evaluated = encoder(video)
    assert evaluated.losses == {}

    # Only the trainable parts are saved, and they load back.
    _, restored = build(kind, text_tower, options)
    round_trip_trainable(encoder, restored, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(video).video, evaluated.video)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("loss", ["cosine", "mse", "relation"])
def test_backbone_student_starts_as_its_teacher(kind, loss, text_tower):
    # The student is the original image tower plus a temporal transformer that starts as the identity: both
    # losses are zero until the student moves (backbone in eval mode: TinyCLIP's stem has BatchNorm).
    ilfm, encoder = build(kind, text_tower, {"frame_loss": loss, "video_loss": loss})
    encoder.train()
    encoder.ilfm.eval()
    with torch.no_grad():
        features = encoder(video_for(ilfm))
    for name in LOSS_NAMES:
        assert abs(float(features.losses[name])) < 1e-5, name


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("student", ["backbone", "small"])
def test_distillation_losses_go_down(kind, student, text_tower):
    ilfm, encoder = build(kind, text_tower, {"student": student, "temporal": "mean"})
    encoder.train()
    encoder.ilfm.eval()  # a fixed function of the weights for the comparison (BatchNorm)
    video = video_for(ilfm, batch=4)
    if student == "backbone":
        with torch.no_grad():  # move the student away from its teacher
            for module in ilfm.vision_modules():
                for parameter in module.parameters():
                    parameter.add_(0.05 * torch.randn_like(parameter))
    optimizer = torch.optim.Adam([p for _, p in encoder.trainable_named_parameters()], lr=3e-3)
    history = []
    for _ in range(6):
        losses = encoder(video).losses
        total = sum(losses.values())
        history.append(float(total.detach()))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[0] > 1e-4
    assert history[-1] < 0.7 * history[0], history


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_precomputed_teacher_features_stand_in_for_the_teacher(kind, text_tower):
    ilfm, encoder = build(kind, text_tower, {})
    original = make_backbone(kind, text_tower)
    encoder.train()
    encoder.ilfm.eval()
    video = video_for(ilfm)
    with torch.no_grad():
        for module in ilfm.vision_modules():
            for parameter in module.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        live = encoder(video)
        given = encoder(video, teacher=original.encode_frames(video))
    assert float(live.losses["distill_frame"]) > 1e-4
    for name in LOSS_NAMES:
        torch.testing.assert_close(given.losses[name], live.losses[name])


def test_small_student_runs_without_its_teacher_at_inference(text_tower):
    ilfm, encoder = build("hf", text_tower, {"student": "small"})
    assert len(encoder.head.student.vision_blocks()) == 1 and len(ilfm.vision_blocks()) == 2
    encoder.eval()

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher ran at inference")

    ilfm.encode_frames = refuse
    with torch.no_grad():
        features = encoder(video_for(ilfm))
    assert features.losses == {} and features.video.shape == (3, ilfm.dims.embed_dim)


def test_relation_loss_compares_in_batch_similarity_distributions():
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    rotation = torch.linalg.qr(torch.randn(8, 8))[0]
    # Invariant to anything that keeps the cosine similarities (a rotation, a rescaling) ...
    assert float(distillation_loss(2 * x @ rotation, x, "relation")) < 1e-5
    # ... unlike the point-wise losses; and positive when the relations differ.
    assert float(distillation_loss(x @ rotation, x, "cosine")) > 0.1
    assert float(distillation_loss(torch.randn(5, 8), x, "relation")) > 0.01
    assert float(distillation_loss(x[:1], x[:1] + 1, "relation")) == 0.0


def test_distillation_errors_are_clear(text_tower):
    with pytest.raises(VideoadaptError, match="unknown student 'tiny'; known: backbone, small"):
        build("hf", text_tower, {"student": "tiny"})
    with pytest.raises(VideoadaptError, match="unknown video_loss 'kl'"):
        build("hf", text_tower, {"video_loss": "kl"})
    with pytest.raises(VideoadaptError, match="unknown options"):
        build("hf", text_tower, {"weight": 1.0})
    with pytest.raises(VideoadaptError, match="already trains every backbone parameter"):
        build_video_encoder(make_backbone("hf", text_tower), "distillation+lora")
    with pytest.raises(VideoadaptError, match="frozen teacher"):
        build_video_encoder(
            make_backbone("hf", text_tower), "lora+distillation", {"distillation": {"student": "small"}}
        )
    ilfm, small = build("hf", text_tower, {"student": "small"})
    video = video_for(ilfm)
    with pytest.raises(VideoadaptError, match="pass video= along with cached="):
        small(cached=ilfm.encode_frames(video))
    with pytest.raises(VideoadaptError, match="unexpected inputs \\['teacher'\\]"):
        small(video, teacher=ilfm.encode_frames(video))
