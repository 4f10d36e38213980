"""Generative ILFMs: a LLaVA-style video MLLM (an image tower, a projector with temporal token pooling, a causal
language model; embedded default TinyCLIP + SmolLM2-135M-Instruct) and real video MLLM checkpoints."""

from videoadapt.foundation.mllm.generation import Generation
from videoadapt.foundation.mllm.loading import load_language_model, load_video_mllm
from videoadapt.foundation.mllm.model import LM_LORA_TARGETS, MLLMConfig, VideoMLLM
from videoadapt.foundation.mllm.prompt import PromptTemplate
from videoadapt.foundation.mllm.seen import SeenVideos

__all__ = [
    "LM_LORA_TARGETS",
    "Generation",
    "MLLMConfig",
    "PromptTemplate",
    "SeenVideos",
    "VideoMLLM",
    "load_language_model",
    "load_video_mllm",
]
