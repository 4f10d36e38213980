"""Full fine-tuning (survey Sec. III-B1): every parameter of the image tower trains (and of the text tower with
``text=True``, as ViFi-CLIP does), with a temporal head on the frame embeddings: mean pooling as in ViFi-CLIP, or
``temporal="transformer"`` as in ActionCLIP / CLIP4Clip seqTransf."""

from __future__ import annotations

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.temporal_head import TemporalHead
from videoadapt.registry import registry


@registry.register("paradigm", "full_finetune")
class FullFinetune(Paradigm):
    name = "full_finetune"
    adapts_backbone = True
    trains_whole_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        modules = ilfm.vision_modules() + (ilfm.text_modules() if self.options.get("text", False) else [])
        for module in modules:
            for parameter in module.parameters():
                parameter.requires_grad_(True)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        options = {k: v for k, v in self.options.items() if k != "text"}
        return TemporalHead(ilfm, **{"temporal": "mean", **options})
