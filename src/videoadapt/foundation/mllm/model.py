"""A LLaVA-style video MLLM: any of our image towers, a projector with temporal pooling, a causal language model.

The image tower is an :class:`ImageLanguageModel` (TinyCLIP, CLIP, SigLIP); the model is one too, delegating the
contrastive interface to its tower, so that every paradigm that adapts a tower adapts this one the same way. The
generative side: :meth:`VideoMLLM.generate`, :meth:`VideoMLLM.score_candidates` (multiple-choice answers by their
likelihood) and :meth:`VideoMLLM.loss` (the training objective: cross-entropy of the answer tokens only).

Videos are preprocessed frames ``[B,T,3,S,S]`` (``videoadapt.data.transforms.preprocess`` with ``model.processor``);
the visual tokens of a video replace the ``<video>`` placeholder of the prompt template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from videoadapt.data.transforms import ProcessorSettings
from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, ModelDims, TextFeatures
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
from videoadapt.foundation.mllm.projector import MLPProjector
from videoadapt.foundation.mllm.prompt import PromptTemplate
from videoadapt.foundation.mllm.token_pooling import POOLINGS, build_pooling

# The linear layers of a Llama-family decoder block: where LoRA goes on the language model (PEFT's target names).
LM_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class MLLMConfig:
    """``pooling``: ``"pllava"`` (adaptive 3D average pooling to ``pool_output`` = (frames or None to keep them,
    rows, cols)), ``"onevision"`` (2×2 per frame plus a learnt separator after each frame) or ``"none"``.
    ``feature_layer``: which tower block's patch tokens feed the projector (-2, the penultimate, as LLaVA-1.5;
    -1 the last). ``projector_norm``: a LayerNorm before the projector (Qwen2-VL's merger). ``cls_tokens``: each
    frame's pooled token (the tower's CLS output, what its contrastive heads read) as one more visual token per
    frame, all of them before the pooled patch tokens (Video-ChatGPT's frame-level tokens before its spatial ones).
    ``max_context``: positions of the LM context the model may use (None: the LM's own maximum).
    ``template``, ``chat``, ``system``: the prompt template (:class:`PromptTemplate`). ``seed``: of the projector's
    (and separator's) initialisation."""

    pooling: str = "pllava"
    pool_output: tuple[int | None, int, int] = (None, 4, 4)
    feature_layer: int = -2
    projector_norm: bool = False
    cls_tokens: bool = False
    max_context: int | None = None
    template: str = "<video>\n{prompt}"
    chat: bool = True
    system: str | None = "You are a helpful assistant that watches short videos and answers briefly."
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise VideoadaptError(f"unknown MLLM token pooling {self.pooling!r}; known: {', '.join(POOLINGS)}")
        object.__setattr__(self, "pool_output", tuple(self.pool_output))
        PromptTemplate(self.template, self.chat, self.system)  # a template without <video> fails here

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VideoMLLM(ImageLanguageModel):
    """Image tower → frame patch tokens → :class:`MLPProjector` → token pooling → the LM's input embeddings."""

    def __init__(
        self, tower: ImageLanguageModel, language_model: nn.Module, tokenizer: Any, config: MLLMConfig | None = None
    ) -> None:
        super().__init__()
        self.config = config or MLLMConfig()
        self.tower = tower
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.template = PromptTemplate(self.config.template, self.config.chat, self.config.system)
        lm_width = int(language_model.get_input_embeddings().embedding_dim)
        # Seeded, without touching the global generator: the same spec always builds the same untrained projector,
        # so that a saved adapted model whose projector did not train still loads onto identical weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.projector = MLPProjector(tower.dims.width, lm_width, norm=self.config.projector_norm)
            self.pooling = build_pooling(self.config.pooling, lm_width, self.config.pool_output)
        self.name = f"mllm({tower.name})"
        eos = {tokenizer.eos_token_id, getattr(language_model.config, "eos_token_id", None)}
        self.stop_ids = sorted(int(i) for i in eos if isinstance(i, int))
        if not self.stop_ids:
            raise VideoadaptError(f"{self.name}: the tokenizer declares no end-of-sequence token")

    # -- the ILFM interface: the tower's ----------------------------------------------------------------------
    @property
    def dims(self) -> ModelDims:
        return self.tower.dims

    @property
    def processor(self) -> ProcessorSettings:
        return self.tower.processor

    def vision_blocks(self) -> nn.ModuleList:
        return self.tower.vision_blocks()

    def vision_modules(self) -> list[nn.Module]:
        return self.tower.vision_modules()

    def text_modules(self) -> list[nn.Module]:
        return self.tower.text_modules()

    def encode_images(self, images: torch.Tensor, all_layers: bool = False) -> FrameFeatures:
        return self.tower.encode_images(images, all_layers=all_layers)

    def encode_text(self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None = None) -> TextFeatures:
        return self.tower.encode_text(texts, prefix_embeddings=prefix_embeddings)

    def joint_projection(self) -> tuple[nn.Module, nn.Module] | None:
        return self.tower.joint_projection()

    # -- parameter groups that paradigms target -----------------------------------------------------------------
    def projector_modules(self) -> list[nn.Module]:
        """The projector and the pooling (the separator token): what post-network tuning trains (LLaVA stage 1)."""
        return [self.projector, self.pooling]

    def language_modules(self) -> list[nn.Module]:
        """The causal language model (LoRA targets :data:`LM_LORA_TARGETS` inside it through PEFT)."""
        return [self.language_model]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vision`` (the image tower), ``projector`` and ``language_model`` parameters; the tower's text side is
        not used for generation and belongs to none of them."""

        def params(modules: list[nn.Module]) -> list[nn.Parameter]:
            seen: dict[int, nn.Parameter] = {}
            for module in modules:
                seen.update((id(p), p) for p in module.parameters())
            return list(seen.values())

        return {
            "vision": params(self.vision_modules()),
            "projector": params(self.projector_modules()),
            "language_model": params(self.language_modules()),
        }

    @property
    def lm_width(self) -> int:
        return int(self.language_model.get_input_embeddings().embedding_dim)

    @property
    def context_length(self) -> int:
        own = int(getattr(self.language_model.config, "max_position_embeddings", 2048))
        return own if self.config.max_context is None else min(own, int(self.config.max_context))

    # -- visual tokens ------------------------------------------------------------------------------------------
    def tokens_for(self, frames: int) -> int:
        """How many visual tokens a video of ``frames`` frames becomes."""
        return self.pooling.tokens_for(frames, self.dims.patch_grid) + (frames if self.config.cls_tokens else 0)

    @property
    def needs_layers(self) -> bool:
        """Whether the projector reads a block other than the last (every block's tokens must then be kept)."""
        return self.config.feature_layer != -1

    def frame_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """The tower's patch tokens of ``config.feature_layer`` ``[B,T,P,D]``."""
        return self.tokens_of(self.encode_frames(video, all_layers=self.needs_layers))

    def tokens_of(self, features: FrameFeatures) -> torch.Tensor:
        """The patch tokens of ``config.feature_layer`` ``[B,T,P,D]`` out of the tower's frame features (which must
        hold every block's tokens when :attr:`needs_layers`): what a video encoder, or a feature cache, hands on.
        With ``config.cls_tokens`` each frame's pooled token comes first: ``[B,T,1+P,D]``."""
        patches = self._patches_of(features)
        if not self.config.cls_tokens:
            return patches
        return torch.cat([features.cls.unsqueeze(2).to(patches.dtype), patches], dim=2)

    def _patches_of(self, features: FrameFeatures) -> torch.Tensor:
        if not self.needs_layers:
            return features.patches
        layers = features.layers or []
        try:
            tokens = layers[self.config.feature_layer]
        except IndexError:
            raise VideoadaptError(
                f"{self.name}: feature_layer {self.config.feature_layer} but the tower has {len(layers)} blocks"
            ) from None
        # The last rows x cols tokens are the patches: before them come the CLS token and any prompts that prompt
        # tuning inserted (VPT keeps them up to the last block).
        rows, cols = self.dims.patch_grid
        return tokens[:, :, -rows * cols :]

    def visual_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """``[B,T,3,S,S]`` → the LM-width visual tokens ``[B,N,H]`` that replace ``<video>``."""
        return self.pool(self.project(self.frame_tokens(video)))

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Frame patch tokens ``[B,T,P,D]`` → LM-width tokens ``[B,T,P,H]`` (the projector works token by token, so
        frames can still be sampled afterwards)."""
        return self.projector(tokens)

    def pool(self, projected: torch.Tensor) -> torch.Tensor:
        """Projected frame tokens ``[B,T,P,H]`` → the visual tokens ``[B,N,H]`` (the temporal pooling; the frames'
        pooled tokens, when :attr:`MLLMConfig.cls_tokens`, pass unpooled before the rest)."""
        if not self.config.cls_tokens:
            return self.pooling(projected, self.dims.patch_grid)
        return torch.cat([projected[:, :, 0], self.pooling(projected[:, :, 1:], self.dims.patch_grid)], dim=1)

    def reconfigure(self, **changes: Any) -> VideoMLLM:
        """Change the settings of :class:`MLLMConfig` (all but ``seed``) in place; the projector is kept unless
        ``projector_norm`` changes its architecture, the pooling rebuilt (both seeded as at construction). Returns
        ``self``. Unknown keys are a :class:`VideoadaptError`."""
        allowed = {f.name for f in fields(MLLMConfig)} - {"seed"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise VideoadaptError(f"{self.name}: unknown MLLM options {unknown}; known: {', '.join(sorted(allowed))}")
        if "pool_output" in changes and changes["pool_output"] is not None:
            changes["pool_output"] = tuple(None if v is None else int(v) for v in changes["pool_output"])
        self.config = MLLMConfig(**{**self.config.to_dict(), **changes})
        self.template = PromptTemplate(self.config.template, self.config.chat, self.config.system)
        device = self.projector.linear_1.weight.device
        renormed = bool(self.config.projector_norm) != isinstance(self.projector.norm, nn.LayerNorm)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            if renormed:  # another projector architecture: rebuilt as at construction
                self.projector = MLPProjector(self.tower.dims.width, self.lm_width, norm=self.config.projector_norm)
            self.pooling = build_pooling(self.config.pooling, self.lm_width, self.config.pool_output)
        self.projector.to(device)
        self.pooling.to(device)
        return self

    # -- sequences ------------------------------------------------------------------------------------------------
    def _ids(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)

    def prompt_template(self, template: str | None = None) -> PromptTemplate:
        """The model's own template, or ``template`` (a text with ``<video>``) in the model's chat settings."""
        if template is None:
            return self.template
        return PromptTemplate(template, self.config.chat, self.config.system)

    def _prompt_ids(
        self, prompts: Sequence[str], template: str | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        chosen = self.prompt_template(template)
        return [tuple(self._ids(part) for part in chosen.render(p, self.tokenizer)) for p in prompts]

    def _answer_ids(self, answer: str, end: bool) -> torch.Tensor:
        ids = self._ids(answer)
        if ids.numel() == 0:
            raise VideoadaptError(f"{self.name}: the answer {answer!r} has no tokens")
        if end:
            eos = self.tokenizer.eos_token_id
            ids = torch.cat([ids, torch.tensor([eos if eos is not None else self.stop_ids[0]])])
        return ids

    def _fit(
        self, video: torch.Tensor | None, prompts: list[tuple[torch.Tensor, torch.Tensor]], reserve: int
    ) -> torch.Tensor | None:
        if video is None:
            words = max(len(a) + len(b) for a, b in prompts)
            if words + reserve > self.context_length:
                raise VideoadaptError(
                    f"{self.name}: the prompt and answer exceed the {self.context_length}-token context"
                )
            return None
        if video.ndim not in (4, 5):
            raise VideoadaptError(
                f"{self.name}: videos must be [B,T,3,H,W] (or projected tokens [B,T,P,H]), got {tuple(video.shape)}"
            )
        words = max(len(a) + len(b) for a, b in prompts)
        room = self.context_length - words - reserve
        fit = frames_that_fit(video.shape[1], self.tokens_for, room, self.name)
        return sample_frames(video, fit, self.name)

    def _visual(self, video: torch.Tensor | None, projected: bool = False) -> torch.Tensor | None:
        if video is None:
            return None
        return self.pool(video) if projected else self.visual_tokens(video)

    @staticmethod
    def _source(video: torch.Tensor | None, projected: torch.Tensor | None) -> torch.Tensor | None:
        if video is not None and projected is not None:
            raise VideoadaptError("give the video or its projected tokens, not both")
        return projected if projected is not None else video

    def _sequences(
        self,
        visual: torch.Tensor | None,
        prompts: list[tuple[torch.Tensor, torch.Tensor]],
        answers: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ``(inputs_embeds [B,L,H], attention_mask [B,L], labels [B,L])``; labels mark the answers.
        Without ``visual`` (None) the placeholder is simply removed: the prompt alone."""
        embed = self.language_model.get_input_embeddings()
        device = embed.weight.device
        rows, labels = [], []
        for i, (before, after) in enumerate(prompts):
            answer = answers[i] if answers is not None else before.new_zeros(0)
            ids = [before.to(device), after.to(device), answer.to(device)]
            seen = [] if visual is None else [visual[i].to(embed.weight.dtype)]
            parts = [embed(ids[0]), *seen, embed(ids[1]), embed(ids[2])]
            rows.append(torch.cat(parts))
            label = torch.full((rows[-1].shape[0],), IGNORE, dtype=torch.long, device=device)
            if answer.numel():
                label[-answer.numel() :] = ids[2]
            labels.append(label)
        embeds, mask = left_pad(rows, 0.0)
        label_batch, _ = left_pad(labels, IGNORE)
        return embeds, mask, label_batch

    @staticmethod
    def _count(video: torch.Tensor | None, prompts: str | Sequence[str]) -> int:
        """Videos in the batch; without a video, one per prompt."""
        if video is not None:
            return int(video.shape[0])
        return 1 if isinstance(prompts, str) else len(prompts)

    @staticmethod
    def _broadcast(prompts: str | Sequence[str], count: int) -> list[str]:
        prompts = [prompts] * count if isinstance(prompts, str) else list(prompts)
        if len(prompts) != count:
            raise VideoadaptError(f"{len(prompts)} prompts for {count} videos")
        return prompts

    # -- the generative interface -------------------------------------------------------------------------------
    def generate(
        self,
        video: torch.Tensor | None,
        prompts: str | Sequence[str],
        max_new_tokens: int = 32,
        num_beams: int = 1,
        *,
        projected: torch.Tensor | None = None,
        template: str | None = None,
    ) -> Generation:
        """Answer each video's prompt: greedy (``num_beams`` 1) or beam search with the KV cache, never more than
        ``max_new_tokens`` tokens. A video with more frames than the context holds is sampled down (a warning;
        ``Generation.frames_used`` says how many were seen). ``video`` None: the prompts alone, what the language
        model answers without seeing anything (the zero-shot baseline). ``projected``: instead of ``video``, its
        projected frame tokens ``[B,T,P,H]`` (:meth:`project`; what a video encoder's head hands on).
        ``template``: a prompt template (with ``<video>``) instead of the model's own."""
        check_generation_options(max_new_tokens, num_beams)
        source = self._source(video, projected)
        prompt_ids = self._prompt_ids(self._broadcast(prompts, self._count(source, prompts)), template)
        given = 0 if source is None else source.shape[1]
        source = self._fit(source, prompt_ids, reserve=int(max_new_tokens))
        with torch.no_grad():
            embeds, mask, _ = self._sequences(self._visual(source, projected is not None), prompt_ids)
        return run_generate(
            self.language_model,
            {"inputs_embeds": embeds, "attention_mask": mask},
            self.tokenizer,
            self.stop_ids,
            max_new_tokens,
            num_beams,
            0 if source is None else source.shape[1],
            given,
        )

    def score_candidates(
        self,
        video: torch.Tensor | None,
        prompts: str | Sequence[str],
        candidates: Sequence[str] | Sequence[Sequence[str]],
        reduction: str = "mean",
        *,
        projected: torch.Tensor | None = None,
        template: str | None = None,
    ) -> list[torch.Tensor]:
        """The log-likelihood of each candidate answer given the video and prompt (``reduction`` ``"mean"`` per
        token, or ``"sum"``): one tensor ``[C_i]`` per video. ``candidates``: one list for every video, or a list of
        lists. The argmax is the multiple-choice answer. ``video`` None: the prompts alone. Gradients flow when
        enabled (a multiple-choice loss over candidates); ``projected``, ``template``: as :meth:`generate`."""
        source = self._source(video, projected)
        b = self._count(source, prompts)
        per_video = [list(candidates)] * b if candidates and isinstance(candidates[0], str) else list(candidates)
        if len(per_video) != b or any(len(c) == 0 for c in per_video):
            raise VideoadaptError(f"score_candidates needs a non-empty candidate list for each of the {b} videos")
        prompt_ids = self._prompt_ids(self._broadcast(prompts, b), template)
        answer_ids = [[self._answer_ids(c, end=False) for c in cands] for cands in per_video]
        longest = max(len(a) for answers in answer_ids for a in answers)
        source = self._fit(source, prompt_ids, reserve=longest)
        scores = []
        visual = self._visual(source, projected is not None)
        for i, answers in enumerate(answer_ids):
            n = len(answers)
            seen = None if visual is None else visual[i : i + 1].expand(n, -1, -1)
            embeds, mask, labels = self._sequences(seen, [prompt_ids[i]] * n, answers)
            keep = max(len(a) for a in answers) + 1
            logits = self.language_model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep).logits
            scores.append(answer_log_likelihoods(logits, labels, reduction))
        return scores

    def loss(
        self,
        video: torch.Tensor | None,
        prompts: str | Sequence[str],
        answers: Sequence[str],
        *,
        projected: torch.Tensor | None = None,
        template: str | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of the answer tokens (each answer followed by the end token, so that the model learns
        to stop); prompt and visual positions carry no loss, as in LLaVA's instruction tuning. ``projected``,
        ``template``: as :meth:`generate`."""
        source = self._source(video, projected)
        b = len(answers) if source is None else source.shape[0]
        if len(answers) != b:
            raise VideoadaptError(f"{len(answers)} answers for {b} videos")
        prompt_ids = self._prompt_ids(self._broadcast(prompts, b), template)
        answer_ids = [self._answer_ids(a, end=True) for a in answers]
        source = self._fit(source, prompt_ids, reserve=max(len(a) for a in answer_ids))
        embeds, mask, labels = self._sequences(self._visual(source, projected is not None), prompt_ids, answer_ids)
        keep = max(len(a) for a in answer_ids) + 1
        logits = self.language_model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep).logits
        return answer_loss(logits, labels)

    def prefill(
        self, projected: torch.Tensor | None, prompts: str | Sequence[str], template: str | None = None
    ) -> torch.Tensor:
        """One forward pass of the LM over the prompts with the visual tokens (the prefill of generation), returning
        the last position's logits ``[B,V]``: what ``params`` counts as the LM's cost per sample."""
        prompt_ids = self._prompt_ids(self._broadcast(prompts, self._count(projected, prompts)), template)
        source = self._fit(projected, prompt_ids, reserve=1)
        embeds, mask, _ = self._sequences(self._visual(source, projected is not None), prompt_ids)
        return self.language_model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=1).logits[:, -1]
