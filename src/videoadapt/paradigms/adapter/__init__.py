"""Adapters (survey Sec. III-B4): small modules inserted into the frozen vision blocks — ST-Adapter, AIM,
AdaptFormer and ZeroI2V's mergeable linear adapters with STDHA. Same roles as PEFT's tuner folders: ``config``
(what), ``layer`` (the inserted modules), ``model`` (injection)."""

from __future__ import annotations

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.adapter.config import AdapterConfig
from videoadapt.paradigms.adapter.model import (
    AdaptedBlock,
    inject_adapters,
    insert_temporal_embedding,
    merge_linear_adapters,
)
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.temporal_head import head_from_config
from videoadapt.registry import registry


@registry.register("paradigm", "adapter")
class Adapter(Paradigm):
    name = "adapter"
    config_class = AdapterConfig
    config: AdapterConfig
    adapts_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        inject_adapters(ilfm, self.config, context)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        # The adapters model time inside the backbone; the published designs average the frames.
        return head_from_config(ilfm, self.config)

    def merge_refusal(self) -> str | None:
        if self.config.variant == "linear":
            return None
        return (
            f"adapter: only linear (ZeroI2V) adapters merge into the backbone, not variant {self.config.variant!r} "
            "(its adapters are nonlinear or model time across frames)"
        )

    def merge(self, ilfm: ImageLanguageModel) -> None:
        refusal = self.merge_refusal()
        if refusal:
            raise VideoadaptError(refusal)
        merge_linear_adapters(ilfm)


__all__ = [
    "AdaptedBlock",
    "Adapter",
    "AdapterConfig",
    "inject_adapters",
    "insert_temporal_embedding",
    "merge_linear_adapters",
]
