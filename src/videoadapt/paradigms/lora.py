"""LoRA (survey Sec. III-B5) through PEFT: low-rank updates on the attention projections of the vision blocks
(and, with ``text=True``, of the text tower). LoRA alone models no time, so it brings an external temporal module:
a one-layer temporal transformer over the frame embeddings unless another paradigm of the composition supplies the
head (``lora+post_network``).

Options (:class:`LoRAConfig`): ``r`` (rank, 8), ``alpha`` (default 2r), ``dropout`` (0.0), ``targets``
(projections, default ``["q_proj", "v_proj"]`` as in Hu et al. 2021), ``text`` (False); the default head's
``temporal`` ("transformer"), ``space``, and module options (``temporal_layers`` = the transformer's ``layers``,
1 by default).

On a video MLLM (``--backbone mllm``) LoRA goes on the language model instead (``lm_targets``, default every linear
layer of its blocks), the image tower stays frozen, and the projector trains with it (its head).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.foundation.mllm.model import LM_LORA_TARGETS
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.generative_head import is_generative
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.paradigms.temporal_head import head_from_config
from videoadapt.registry import registry
from videoadapt.temporal.modules import TemporalName

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
Projection = Literal["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass(frozen=True)
class LoRAConfig(TemporalHeadConfig):
    paradigm: ClassVar[str] = "lora"
    default_module_options: ClassVar[dict[str, dict[str, Any]]] = {"transformer": {"layers": 1}}
    temporal: TemporalName = "transformer"
    r: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    targets: tuple[Projection, ...] = ("q_proj", "v_proj")
    text: bool = False
    # On a video MLLM: the language model's linear layers that get LoRA (None: every one, LM_LORA_TARGETS).
    lm_targets: tuple[str, ...] | None = None

    def validate(self) -> None:
        self.require("r", self.r >= 1, "at least 1")
        self.require("alpha", self.alpha is None or self.alpha > 0, "positive")
        self.require("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)")
        self.require("targets", len(self.targets) > 0 and len(set(self.targets)) == len(self.targets), "distinct")

    @property
    def scaling_alpha(self) -> float:
        return 2.0 * self.r if self.alpha is None else self.alpha


def _inject(module: nn.Module, pattern: str, config: LoRAConfig) -> bool:
    """Add LoRA to the projections of ``module`` whose names match; False when none does."""
    from peft import LoraConfig, inject_adapter_in_model

    if not any(re.fullmatch(pattern, name) for name, _ in module.named_modules()):
        return False
    peft_config = LoraConfig(
        r=config.r,
        lora_alpha=config.scaling_alpha,
        lora_dropout=config.dropout,
        target_modules=pattern,
        bias="none",
    )
    inject_adapter_in_model(peft_config, module)
    return True


@registry.register("paradigm", "lora")
class LoRA(Paradigm):
    name = "lora"
    config_class = LoRAConfig
    config: LoRAConfig
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        if is_generative(ilfm):
            self._adapt_language_model(ilfm)
            return
        targets = list(self.config.targets)
        pattern = rf".*self_attn\.({'|'.join(map(re.escape, targets))})"
        # PEFT marks its LoRA matrices trainable; everything else stays as the composition froze it.
        if not any([_inject(m, pattern, self.config) for m in ilfm.vision_modules()]):
            raise VideoadaptError(f"lora: no attention projection {targets} in the vision tower of {ilfm.name}")
        if self.config.text and not any([_inject(m, pattern, self.config) for m in ilfm.text_modules()]):
            raise VideoadaptError(f"lora: the text tower of {ilfm.name} has no CLIP-style attention projections")

    def _adapt_language_model(self, ilfm: ImageLanguageModel) -> None:
        """On a video MLLM LoRA goes on its language model: ``lm_targets`` (default every linear layer of the
        decoder blocks, as LLaVA-1.5's LoRA and QLoRA) through PEFT; the tower stays frozen."""
        targets = list(self.config.lm_targets or LM_LORA_TARGETS)
        pattern = rf".*\.({'|'.join(map(re.escape, targets))})"
        if not any([_inject(m, pattern, self.config) for m in ilfm.language_modules()]):  # type: ignore[attr-defined]
            raise VideoadaptError(f"lora: no linear layer {targets} in the language model of {ilfm.name}")

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return head_from_config(ilfm, self.config)

    def merge_refusal(self) -> str | None:
        return None

    def merge(self, ilfm: ImageLanguageModel) -> None:
        """Fold every LoRA update into its base Linear (PEFT's own ``merge``: ``W += scale * B A``) and put the
        base Linear back in the LoRA wrapper's place, so the backbone has its plain modules and parameters again."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        wrapped = [
            (parent, name, child)
            for parent in ilfm.modules()
            for name, child in parent.named_children()
            if isinstance(child, BaseTunerLayer)
        ]
        if not wrapped:
            raise VideoadaptError(f"lora: {ilfm.name} has no LoRA layers to merge")
        for parent, name, child in wrapped:
            child.merge()
            setattr(parent, name, child.get_base_layer())
