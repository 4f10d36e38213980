"""LoRA (survey Sec. III-B5) through PEFT: low-rank updates on the attention projections of the vision blocks
(and, with ``text=True``, of the text tower). LoRA alone models no time, so it brings an external temporal module:
a temporal transformer over the frame embeddings unless another paradigm of the composition supplies the head.

Options: ``r`` (rank, 8), ``alpha`` (16), ``dropout`` (0.0), ``targets`` (projections, default ``["q_proj",
"v_proj"]`` as in Hu et al. 2021), ``text`` (False), ``temporal`` ("transformer"), ``temporal_layers`` (1).
"""

from __future__ import annotations

import re

from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.temporal_head import TemporalHead
from videoadapt.registry import registry

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _inject(module: nn.Module, pattern: str, r: int, alpha: float, dropout: float) -> bool:
    """Add LoRA to the projections of ``module`` whose names match; False when none does."""
    from peft import LoraConfig, inject_adapter_in_model

    if not any(re.fullmatch(pattern, name) for name, _ in module.named_modules()):
        return False
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
    inject_adapter_in_model(config, module)
    return True


@registry.register("paradigm", "lora")
class LoRA(Paradigm):
    name = "lora"
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        targets = list(self.options.get("targets", ["q_proj", "v_proj"]))
        unknown = set(targets) - set(PROJECTIONS)
        if unknown:
            raise VideoadaptError(f"lora: unknown targets {sorted(unknown)}; known: {', '.join(PROJECTIONS)}")
        r = int(self.options.get("r", 8))
        alpha = float(self.options.get("alpha", 2 * r))
        dropout = float(self.options.get("dropout", 0.0))
        pattern = rf".*self_attn\.({'|'.join(map(re.escape, targets))})"
        # PEFT marks its LoRA matrices trainable; everything else stays as the composition froze it.
        if not any([_inject(m, pattern, r, alpha, dropout) for m in ilfm.vision_modules()]):
            raise VideoadaptError(f"lora: no attention projection {targets} in the vision tower of {ilfm.name}")
        if self.options.get("text", False) and not any(
            [_inject(m, pattern, r, alpha, dropout) for m in ilfm.text_modules()]
        ):
            raise VideoadaptError(f"lora: the text tower of {ilfm.name} has no CLIP-style attention projections")

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        temporal = self.options.get("temporal", "transformer")
        options = {"layers": int(self.options.get("temporal_layers", 1))} if temporal == "transformer" else {}
        return TemporalHead(ilfm, temporal=temporal, **options)
