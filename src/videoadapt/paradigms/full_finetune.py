"""Full fine-tuning (survey Sec. III-B1): every parameter of the image tower trains (and of the text tower with
``text=True``, as ViFi-CLIP does), with a temporal head on the frame embeddings: mean pooling as in ViFi-CLIP, or
``temporal="transformer"`` as in ActionCLIP / CLIP4Clip seqTransf (``temporal="seqtransf"``: CLIP4Clip's text-tower
initialisation).

Options (:class:`FullFinetuneConfig`): ``text`` (False), and the default head's ``temporal`` ("mean"), ``space`` and
module options (see :class:`~videoadapt.paradigms.options.TemporalHeadConfig`).

On a video MLLM everything on the video's path trains: image tower, projector and language model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, TemporalContext, VideoHead
from videoadapt.paradigms.generative_head import is_generative
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.paradigms.temporal_head import head_from_config
from videoadapt.registry import registry


@dataclass(frozen=True)
class FullFinetuneConfig(TemporalHeadConfig):
    paradigm: ClassVar[str] = "full_finetune"
    text: bool = False


@registry.register("paradigm", "full_finetune")
class FullFinetune(Paradigm):
    name = "full_finetune"
    config_class = FullFinetuneConfig
    config: FullFinetuneConfig
    adapts_backbone = True
    trains_whole_backbone = True

    def adapt(self, ilfm: ImageLanguageModel, context: TemporalContext) -> None:
        modules = ilfm.vision_modules() + (ilfm.text_modules() if self.config.text else [])
        if is_generative(ilfm):
            # A video MLLM's whole video path: tower, projector (its head unfreezes it) and language model.
            modules = ilfm.vision_modules() + ilfm.language_modules()  # type: ignore[attr-defined]
        for module in modules:
            for parameter in module.parameters():
                parameter.requires_grad_(True)

    def default_head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return head_from_config(ilfm, self.config)
