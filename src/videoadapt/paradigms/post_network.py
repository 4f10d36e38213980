"""Post-network tuning (survey Sec. III-A2): the backbone stays frozen; a temporal module trained on its per-frame
features makes the video representation. Frame features can therefore come from the feature cache.

Temporal modules: ``mean`` (CLIP4Clip meanP, no parameters), ``transformer`` (CLIP4Clip seqTransf), ``qformer``
(learnable queries reading all frames' patch tokens, BLIP-2 / Video-LLaMA), ``spacetime`` (joint space-time
attention over pooled patch tokens, ViViT model 1 on frozen tokens) and ``moment_detr`` (Moment-DETR's
encoder-decoder over clips and query words for temporal grounding; the head then needs the query text).
"""

from __future__ import annotations

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, VideoHead
from videoadapt.paradigms.temporal_head import SPACES, TEMPORAL_MODULES, TemporalHead, temporal_module
from videoadapt.registry import registry


@registry.register("paradigm", "post_network")
class PostNetwork(Paradigm):
    name = "post_network"

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        return TemporalHead(ilfm, **{"temporal": "transformer", **self.options})


__all__ = ["SPACES", "TEMPORAL_MODULES", "PostNetwork", "TemporalHead", "temporal_module"]
