"""``--backbone`` specifications → an :class:`ImageLanguageModel`.

=====================  =====================================================================================
``tiny``               the shipped TinyCLIP checkpoint (pretrained here by ``videoadapt pretrain``)
``tiny:DIR``           a TinyCLIP checkpoint directory written by ``videoadapt pretrain --out DIR``
``tiny-random``        TinyCLIP's architecture with a random image tower (the "no transfer" baseline)
``hf:ID``              a CLIP/SigLIP/SigLIP2 checkpoint from the hub or the local hub cache
``DIR``                a local directory holding a transformers CLIP/SigLIP checkpoint or a TinyCLIP one
``hf-config:NAME``     a published architecture with random weights: clip-vit-b16, clip-vit-b32, ...
=====================  =====================================================================================
"""

from __future__ import annotations

from pathlib import Path

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel

SPEC_FORMS = ("tiny", "tiny:DIR", "tiny-random", "hf:ID", "DIR", "hf-config:NAME")


def load_backbone(spec: str) -> ImageLanguageModel:
    from videoadapt.foundation import hf
    from videoadapt.foundation.tinyclip import checkpoint as tiny_checkpoint

    if spec == "tiny":
        return tiny_checkpoint.load(tiny_checkpoint.shipped_directory())
    if spec == "tiny-random":
        from videoadapt.foundation.tinyclip import TinyCLIP

        return TinyCLIP().eval()
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
        if (path / "config.json").is_file():
            return hf.from_pretrained(str(path))
        raise VideoadaptError(f"{path}: directory holds neither a transformers config.json nor a TinyCLIP checkpoint")
    architectures = ", ".join(f"hf-config:{name}" for name in sorted(hf.ARCHITECTURES))
    raise VideoadaptError(
        f"unknown backbone {spec!r}; use one of: {', '.join(SPEC_FORMS)} (architectures: {architectures})"
    )
