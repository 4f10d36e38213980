"""A video Q-Former: learnable query tokens that read every frame's patch tokens.

BLIP-2 (Li et al., ICML 2023; LAVIS ``lavis/models/blip2_models/blip2.py`` ``init_Qformer`` and ``Qformer.py``)
bridges a frozen image encoder with 32 learnable query tokens (initialised N(0, 0.02)) that self-attend among
themselves and cross-attend to the image tokens (after a trainable ``ln_vision``), cross-attention in every other
BERT layer (``cross_attention_freq=2``). Video-LLaMA (Zhang et al., EMNLP 2023 demo; ``video_llama/models/
video_llama.py``) makes it a video module: learned frame-position embeddings (``video_frame_position_embedding``)
are added to each frame's tokens, all frames are flattened into one memory, and a 2-layer Q-Former with
cross-attention in *every* layer (``cross_attention_freq=1``) reads it. The survey (Sec. III-A2) names this the
post-network design that "utilises a set of learnable queries to interact with features from all video frames".

As built here:

* memory = ``ln_vision(patch tokens) + frame_position[t]``, flattened to ``[B, T*P, D]``; the CLS token is left
  out because ``FrameFeatures.cls`` is a post-LN pooled token (an attention-pool output on SigLIP), not one of the
  grid tokens the queries should attend over;
* ``queries`` learnable tokens of ``width`` W (default D, which is the 768 of BLIP-2's BERT on ViT-B) go through
  ``layers`` pre-LN layers: self-attention, cross-attention to the memory (every ``cross_every`` layers; default 1
  as in Video-LLaMA's video Q-Former, 2 gives BLIP-2's spacing), GELU MLP of 4W; then a final LayerNorm. BLIP-2
  uses post-LN because it starts from BERT weights; trained from scratch, pre-LN is the stabler choice and matches
  :class:`~videoadapt.temporal.TemporalTransformer`;
* video = mean over time of the input frame features + ``out_proj(mean over queries)``, with ``out_proj`` (W -> the
  feature width) initialised to zero: at initialisation the video vector is exactly mean pooling of the pretrained
  frame embeddings, so retrieval and classification start from the image model's answer and the Q-Former's
  contribution grows from there (the zero-initialised residual of ControlNet / LLaMA-Adapter's zero gating). The
  frames pass through unchanged (their per-frame meaning is the image model's).
"""

from __future__ import annotations

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, TextFeatures


def _fit_heads(width: int, heads: int) -> int:
    # The largest head count <= heads that divides the width (tiny test models have odd widths).
    return next(h for h in range(min(heads, width), 0, -1) if width % h == 0)


class _QFormerLayer(nn.Module):
    def __init__(self, width: int, memory_width: int, heads: int, cross: bool, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross = cross
        if cross:
            self.norm_cross = nn.LayerNorm(width)
            self.cross_attn = nn.MultiheadAttention(
                width, heads, dropout=dropout, kdim=memory_width, vdim=memory_width, batch_first=True
            )
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width)
        )

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm_self(queries)
        queries = queries + self.self_attn(x, x, x, need_weights=False)[0]
        if self.cross:
            x = self.norm_cross(queries)
            queries = queries + self.cross_attn(x, memory, memory, need_weights=False)[0]
        return queries + self.mlp(self.norm_mlp(queries))


class QFormer(nn.Module):
    """``(frame features [B,T,F], FrameFeatures) -> (frames [B,T,F], video [B,F], {"queries": [B,N,W]})``.

    ``feature_width`` F is the width of the features the head pools (the joint space E, or the CLS width D);
    ``patch_width`` is the vision token width D the queries cross-attend to.
    """

    takes_features = True  # TemporalHead passes FrameFeatures (patch tokens), not only the pooled frame features
    needs_text = False

    def __init__(
        self,
        feature_width: int,
        patch_width: int,
        queries: int = 32,
        layers: int = 2,
        heads: int = 12,
        width: int | None = None,
        cross_every: int = 1,
        max_frames: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if queries < 1 or layers < 1 or cross_every < 1:
            raise VideoadaptError("qformer: queries, layers and cross_every must be at least 1")
        width = width or patch_width
        heads = _fit_heads(width, heads)
        self.max_frames = max_frames
        self.query_tokens = nn.Parameter(torch.empty(1, queries, width))
        nn.init.normal_(self.query_tokens, std=0.02)  # BLIP-2: initializer_range of BERT
        self.ln_vision = nn.LayerNorm(patch_width)
        self.frame_position = nn.Parameter(torch.empty(max_frames, patch_width))
        nn.init.normal_(self.frame_position, std=0.01)
        # Layer i cross-attends when i % cross_every == 0 (BLIP-2's convention: layers 0, 2, 4, ... at freq 2).
        self.layers = nn.ModuleList(
            _QFormerLayer(width, patch_width, heads, cross=i % cross_every == 0, dropout=dropout) for i in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.out_proj = nn.Linear(width, feature_width)
        nn.init.zeros_(self.out_proj.weight)  # the video vector starts as mean pooling (module docstring)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self, frames: torch.Tensor, features: FrameFeatures, text: TextFeatures | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        patches = features.patches  # [B,T,P,D]
        b, t = patches.shape[:2]
        if t > self.max_frames:
            raise VideoadaptError(f"qformer was built for at most {self.max_frames} frames, got {t}")
        memory = self.ln_vision(patches) + self.frame_position[:t, None].to(patches.dtype)
        memory = memory.flatten(1, 2)  # [B, T*P, D]: the queries see all frames at once
        # repeat, not expand: a view of a parameter made under no_grad still reports requires_grad, which trips
        # torch's FlopCounterMode module tracker (videoadapt params).
        queries = self.query_tokens.to(patches.dtype).repeat(b, 1, 1)
        for layer in self.layers:
            queries = layer(queries, memory)
        queries = self.norm(queries)
        video = frames.mean(dim=1) + self.out_proj(queries.mean(dim=1))
        return frames, video, {"queries": queries}
