"""Shared scaffolding of the paradigm tests: the two small test backbones, a random video, and the checks that
every paradigm's contract repeats. The MiniLM text tower they share is the session fixture ``text_tower`` of
tests/conftest.py. Imported as ``from paradigm_helpers import ...`` (pytest's default "prepend" import mode puts
tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch

from videoadapt.foundation.hf import from_architecture
from videoadapt.foundation.tinyclip import TinyCLIP, TinyCLIPConfig
from videoadapt.utils.safe_io import load_tensors, save_tensors

# A TinyCLIP small enough to build per test: 2 blocks, like the tiny random transformers models.
SMALL_TINY = TinyCLIPConfig(width=64, layers=2, heads=2, embed_dim=32, stem_channels=(16, 32), text_head_hidden=0)

# The tiny random transformers architectures behind the backbone kinds other than "tiny".
HF_ARCHITECTURES = {"hf": "clip-tiny", "siglip": "siglip-tiny"}


def make_backbone(kind: str, text_tower):
    """A fresh backbone of ``kind`` ("tiny": SMALL_TINY on the shared MiniLM tower; "hf": a tiny random transformers
    CLIP; "siglip": a tiny random SigLIP), built after seeding torch with 0."""
    torch.manual_seed(0)
    if kind == "tiny":
        return TinyCLIP(SMALL_TINY, text_tower=text_tower).eval()
    return from_architecture(HF_ARCHITECTURES[kind])


def make_clip_with_text_as_wide_as_joint(seed: int = 0):
    """A tiny random transformers CLIP whose text width equals its joint dim (16), as on real CLIP ViT-B (512): the
    shape CLIP4Clip's seqTransf initialisation needs (clip-tiny's text tower is 32 wide for a 16-d joint space)."""
    from transformers import CLIPConfig, CLIPModel

    from videoadapt.data.transforms import CLIP_MEAN, CLIP_STD, ProcessorSettings
    from videoadapt.foundation.hf import HFImageLanguageModel

    torch.manual_seed(seed)
    text = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        vocab_size=1000,
        max_position_embeddings=12,
        eos_token_id=999,
        bos_token_id=0,
        pad_token_id=999,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    processor = ProcessorSettings(image_size=32, mean=CLIP_MEAN, std=CLIP_STD)
    return HFImageLanguageModel(model, "clip", processor, name="clip-text-as-wide-as-joint")


def video_for(ilfm, batch: int = 2, frames: int = 3, seed: int = 1) -> torch.Tensor:
    """A random ``[batch, frames, 3, size, size]`` video at the backbone's image size."""
    size = ilfm.processor.image_size
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def perturb(encoder, scale: float, seed: int | None = None) -> None:
    """Stand-in for training: move every trainable parameter off its (often zero) initialisation, after seeding
    torch with ``seed`` when one is given."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for _, parameter in encoder.trainable_named_parameters():
            parameter.add_(scale * torch.randn_like(parameter))


def assert_exactly_declared_parameters_have_gradients(encoder) -> None:
    """After a backward pass: every parameter declared trainable got a gradient, and no frozen one did."""
    for name, parameter in encoder.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} is declared trainable but got no gradient"
        else:
            assert parameter.grad is None, f"{name} is frozen but got a gradient"


def round_trip_trainable(encoder, restored, directory: Path, filename: str = "trainable.safetensors"):
    """Save only the trainable parts of ``encoder`` under ``directory``, load them into ``restored`` (a freshly
    built encoder of the same composition) and return it."""
    path = directory / filename
    save_tensors(path, encoder.trainable_state_dict())
    restored.load_trainable_state_dict(load_tensors(path))
    return restored
