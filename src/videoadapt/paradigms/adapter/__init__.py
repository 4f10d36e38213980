"""Adapters (survey Sec. III-B4): small modules inserted into the frozen vision blocks — ST-Adapter, AIM,
AdaptFormer and ZeroI2V's mergeable linear adapters with STDHA. Same roles as PEFT's tuner folders: ``config``
(what), ``layer`` (the inserted modules), ``model`` (injection)."""

from __future__ import annotations

from typing import Any

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.adapter.config import AdapterConfig
from videoadapt.paradigms.adapter.model import AdaptedBlock, inject_adapters, merge_linear_adapters
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.temporal_head import TemporalHead
from videoadapt.registry import registry


@registry.register("paradigm", "adapter")
class Adapter(Paradigm):
    name = "adapter"
    adapts_backbone = True

    def __init__(self, **options: Any) -> None:
        head_options = {k: options.pop(k) for k in ("temporal", "space") if k in options}
        super().__init__(**options)
        self.config = AdapterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
        self.head_options = head_options

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        inject_adapters(ilfm, self.config, context)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        # The adapters model time inside the backbone; the published designs average the frames.
        return TemporalHead(ilfm, **{"temporal": "mean", **self.head_options})


__all__ = ["AdaptedBlock", "Adapter", "AdapterConfig", "inject_adapters", "merge_linear_adapters"]
