"""Published designs expressed as paradigm compositions with their exact options (registry kind "preset", the
``--preset`` flag and the ``model.preset`` config key).

Each :class:`PublishedDesign` names the paradigm composition, its options, the features its classifier reads, and
the source it reproduces (official file and function). ``videoadapt params --preset NAME`` counts what it trains;
tests assert the counts derived below from each design on ``hf-config:clip-vit-b16`` (D = 768, E = 512, 12
blocks), computed in the tests from those dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.base import VideoEncoder
from videoadapt.paradigms.compose import build_video_encoder
from videoadapt.registry import registry


@dataclass(frozen=True)
class PublishedDesign:
    """A published design as a composition: ``paradigms`` with ``options``, and the ``source`` it follows."""

    name: str
    paradigms: str
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def build(self, ilfm: ImageLanguageModel, *, resources: dict[str, Any] | None = None) -> VideoEncoder:
        # Copies, so that building never mutates the design's own option dicts.
        options = {k: dict(v) for k, v in self.options.items()}
        return build_video_encoder(ilfm, self.paradigms, options, resources=resources)


def _register(preset: PublishedDesign) -> PublishedDesign:
    return registry.register("preset", preset.name)(preset)


ST_ADAPTER_K400 = _register(
    PublishedDesign(
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
    PublishedDesign(
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
    PublishedDesign(
        "aim",
        "adapter",
        {
            "adapter": {
                "variant": "aim",
                "width": 192,
                "scale": 0.5,
                "temporal_embedding": 8,
                "train_post_norm": True,
                "space": "cls",
            }
        },
        source=(
            "AIM (Yang et al., ICLR 2023), official taoyang1122/adapt-image-models mmaction/models/backbones/"
            "vit_clip.py (ViT_CLIP, ResidualAttentionBlock with num_tadapter=1): temporal adapter (no skip) after the "
            "block's attention applied over time, spatial adapter (with skip) after its attention, joint adapter (no "
            "skip, x0.5) parallel to the MLP; each fc1 768->192 (mlp_ratio 0.25), GELU, fc2 192->768 = 295,872; 36 "
            "adapters = 10,651,392. ViT_CLIP.forward adds temporal_embedding [1, num_frames, 768] (zeros) to every "
            "token of each frame before ln_pre: 8 x 768 = 6,144 for the 8-frame model; tools/train.py leaves "
            "trainable the names containing temporal_embedding, ln_post, cls_head or Adapter, so ln_post trains "
            "too: 1,536. Total 10,659,072 excluding the I3D head (linear on the frame-averaged 768-d ln_post CLS). "
            "README: ViT-B/16 11M tunable, 606 GFLOPs for 8x3x1 views."
        ),
    )
)
ADAPTFORMER = _register(
    PublishedDesign(
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
    PublishedDesign(
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
    PublishedDesign(
        "clip4clip-seqtransf",
        "full_finetune",
        {"full_finetune": {"text": True, "temporal": "seqtransf", "layers": 4}},
        source=(
            "CLIP4Clip seqTransf, official ArrowLuo/CLIP4Clip modules/modeling.py: CLIP4Clip.__init__ builds "
            "frame_position_embeddings = nn.Embedding(context_length = 77, 512) and transformerClip, "
            "cross_num_hidden_layers = 4 residual attention blocks of the text width 512 and 8 heads; "
            "CLIP4ClipPreTrainedModel.from_pretrained copies CLIP's text positional_embedding into the former and "
            "text transformer.resblocks.0-3 into the latter; _loose_similarity adds the frames once more after the "
            "blocks (residual to the input) and mean-pools. Trainable on top of CLIP: 4 x 3,152,384 + 77 x 512 = "
            "12,648,960. Needs a CLIP text tower as wide as the joint space (transformers' CLIP); on TinyCLIP "
            "(MiniLM text tower) building it is refused."
        ),
    )
)
VPT_DEEP = _register(
    PublishedDesign(
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
    PublishedDesign(
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

MOMENT_DETR = _register(
    PublishedDesign(
        "moment-detr",
        "post_network",
        {
            "post_network": {
                "temporal": "moment_detr",
                "hidden": 256,
                "heads": 8,
                "encoder_layers": 2,
                "decoder_layers": 2,
                "ffn": 1024,
                "queries": 10,
                "dropout": 0.1,
                "input_dropout": 0.5,
                "n_input_proj": 2,
                "tef": True,
                "normalize": True,
                "contrastive_align": False,
            }
        },
        source=(
            "Moment-DETR (Lei et al., NeurIPS 2021), official jayleicn/moment_detr model.py / transformer.py, "
            "defaults of config.py (hidden 256, 8 heads, 2+2 post-LN layers, FFN 1024, 10 queries, dropout 0.1, "
            "input_dropout 0.5, n_input_proj 2, ctx_mode video_tef, sine positions, no text positions, no "
            "contrastive alignment). Inputs here: CLIP ViT-B/16 frame embeddings (512) + tef (2) = 514-d clips "
            "instead of the paper's SlowFast+CLIP 2818-d (the released run_on_video checkpoint also uses 514), and "
            "the CLIP text tower's 512-d token states as the official clip_text_features. Trainable: "
            "input_vid_proj (LN 514: 1,028 + 514x256+256 = 131,840; LN 256: 512 + 65,792) = 199,172; "
            "input_txt_proj (LN 512: 1,024 + 131,328; 512 + 65,792) = 198,656; encoder 2 x (attention 263,168 + "
            "FFN 263,168 + 262,400 + 2 LN 1,024) = 1,579,520; decoder 2 x (2 attentions 526,336 + FFN 525,568 + 3 LN "
            "1,536) = 2,106,880 + final LN 512; query_embed 10x256 = 2,560; span_embed 65,792 + 65,792 + 514 = "
            "132,098; class_embed 514; saliency_proj 257. Total 4,220,169 (the official module also holds an "
            "unused 8,704-parameter txt_position_embed, not built here)."
        ),
    )
)

EVL = _register(
    PublishedDesign(
        "evl",
        "side_tuning",
        {
            "side_tuning": {
                "design": "evl",
                "layers": 4,
                "heads": 12,
                "mlp_factor": 4.0,
                "dropout": 0.5,
                "frames": 8,
                "temporal_conv": True,
                "temporal_pos_embed": True,
                "temporal_cross_attention": True,
                "output": "side",
            }
        },
        source=(
            "EVL (Lin et al., ECCV 2022), official OpenGVLab/efficient-video-recognition model.py (EVLDecoder, "
            "TemporalCrossAttention, EVLTransformer) and scripts/train_k400_vitb16_8f_dec4x768.sh: a 4-layer side "
            "decoder of width 768, 12 heads, MLP 4x (dropout 0.5) over the last 4 frozen blocks. Per layer: "
            "decoder (q/k/v/out 4 x 590,592 + MLP 2,362,368 + 2,360,064 + 3 LN 4,608 = 7,089,408) + depthwise "
            "temporal Conv1d k=3 (2,304 + 768) + temporal positions 8x768 = 6,144 + cross-attention tables w1, w2 "
            "2 x 729 x 768 = 1,119,744 -> 8,218,368; x4 = 32,873,472, + query token 768 = 32,874,240, + the "
            "LayerNorm of EVL's final projection 1,536 = 32,875,776 (its Dropout(0.5) + Linear 768x400+400 = "
            "307,600 is the task's classifier). Features: the 768-d normalised query token (output side: EVL's own "
            "fresh LayerNorm, no projection into CLIP's joint space). Cost: 444 GFLOPs for 1x3 views in the paper "
            "(Fig. 1 / figs/k400.png, 8 frames); tests/test_side_tuning.py pins ours against it."
        ),
    )
)

# ZeroI2V ViT-B/16 K400 (official leexinhao/ZeroI2V: configs/recognition/vit_zero_clip/
# vit_zero_base_clip_k400_16x8x1.py and backbones/vit_zero_clip.py; the README's K400 ViT-B/16 result and the
# checkpoint tools/weight_reparam.py merges use 8 frames, "k400_8x16x1_div12"):
#   4 linear adapters per block (num_tadapter=2: T_Adapter_in, S_Adapter, MLP_Adapter, MLP_Adapter_out),
#   each 768->192 (mlp_ratio 0.25) ->768 with biases: 768*192 + 192 + 192*768 + 768 = 295,872
#   x 4 x 12 blocks                                                                     = 14,201,856
#   temporal_embedding, 8 frames x 768 (ViT_Zero_CLIP.forward: added before ln_pre)      =      6,144
#   ln_post (weight + bias)                                                             =      1,536
#   trainable excluding the 400-way classifier                                          = 14,209,536
# STDHA (shift_div=12, divide_head=False: 1 of 12 heads looks back, 1 forward) adds no parameters; adapter_scale
# 0.5; dropout 0.1 inside each adapter; I3D head on the frame-averaged CLS (768-d).
ZEROI2V = _register(
    PublishedDesign(
        "zeroi2v",
        "adapter",
        {
            "adapter": {
                "variant": "linear",
                "width": 192,
                "scale": 0.5,
                "dropout": 0.1,
                "stdha": 12,
                "temporal_embedding": 8,
                "train_post_norm": True,
                "space": "cls",
            }
        },
        source=(
            "ZeroI2V (Li et al., ECCV 2024), official leexinhao/ZeroI2V vit_zero_clip.py: STDHA (shift_div 12: one "
            "head's keys/values from frame t-1, one from t+1, zero parameters) and four linear adapters per block "
            "(before/after attention, before/after MLP; 768->192->768, scale 0.5), mergeable into the frozen "
            "weights after training (merge_linear_adapters); plus an 8-frame temporal embedding (added to every "
            "token before ln_pre, as ViT_Zero_CLIP.forward does) and ln_post (init_weights leaves both trainable): "
            "12 x 4 x 295,872 + 8 x 768 + 1,536 = 14,209,536; frame CLS averaged, linear classifier on 768-d."
        ),
    )
)


def preset_names() -> list[str]:
    return registry.names("preset")
