"""``--backbone`` specifications → an :class:`ImageLanguageModel`.

=====================  =====================================================================================
``tiny``               the shipped TinyCLIP checkpoint (pretrained here by ``videoadapt pretrain``)
``tiny:DIR``           a TinyCLIP checkpoint directory written by ``videoadapt pretrain --out DIR``
``tiny-random``        TinyCLIP's architecture with a random image tower (the "no transfer" baseline)
``tiny-owl``           the shipped TinyOWL checkpoint (TinyCLIP + OWL-ViT detection heads; a GroundingModel)
``tiny-owl:DIR``       a TinyOWL checkpoint directory written by ``videoadapt pretrain --detection --out DIR``
``hf-grounding:ID``    OWL-ViT, OWLv2, Grounding DINO or MM-Grounding-DINO from the hub or a local directory
``hf:ID``              a CLIP/SigLIP/SigLIP2 checkpoint from the hub or the local hub cache
``mllm``               the LLaVA-style video MLLM: TinyCLIP + a new projector + the embedded SmolLM2-135M-Instruct
``mllm:SPEC``          the same on the image tower SPEC (any spec of this table but the MLLM ones)
``hf-mllm:ID``         LLaVA-OneVision, Qwen2-VL/Qwen2.5-VL or SmolVLM2 from the hub or a local directory
``DIR``                a local directory holding a transformers CLIP/SigLIP/OWL/Grounding DINO/video MLLM
                       checkpoint, or a TinyCLIP or TinyOWL one
``hf-config:NAME``     a published architecture with random weights: clip-vit-b16, clip-vit-b32, ...
``random:SPEC``        backbone SPEC with its image tower re-initialised at random (text side kept): the same
                       architecture without image-language pretraining, the bench's "random init" baseline
=====================  =====================================================================================
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.utils.safe_io import load_json

SPEC_FORMS = (
    "tiny",
    "tiny:DIR",
    "tiny-random",
    "tiny-owl",
    "tiny-owl:DIR",
    "hf:ID",
    "hf-grounding:ID",
    "mllm",
    "mllm:SPEC",
    "hf-mllm:ID",
    "DIR",
    "hf-config:NAME",
    "random:SPEC",
)
GROUNDING_TYPES = ("owlvit", "owlv2", "grounding-dino", "grounding_dino", "mm-grounding-dino", "mm_grounding_dino")
MLLM_TYPES = ("llava_onevision", "qwen2_vl", "qwen2_5_vl", "smolvlm")  # foundation/mllm/family_*.py
RANDOM_PREFIX = "random:"


def load_backbone(spec: str) -> ImageLanguageModel:
    """The backbone ``spec`` names (see the table above), with ``spec`` recorded on it as ``model.spec``."""
    model = _load(spec)
    model.spec = spec
    return model


def _load(spec: str) -> ImageLanguageModel:
    from videoadapt.foundation import hf, hf_grounding
    from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint
    from videoadapt.foundation.tinyowl import checkpoint as owl_checkpoint

    if spec.startswith(RANDOM_PREFIX):
        inner = spec.removeprefix(RANDOM_PREFIX)
        if not inner:
            raise VideoadaptError("random:SPEC needs a backbone spec, e.g. random:tiny")
        model = _load(inner)
        randomize_vision(model)
        model.name = spec
        return model
    if spec == "mllm" or spec.startswith("mllm:"):
        from videoadapt.foundation.mllm import load_video_mllm

        tower = spec.removeprefix("mllm").removeprefix(":") or "tiny"
        if tower.startswith(("mllm", "hf-mllm:")):
            raise VideoadaptError(f"{spec}: the image tower of an MLLM cannot itself be an MLLM")
        return load_video_mllm(_load(tower))
    if spec.startswith("hf-mllm:"):
        from videoadapt.foundation.mllm import hf_video

        return hf_video.from_pretrained(spec.removeprefix("hf-mllm:"))
    if spec == "tiny":
        return tiny_checkpoint.load(tiny_checkpoint.shipped_directory())
    if spec == "tiny-random":
        from videoadapt.foundation.tinyclip import TinyCLIP

        return TinyCLIP().eval()
    if spec == "tiny-owl":
        return owl_checkpoint.load(owl_checkpoint.shipped_directory())
    if spec.startswith("tiny-owl:"):
        return owl_checkpoint.load(Path(spec.removeprefix("tiny-owl:")))
    if spec.startswith("hf-grounding:"):
        return hf_grounding.from_pretrained(spec.removeprefix("hf-grounding:"))
    if spec.startswith("tiny:"):
        return tiny_checkpoint.load(Path(spec.removeprefix("tiny:")))
    if spec.startswith("hf-config:"):
        return hf.from_architecture(spec.removeprefix("hf-config:"))
    if spec.startswith("hf:"):
        return hf.from_pretrained(spec.removeprefix("hf:"))
    path = Path(spec)
    if path.is_dir():
        if tiny_checkpoint.is_checkpoint(path):
            return tiny_checkpoint.load(path)
        if owl_checkpoint.is_checkpoint(path):
            return owl_checkpoint.load(path)
        if (path / "config.json").is_file():
            if load_json(path / "config.json").get("model_type") in GROUNDING_TYPES:
                return hf_grounding.from_pretrained(str(path))
            if load_json(path / "config.json").get("model_type") in MLLM_TYPES:
                from videoadapt.foundation.mllm import hf_video

                return hf_video.from_pretrained(str(path))
            return hf.from_pretrained(str(path))
        raise VideoadaptError(f"{path}: directory holds neither a transformers config.json nor a TinyCLIP checkpoint")
    architectures = ", ".join(f"hf-config:{name}" for name in sorted(hf.ARCHITECTURES))
    raise VideoadaptError(
        f"unknown backbone {spec!r}; use one of: {', '.join(SPEC_FORMS)} (architectures: {architectures})"
    )


def randomize_vision(model: ImageLanguageModel, seed: int = 0) -> None:
    """Re-initialise every weight of ``model``'s image tower in place (seeded): each submodule with a
    ``reset_parameters`` gets its own default initialisation (Linear, Conv, LayerNorm, Embedding); parameters
    that no such module owns (class tokens, position embeddings held as bare tensors) are drawn from N(0, 0.02),
    as ViTs initialise them. The text side keeps its pretrained weights."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        done: set[int] = set()
        with torch.no_grad():
            for top in model.vision_modules():
                for module in top.modules():
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
                        done.update(id(p) for p in module.parameters(recurse=False))
                for parameter in top.parameters():
                    if id(parameter) not in done:
                        nn.init.normal_(parameter, std=0.02)
                        done.add(id(parameter))
    finally:
        torch.random.set_rng_state(generator_state)
