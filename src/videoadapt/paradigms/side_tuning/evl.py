"""EVL: a side transformer decoder over the frozen backbone's last blocks.

Lin et al., "Frozen CLIP Models are Efficient Video Learners", ECCV 2022; official code
OpenGVLab/efficient-video-recognition, ``model.py`` (``EVLDecoder``, ``TemporalCrossAttention``, ``EVLTransformer``)
and ``vision_transformer.py`` (``TransformerDecoderLayer``, ``Attention``).

Per decoder layer i, reading backbone block ``l = L - k + i`` (shallow to deep):

* the block's output tokens ``[B,T,N,D]`` get three temporal terms added: a depthwise temporal ``Conv1d``
  (kernel 3) of the tokens, a learned temporal position embedding ``[T,D]``, and a temporal cross-attention
  (below);
* a learnable query token ``[D]`` is updated by one pre-LN decoder layer (cross-attention from the query to all
  ``T*N`` enriched tokens, QuickGELU MLP with dropout; LayerNorms on the query, the memory and before the MLP).

The video feature is ``LayerNorm(query)``; EVL's classifier ``LayerNorm -> Dropout -> Linear`` is split so that the
LayerNorm stays here and the task brings the linear classifier (the 0.5 dropout before it is the task's choice).
That is ``output="side"`` (width D, EVL's fresh LayerNorm). With ``output="joint"`` (the default) the LayerNorm is
a trainable copy of the ILFM's post-LayerNorm — the norm EVL's stands in for, since EVL loads CLIP without ``ln_post``
and ``proj`` (``weight_loaders.py``) and normalises its own query where CLIP normalised its CLS token — followed by
a trainable copy of the ILFM's projection, so that frames and video land in the joint space (width E) as every
other arm's do; on a model without a per-token projection (SigLIP, where D = E) the fresh LayerNorm alone.

Temporal cross-attention: for each patch token of frame t, the attention map between its query and the keys of
frame t-1 (t+1) in the backbone block's own attention, softmaxed over the key patches and averaged over heads,
weighs a learned table ``w1`` (``w2``) indexed by the relative 2-D offset between the two patches
(``(2h-1)(2w-1)`` rows, 729 on a 14x14 grid). CLS (or any prefix token) gets nothing.

Deviations, and why:

* EVL hooks the backbone to return each block's q/k. To keep the backbone untouched and the encoder cacheable, the
  head recomputes them from the block's *input* tokens (the previous block's output, ``layers[l-1]``) with the
  block's own frozen ``layer_norm1`` and ``q_proj``/``k_proj``, under ``no_grad`` — the same numbers. The frozen
  blocks are kept in a plain list, so they are neither parameters of the head nor saved with it.
* The temporal position table is interpolated when a clip has a different number of frames than ``frames``
  (EVL requires exactly ``num_frames``).
* ``frames`` of the output (per-frame features, which EVL does not produce) are the last layer's enriched CLS
  tokens (the mean token on backbones without CLS) through the same final LayerNorm.
* The query token starts at zero: EVL defines a normal(0.02) initialiser for it but never calls it.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, ImageLanguageModel, TextFeatures
from videoadapt.paradigms.base import VideoFeatures, VideoHead
from videoadapt.paradigms.side_tuning.config import SideTuningConfig, block_tokens


class QuickGELU(nn.Module):
    """CLIP's activation, which EVL's decoder MLP keeps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def relative_index(grid: tuple[int, int]) -> torch.Tensor:
    """``[P,P]`` index of the relative offset ``(qi-ki, qj-kj)`` of two patches into a ``(2h-1)(2w-1)`` table."""
    rows, cols = grid
    position = torch.arange(rows * cols)
    i, j = position // cols, position % cols
    return (i[:, None] - i[None, :] + rows - 1) * (2 * cols - 1) + (j[:, None] - j[None, :] + cols - 1)


class TemporalCrossAttention(nn.Module):
    """EVL's temporal cross-attention between neighbouring frames (``model.py`` ``TemporalCrossAttention``)."""

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.grid = grid
        size = (2 * grid[0] - 1) * (2 * grid[1] - 1)
        # Zero tables, as in EVL: the module adds nothing until trained.
        self.w1 = nn.Parameter(torch.zeros(size, dim))  # query frame t, keys of frame t-1
        self.w2 = nn.Parameter(torch.zeros(size, dim))  # query frame t, keys of frame t+1
        # A plain tensor rather than a buffer: it is a constant of the grid, not state to save with the weights.
        self._index = relative_index(grid)

    def _half(self, q: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # q, k: [B, T', P, H, Dh] patch tokens of the query frames and of their neighbours.
        attn = torch.einsum("btqhd,btkhd->btqkh", q / math.sqrt(q.shape[-1]), k)
        attn = attn.softmax(dim=-2).mean(dim=-1)  # softmax over key patches, mean over heads: [B, T', P, P]
        if self._index.device != w.device:
            self._index = self._index.to(w.device)
        return torch.einsum("btqk,qkc->btqc", attn, w[self._index])

    def forward(self, q: torch.Tensor, k: torch.Tensor, prefix: int) -> torch.Tensor:
        """``q``, ``k``: ``[B,T,N,H,Dh]`` (``prefix`` leading non-patch tokens); returns ``[B,T,N,C]``."""
        b, t, n = q.shape[:3]
        if n - prefix != self.grid[0] * self.grid[1]:
            raise VideoadaptError(f"evl: {n - prefix} patch tokens do not fit the {self.grid} grid")
        out = q.new_zeros(b, t, n, self.w1.shape[1], dtype=self.w1.dtype)
        if t > 1:
            qp, kp = q[:, :, prefix:], k[:, :, prefix:]
            out[:, 1:, prefix:] = out[:, 1:, prefix:] + self._half(qp[:, 1:], kp[:, :-1], self.w1)
            out[:, :-1, prefix:] = out[:, :-1, prefix:] + self._half(qp[:, :-1], kp[:, 1:], self.w2)
        return out


class DecoderAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (EVL ``vision_transformer.py`` ``Attention``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))
        self.heads = heads
        for linear in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        b, lq, d = x.shape
        h = self.heads
        q = self.q_proj(x).view(b, lq, h, d // h).transpose(1, 2)
        k = self.k_proj(memory).view(b, -1, h, d // h).transpose(1, 2)
        v = self.v_proj(memory).view(b, -1, h, d // h).transpose(1, 2)
        mixed = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(mixed.transpose(1, 2).reshape(b, lq, d))


class DecoderLayer(nn.Module):
    """EVL's ``TransformerDecoderLayer``: ``x += attn(norm1(x), norm3(y)); x += mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_factor: float, dropout: float) -> None:
        super().__init__()
        self.attn = DecoderAttention(dim, heads)
        hidden = round(mlp_factor * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), QuickGELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        for linear in (self.mlp[0], self.mlp[3]):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.norm3(memory))
        return x + self.mlp(self.norm2(x))


def frozen_attention_blocks(ilfm: ImageLanguageModel, indices: list[int]) -> list[nn.Module]:
    """The backbone blocks whose q/k EVL recomputes; refuses blocks without CLIP-style parts."""
    blocks = ilfm.vision_blocks()
    chosen = [blocks[i] for i in indices]
    for block in chosen:
        attention = getattr(block, "self_attn", None)
        if not hasattr(block, "layer_norm1") or not all(
            hasattr(attention, a) for a in ("q_proj", "k_proj", "num_heads")
        ):
            raise VideoadaptError(
                f"side_tuning evl: {type(block).__name__} lacks layer_norm1/self_attn.q_proj/k_proj; only CLIP-style "
                "blocks are supported (or set temporal_cross_attention=False)"
            )
    return chosen


class EVLHead(VideoHead):
    """EVL's side decoder as a :class:`VideoHead` of width E (``output="joint"``) or D (``output="side"``)."""

    needs_layers = True

    def __init__(self, ilfm: ImageLanguageModel, config: SideTuningConfig) -> None:
        super().__init__()
        dims = ilfm.dims
        self.width = dims.width
        d = dims.width
        self.prefix = 1 if dims.has_cls else 0
        self.blocks = dims.layers
        count = config.side_layers(dims.layers)
        self.block_indices = list(range(dims.layers - count, dims.layers))
        self.config = config
        # Plain list: the frozen modules must not become submodules (no parameters counted, nothing saved).
        self._frozen_blocks: list[nn.Module] = (
            frozen_attention_blocks(ilfm, self.block_indices) if config.temporal_cross_attention else []
        )
        backbone_heads = getattr(getattr(ilfm.vision_blocks()[-1], "self_attn", None), "num_heads", None)
        heads = config.heads or backbone_heads or 1
        if d % heads:
            raise VideoadaptError(f"side_tuning evl: {heads} heads do not divide the width {d}")
        self.layers = nn.ModuleList(DecoderLayer(d, heads, config.mlp_factor, config.dropout) for _ in range(count))
        if config.temporal_conv:
            self.temporal_conv = nn.ModuleList(nn.Conv1d(d, d, 3, padding=1, groups=d) for _ in range(count))
        if config.temporal_pos_embed:
            self.temporal_pos_embed = nn.ParameterList(
                nn.Parameter(torch.zeros(config.frames, d)) for _ in range(count)
            )
        if config.temporal_cross_attention:
            self.cross_attention = nn.ModuleList(TemporalCrossAttention(dims.patch_grid, d) for _ in range(count))
        self.cls_token = nn.Parameter(torch.zeros(d))
        self.norm: nn.Module = nn.LayerNorm(d)  # the LayerNorm of EVL's final projection
        self.projection: nn.Module = nn.Identity()
        joint = ilfm.joint_projection() if config.output == "joint" else None
        if joint is not None:
            norm, projection = (copy.deepcopy(m).requires_grad_(True) for m in joint)
            self.norm, self.projection = norm, projection
            self.width = dims.embed_dim
        elif config.output == "joint" and dims.embed_dim != d:
            raise VideoadaptError(
                f"side_tuning evl: {ilfm.name} offers no per-token projection into its joint space ({dims.embed_dim}) "
                f"from the token width {d}; use output 'side'"
            )

    def _position(self, i: int, t: int) -> torch.Tensor:
        table = self.temporal_pos_embed[i]
        if t == table.shape[0]:
            return table
        # Other clip lengths: linear interpolation of the learned table over time.
        return F.interpolate(table.T[None], size=t, mode="linear", align_corners=True)[0].T

    @torch.no_grad()
    def _query_key(self, i: int, inputs: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen block's attention q and k (projected, unscaled, split into heads) from its input tokens."""
        block = self._frozen_blocks[i]
        attention = block.self_attn
        normed = block.layer_norm1(inputs)
        b, t, n, d = inputs.shape
        heads = attention.num_heads
        q = attention.q_proj(normed).view(b, t, n, heads, d // heads)
        k = attention.k_proj(normed).view(b, t, n, heads, d // heads)
        return q.to(dtype), k.to(dtype)

    def forward(
        self, features: FrameFeatures, video: torch.Tensor | None = None, text: TextFeatures | None = None
    ) -> VideoFeatures:
        layers = block_tokens(features, self.blocks, "evl")
        dtype = self.cls_token.dtype
        b, t, n, d = layers[-1].shape
        x = self.cls_token.view(1, 1, d).expand(b, 1, d)
        enriched = layers[-1]
        for i, index in enumerate(self.block_indices):
            tokens = layers[index].to(dtype)
            enriched = tokens
            if self.config.temporal_conv:
                mixed = self.temporal_conv[i](tokens.permute(0, 2, 3, 1).reshape(b * n, d, t))  # [B*N, D, T]
                enriched = enriched + mixed.view(b, n, d, t).permute(0, 3, 1, 2)
            if self.config.temporal_pos_embed:
                enriched = enriched + self._position(i, t).view(1, t, 1, d)
            if self.config.temporal_cross_attention:
                q, k = self._query_key(i, layers[index - 1], dtype)
                enriched = enriched + self.cross_attention[i](q, k, self.prefix)
            x = self.layers[i](x, enriched.flatten(1, 2))
        per_frame = enriched[:, :, 0] if self.prefix else enriched.mean(dim=2)
        frames, pooled = self.projection(self.norm(per_frame)), self.projection(self.norm(x[:, 0]))
        return VideoFeatures(frames=frames, video=pooled, patches=features.patches)
