"""Distillation (after TeachCLIP): a stronger teacher given as a module, or the initial image tower as a regulariser;
coarse (video) and fine (frame) losses against text anchors, or text-free without them. The student trains, the
teacher never does; the losses are present in training only, zero where the student starts as its teacher, and go
down when optimised."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from paradigm_helpers import (
    assert_exactly_declared_parameters_have_gradients,
    make_backbone,
    perturb,
    round_trip_trainable,
)
from paradigm_helpers import video_for as shared_video_for
from videoadapt.errors import VideoadaptError
from videoadapt.paradigms import VideoFeatures, build_video_encoder
from videoadapt.paradigms.distillation import anchored_frame_loss, anchored_video_loss, distillation_loss

LOSS_NAMES = {"distill_frame", "distill_video"}
# Three videos by default here (the shared helper's default is two).
video_for = functools.partial(shared_video_for, batch=3)
TEXTS = ["a red circle moves left", "a blue square grows", "two stars", "a triangle turns"]

CASES = [
    {"student": "backbone"},
    {"student": "backbone", "temporal": "mean", "frame_loss": "relation", "video_loss": "cosine"},
    {"student": "small"},
    {"student": "small", "temporal": "mean", "frame_loss": "mse", "video_loss": "mse", "frame_weight": 0.5},
    {"teacher": "run"},
    {"teacher": "run", "student": "backbone", "temporal": "transformer", "layers": 2},
]


def stronger_teacher(kind: str, text_tower):
    """A stand-in for a trained run (e.g. a post-network run): its own backbone and a temporal transformer moved
    off its zero start, as training would."""
    teacher = build_video_encoder(make_backbone(kind, text_tower), "post_network", {"post_network": {"layers": 1}})
    perturb(teacher, scale=0.2, seed=7)
    return teacher


def build(kind, text_tower, options, teacher=None):
    ilfm = make_backbone(kind, text_tower)
    resources = None
    if options.get("teacher") == "run":
        resources = {"teacher": teacher if teacher is not None else stronger_teacher(kind, text_tower)}
    encoder = build_video_encoder(ilfm, "distillation", {"distillation": dict(options)}, resources=resources)
    return ilfm, encoder


def anchors_for(ilfm) -> torch.Tensor:
    with torch.no_grad():
        return ilfm.encode_text(TEXTS).embeds


def student_kind(options: dict) -> str:
    return options.get("student", "small" if options.get("teacher") == "run" else "backbone")


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("options", CASES, ids=[f"{student_kind(c)}-{i}" for i, c in enumerate(CASES)])
def test_distillation_contract(kind, options, text_tower, tmp_path):
    teacher = stronger_teacher(kind, text_tower) if options.get("teacher") == "run" else None
    ilfm, encoder = build(kind, text_tower, options, teacher)
    encoder.train()
    video = video_for(ilfm)
    anchors = anchors_for(ilfm)
    e = ilfm.dims.embed_dim
    for given in (anchors, None):  # text anchors (TeachCLIP's coarse and fine levels), then the text-free fallback
        features = encoder(video, anchors=given)
        assert features.frames.shape == (3, 3, e) and features.video.shape == (3, e)
        assert set(features.losses) == LOSS_NAMES
        for loss in features.losses.values():
            assert loss.ndim == 0 and torch.isfinite(loss)

    # Exactly the declared parameters receive gradients: the student's, never the teacher's.
    encoder.zero_grad()
    features = encoder(video, anchors=anchors)
    (features.video.square().sum() + sum(features.losses.values())).backward()
    assert_exactly_declared_parameters_have_gradients(encoder)
    head = encoder.head
    if teacher is not None:
        assert head.teacher is teacher and not teacher.training
        assert not any(p.requires_grad or p.grad is not None for p in teacher.parameters())
    small = student_kind(options) == "small"
    frozen_teacher = encoder.ilfm if small and teacher is None else head.teacher
    assert not any(p.requires_grad for p in frozen_teacher.parameters())
    backbone_trains = any(p.requires_grad for m in ilfm.vision_modules() for p in m.parameters())
    assert backbone_trains == (not small)
    assert not any(".teacher." in name for name in encoder.trainable_state_dict())
    # The small student's tower is pretrained weights being tuned: the backbone learning-rate group.
    expected = {id(p) for m in head.student.vision_modules() for p in m.parameters()} if small else set()
    assert {id(p) for p in head.backbone_parameters()} == expected

    if small:
        # The frozen image model's features may come from the cache while the student reads the pixels.
        assert not encoder.cacheable and encoder.cache_with_pixels
        with torch.no_grad():
            live = encoder(video, anchors=anchors)
            cached = encoder(video, cached=ilfm.encode_frames(video), anchors=anchors)
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
    _, restored = build(kind, text_tower, options, teacher)
    round_trip_trainable(encoder, restored, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(video).video, evaluated.video)


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("loss", ["cosine", "mse", "relation", "anchored"])
def test_the_initial_teacher_is_where_the_backbone_student_starts(kind, loss, text_tower):
    # The regulariser: the student is the original image tower plus a temporal transformer that starts as the
    # identity, so both losses are zero until the student moves (backbone in eval mode: TinyCLIP's stem has
    # BatchNorm).
    options = {} if loss == "anchored" else {"frame_loss": loss, "video_loss": loss}
    ilfm, encoder = build(kind, text_tower, options)
    encoder.train()
    encoder.ilfm.eval()
    with torch.no_grad():
        features = encoder(video_for(ilfm), anchors=anchors_for(ilfm) if loss == "anchored" else None)
    for name in LOSS_NAMES:
        assert abs(float(features.losses[name])) < 1e-5, name


@pytest.mark.parametrize("kind", ["tiny", "hf"])
@pytest.mark.parametrize("options", [{"student": "backbone"}, {"student": "small"}, {"teacher": "run"}])
def test_distillation_losses_go_down(kind, options, text_tower):
    torch.manual_seed(0)
    ilfm, encoder = build(kind, text_tower, {**options, "temporal": "mean"})
    encoder.train()
    encoder.ilfm.eval()  # a fixed function of the weights for the comparison (BatchNorm)
    if encoder.head.student is not None:
        encoder.head.student.eval()
    video = video_for(ilfm, batch=4)
    anchors = anchors_for(ilfm)
    if student_kind(options) == "backbone":
        with torch.no_grad():  # move the student away from its (initial) teacher
            for module in ilfm.vision_modules():
                for parameter in module.parameters():
                    parameter.add_(0.05 * torch.randn_like(parameter))
    optimizer = torch.optim.Adam([p for _, p in encoder.trainable_named_parameters()], lr=3e-4)
    history = []
    for _ in range(6):
        losses = encoder(video, anchors=anchors).losses
        total = sum(losses.values())
        history.append(float(total.detach()))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[0] > 1e-4
    assert history[-1] < 0.7 * history[0], history


def test_a_run_teacher_is_called_on_pixels_in_eval_mode_without_gradients(text_tower):
    calls = []

    class Spy(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, video: torch.Tensor) -> VideoFeatures:
            calls.append((tuple(video.shape), self.training, torch.is_grad_enabled()))
            return self.inner(video)

    spy = Spy(stronger_teacher("hf", text_tower))
    ilfm, encoder = build("hf", text_tower, {"teacher": "run"}, teacher=spy)
    video = video_for(ilfm)
    encoder.train()
    encoder(video, anchors=anchors_for(ilfm))
    assert calls == [(tuple(video.shape), False, False)]
    encoder.eval()
    with torch.no_grad():
        encoder(video)
    assert len(calls) == 1  # not at inference


def test_the_student_gets_the_same_temporal_head_as_post_network(text_tower):
    head_options = {"temporal": "transformer", "layers": 2, "heads": 2}
    _, distilled = build("tiny", text_tower, {"student": "small", **head_options})
    post = build_video_encoder(make_backbone("tiny", text_tower), "post_network", {"post_network": head_options})
    ours = {k: tuple(v.shape) for k, v in distilled.head.temporal_head.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in post.head.state_dict().items()}
    assert ours == theirs and len(distilled.head.temporal_head.temporal.layers) == 2
    # temporal_layers is another name for the module's layers (documented since the first version).
    _, aliased = build("tiny", text_tower, {"student": "small", "temporal_layers": 2})
    assert len(aliased.head.temporal_head.temporal.layers) == 2


@pytest.mark.parametrize("kind", ["tiny", "hf"])
def test_precomputed_teacher_features_stand_in_for_the_initial_teacher(kind, text_tower):
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


def _kl_by_hand(student_logits: list[float], teacher_logits: list[float]) -> float:
    def softmax(values: list[float]) -> list[float]:
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        return [x / sum(exps) for x in exps]

    p, q = softmax(teacher_logits), softmax(student_logits)
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_anchored_losses_follow_their_definition():
    torch.manual_seed(0)
    m, b, t, e, tau = 3, 4, 5, 6, 0.1
    anchors, student, teacher = torch.randn(m, e), torch.randn(b, e), torch.randn(b, e)

    # Coarse: each anchor's distribution over the videos, plus each video's over the anchors, KL(teacher || student).
    def logits(videos: torch.Tensor, i: int | None = None, j: int | None = None) -> list[float]:
        pairs = [(i, k) for k in range(b)] if j is None else [(k, j) for k in range(m)]
        return [_cos(anchors[x], videos[y]) / tau for x, y in pairs]

    rows = [_kl_by_hand(logits(student, i=i), logits(teacher, i=i)) for i in range(m)]
    cols = [_kl_by_hand(logits(student, j=j), logits(teacher, j=j)) for j in range(b)]
    expected = sum(rows) / m + sum(cols) / b
    assert float(anchored_video_loss(student, teacher, anchors, tau)) == pytest.approx(expected, rel=1e-4)
    # Fine: for each anchor and video, the distribution over the video's frames.
    frames_s, frames_t = torch.randn(b, t, e), torch.randn(b, t, e)
    fine = [
        _kl_by_hand(
            [_cos(anchors[i], frames_s[j, k]) / tau for k in range(t)],
            [_cos(anchors[i], frames_t[j, k]) / tau for k in range(t)],
        )
        for i in range(m)
        for j in range(b)
    ]
    assert float(anchored_frame_loss(frames_s, frames_t, anchors, tau)) == pytest.approx(sum(fine) / (m * b), rel=1e-4)
    # Zero when the student agrees (up to scale: cosine similarities), positive otherwise; no gradient to the teacher.
    assert float(anchored_video_loss(3 * teacher, teacher, anchors, tau)) < 1e-6
    teacher.requires_grad_(True)
    anchored_video_loss(student.requires_grad_(True), teacher, anchors, tau).backward()
    assert teacher.grad is None and student.grad is not None


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
    with pytest.raises(VideoadaptError, match="option student must be one of backbone, small or null, got 'tiny'"):
        build("hf", text_tower, {"student": "tiny"})
    with pytest.raises(VideoadaptError, match="option video_loss must be one of cosine, mse, relation, got 'kl'"):
        build("hf", text_tower, {"video_loss": "kl"})
    with pytest.raises(VideoadaptError, match="unknown option 'weight'"):
        build("hf", text_tower, {"weight": 1.0})
    with pytest.raises(VideoadaptError, match="option space must be joint"):
        build("hf", text_tower, {"space": "cls"})
    with pytest.raises(VideoadaptError, match="student_layers sizes the small student"):
        build("hf", text_tower, {"student_layers": 1})
    with pytest.raises(VideoadaptError, match="already trains every backbone parameter"):
        build_video_encoder(make_backbone("hf", text_tower), "distillation+lora")
    with pytest.raises(VideoadaptError, match="keeps the image model frozen"):
        build_video_encoder(
            make_backbone("hf", text_tower), "lora+distillation", {"distillation": {"student": "small"}}
        )
    # A run teacher must be given; the initial one is a regulariser, and a given teacher is not silently dropped.
    with pytest.raises(VideoadaptError, match="resources=\\{'teacher': module\\}.*got nothing"):
        build_video_encoder(make_backbone("hf", text_tower), "distillation", {"distillation": {"teacher": "run"}})
    teacher = stronger_teacher("hf", text_tower)
    with pytest.raises(VideoadaptError, match="regulariser.*set teacher: run"):
        build_video_encoder(make_backbone("hf", text_tower), "distillation", resources={"teacher": teacher})
    with pytest.raises(VideoadaptError, match="resources \\['teacher'\\] are used by no paradigm"):
        build_video_encoder(make_backbone("hf", text_tower), "post_network", resources={"teacher": teacher})

    ilfm, small = build("hf", text_tower, {"student": "small"})
    video = video_for(ilfm)
    with pytest.raises(VideoadaptError, match="pass video= along with cached="):
        small(cached=ilfm.encode_frames(video))
    with pytest.raises(VideoadaptError, match="unexpected inputs \\['teacher'\\]; this head takes: anchors"):
        small(video, teacher=ilfm.encode_frames(video))
    small.train()
    with pytest.raises(VideoadaptError, match="anchors must be \\[M,16\\] text embeddings"):
        small(video, anchors=torch.randn(4, 5))

    class Wrong(torch.nn.Module):
        def forward(self, video: torch.Tensor) -> torch.Tensor:
            return video.mean(dim=(2, 3, 4))

    _, wrong = build("hf", text_tower, {"teacher": "run"}, teacher=Wrong())
    with pytest.raises(VideoadaptError, match="must return VideoFeatures, got Tensor"):
        wrong.train()(video)
