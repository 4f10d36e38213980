"""Knowledge distillation (survey Sec. III-A1): a video student learns the task while a frozen image-language
teacher keeps it close to what the pretrained model knows, at two granularities (frames and video).

The reference design is TeachCLIP (Tian et al., "TeachCLIP: Multi-Grained Teaching for Efficient Text-to-Video
Retrieval", CVPR 2024; official code ruc-aimc-lab/TeachCLIP, ``train.py`` and ``modules/modeling.py``). There the
student (CLIP4Clip seqTransf plus an attentional frame-feature aggregation) is trained with its retrieval loss plus

* coarse-grained distillation: the teacher's in-batch text-to-video similarity matrix, softened, is matched by the
  student's (``distill_method`` "ce" / "pear" / "l1" in ``train.py``), and
* fine-grained distillation: the teacher's text-to-frame similarity distribution supervises the student's frame
  weights (``fine_method``).

A paradigm knows no task and no texts, so both targets are made text-free here (the deviation from the paper):

* frame level ``distill_frame``: the student's frame embeddings ``[B,T,E]`` against the teacher's;
* video level ``distill_video``: the student's video embedding ``[B,E]`` against the teacher's mean-pooled frames
  (CLIP4Clip meanP, what the image model alone says about the video).

Each level compares with ``"cosine"`` (``1 - cos``, point-wise), ``"mse"`` (FitNets-style regression of the raw
embeddings) or ``"relation"``: the KL divergence between the teacher's and the student's softmax over in-batch
cosine similarities (diagonal left out), the relational analogue of TeachCLIP's similarity-distribution matching
with other videos (or frames) standing in for the texts; it needs at least 3 rows (with 2, each row's
distribution has one entry and the loss is 0). Defaults: cosine for frames, which anchors the student in
the joint space (texts still match it), and relation for the video, as TeachCLIP's coarse level.

Two students:

* ``student="backbone"`` (default): the image tower itself trains (as in full fine-tuning) with a temporal module
  on top; the teacher is a frozen copy of the original image tower, made before anything is unfrozen. At
  initialisation the student computes what the teacher does (the temporal transformer starts as the identity), so
  both losses start at zero and grow only as the student drifts. Teacher features may be precomputed (the feature
  cache of the original model): ``encoder(video, teacher=features)``.
* ``student="small"``: the image model stays frozen and *is* the teacher; the student is a shallower copy of its
  image tower (``student_layers`` blocks, chosen evenly and ending with the last one, by weight inheritance as in
  DistilBERT and TinyCLIP's inheritance), reading pixels. The teacher's frame features may come from the feature
  cache: ``encoder(video, cached=features)``. At inference the teacher does not run.

The losses are computed in training mode only and go in ``VideoFeatures.losses`` already weighted by
``frame_weight`` and ``video_weight``; a trainer adds them to the task loss. (TeachCLIP weighs its task, coarse
and fine losses 0.2 / 1 / 2 with Pearson matching, or 1 / 10 / 1 with cross-entropy; here both default to 1.)

Options: ``student``, ``student_layers`` (default half the blocks), ``temporal`` ("transformer" | "mean"),
``temporal_layers`` (1), ``frame_weight`` (1.0), ``video_weight`` (1.0), ``frame_loss`` ("cosine"),
``video_loss`` ("relation"), ``temperature`` (0.05, for "relation").
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoFeatures, VideoHead
from videoadapt.paradigms.temporal_head import temporal_module
from videoadapt.registry import registry

STUDENTS = ("backbone", "small")
LOSSES = ("cosine", "mse", "relation")
TEMPORALS = ("transformer", "mean")
OPTIONS = (
    "student",
    "student_layers",
    "temporal",
    "temporal_layers",
    "frame_weight",
    "video_weight",
    "frame_loss",
    "video_loss",
    "temperature",
)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine", temperature: float = 0.05
) -> torch.Tensor:
    """Distance between student and teacher embeddings ``[..., E]`` (leading axes are flattened into one batch of
    N rows); the teacher gets no gradient. ``kind``: ``cosine``, ``mse`` or ``relation`` (see the module doc)."""
    student = student.reshape(-1, student.shape[-1])
    teacher = teacher.detach().reshape(-1, teacher.shape[-1]).to(student.dtype)
    if kind == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "relation":
        n = student.shape[0]
        if n < 2:
            return student.sum() * 0  # no other sample to relate to; keeps the graph for the trainer's backward
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=student.device)

        def log_relations(x: torch.Tensor) -> torch.Tensor:
            x = F.normalize(x, dim=-1)
            # Self-similarity is 1 for both and would dominate the softmax: only the others are compared.
            logits = (x @ x.T / temperature).masked_select(off_diagonal).view(n, n - 1)
            return logits.log_softmax(dim=-1)

        return F.kl_div(log_relations(student), log_relations(teacher), log_target=True, reduction="batchmean")
    raise VideoadaptError(f"distillation: unknown loss {kind!r}; known: {', '.join(LOSSES)}")


def copy_image_model(ilfm: ImageLanguageModel) -> ImageLanguageModel:
    """A deep copy of ``ilfm`` whose image tower is new and whose text tower is *shared* with ``ilfm`` (the
    student or teacher needs ``encode_frames``, and a second text tower would only cost memory)."""
    shared: dict[int, Any] = {id(module): module for module in ilfm.text_modules()}
    return copy.deepcopy(ilfm, memo=shared)


def _inherit_blocks(model: ImageLanguageModel, keep: int) -> list[int]:
    """Keep ``keep`` of the vision blocks, evenly spaced and ending with the last (whose output the pretrained
    final norm and projection expect); the others are removed in place. Returns the kept indices."""
    blocks = model.vision_blocks()
    total = len(blocks)
    if not 1 <= keep <= total:
        raise VideoadaptError(f"distillation: student_layers must be in 1..{total}, got {keep}")
    kept = [round((i + 1) * total / keep) - 1 for i in range(keep)]
    for index in reversed(range(total)):
        if index not in kept:
            del blocks[index]
    return kept


class DistillationHead(VideoHead):
    """The student's temporal module and, in training mode, the multi-grained distillation losses.

    ``teacher`` (``student="backbone"``): the frozen copy of the original image model; the frame features the
    head receives are the (training) backbone's. ``student`` (``student="small"``): the compact image model that
    reads the pixels; the frame features the head receives are the frozen image model's, i.e. the teacher's.
    """

    def __init__(
        self,
        ilfm: ImageLanguageModel,
        *,
        teacher: ImageLanguageModel | None = None,
        student: ImageLanguageModel | None = None,
        temporal: str = "transformer",
        temporal_layers: int = 1,
        frame_weight: float = 1.0,
        video_weight: float = 1.0,
        frame_loss: str = "cosine",
        video_loss: str = "relation",
        temperature: float = 0.05,
    ) -> None:
        super().__init__()
        if (teacher is None) == (student is None):
            raise VideoadaptError("DistillationHead takes either a teacher (backbone student) or a small student")
        self.teacher = teacher
        self.student = student
        self.width = ilfm.dims.embed_dim
        options = {"layers": temporal_layers} if temporal == "transformer" else {}
        self.temporal = temporal_module(temporal, self.width, **options)
        self.frame_weight, self.video_weight = float(frame_weight), float(video_weight)
        self.frame_loss, self.video_loss = frame_loss, video_loss
        self.temperature = float(temperature)
        # A pixel student reads the video; its teacher's features may still come from the cache (cache_with_pixels).
        self.needs_pixels = student is not None
        # Precomputed teacher features only make sense where the teacher is not the encoder's own backbone.
        self.extra_inputs = ("teacher",) if teacher is not None else ()

    @property
    def needs_frames(self) -> bool:
        # The small student's backbone features are only the teacher's targets: not needed at inference.
        return self.teacher is not None or self.training

    def train(self, mode: bool = True) -> DistillationHead:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # no dropout, no BatchNorm statistics drift: the teacher is a fixed function
        return self

    def forward(
        self,
        features: FrameFeatures | None,
        video: torch.Tensor | None = None,
        text: TextFeatures | None = None,
        teacher: FrameFeatures | torch.Tensor | None = None,
    ) -> VideoFeatures:
        if self.student is not None:
            if video is None:
                raise VideoadaptError("distillation(student='small'): the student reads pixels; pass the video")
            own = self.student.encode_frames(video)
            targets = features
        else:
            if features is None:
                raise VideoadaptError("distillation(student='backbone') needs the backbone's frame features")
            own, targets = features, teacher
        frames, pooled = self.temporal(own.embeds)
        out = VideoFeatures(frames=frames, video=pooled, patches=own.patches)
        if self.training:
            target_frames = self._teacher_frames(targets, video)
            if target_frames.shape != frames.shape:
                raise VideoadaptError(
                    f"distillation: teacher frames {tuple(target_frames.shape)} do not match the student's "
                    f"{tuple(frames.shape)}"
                )
            out.losses["distill_frame"] = self.frame_weight * distillation_loss(
                frames, target_frames, self.frame_loss, self.temperature
            )
            out.losses["distill_video"] = self.video_weight * distillation_loss(
                pooled, target_frames.mean(dim=1), self.video_loss, self.temperature
            )
        return out

    def _teacher_frames(self, given: FrameFeatures | torch.Tensor | None, video: torch.Tensor | None) -> torch.Tensor:
        if given is not None:
            return (given.embeds if isinstance(given, FrameFeatures) else given).detach()
        if self.teacher is None:
            raise VideoadaptError("distillation(student='small'): the teacher's frame features are missing")
        if video is None:
            raise VideoadaptError("distillation: training needs the video (or teacher= features) for the teacher")
        with torch.no_grad():
            return self.teacher.encode_frames(video).embeds


@registry.register("paradigm", "distillation")
class Distillation(Paradigm):
    name = "distillation"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise VideoadaptError(f"distillation: unknown options {unknown}; known: {', '.join(OPTIONS)}")
        self.student = options.get("student", "backbone")
        if self.student not in STUDENTS:
            raise VideoadaptError(f"distillation: unknown student {self.student!r}; known: {', '.join(STUDENTS)}")
        for key, default in (("frame_loss", "cosine"), ("video_loss", "relation")):
            if options.get(key, default) not in LOSSES:
                raise VideoadaptError(f"distillation: unknown {key} {options[key]!r}; known: {', '.join(LOSSES)}")
        if options.get("temporal", "transformer") not in TEMPORALS:
            raise VideoadaptError(
                f"distillation: unknown temporal {options['temporal']!r}; known: {', '.join(TEMPORALS)}"
            )
        # Only the backbone student changes the image tower, and it trains all of it (so it composes with no other
        # backbone adaptation); build_video_encoder reads these per instance.
        backbone = self.student == "backbone"
        self.adapts_backbone = backbone  # type: ignore[misc]  # the class default depends on an option here
        self.trains_whole_backbone = backbone  # type: ignore[misc]
        self._teacher: ImageLanguageModel | None = None

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        # The teacher is the original image tower: copied before anything is unfrozen, frozen for good.
        teacher = copy_image_model(ilfm)
        for module in teacher.vision_modules():
            module.requires_grad_(False)
        self._teacher = teacher.eval()
        for module in ilfm.vision_modules():
            module.requires_grad_(True)

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        options = {k: self.options[k] for k in OPTIONS if k in self.options and k not in ("student", "student_layers")}
        if self.student == "backbone":
            if self._teacher is None:
                raise VideoadaptError("distillation: the teacher is made when the backbone is adapted")
            return DistillationHead(ilfm, teacher=self._teacher, **options)
        if any(p.requires_grad for m in ilfm.vision_modules() for p in m.parameters()):
            raise VideoadaptError(
                "distillation(student='small') uses the image model as its frozen teacher; another paradigm of the "
                "composition adapts it"
            )
        student = copy_image_model(ilfm)
        _inherit_blocks(student, int(self.options.get("student_layers", max(1, ilfm.dims.layers // 2))))
        for module in student.vision_modules():
            module.requires_grad_(True)
        return DistillationHead(ilfm, student=student, **options)
