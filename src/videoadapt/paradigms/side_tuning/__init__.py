"""Side-tuning (survey Sec. III-A3): a light side network reads the frozen backbone's per-layer tokens.

The backbone is never changed and never differentiated: gradients and activation memory stay inside the side
network, and the encoder is cacheable — ``FrameFeatures`` encoded once with ``all_layers=True`` stand in for the
backbone. Designs (option ``design``): ``evl`` (EVL, Lin et al., ECCV 2022; default) and ``r2_tuning``
(R²-Tuning, Liu et al., ECCV 2024). Same roles as PEFT's tuner folders: ``config`` (what), ``evl`` and
``r2_tuning`` (the side networks), this file (registration).

>>> encoder = build_video_encoder(ilfm, "side_tuning", {"side_tuning": {"design": "evl", "layers": 4}})
>>> encoder(cached=ilfm.encode_frames(video, all_layers=True))   # VideoFeatures(frames [B,T,E], video [B,E])
"""

from __future__ import annotations

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import Paradigm, VideoHead
from videoadapt.paradigms.side_tuning.config import DESIGNS, SideTuningConfig
from videoadapt.paradigms.side_tuning.evl import EVLHead, TemporalCrossAttention
from videoadapt.paradigms.side_tuning.r2_tuning import R2TuningHead
from videoadapt.registry import registry


@registry.register("paradigm", "side_tuning")
class SideTuning(Paradigm):
    name = "side_tuning"
    config_class = SideTuningConfig
    config: SideTuningConfig

    def head(self, ilfm: ImageLanguageModel) -> VideoHead:
        # Side networks read frozen features (a "frozen-features" paradigm in the survey's taxonomy); a backbone
        # that another paradigm trains would make the recomputed q/k and the cache wrong, so refuse it.
        if any(p.requires_grad for m in ilfm.vision_modules() for p in m.parameters()):
            raise VideoadaptError(
                "side_tuning reads a frozen backbone; it does not compose with paradigms that train or insert "
                "modules into the vision tower"
            )
        if self.config.design == "evl":
            return EVLHead(ilfm, self.config)
        return R2TuningHead(ilfm, self.config)


__all__ = ["DESIGNS", "EVLHead", "R2TuningHead", "SideTuning", "SideTuningConfig", "TemporalCrossAttention"]
