"""R²-Tuning: a reversed recurrent side block over the frozen backbone's last blocks.

Liu et al., "R²-Tuning: Efficient Image-to-Video Transfer Learning for Video Temporal Grounding", ECCV 2024;
official code yeliudev/R2-Tuning, ``models/adapter.py`` (``R2Block``) and ``configs/_base_/models/model.py``
(``dims=256, k=4, dropout=0.5, use_tef=True``; temporal layer: 8 heads, MLP ratio 4, post-norm, ReLU, order
cross-attention -> self-attention -> FFN).

One block, shared across steps, walks the last ``k`` backbone blocks from the deepest to the shallowest
(coarse to fine). At each step, for block ``l``:

1. its frame tokens (CLS and patches), each with the frame's normalised start/end time appended (TEF), are mapped
   to the side width by ``LN -> Dropout -> Linear -> ReLU -> LN -> Dropout -> Linear`` (shared across steps);
2. *query-modulated spatial pooling*: every query token attends over the frame's tokens; the attended tokens plus
   the query are max-pooled over the queries and added to the frame's CLS token, scaled by ``tanh(scale_l)``
   (zero at first, so pooling opens gradually);
3. from the second step on, a learned gate ``sigmoid(gate_l)`` mixes this with the previous step's state;
4. a temporal transformer layer (cross-attention to the query tokens, self-attention over time with sinusoidal
   time positions, FFN) refines the frame sequence into the new state.

The last state is ``frames [B,T,W]``; its mean over time is ``video [B,W]`` (``output="side"``, as published).
With ``output="joint"`` (the default) the state lands in the joint space as a zero-initialised linear map added to
the ILFM's frame embeddings, ``frames = embeds + Linear(W, E)(state)`` (a deviation: R² feeds its own grounding
heads; here every arm's features must start in the ILFM's space, and the side width W is not the token width D
that the ILFM's projection takes), so the head starts at mean pooling of the frame embeddings.

Deviations, and why:

* Queries. R² pools with the query sentence's tokens at the text tower's matching layer. Our heads see only the
  final text tokens (:class:`TextFeatures`), so with ``text=True`` every step uses those (mapped once); padded
  tokens are masked out of the pooling maximum and the cross-attention (R² lets them in). The default is
  text-free — ``queries`` learnable tokens stand in for the sentence — so that the head serves every task,
  recognition included, and stays a plain frozen-feature head.
* DropPath (0.1) in the temporal layer is left out; position encodings follow DETR's normalised sine form.
* Without a CLS token (SigLIP), the mean token is the frame's base feature.
* R²'s grounding parts (feature pyramid, heads, losses) belong to the grounding task, not to this paradigm.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import VideoFeatures, VideoHead
from videoadapt.paradigms.side_tuning.config import SideTuningConfig, block_tokens


def _projection(in_dim: int, width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(in_dim),
        nn.Dropout(dropout),
        nn.Linear(in_dim, width),
        nn.ReLU(),
        nn.LayerNorm(width),
        nn.Dropout(dropout),
        nn.Linear(width, width),
    )


def sine_positions(length: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """DETR-style normalised sinusoidal encoding of positions 1..T scaled to (0, 2pi]: ``[T, W]``."""
    position = torch.arange(1, length + 1, device=device, dtype=torch.float32) / (length + 1e-6) * 2 * math.pi
    frequency = 10000 ** (2 * (torch.arange(width, device=device) // 2) / width)
    angles = position[:, None] / frequency
    return torch.where(torch.arange(width, device=device) % 2 == 0, angles.sin(), angles.cos()).to(dtype)


class TemporalLayer(nn.Module):
    """Post-norm decoder layer in R²'s order: cross-attention to the queries, self-attention over time, FFN."""

    def __init__(self, width: int, heads: int, mlp_factor: float) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        hidden = round(mlp_factor * width)
        self.ffn = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)

    def forward(
        self, x: torch.Tensor, position: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor | None
    ) -> torch.Tensor:
        x = self.norm1(x + self.cross(x + position, memory, memory, key_padding_mask=padding, need_weights=False)[0])
        q = x + position
        x = self.norm2(x + self.self_attn(q, q, x, need_weights=False)[0])
        return self.norm3(x + self.ffn(x))


class R2TuningHead(VideoHead):
    """R²-Tuning's recurrent side block as a :class:`VideoHead` of width ``config.width``."""

    needs_layers = True

    def __init__(self, ilfm: ImageLanguageModel, config: SideTuningConfig) -> None:
        super().__init__()
        dims = ilfm.dims
        self.config = config
        self.width = self.side_width = width = config.width
        self.blocks = dims.layers
        self.k = config.side_layers(dims.layers)
        self.has_cls = dims.has_cls
        heads = config.heads or 8
        if width % heads:
            raise VideoadaptError(f"side_tuning r2_tuning: {heads} heads do not divide the width {width}")
        self.needs_text = config.text  # instance attribute: the encoder then insists on text=
        self.video_map = _projection(dims.width + (2 if config.tef else 0), width, config.dropout)
        if config.text:
            self.query_map = _projection(dims.text_width, width, config.dropout)
        else:
            self.query = nn.Parameter(torch.randn(config.queries, width) * 0.02)
        self.v_map = nn.Linear(width, width)
        self.q_map = nn.Linear(width, width)
        self.scale = nn.Parameter(torch.zeros(self.k))
        if self.k > 1:
            self.gate = nn.Parameter(torch.zeros(self.k - 1))
        self.temporal = TemporalLayer(width, heads, config.mlp_factor)
        if config.output == "joint":
            self.to_joint = nn.Linear(width, dims.embed_dim)
            nn.init.zeros_(self.to_joint.weight)  # starts at the ILFM's frame embeddings
            nn.init.zeros_(self.to_joint.bias)
            self.width = dims.embed_dim

    def _queries(self, b: int, text: TextFeatures | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Query tokens ``[B,Lq,W]`` and their padding mask (True = padding), or None when there is none."""
        if not self.config.text:
            return self.query.unsqueeze(0).expand(b, -1, -1), None
        if text is None:
            raise VideoadaptError("side_tuning r2_tuning with text=True pools with the query text; pass text=")
        tokens = text.tokens.to(self.v_map.weight.dtype)
        if tokens.shape[0] != b:
            raise VideoadaptError(f"side_tuning r2_tuning: {tokens.shape[0]} texts for {b} videos; give one each")
        return self.query_map(tokens), text.mask == 0

    def forward(
        self, features: FrameFeatures, video: torch.Tensor | None = None, text: TextFeatures | None = None
    ) -> VideoFeatures:
        layers = block_tokens(features, self.blocks, "r2_tuning")
        dtype = self.v_map.weight.dtype
        b, t, n, _ = layers[-1].shape
        w = self.side_width
        queries, padding = self._queries(b, text)
        pooled_queries = queries.repeat_interleave(t, dim=0)  # [BT, Lq, W]
        mapped_queries = self.q_map(pooled_queries)
        position = sine_positions(t, w, queries.device, dtype)
        if self.config.tef:
            start = torch.arange(t, device=queries.device, dtype=dtype) / t
            tef = torch.stack([start, start + 1 / t], dim=-1).view(1, t, 1, 2).expand(b, t, n, 2)
        state = None
        # Coarse to fine: from the deepest block read back to the shallowest (R²'s "reversed" recurrence).
        for step, index in enumerate(range(self.blocks - 1, self.blocks - 1 - self.k, -1)):
            tokens = layers[index].to(dtype)
            if self.config.tef:
                tokens = torch.cat([tokens, tef], dim=-1)
            mapped = self.video_map(tokens).reshape(b * t, n, w)  # [BT, N, W]
            attention = (mapped_queries @ self.v_map(mapped).transpose(1, 2) / math.sqrt(w)).softmax(-1)
            attended = attention @ mapped + pooled_queries  # [BT, Lq, W]
            if padding is not None:
                attended = attended.masked_fill(padding.repeat_interleave(t, dim=0)[..., None], float("-inf"))
            base = mapped[:, 0] if self.has_cls else mapped.mean(dim=1)
            # scale/gate are indexed by block depth (0 = shallowest read), as in R2Block.
            depth = self.k - 1 - step
            current = (base + attended.amax(dim=1) * self.scale[depth].tanh()).view(b, t, w)
            if state is not None:
                gate = self.gate[depth].sigmoid()
                current = gate * current + (1 - gate) * state
            state = self.temporal(current, position, queries, padding)
        assert state is not None
        if self.config.output == "joint":
            state = features.embeds.to(dtype) + self.to_joint(state)
        return VideoFeatures(frames=state, video=state.mean(dim=1), patches=features.patches)
