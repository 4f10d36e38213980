"""The task head ``mllm``: captioning and QA answered by a video MLLM's language model, through generation.

With ``model.head.head: mllm`` a task asks the encoder's :class:`~videoadapt.foundation.mllm.SeenVideos`
(``VideoFeatures.generative``, which every paradigm on a video MLLM hands on) instead of training a head of its own:

* captioning: ``generate`` the caption (greedy, or beam search with ``beam_size``); trained with the LM loss on a
  reference caption;
* open-ended QA: ``generate`` the answer, scored with VQA-normalised accuracy; trained with the LM loss on the
  answer;
* multiple-choice QA: the candidate with the highest mean log-likelihood per token (``score``); trained with the
  LM loss on the gold candidate (``mc_loss: answer``, as instruction tuning does) or cross-entropy over the
  candidates' log-likelihoods (``mc_loss: choice``, every candidate through the LM: C times the cost).

Options (``model.head``), all saved in the run's ``vocabulary.json``:

``prompt``
    the instruction or question format: captioning ``"Describe what happens in the video in one sentence."``;
    QA ``"{question} Answer in a few words."`` (open) and ``"{question} Choose one: {choices}."`` (multiple choice;
    ``{choices}`` are the candidates joined by commas).
``template``
    the prompt template around it, with the placeholder ``<video>`` exactly once (None: the model's own,
    ``model.mllm.template``); a template without ``<video>`` is refused when the head is built.
``max_new_tokens``
    the hard bound on a generated answer (captioning 24, QA 8): a model that never emits its end token stops
    there, and the run's log counts how often that happened.
``beam_size``
    1: greedy; more: beam search.
``video``
    True; False: the language model answers from the prompt alone, never seeing the video (the zero-shot row of
    the bench: what the LM guesses without visual training).

The head itself holds no parameters: what trains is what the paradigm made trainable (the projector always).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.mllm import PromptTemplate, SeenVideos
from videoadapt.foundation.mllm.prompt import check_text
from videoadapt.paradigms.base import VideoEncoder, VideoFeatures
from videoadapt.paradigms.generative_head import GenerativeHead
from videoadapt.tasks.base import Task, TaskHead

HEAD = "mllm"
SPEC_KEYS = ("head", "prompt", "template", "max_new_tokens", "beam_size", "video")


def wants_mllm(task: Task, spec: dict[str, Any] | None) -> bool:
    """Whether ``task`` (its options, or a saved head description) uses the ``mllm`` head."""
    return (spec.get("head") if spec is not None else task.option("head", None)) == HEAD


class MLLMHead(TaskHead):
    """No parameters: the settings of asking the video MLLM (``spec``)."""

    @property
    def prompt(self) -> str:
        return str(self.spec["prompt"])

    @property
    def template(self) -> str | None:
        return self.spec.get("template")


def build_mllm_head(
    task: Task,
    encoder: VideoEncoder,
    spec: dict[str, Any] | None,
    prompt: str,
    max_new_tokens: int,
    extra: dict[str, Any] | None = None,
) -> MLLMHead:
    """The ``mllm`` head from ``task``'s options (or a saved ``spec``); refuses an encoder that is not on a video
    MLLM and a template without ``<video>``."""
    if not isinstance(encoder.head, GenerativeHead):
        raise VideoadaptError(
            f"{task.name}: head 'mllm' asks a video MLLM, but the backbone is {encoder.ilfm.name}; use "
            "--backbone mllm (or hf-mllm:ID), or another head"
        )
    if spec is None:
        template = task.option("template", None)
        asked = task.option("prompt", prompt)
        check_text(f"{task.name} head's prompt", asked)
        if template is not None:
            check_text(f"{task.name} head's prompt template", template)
        spec = {
            "head": HEAD,
            "prompt": asked,
            "template": template,
            "max_new_tokens": int(task.option("max_new_tokens", max_new_tokens)),
            "beam_size": int(task.option("beam_size", 1)),
            "video": bool(task.option("video", True)),
            **(extra or {}),
        }
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise VideoadaptError(f"{task.name}: saved mllm head description lacks {', '.join(missing)}")
    if spec["template"] is not None:
        PromptTemplate(spec["template"])  # a template without <video> fails here, before any training
    if not 1 <= int(spec["max_new_tokens"]) <= 4096:
        raise VideoadaptError(f"{task.name}: max_new_tokens must be in 1..4096, got {spec['max_new_tokens']}")
    if int(spec["beam_size"]) < 1:
        raise VideoadaptError(f"{task.name}: beam_size must be >= 1, got {spec['beam_size']}")
    return MLLMHead(spec)


def seen(head: TaskHead, features: VideoFeatures) -> SeenVideos:
    """What the MLLM saw of the batch; without the video when the head says so (the zero-shot row)."""
    if features.generative is None:
        raise VideoadaptError("head 'mllm': the video encoder hands on no generative features (not a video MLLM)")
    return features.generative if head.spec["video"] else features.generative.blind()


def generate(head: TaskHead, features: VideoFeatures, prompts: Sequence[str]) -> list[str]:
    """Each video's answer; answers cut at ``max_new_tokens`` are counted in a warning (never a hang)."""
    out = seen(head, features).generate(
        list(prompts), int(head.spec["max_new_tokens"]), int(head.spec["beam_size"]), template=head.spec["template"]
    )
    cut = sum(out.hit_length_bound)
    if cut:
        warnings.warn(
            f"head 'mllm': {cut} of {len(out.texts)} answers reached max_new_tokens={head.spec['max_new_tokens']} "
            "without their end token and were cut there",
            stacklevel=2,
        )
    return out.texts
