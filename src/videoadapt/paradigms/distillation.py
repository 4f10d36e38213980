"""Knowledge distillation (survey Sec. III-A1): knowledge from a stronger teacher into a video student, which
learns its task at the same time.

The reference design is TeachCLIP (Tian et al., "TeachCLIP: Multi-Grained Teaching for Efficient Text-to-Video
Retrieval", CVPR 2024; official code ruc-aimc-lab/TeachCLIP). A strong, expensive video-text model (X-CLIP,
TS2-Net, X-Pool), trained beforehand and frozen, teaches an efficient student (CLIP4Clip seqTransf plus learned
frame weights) with its retrieval loss plus, in ``train.py`` ``train_epoch``:

* coarse-grained: the teacher's text-to-video similarity matrix of the batch, divided by a temperature, is matched
  by the student's: ``distill_method="ce"`` is ``-softmax(teacher) * log_softmax(student)`` over both the rows
  (each text over the videos) and the columns (each video over the texts);
* fine-grained: for each text, the teacher's softmax over the frames of its video of the text-frame similarity
  (``sentence2frames_sim`` in ``modules/modeling_xclip.py``) supervises the student's frame weights
  (``fine_method="ce"``).

Here, against *text anchors*: the head takes ``anchors`` ``[M,E]``, text embeddings in the joint space given by
the task (class prompts for recognition, the batch's captions for retrieval, candidate answers for QA), as a named
input (``encoder(video, anchors=...)``, :attr:`VideoHead.extra_inputs`). With anchors, in training mode:

* ``distill_video`` (coarse): for each anchor, the softmax over the batch's videos of cosine similarity / τ, and for
  each video, the softmax over the anchors; the student's distributions match the teacher's by KL divergence
  ``KL(teacher || student)``, summed over the two directions and averaged over anchors (rows) and videos
  (columns). TeachCLIP's "ce" is the cross-entropy ``-sum p_T log p_S`` = KL + the teacher's entropy, a constant
  for the student: the same gradients, and a loss that is zero when the student agrees;
* ``distill_frame`` (fine): for each anchor and each video, the softmax over the video's frames of the anchor-frame
  cosine similarity / τ; student matches teacher by KL, averaged over anchors and videos. The student's
  distribution comes from its own frame embeddings (the output of its temporal head), not from a separate
  frame-weight branch as in TeachCLIP.

Without anchors (``anchors=None``) both levels fall back to text-free targets: ``distill_frame`` compares the
student's frame embeddings with the teacher's, ``distill_video`` its video embedding with the teacher's, each with
``frame_loss`` / ``video_loss``: ``"cosine"`` (``1 - cos``, point-wise), ``"mse"`` (FitNets-style regression) or
``"relation"`` (KL between the softmax over in-batch cosine similarities of teacher and student, diagonal left out:
other videos stand in for the texts; needs at least 3 rows to say anything).

Teachers (``teacher``):

* ``"run"`` — distillation proper: a stronger model trained beforehand (e.g. a full fine-tuning run), given as a
  module through ``build_video_encoder(..., resources={"teacher": module})``. Contract: called as
  ``teacher(video)`` on pixels ``[B,T,3,H,W]``, in eval mode, without gradients, it returns
  :class:`VideoFeatures` whose ``frames`` ``[B,T,E]`` and ``video`` ``[B,E]`` are in the joint space. It is frozen
  in place and kept in eval mode. The default student is then ``"small"``.
* ``"initial"`` (default) — a frozen copy of the student's own starting image tower. This is a *regulariser*
  (it keeps the student near what the pretrained image model says about the frames, as in LwF / WiSE-style
  anchoring), not knowledge from a stronger model; its video target is the mean of its frame embeddings
  (CLIP4Clip meanP). With ``student="backbone"`` the copy is made before anything is unfrozen; precomputed teacher
  features may be given, ``encoder(video, teacher=features)``. With ``student="small"`` the frozen image model
  itself is the teacher (compression into a shallower copy), and its frame features may come from the feature
  cache, ``encoder(video, cached=features)``.

Students (``student``):

* ``"backbone"`` (default with the initial teacher): the image tower itself trains (as in full fine-tuning), with
  the temporal head on top. With the initial teacher the losses start at zero (the temporal transformer starts as
  the identity) and grow only as the student drifts.
* ``"small"`` (default with a run teacher): the image model stays frozen; the student is a shallower copy of its
  image tower (``student_layers`` blocks, chosen evenly and ending with the last one, by weight inheritance as in
  DistilBERT and TinyCLIP), reading pixels, with the temporal head on top. Its tower is a copy of pretrained weights
  that lives in the head: :meth:`DistillationHead.backbone_parameters` returns it, for the trainer's backbone
  learning-rate group. At inference only the student runs.

The student's temporal head is chosen by the same options as post_network's: ``temporal`` (default
``transformer``, one layer) and the module's options (``layers``, ``heads``, ...; ``temporal_layers`` is another
name for ``layers``), so a bench can give the student the same head as every other arm; ``space`` must be
``joint`` (the losses compare joint-space embeddings).

The losses are computed in training mode only and go in ``VideoFeatures.losses`` already weighted by
``frame_weight`` and ``video_weight``; a trainer adds them to the task loss. (TeachCLIP weighs task, coarse and fine
losses 1 / 10 / 1 with "ce"; here both weights default to 1.) ``temperature`` (0.05) is τ of every softmax above.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoFeatures, VideoHead
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.paradigms.temporal_head import head_from_config
from videoadapt.registry import registry
from videoadapt.temporal.modules import TemporalName

STUDENTS = ("backbone", "small")
TEACHERS = ("initial", "run")
LOSSES = ("cosine", "mse", "relation")
Loss = Literal["cosine", "mse", "relation"]


@dataclass(frozen=True)
class DistillationConfig(TemporalHeadConfig):
    paradigm: ClassVar[str] = "distillation"
    default_module_options: ClassVar[dict[str, dict[str, Any]]] = {"transformer": {"layers": 1}}
    temporal: TemporalName = "transformer"
    teacher: Literal["initial", "run"] = "initial"
    student: Literal["backbone", "small"] | None = None
    student_layers: int | None = None
    frame_weight: float = 1.0
    video_weight: float = 1.0
    frame_loss: Loss = "cosine"
    video_loss: Loss = "relation"
    temperature: float = 0.05

    @property
    def student_kind(self) -> str:
        """The student: as given, else ``small`` under a run teacher and ``backbone`` under the initial one."""
        if self.student is not None:
            return self.student
        return "small" if self.teacher == "run" else "backbone"

    def validate(self) -> None:
        self.require("space", self.space == "joint", "joint (the losses compare joint-space embeddings)")
        self.require("student_layers", self.student_layers is None or self.student_layers >= 1, "at least 1")
        if self.student_layers is not None and self.student_kind != "small":
            raise VideoadaptError(
                "distillation: option student_layers sizes the small student; the student here is the backbone"
            )
        for name in ("frame_weight", "video_weight"):
            self.require(name, getattr(self, name) >= 0, "at least 0")
        self.require("temperature", self.temperature > 0, "positive")


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine", temperature: float = 0.05
) -> torch.Tensor:
    """Text-free distance between student and teacher embeddings ``[..., E]`` (leading axes are flattened into one
    batch of N rows); the teacher gets no gradient. ``kind``: ``cosine``, ``mse`` or ``relation`` (module doc)."""
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


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean over all other axes of ``KL(softmax(teacher) || softmax(student))`` along ``dim``."""
    log_s = student_logits.log_softmax(dim=dim)
    log_t = teacher_logits.detach().log_softmax(dim=dim)
    return (log_t.exp() * (log_t - log_s)).sum(dim=dim).mean()


def anchored_video_loss(
    student: torch.Tensor, teacher: torch.Tensor, anchors: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Coarse level: ``student``/``teacher`` ``[B,E]`` videos, ``anchors`` ``[M,E]`` texts. KL between the teacher's
    and the student's softmax of cosine similarity / τ, for each anchor over the videos plus for each video over the
    anchors (TeachCLIP's two directions)."""
    a = F.normalize(anchors.detach().to(student.dtype), dim=-1)
    s = a @ F.normalize(student, dim=-1).T / temperature  # [M,B]
    t = a @ F.normalize(teacher.detach().to(student.dtype), dim=-1).T / temperature
    return _kl(s, t, dim=1) + _kl(s, t, dim=0)


def anchored_frame_loss(
    student: torch.Tensor, teacher: torch.Tensor, anchors: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Fine level: ``student``/``teacher`` ``[B,T,E]`` frames, ``anchors`` ``[M,E]``. For each anchor and video, KL
    between the teacher's and the student's softmax over the frames of anchor-frame cosine similarity / τ."""
    a = F.normalize(anchors.detach().to(student.dtype), dim=-1)
    s = torch.einsum("me,bte->mbt", a, F.normalize(student, dim=-1)) / temperature
    t = torch.einsum("me,bte->mbt", a, F.normalize(teacher.detach().to(student.dtype), dim=-1)) / temperature
    return _kl(s, t, dim=2)


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
    """The student's temporal head and, in training mode, the multi-grained distillation losses.

    ``student``: the small student's image model (None: the backbone is the student, and the frame features the
    head receives are its own). ``teacher``: a frozen module — the initial image model's copy (an
    :class:`ImageLanguageModel`, ``teacher="initial"`` with the backbone student) or a trained run (``teacher="run"``,
    called as ``teacher(video) -> VideoFeatures``); None when the frozen image model itself teaches (initial teacher,
    small student: its features are what the head receives).
    """

    def __init__(
        self,
        ilfm: ImageLanguageModel,
        config: DistillationConfig,
        *,
        student: ImageLanguageModel | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()  # frozen by the paradigm; a fixed function
        self.temporal_head = head_from_config(ilfm, config)
        self.width = self.temporal_head.width
        self.needs_text = self.temporal_head.needs_text
        self.needs_patches = self.temporal_head.needs_patches and student is None
        # The small student reads the video, and so does a run teacher (in training).
        self.needs_pixels = student is not None or config.teacher == "run"
        inputs = ["anchors"]
        if config.teacher == "initial" and student is None:
            inputs.append("teacher")  # precomputed features of the initial image model
        self.extra_inputs = tuple(inputs)

    @property
    def needs_frames(self) -> bool:
        if self.student is None:
            return True  # the backbone is the student
        # The frozen image model's features are only the initial teacher's targets: not needed at inference.
        return self.config.teacher == "initial" and self.training

    def backbone_parameters(self) -> list[nn.Parameter]:
        if self.student is None:
            return []
        return [p for p in self.student.parameters() if p.requires_grad]

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
        anchors: torch.Tensor | None = None,
        teacher: FrameFeatures | torch.Tensor | None = None,
    ) -> VideoFeatures:
        if self.student is not None:
            if video is None:
                raise VideoadaptError("distillation(student='small'): the student reads pixels; pass the video")
            own = self.student.encode_frames(video)
        else:
            if features is None:
                raise VideoadaptError("distillation(student='backbone') needs the backbone's frame features")
            own = features
        out = self.temporal_head(own, video, text)
        if not self.training:
            return out
        target_frames, target_video = self._targets(features, video, teacher)
        if target_frames.shape != out.frames.shape or target_video.shape != out.video.shape:
            raise VideoadaptError(
                f"distillation: teacher frames {tuple(target_frames.shape)} and video {tuple(target_video.shape)} "
                f"do not match the student's {tuple(out.frames.shape)} and {tuple(out.video.shape)}"
            )
        c = self.config
        if anchors is not None:
            if anchors.ndim != 2 or anchors.shape[1] != out.video.shape[1]:
                raise VideoadaptError(
                    f"distillation: anchors must be [M,{out.video.shape[1]}] text embeddings in the joint space, "
                    f"got {tuple(anchors.shape)}"
                )
            anchors = anchors.to(out.video.device)
            frame = anchored_frame_loss(out.frames, target_frames, anchors, c.temperature)
            pooled = anchored_video_loss(out.video, target_video, anchors, c.temperature)
        else:
            frame = distillation_loss(out.frames, target_frames, c.frame_loss, c.temperature)
            pooled = distillation_loss(out.video, target_video, c.video_loss, c.temperature)
        out.losses["distill_frame"] = c.frame_weight * frame
        out.losses["distill_video"] = c.video_weight * pooled
        return out

    def _targets(
        self, features: FrameFeatures | None, video: torch.Tensor | None, given: FrameFeatures | torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's frames ``[B,T,E]`` and video ``[B,E]``, without gradient."""
        if self.config.teacher == "run":
            if video is None:
                raise VideoadaptError("distillation(teacher='run'): the teacher reads the video; pass it")
            assert self.teacher is not None
            with torch.no_grad():
                result = self.teacher(video)
            if not isinstance(result, VideoFeatures):
                raise VideoadaptError(
                    f"distillation: the run teacher must return VideoFeatures, got {type(result).__name__}"
                )
            return result.frames.detach(), result.video.detach()
        if self.student is not None:
            if features is None:
                raise VideoadaptError("distillation(student='small'): the teacher's frame features are missing")
            frames = features.embeds.detach()
        elif given is not None:
            frames = (given.embeds if isinstance(given, FrameFeatures) else given).detach()
        else:
            if video is None:
                raise VideoadaptError("distillation: training needs the video (or teacher= features) for the teacher")
            assert isinstance(self.teacher, ImageLanguageModel)
            with torch.no_grad():
                frames = self.teacher.encode_frames(video).embeds
        return frames, frames.mean(dim=1)


@registry.register("paradigm", "distillation")
class Distillation(Paradigm):
    name = "distillation"
    config_class = DistillationConfig
    config: DistillationConfig

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Only the backbone student changes the image tower, and it trains all of it (so it composes with no other
        # backbone adaptation); build_video_encoder reads these per instance.
        backbone = self.config.student_kind == "backbone"
        self.adapts_backbone = backbone  # type: ignore[misc]  # the class default depends on an option here
        self.trains_whole_backbone = backbone  # type: ignore[misc]
        self._teacher: nn.Module | None = None

    def resources_used(self) -> tuple[str, ...]:
        return ("teacher",)

    def use_resources(self, resources: Mapping[str, Any]) -> None:
        teacher = resources.get("teacher")
        if self.config.teacher == "initial":
            if teacher is not None:
                raise VideoadaptError(
                    "distillation: a teacher module was given, but teacher='initial' is a regulariser (a frozen copy "
                    "of the student's own starting image tower), not distillation from a stronger model; to distil "
                    "the given teacher set teacher: run"
                )
            return
        if not isinstance(teacher, nn.Module):
            got = "nothing" if teacher is None else type(teacher).__name__
            raise VideoadaptError(
                "distillation(teacher='run') distils a trained model: pass it as build_video_encoder(..., "
                f"resources={{'teacher': module}}), a module called as teacher(video) -> VideoFeatures; got {got}"
            )
        # Frozen in place: the teacher's weights never train here (and are not saved with the student).
        self._teacher = teacher.requires_grad_(False).eval()

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        if self.config.teacher == "initial":
            # The initial teacher is the original image tower: copied before anything is unfrozen, frozen for good.
            copied = copy_image_model(ilfm)
            for module in copied.vision_modules():
                module.requires_grad_(False)
            self._teacher = copied.eval()
        for module in ilfm.vision_modules():
            module.requires_grad_(True)

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        if self.config.student_kind == "backbone":
            if self._teacher is None:
                raise VideoadaptError("distillation: the teacher is made when the backbone is adapted")
            return DistillationHead(ilfm, self.config, teacher=self._teacher)
        if any(p.requires_grad for m in ilfm.vision_modules() for p in m.parameters()):
            raise VideoadaptError(
                "distillation(student='small') keeps the image model frozen (its shallower copy is the student); "
                "another paradigm of the composition adapts it"
            )
        student = copy_image_model(ilfm)
        layers = self.config.student_layers or max(1, ilfm.dims.layers // 2)
        _inherit_blocks(student, layers)
        for module in student.vision_modules():
            module.requires_grad_(True)
        teacher = self._teacher if self.config.teacher == "run" else None
        return DistillationHead(ilfm, self.config, student=student, teacher=teacher)
