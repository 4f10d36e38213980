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

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.options import ParadigmConfig
from videoadapt.utils.safe_io import save_json, save_tensors

# A saved adapted encoder (VideoEncoder.save_pretrained, videoadapt.paradigms.saved.load_encoder): a directory with
# these two files. FORMAT_VERSION grows when the layout changes in a way an older reader cannot follow.
ENCODER_CONFIG = "encoder.json"
ENCODER_WEIGHTS = "encoder.safetensors"
FORMAT_VERSION = 1


@dataclass
class VideoFeatures:
    """What tasks consume: frame embeddings ``[B,T,E]`` and a video embedding ``[B,E]`` in the joint space, plus
    patch tokens ``[B,T,P,D]`` for fine-grained tasks when the encoder keeps them, and the clips' pixels for a task
    head that asks for them.

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
    # On a video MLLM (paradigms/generative_head.py): what it has seen of these videos, a
    # videoadapt.foundation.mllm.SeenVideos that generates, scores candidate answers and computes the answer loss.
    generative: Any = None
    # The clips themselves, preprocessed ``[B,T,3,S,S]`` (the ILFM's normalised input), for a task head that reads
    # pixels beside the features (``TaskHead.needs_pixels``: segmentation's pixel stem); None otherwise. The model
    # layer sets it from the batch, cached features or not; an encoder never does.
    pixels: torch.Tensor | None = None


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

    def merge_refusal(self) -> str | None:
        """Why this paradigm's changes to the backbone cannot be folded into its weights, or None when they can
        (see :meth:`merge`). Asked of every backbone-adapting paradigm before any of them merges."""
        return f"{self.name} cannot merge into the backbone: only LoRA and linear (ZeroI2V) adapters merge"

    def merge(self, ilfm: ImageLanguageModel) -> None:
        """Fold what :meth:`adapt` inserted into ``ilfm``'s own weights, in place, leaving the function it computes
        in eval mode unchanged. Paradigms that can override this and :meth:`merge_refusal`."""
        raise VideoadaptError(self.merge_refusal() or f"{self.name} does not implement merge")


class VideoEncoder(nn.Module):
    """An ILFM adapted by paradigms, plus a head. ``forward(video)`` or ``forward(cached=features)``."""

    def __init__(
        self,
        ilfm: ImageLanguageModel,
        head: VideoHead,
        context: TemporalContext,
        paradigms: list[Paradigm],
        resource_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.ilfm = ilfm
        self.head = head
        self.context = context
        # The paradigms themselves (a plain list: not submodules) keep their options, for saving.
        self.paradigms = list(paradigms)
        self.paradigm_names = [p.name for p in paradigms]
        # Names of the objects given to build_video_encoder(resources=) (a distillation teacher): not saved.
        self.resource_names = tuple(resource_names)
        self.merged = False
        self._update_backbone_frozen()

    def _update_backbone_frozen(self) -> None:
        self.backbone_frozen = not any(p.requires_grad for m in self.ilfm.vision_modules() for p in m.parameters())

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

    def merge(self) -> VideoEncoder:
        """Fold the backbone adaptations into the backbone's weights, in place; returns ``self``.

        Only LoRA and linear (ZeroI2V) adapters merge; a composition with another backbone adaptation is refused
        before anything changes. Paradigms that leave the backbone alone (heads: post_network, ...) are skipped.
        Afterwards the encoder computes the same function in eval mode (within float rounding) with the plain
        backbone's parameters (ZeroI2V keeps its ``T x D`` temporal embedding), and ``merged`` is True. Merging a
        merged encoder is an error: there is nothing left to fold, and a second call is most likely a mistake."""
        parts = "+".join(self.paradigm_names)
        if self.merged:
            raise VideoadaptError(f"{parts}: this encoder is already merged")
        adapting = [p for p in self.paradigms if p.adapts_backbone]
        refusals = [r for p in adapting if (r := p.merge_refusal())]
        if refusals:
            raise VideoadaptError(f"{parts}: {'; '.join(refusals)}")
        for paradigm in adapting:
            paradigm.merge(self.ilfm)
        self.merged = True
        self._update_backbone_frozen()
        return self

    def save_pretrained(self, directory: str | Path, backbone: str | None = None) -> Path:
        """Write this encoder to ``directory``: ``encoder.json`` (format version, backbone spec, paradigms and their
        options, whether merged, videoadapt version; a video MLLM's settings as ``backbone_options``) and
        ``encoder.safetensors`` (the trainable state; for a merged encoder the whole state dict, since merging changed
        frozen weights). Load it with :func:`videoadapt.paradigms.saved.load_encoder`.

        ``backbone`` is the backbone spec to record, needed when the ILFM was not loaded by
        :func:`videoadapt.foundation.loading.load_backbone` (which records it as ``ilfm.spec``). An encoder built
        with resources (a distillation teacher) is refused: they are modules of their own, not rebuilt from a spec.
        """
        parts = "+".join(self.paradigm_names)
        spec = backbone or self.ilfm.spec
        if spec is None:
            raise VideoadaptError(
                f"{parts}: cannot save: the backbone {self.ilfm.name!r} was not loaded by load_backbone, so "
                "loading could not rebuild it; pass save_pretrained(directory, backbone=SPEC) with the spec that "
                "loads it (e.g. 'tiny', 'hf:DIR')"
            )
        if self.resource_names:
            raise VideoadaptError(
                f"{parts}: cannot save: the encoder was built with resources {list(self.resource_names)} (e.g. a "
                "distillation teacher module), which are not part of the encoder and cannot be rebuilt from a saved "
                "spec; save the trained student's composition without them"
            )
        options = {p.name: p.options for p in self.paradigms}
        try:
            options = json.loads(json.dumps(options))
        except (TypeError, ValueError) as error:
            raise VideoadaptError(f"{parts}: cannot save options that are not JSON values ({error})") from None
        full = self.merged
        state = {k: v.detach() for k, v in self.state_dict().items()} if full else self.trainable_state_dict()
        record = {
            "format": FORMAT_VERSION,
            "videoadapt_version": _version(),
            "backbone": spec,
            "paradigms": parts,
            "options": options,
            "merged": self.merged,
            # "trainable": only trainable tensors (the frozen ones come from the backbone spec, and the fingerprint
            # checks that they do); "full": every tensor of the encoder.
            "weights": "full" if full else "trainable",
            "frozen_sha256": None if full else self.frozen_fingerprint(),
        }
        if hasattr(self.ilfm, "reconfigure"):  # a video MLLM: its pooling, projector and prompt settings
            record["backbone_options"] = json.loads(json.dumps(self.ilfm.config.to_dict()))
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory / ENCODER_WEIGHTS, state)
        save_json(directory / ENCODER_CONFIG, record)  # last: a directory with encoder.json is complete
        return directory

    def frozen_fingerprint(self) -> str:
        """SHA-256 of the tensors :meth:`trainable_state_dict` leaves out (names, dtypes, shapes, values): a saved
        trainable state only reproduces the encoder on top of exactly these."""
        trainable = set(self._trainable_tensors())
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            if name in trainable:
                continue
            value = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
        return digest.hexdigest()


def _version() -> str:
    # Not ``videoadapt.__version__``: the package's face is above every layer (tests/test_architecture.py).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videoadapt")
    except PackageNotFoundError:
        return "unknown"


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False))
