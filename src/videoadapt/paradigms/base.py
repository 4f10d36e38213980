"""Paradigms: how an image-language model (ILFM) becomes a video encoder.

A paradigm knows nothing about tasks. It does one or both of two things:

* **adapt the backbone** in place — unfreeze parameters (full fine-tuning, partial tuning) or insert modules into
  the vision blocks (adapters, LoRA, prompts);
* **add a head** after the backbone that turns per-frame features into video features (post-network tuning,
  side-tuning, extra models, distillation's student).

:func:`build_video_encoder` composes paradigms named like ``"lora+post_network"``: any number of backbone
adaptations that do not conflict, and at most one head. A paradigm without a head of its own brings a default one
(LoRA alone models no time, so it brings a temporal transformer). The result is a :class:`VideoEncoder`; when no
part changes the backbone, its frame features can come from a feature cache and the backbone never runs in
training.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.options import ParadigmConfig


@dataclass
class VideoFeatures:
    """What tasks consume: frame embeddings ``[B,T,E]`` and a video embedding ``[B,E]`` in the joint space, plus
    patch tokens ``[B,T,P,D]`` for fine-grained tasks when the encoder keeps them.

    ``outputs`` holds what a head makes beyond these (e.g. Moment-DETR's decoder query states ``[B,Q,H]``), named;
    ``losses`` holds auxiliary training losses a paradigm adds to the task loss (distillation), named, scalar. A
    trainer adds every entry of ``losses`` to the task loss; tasks ignore both dicts unless they know a name.
    """

    frames: torch.Tensor
    video: torch.Tensor
    patches: torch.Tensor | None = None
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    # The backbone's pooled CLS tokens ``[B,T,D]`` when a head passes them on (post-network heads do): with the
    # patch tokens they are what a grounding ILFM's region heads read (TinyOWL), e.g. for zero-shot detection.
    cls: torch.Tensor | None = None


class TemporalContext:
    """Shared with modules inserted into the backbone: frames are encoded as a batch of ``B*T`` images, and a
    temporal module inside a block needs ``T`` to fold that batch back into videos."""

    def __init__(self) -> None:
        self.frames = 1


class VideoHead(nn.Module):
    """Runs after the backbone: ``(frame features, video pixels, query text) -> VideoFeatures``."""

    needs_layers: bool = False  # every block's tokens (side networks)
    # Reads FrameFeatures.patches. True unless a head says otherwise, so a head that forgets to declare it still
    # gets real tokens; the feature cache skips reading them (most of a cached row) for heads that do not.
    needs_patches: bool = True
    needs_pixels: bool = False  # the raw video (a second stream)
    needs_text: bool = False  # the query's text features (grounding heads that fuse video and text)
    # Named inputs beyond video and text that ``forward`` takes as keyword arguments and VideoEncoder passes through
    # (a detector's boxes for extra_models' structure stream; distillation's text anchors and precomputed teacher
    # features).
    extra_inputs: tuple[str, ...] = ()

    @property
    def needs_frames(self) -> bool:
        """Whether this call needs the backbone's frame features. A head that can do without them now (a distilled
        student at inference) says False: the backbone does not run and ``forward`` receives ``features=None``."""
        return True

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of this head that are pretrained weights being tuned (a distilled student's copy
        of the image tower), which a trainer puts in its backbone learning-rate group; the rest of the head's
        trainable parameters are new modules (the head group)."""
        return []

    def forward(
        self, features: FrameFeatures, video: torch.Tensor | None = None, text: TextFeatures | None = None
    ) -> VideoFeatures:
        raise NotImplementedError


class Paradigm:
    """A registered transfer paradigm. Its options (from a preset, a config file or the command line) become
    ``self.config``, an instance of ``config_class`` (see :mod:`videoadapt.paradigms.options`); ``self.options``
    keeps them as given, for the record."""

    name: ClassVar[str]
    config_class: ClassVar[type[ParadigmConfig]] = ParadigmConfig
    adapts_backbone: ClassVar[bool] = False
    trains_whole_backbone: ClassVar[bool] = False  # conflicts with every other backbone adaptation

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)
        self.config = self.config_class.from_options(options)

    def resources_used(self) -> tuple[str, ...]:
        """Names of the objects this paradigm takes from ``build_video_encoder(..., resources=)`` (a trained
        teacher), given its options."""
        return ()

    def use_resources(self, resources: Mapping[str, Any]) -> None:
        """Receive the resources named by :meth:`resources_used` (called before :meth:`adapt`)."""

    def head_options_given(self) -> tuple[str, ...]:
        """The options given for this paradigm's default head (``temporal``, ``space``, module options): an error
        when another paradigm of the composition brings the head, since they would change nothing."""
        return tuple(getattr(self.config, "head_options_given", ()))

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        """Change ``ilfm`` in place: unfreeze parameters or insert modules (they must be trainable)."""

    def head(self, ilfm: ImageLanguageModel) -> VideoHead | None:
        """This paradigm's own head, or None."""
        return None

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead | None:
        """The head used when no paradigm of the composition brings one; None: mean pooling of the frame
        embeddings (:func:`videoadapt.paradigms.compose.build_video_encoder` builds it)."""
        return None


class VideoEncoder(nn.Module):
    """An ILFM adapted by paradigms, plus a head. ``forward(video)`` or ``forward(cached=features)``."""

    def __init__(
        self, ilfm: ImageLanguageModel, head: VideoHead, context: TemporalContext, paradigms: list[Paradigm]
    ) -> None:
        super().__init__()
        self.ilfm = ilfm
        self.head = head
        self.context = context
        self.paradigm_names = [p.name for p in paradigms]
        self.backbone_frozen = not any(p.requires_grad for m in ilfm.vision_modules() for p in m.parameters())

    @property
    def cacheable(self) -> bool:
        """True when frame features do not depend on anything trainable, so they can be computed once."""
        return self.backbone_frozen and not self.head.needs_pixels

    @property
    def cache_with_pixels(self) -> bool:
        """True when the frame features of the frozen backbone can come from the cache but the head also reads the
        pixels (a second stream beside a frozen ILFM, a pixel student beside its frozen teacher): pass both,
        ``forward(video, cached=features)``."""
        return self.backbone_frozen and self.head.needs_pixels

    def train(self, mode: bool = True) -> VideoEncoder:
        super().train(mode)
        # A frozen backbone stays in eval mode (no dropout, no BatchNorm statistics drift), and so does every
        # frozen BatchNorm of a partly trained one.
        self.ilfm.train(mode and not self.backbone_frozen)
        for module in self.ilfm.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _trains(module):
                module.eval()
        return self

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        self.context.frames = video.shape[1]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            return self.ilfm.encode_frames(video, all_layers=self.head.needs_layers)

    def forward(
        self,
        video: torch.Tensor | None = None,
        cached: FrameFeatures | None = None,
        text: TextFeatures | None = None,
        **extras: Any,
    ) -> VideoFeatures:
        """Encode ``video`` ``[B,T,3,H,W]`` (or use ``cached`` frame features of a frozen backbone; a head that
        reads pixels takes both, see :attr:`cache_with_pixels`); ``text`` is one query per video, for heads that
        need it (``head.needs_text``); ``extras`` are the named inputs some heads take (``head.extra_inputs``)."""
        parts = "+".join(self.paradigm_names)
        if self.head.needs_text and text is None:
            raise VideoadaptError(f"{parts}: this head fuses video with a text query; pass text=")
        unexpected = sorted(set(extras) - set(self.head.extra_inputs))
        if unexpected:
            takes = ", ".join(self.head.extra_inputs) or "none"
            raise VideoadaptError(f"{parts}: unexpected inputs {unexpected}; this head takes: {takes}")
        if cached is None:
            if video is None:
                raise VideoadaptError("VideoEncoder needs a video [B,T,3,H,W] or cached frame features")
            features = self.encode_frames(video) if self.head.needs_frames else None
        else:
            if not self.cacheable and not (self.cache_with_pixels and video is not None):
                hint = "; pass video= along with cached=" if self.cache_with_pixels else ""
                raise VideoadaptError(
                    f"{parts} trains the backbone or reads pixels: cached features cannot stand in{hint}"
                )
            features = cached
        return self.head(features, video, text, **extras)

    def trainable_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable parameters, plus the buffers (BatchNorm statistics) of modules that train."""
        return {n: t.detach() for n, t in self._trainable_tensors().items()}

    def _trainable_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = dict(self.trainable_named_parameters())
        for prefix, module in self.named_modules():
            if _trains(module):
                for name, buffer in module.named_buffers(recurse=False):
                    tensors[f"{prefix}.{name}" if prefix else name] = buffer
        return tensors

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = self._trainable_tensors()
        if set(state) != set(expected):
            missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise VideoadaptError(f"trainable state does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, value in state.items():
                expected[name].copy_(value)


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False))
