"""Partial tuning (survey Sec. III-B2): only a named subset of the backbone trains.

``subset="bias_norm"`` — biases and LayerNorm parameters (BitFit-like); ``subset="norm"`` — LayerNorms only;
``subset="last_blocks"`` with ``blocks=k`` — the last k vision blocks and what follows them (post-LayerNorm,
projection).
"""

from __future__ import annotations

from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, TemporalContext
from videoadapt.registry import registry

SUBSETS = ("bias_norm", "norm", "last_blocks")


@registry.register("paradigm", "partial_tuning")
class PartialTuning(Paradigm):
    name = "partial_tuning"
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        subset = self.options.get("subset", "bias_norm")
        if subset not in SUBSETS:
            raise VideoadaptError(f"partial_tuning: unknown subset {subset!r}; known: {', '.join(SUBSETS)}")
        if subset == "last_blocks":
            blocks = ilfm.vision_blocks()
            k = int(self.options.get("blocks", 2))
            if not 1 <= k <= len(blocks):
                raise VideoadaptError(f"partial_tuning: blocks must be in 1..{len(blocks)}, got {k}")
            chosen = set(map(id, blocks[len(blocks) - k :].parameters()))
            after = _after_blocks(ilfm)
            for module in ilfm.vision_modules():
                for parameter in module.parameters():
                    if id(parameter) in chosen or id(parameter) in after:
                        parameter.requires_grad_(True)
            return
        for module in ilfm.vision_modules():
            for child in module.modules():
                norm = isinstance(child, nn.LayerNorm | nn.BatchNorm2d | nn.GroupNorm)
                for name, parameter in child.named_parameters(recurse=False):
                    if norm or (subset == "bias_norm" and name == "bias"):
                        parameter.requires_grad_(True)


def _after_blocks(ilfm: ImageLanguageModel) -> set[int]:
    """Parameters after the last block: the final LayerNorm, SigLIP's pooling head, the projection."""
    ids: set[int] = set()
    for module in ilfm.vision_modules():
        if isinstance(module, nn.Linear):  # a projection into the joint space
            ids.update(map(id, module.parameters()))
            continue
        for name, child in module.named_modules():
            if name.split(".")[-1] in ("post_layernorm", "head"):
                ids.update(map(id, child.parameters()))
    return ids
