"""Real video MLLM checkpoints through transformers — LLaVA-OneVision, Qwen2-VL / Qwen2.5-VL, SmolVLM2 — from a hub
id or a local directory, with our own video preprocessing (:mod:`.hf_family`), behind the same generative interface
as :class:`videoadapt.foundation.mllm.model.VideoMLLM`: ``generate``, ``score_candidates``, ``loss``.

As an :class:`ImageLanguageModel` it exposes its vision tower's blocks (what adapters, LoRA and prompts target),
its projector and its language model as parameter groups; it has no joint image-text space, so ``encode_text``
and ``encode_images`` refuse with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoadapt.data.transforms import ProcessorSettings
from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, ModelDims, TextFeatures
from videoadapt.foundation.mllm.family_onevision import OneVisionFamily
from videoadapt.foundation.mllm.family_qwen2_vl import Qwen2VLFamily
from videoadapt.foundation.mllm.family_smolvlm import SmolVLMFamily
from videoadapt.foundation.mllm.generation import (
    IGNORE,
    Generation,
    answer_log_likelihoods,
    answer_loss,
    check_generation_options,
    frames_that_fit,
    left_pad,
    run_generate,
    sample_frames,
)
from videoadapt.foundation.mllm.hf_family import VideoFamily
from videoadapt.foundation.mllm.prompt import PromptTemplate
from videoadapt.utils.safe_io import load_json

FAMILIES: tuple[type[VideoFamily], ...] = (OneVisionFamily, Qwen2VLFamily, SmolVLMFamily)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class HFVideoMLLM(ImageLanguageModel):
    """A transformers video MLLM with its tokenizer, the family that builds its inputs and a prompt template."""

    def __init__(
        self, model: nn.Module, tokenizer: Any, family: VideoFamily, template: PromptTemplate, name: str = "hf-mllm"
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.family = family
        self.template = template
        self.name = name
        text = getattr(model.config, "text_config", model.config)
        eos = {tokenizer.eos_token_id, getattr(text, "eos_token_id", None)}
        self.stop_ids = sorted(int(i) for i in eos if isinstance(i, int))
        if not self.stop_ids:
            raise VideoadaptError(f"{name}: the tokenizer declares no end-of-sequence token")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.stop_ids[0]

    # -- the ILFM interface ---------------------------------------------------------------------------------------
    @property
    def dims(self) -> ModelDims:
        return self.family.dims

    @property
    def processor(self) -> ProcessorSettings:
        return self.family.settings

    def vision_blocks(self) -> nn.ModuleList:
        return self.family.vision_blocks()

    def vision_modules(self) -> list[nn.Module]:
        return self.family.vision_modules()

    def text_modules(self) -> list[nn.Module]:
        return self.family.language_modules()

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        raise VideoadaptError(f"{self.name}: a generative MLLM has no joint image-text space; use generate()")

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        raise VideoadaptError(f"{self.name}: a generative MLLM has no joint image-text space; use generate()")

    def projector_modules(self) -> list[nn.Module]:
        return self.family.projector_modules()

    def language_modules(self) -> list[nn.Module]:
        return self.family.language_modules()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vision``, ``projector`` and ``language_model`` parameters (disjoint)."""

        def params(modules: list[nn.Module], extra: Sequence[nn.Parameter] = ()) -> list[nn.Parameter]:
            seen: dict[int, nn.Parameter] = {id(p): p for p in extra}
            for module in modules:
                seen.update((id(p), p) for p in module.parameters())
            return list(seen.values())

        return {
            "vision": params(self.vision_modules()),
            "projector": params(self.projector_modules(), self.family.projector_parameters()),
            "language_model": params(self.language_modules()),
        }

    @property
    def context_length(self) -> int:
        return self.family.context_length()

    def tokens_for(self, frames: int) -> int:
        return self.family.tokens_for(frames)

    # -- inputs -----------------------------------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_ids(self, prompts: Sequence[str], template: str | None = None) -> list[tuple[list[int], list[int]]]:
        chosen = (
            self.template if template is None else PromptTemplate(template, self.template.chat, self.template.system)
        )
        return [tuple(self._ids(part) for part in chosen.render(p, self.tokenizer)) for p in prompts]

    def _fit(
        self, video: torch.Tensor | None, prompts: list[tuple[list[int], list[int]]], reserve: int
    ) -> torch.Tensor | None:
        if video is None:
            if max(len(a) + len(b) for a, b in prompts) + reserve > self.context_length:
                raise VideoadaptError(
                    f"{self.name}: the prompt and answer exceed the {self.context_length}-token context"
                )
            return None
        if video.ndim != 5:
            raise VideoadaptError(f"{self.name}: videos must be [B,T,3,H,W], got shape {tuple(video.shape)}")
        size = self.processor.image_size
        if tuple(video.shape[-2:]) != (size, size):
            raise VideoadaptError(
                f"{self.name}: frames are {tuple(video.shape[-2:])} but the model takes {size}x{size}; preprocess "
                "them with videoadapt.data.transforms.preprocess(frames, model.processor)"
            )
        room = self.context_length - max(len(a) + len(b) for a, b in prompts) - reserve
        return sample_frames(video, frames_that_fit(video.shape[1], self.tokens_for, room, self.name), self.name)

    def _inputs(
        self,
        video: torch.Tensor | None,
        prompts: list[tuple[list[int], list[int]]],
        answers: list[list[int]] | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Left-padded model inputs (ids, mask, pixels) and labels marking the answers; without a video (None) the
        prompt alone."""
        video_ids = [] if video is None else self.family.video_ids(video.shape[1])
        rows, labels = [], []
        for i, (before, after) in enumerate(prompts):
            answer = answers[i] if answers is not None else []
            rows.append(torch.tensor(before + video_ids + after + answer, dtype=torch.long))
            labels.append(torch.tensor([IGNORE] * (len(rows[-1]) - len(answer)) + answer, dtype=torch.long))
        ids, mask = left_pad(rows, self.pad_id)
        label_batch, _ = left_pad(labels, IGNORE)
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        pixels = {
            k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)).contiguous()
            for k, v in ({} if video is None else self.family.pixel_inputs(video)).items()
        }
        ids = ids.to(device)
        inputs = {"input_ids": ids, "attention_mask": mask.to(device), **self.family.token_inputs(ids), **pixels}
        return inputs, label_batch.to(device)

    @staticmethod
    def _count(video: torch.Tensor | None, prompts: str | Sequence[str]) -> int:
        if video is not None:
            return int(video.shape[0])
        return 1 if isinstance(prompts, str) else len(prompts)

    @staticmethod
    def _broadcast(prompts: str | Sequence[str], count: int) -> list[str]:
        prompts = [prompts] * count if isinstance(prompts, str) else list(prompts)
        if len(prompts) != count:
            raise VideoadaptError(f"{len(prompts)} prompts for {count} videos")
        return prompts

    def _answer_ids(self, answer: str, end: bool) -> list[int]:
        ids = self._ids(answer)
        if not ids:
            raise VideoadaptError(f"{self.name}: the answer {answer!r} has no tokens")
        return ids + (
            [self.stop_ids[0] if self.tokenizer.eos_token_id is None else self.tokenizer.eos_token_id] if end else []
        )

    # -- the generative interface ---------------------------------------------------------------------------------
    def generate(
        self,
        video: torch.Tensor | None,
        prompts: str | Sequence[str],
        max_new_tokens: int = 32,
        num_beams: int = 1,
        *,
        template: str | None = None,
    ) -> Generation:
        """As :meth:`VideoMLLM.generate`: greedy or beam search with the KV cache, a hard length bound, frames
        sampled down (with a warning) when the video does not fit the context; ``video`` None: the prompts alone."""
        check_generation_options(max_new_tokens, num_beams)
        prompt_ids = self._prompt_ids(self._broadcast(prompts, self._count(video, prompts)), template)
        given = 0 if video is None else video.shape[1]
        video = self._fit(video, prompt_ids, reserve=int(max_new_tokens))
        inputs, _ = self._inputs(video, prompt_ids)
        used = 0 if video is None else video.shape[1]
        return run_generate(self.model, inputs, self.tokenizer, self.stop_ids, max_new_tokens, num_beams, used, given)

    def score_candidates(
        self,
        video: torch.Tensor | None,
        prompts: str | Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
        reduction: str = "mean",
        *,
        template: str | None = None,
    ) -> list[torch.Tensor]:
        """As :meth:`VideoMLLM.score_candidates`: each candidate's log-likelihood, one tensor per video (per prompt
        when ``video`` is None)."""
        b = self._count(video, prompts)
        per_video = [list(candidates)] * b if candidates and isinstance(candidates[0], str) else list(candidates)
        if len(per_video) != b or any(len(c) == 0 for c in per_video):
            raise VideoadaptError(f"score_candidates needs a non-empty candidate list for each of the {b} videos")
        prompt_ids = self._prompt_ids(self._broadcast(prompts, b), template)
        answer_ids = [[self._answer_ids(c, end=False) for c in cands] for cands in per_video]
        video = self._fit(video, prompt_ids, reserve=max(len(a) for answers in answer_ids for a in answers))
        scores = []
        with torch.no_grad():
            for i, answers in enumerate(answer_ids):
                n = len(answers)
                clip = None if video is None else video[i : i + 1].expand(n, *video.shape[1:])
                inputs, labels = self._inputs(clip, [prompt_ids[i]] * n, answers)
                keep = max(len(a) for a in answers) + 1
                logits = self.model(**inputs, logits_to_keep=keep).logits
                scores.append(answer_log_likelihoods(logits, labels, reduction))
        return scores

    def loss(
        self,
        video: torch.Tensor | None,
        prompts: str | Sequence[str],
        answers: Sequence[str],
        *,
        template: str | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of the answer tokens (each followed by the end token)."""
        b = len(answers) if video is None else video.shape[0]
        if len(answers) != b:
            raise VideoadaptError(f"{len(answers)} answers for {b} videos")
        prompt_ids = self._prompt_ids(self._broadcast(prompts, b), template)
        answer_ids = [self._answer_ids(a, end=True) for a in answers]
        video = self._fit(video, prompt_ids, reserve=max(len(a) for a in answer_ids))
        inputs, labels = self._inputs(video, prompt_ids, answer_ids)
        logits = self.model(**inputs, logits_to_keep=max(len(a) for a in answer_ids) + 1).logits
        return answer_loss(logits, labels)


def family_of(model_type: str) -> type[VideoFamily]:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise VideoadaptError(f"model type {model_type!r} is not a supported video MLLM; supported: {known}")


def from_pretrained(
    source: str | Path, template: PromptTemplate | None = None, frame_size: int | None = None
) -> HFVideoMLLM:
    """A video MLLM checkpoint from a local directory or a hub id (safetensors weights only)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    from videoadapt.foundation.hf import _hub_reachable

    source = str(source)
    local = Path(source).is_dir()
    offline = local or not _hub_reachable()
    if local:
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise InputFileError(folder, "no config.json: not a transformers checkpoint directory")
        if not any((folder / name).is_file() for name in WEIGHT_FILES):
            raise InputFileError(folder, "no weights (model.safetensors or a sharded index) in this MLLM directory")
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
        family_type = family_of(config.model_type)
        model = AutoModelForImageTextToText.from_pretrained(source, use_safetensors=True, local_files_only=offline)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except (OSError, ValueError) as error:
        raise VideoadaptError(
            f"cannot load video MLLM {source!r}: {str(error).splitlines()[0]}. Without access to the model hub, "
            f"download it on a connected machine (`hf download {source} --local-dir DIR`) and pass DIR."
        ) from None
    preprocessor = _read_optional(source, "preprocessor_config.json", offline)
    if getattr(tokenizer, "chat_template", None) is None:
        chat = _read_optional(source, "chat_template.json", offline)
        tokenizer.chat_template = chat.get("chat_template") or None
    family = family_type(model.eval(), tokenizer, preprocessor, frame_size)
    chat = getattr(tokenizer, "chat_template", None) is not None
    template = template or PromptTemplate(chat=chat)
    return HFVideoMLLM(model.eval(), tokenizer, family, template, name=source)


def _read_optional(source: str, name: str, offline: bool) -> dict[str, Any]:
    """A JSON file of the checkpoint, or ``{}`` when it has none."""
    if Path(source).is_dir():
        path = Path(source) / name
        return load_json(path) if path.is_file() else {}
    from transformers.utils import cached_file

    try:
        found = cached_file(source, name, local_files_only=offline, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return {}
    return load_json(found) if found else {}
