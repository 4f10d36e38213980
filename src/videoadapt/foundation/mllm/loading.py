"""Build the LLaVA-style :class:`VideoMLLM` from an image-tower spec and a language model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.foundation.mllm.model import MLLMConfig, VideoMLLM


def load_language_model(source: str | Path | None) -> tuple[Any, Any]:
    """``None``: the embedded SmolLM2-135M-Instruct (converted once from its GGUF); a ``.gguf`` file: that file,
    converted the same way; otherwise a transformers causal LM (hub id or local directory, safetensors only)."""
    from videoadapt.foundation.mllm import smollm2

    if source is None or str(source).endswith(".gguf"):
        return smollm2.load_language_model(source)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(source).is_dir()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), use_safetensors=True, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=local)
    except (OSError, ValueError) as error:
        raise VideoadaptError(f"cannot load language model {source!r}: {str(error).splitlines()[0]}") from None
    return model.eval(), tokenizer


def load_video_mllm(
    tower: ImageLanguageModel | None = None, language_model: str | Path | None = None, config: MLLMConfig | None = None
) -> VideoMLLM:
    """A video MLLM on the image ``tower`` (None: the shipped TinyCLIP; ``load_backbone("mllm:SPEC")`` builds one on
    any backbone spec) and ``language_model`` (see :func:`load_language_model`), with a freshly initialised
    projector: it needs training (post-network tuning) before its answers mean anything about the video."""
    if tower is None:
        from videoadapt.foundation.tinyclip import checkpoint

        tower = checkpoint.load(checkpoint.shipped_directory())
    lm, tokenizer = load_language_model(language_model)
    return VideoMLLM(tower, lm, tokenizer, config)
