"""Post-network tuning (survey Sec. III-A2): the backbone stays frozen; a temporal module trained on its per-frame
features makes the video representation. Frame features can therefore come from the feature cache.

Temporal modules: ``mean`` (CLIP4Clip meanP, no parameters), ``transformer`` (CLIP4Clip seqTransf's structure with
zero-initialised residual branches, so training starts at mean pooling; the default), ``seqtransf`` (CLIP4Clip's
seqTransf as published: blocks and frame positions copied from a CLIP text tower as wide as the joint space),
``qformer`` (learnable queries reading all frames' patch tokens, BLIP-2 / Video-LLaMA), ``spacetime`` (joint
space-time attention over pooled patch tokens, ViViT model 1 on frozen tokens) and ``moment_detr`` (Moment-DETR's
encoder-decoder over clips and query words for temporal grounding; the head then needs the query text).

Options (:class:`PostNetworkConfig`): ``temporal``, ``space`` (``joint`` | ``cls``) and the chosen module's own
options (``layers``, ``heads``, ``max_frames`` of the transformer; ``queries``, ``width``, ... of the Q-Former),
checked against the module's constructor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, VideoHead
from videoadapt.paradigms.options import TemporalHeadConfig
from videoadapt.paradigms.temporal_head import SPACES, TEMPORAL_MODULES, TemporalHead, head_from_config, temporal_module
from videoadapt.registry import registry
from videoadapt.temporal.modules import TemporalName


@dataclass(frozen=True)
class PostNetworkConfig(TemporalHeadConfig):
    """The head's options alone: ``temporal`` (default ``transformer``), ``space``, and the module's options."""

    paradigm: ClassVar[str] = "post_network"
    temporal: TemporalName = "transformer"


@registry.register("paradigm", "post_network")
class PostNetwork(Paradigm):
    name = "post_network"
    config_class = PostNetworkConfig
    config: PostNetworkConfig

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return head_from_config(ilfm, self.config)


__all__ = ["SPACES", "TEMPORAL_MODULES", "PostNetwork", "PostNetworkConfig", "TemporalHead", "temporal_module"]
