"""Presets: published designs expressed as paradigm compositions with their exact options.

Each preset names the paradigm composition, its options, the features its classifier reads, and the source it
reproduces. ``videoadapt params --preset NAME`` counts what it trains; tests assert the counts derived below from
each design on ``hf-config:clip-vit-b16`` (D = 768, E = 512, 12 blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder, build_video_encoder
from videoadapt.registry import registry


@dataclass(frozen=True)
class Preset:
    name: str
    paradigms: str
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def build(self, ilfm: ImageLanguageModel) -> VideoEncoder:
        # Copies, so that building never mutates the preset's own option dicts.
        return build_video_encoder(ilfm, self.paradigms, {k: dict(v) for k, v in self.options.items()})


def _register(preset: Preset) -> Preset:
    return registry.register("preset", preset.name)(preset)


ST_ADAPTER_K400 = _register(
    Preset(
        "st-adapter-k400",
        "adapter",
        {"adapter": {"variant": "st_adapter", "width": 384, "kernel": (3, 1, 1), "before": ("mlp",), "space": "cls"}},
        source=(
            "ST-Adapter (Pan et al., NeurIPS 2022), official code linziyi96/st-adapter, models_adapter.py "
            "clip_vit_base_patch16_adapter12x384: one adapter (fc1 768->384, depthwise Conv3d (3,1,1), fc2 384->768) "
            "before the MLP of all 12 blocks = 12 x 592,512 = 7,110,144; frame CLS averaged, linear classifier on "
            "768-d. Paper Table 1: 7M tunable."
        ),
    )
)
ST_ADAPTER_SSV2 = _register(
    Preset(
        "st-adapter-ssv2",
        "adapter",
        {
            "adapter": {
                "variant": "st_adapter",
                "width": 384,
                "kernel": (3, 1, 1),
                "before": ("attention", "mlp"),
                "space": "cls",
            }
        },
        source=(
            "ST-Adapter, official clip_vit_base_patch16_adapter24x384 (scripts/train_ssv2_...): adapters before the "
            "attention and before the MLP of all 12 blocks = 24 x 592,512 = 14,220,288. Paper: 14M tunable on SSv2."
        ),
    )
)
AIM = _register(
    Preset(
        "aim",
        "adapter",
        {"adapter": {"variant": "aim", "width": 192, "scale": 0.5, "space": "cls"}},
        source=(
            "AIM (Yang et al., ICLR 2023), official taoyang1122/adapt-image-models vit_clip.py: temporal adapter "
            "(no skip) after the block's attention applied over time, spatial adapter (with skip) after its "
            "attention, joint adapter (no skip, x0.5) parallel to the MLP; each fc1 768->192 (ratio 0.25), GELU, "
            "fc2 192->768 = 295,872; 36 adapters = 10,651,392. Paper Table: ViT-B/16 11M tunable."
        ),
    )
)
ADAPTFORMER = _register(
    Preset(
        "adaptformer",
        "adapter",
        {"adapter": {"variant": "adaptformer", "width": 64, "scale": 0.1, "space": "cls"}},
        source=(
            "AdaptFormer (Chen et al., NeurIPS 2022), official ShoufaChen/AdaptFormer models/adapter.py: bottleneck "
            "64, ReLU, scale 0.1, parallel to the MLP of every block: 12 x (768*64+64 + 64*768+768) = 1,189,632."
        ),
    )
)
CLIP4CLIP_MEANP = _register(
    Preset(
        "clip4clip-meanp",
        "full_finetune",
        {"full_finetune": {"text": True, "temporal": "mean"}},
        source=(
            "CLIP4Clip (Luo et al., 2022) meanP, official ArrowLuo/CLIP4Clip modules/modeling.py: both CLIP towers "
            "fine-tuned, frame embeddings mean-pooled: every CLIP ViT-B/16 weight, 149,620,736 (the contrastive "
            "temperature belongs to the retrieval task)."
        ),
    )
)
CLIP4CLIP_SEQTRANSF = _register(
    Preset(
        "clip4clip-seqtransf",
        "full_finetune",
        {"full_finetune": {"text": True, "temporal": "transformer", "layers": 4, "heads": 8, "max_frames": 128}},
        source=(
            "CLIP4Clip seqTransf: plus a 4-layer, 8-head transformer of width 512 over frame embeddings with 128 "
            "frame-position embeddings (cross_num_hidden_layers=4, max_position_embeddings=128), residual to the "
            "input, mean-pooled: 4 x 3,152,384 + 65,536 = 12,675,072 on top of CLIP."
        ),
    )
)
VPT_DEEP = _register(
    Preset(
        "vpt-deep",
        "prompt_tuning",
        {"prompt_tuning": {"depth": "deep", "tokens": 8, "temporal": "mean", "space": "cls"}},
        source=(
            "VPT-Deep (Jia et al., ECCV 2022) on each frame, prompts shared across frames: 8 new prompt tokens "
            "before every one of the 12 blocks = 12 x 8 x 768 = 73,728."
        ),
    )
)
LORA_R8 = _register(
    Preset(
        "lora-r8",
        "lora",
        {"lora": {"r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"], "temporal": "transformer"}},
        source=(
            "LoRA (Hu et al., ICLR 2022) at rank 8 on W_q and W_v of the 12 vision blocks: 12 x 2 x (8x768 + "
            "768x8) = 294,912; plus the external temporal module LoRA needs (survey Sec. III-B5): a 1-layer "
            "temporal transformer of width 512 with 64 positions, 3,152,384 + 32,768."
        ),
    )
)


def preset_names() -> list[str]:
    return registry.names("preset")
