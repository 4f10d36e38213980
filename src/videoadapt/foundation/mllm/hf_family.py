"""What differs between the video MLLM checkpoints that transformers implements: where their parts live, how a
video becomes tokens in the prompt and pixel tensors, and how frames are resized and normalised.

Their own video processors need torchvision (never installed here), so each family builds the model's inputs
itself from frames that :func:`videoadapt.data.transforms.preprocess` prepared with :attr:`VideoFamily.settings`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from videoadapt.data.transforms import ProcessorSettings
from videoadapt.foundation.base import ModelDims


class VideoFamily(ABC):
    """One checkpoint family. ``model`` is the transformers ``...ForConditionalGeneration``; ``preprocessor`` the
    checkpoint's ``preprocessor_config.json`` as a dict (empty when it has none); ``frame_size`` overrides the
    square side frames are resized to where the family allows it."""

    model_types: tuple[str, ...] = ()
    # Normalisation when the checkpoint's preprocessor config names none (SigLIP towers: 0.5 everywhere).
    default_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    default_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __init__(self, model: nn.Module, tokenizer: Any, preprocessor: dict[str, Any], frame_size: int | None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.frame_size = frame_size

    @property
    def _vision(self) -> Any:
        return self.model.config.vision_config

    @property
    def side(self) -> int:
        """The square side frames are resized to: the tower's own input size unless the family allows others."""
        return int(self._vision.image_size)

    @property
    def settings(self) -> ProcessorSettings:
        """How frames must be resized and normalised: squashed to a square of ``side`` (no crop), normalised by the
        checkpoint's preprocessor config."""
        return ProcessorSettings(
            image_size=self.side,
            mean=tuple(self.preprocessor.get("image_mean", self.default_mean)),
            std=tuple(self.preprocessor.get("image_std", self.default_std)),
            resize="squash",
            crop="none",
        )

    @property
    @abstractmethod
    def dims(self) -> ModelDims: ...

    @abstractmethod
    def tokens_for(self, frames: int) -> int:
        """How many positions of the context a video of ``frames`` frames takes (its markers included)."""

    @abstractmethod
    def video_ids(self, frames: int) -> list[int]:
        """The token ids that stand for a video of ``frames`` frames in the prompt."""

    @abstractmethod
    def pixel_inputs(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's pixel arguments for preprocessed frames ``[B,T,3,S,S]``."""

    @abstractmethod
    def vision_blocks(self) -> nn.ModuleList: ...

    @abstractmethod
    def vision_modules(self) -> list[nn.Module]: ...

    @abstractmethod
    def projector_modules(self) -> list[nn.Module]: ...

    def token_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-token model arguments beyond the ids and the mask (Qwen2-VL's modality types for M-RoPE)."""
        return {}

    def projector_parameters(self) -> list[nn.Parameter]:
        """Projector parameters that no projector module owns (OneVision's newline token)."""
        return []

    def language_modules(self) -> list[nn.Module]:
        return [self.model.model.language_model, self.model.lm_head]

    def frames_ok(self, frames: int) -> int:
        """The frame count the family takes for ``frames`` given (Qwen2-VL pads to pairs)."""
        return frames

    def context_length(self) -> int:
        text = getattr(self.model.config, "text_config", self.model.config)
        return int(getattr(text, "max_position_embeddings", 4096))
