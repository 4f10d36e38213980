"""Moment-DETR: a DETR-style encoder-decoder over video clips and query words for temporal grounding.

"Detecting Moments and Highlights in Videos via Natural Language Queries" (Lei et al., NeurIPS 2021); official code
jayleicn/moment_detr: ``moment_detr/model.py`` (``MomentDETR``, ``LinearLayer``, ``MLP``), ``transformer.py`` (the
DETR transformer, post-LN, ``return_intermediate_dec=True``), ``position_encoding.py`` (``PositionEmbeddingSine``
with ``normalize=True``), defaults in ``config.py`` and the released ``run_on_video/moment_detr_ckpt/opt.json``.

The model, as in the official code:

* video clip features (L2-normalised, as the dataset does unless ``--no_norm_vfeat``) with the 2-d temporal
  endpoint feature ``tef`` = (t/T, (t+1)/T) appended (``ctx_mode=video_tef``), and the query's token states
  (L2-normalised) go through ``n_input_proj`` LinearLayers each (LayerNorm -> Dropout -> Linear -> ReLU, no ReLU
  after the last) into the hidden size;
* the concatenation [video; text] with sine positions on the video part and zeros on the text part
  (``use_txt_pos=False``) is encoded by post-LN transformer layers (positions added to queries and keys only);
* a decoder of post-LN layers turns zero targets with learned query positions (``query_embed``) into moment
  slots, reading the whole memory (video and text); a shared final LayerNorm is applied to every layer's output;
* heads: ``span_embed`` (3-layer MLP -> sigmoid (center, width)), ``class_embed`` (2 logits; the official
  criterion trains index 0 as *foreground* — ``SetCriterion.foreground_label = 0`` — although a comment in
  ``model.py`` says the opposite), ``saliency_proj`` (one score per encoded video clip); with
  ``contrastive_align`` the three 64-d projections of the alignment loss (off by default, as officially).

Deviations: the unused ``txt_position_embed`` (a ``TrainablePositionalEncoding`` of ``max_q_l`` x hidden +
LayerNorm, 8,704 parameters at the defaults, built by the official code even with ``use_txt_pos=False``) is not
built, so that every trainable parameter receives a gradient; ``span_loss_type="ce"`` and ``pre_norm`` are not
offered (the official defaults are ``l1`` and post-LN); padding masks for videos are not needed (a batch here has
T frames per video). Module names mirror the official ones (``input_vid_proj.0.LayerNorm``, ``transformer.
decoder.layers.0.multihead_attn``, ``span_embed.layers.2``, ...), so an official state dict maps key for key
except for the dropped ``txt_position_embed.*``.

Training: ``moment_detr_criterion.py`` holds the official loss — ``MomentDETRMatcher`` (Hungarian matching of slots
to ground-truth moments on L1, gIoU and foreground probability) and ``MomentDETRCriterion`` (span L1 and gIoU,
foreground/background cross-entropy with ``eos_coef``, saliency hinge, auxiliary losses of the earlier decoder
layers, weighted total), which reads this model's ``outputs`` dict directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import FrameFeatures, TextFeatures


class LinearLayer(nn.Module):
    """Official ``LinearLayer``: LayerNorm(in) -> Dropout -> Linear -> optional ReLU."""

    def __init__(self, in_width: int, out_width: int, dropout: float, relu: bool) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(in_width)  # noqa: N815 — the official attribute name (state-dict keys)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_width, out_width))
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(self.LayerNorm(x))
        return F.relu(x) if self.relu else x


class MLP(nn.Module):
    """Official ``MLP`` (DETR's FFN): ``layers`` Linear layers with ReLU between them."""

    def __init__(self, in_width: int, hidden: int, out_width: int, layers: int) -> None:
        super().__init__()
        widths = [in_width] + [hidden] * (layers - 1) + [out_width]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def sine_positions(length: int, width: int, device: torch.device, temperature: float = 10000.0) -> torch.Tensor:
    """Official ``PositionEmbeddingSine(width, normalize=True)`` for an unpadded sequence: positions 1..L scaled to
    (0, 2*pi], interleaved sin/cos of ``width`` frequencies. Returns ``[L, width]``."""
    x = torch.arange(1, length + 1, dtype=torch.float32, device=device)
    x = x / (length + 1e-6) * 2 * math.pi
    dim_t = torch.arange(width, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / width)
    angles = x[:, None] / dim_t
    return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)


def _with_position(x: torch.Tensor, position: torch.Tensor | None) -> torch.Tensor:
    return x if position is None else x + position


class EncoderLayer(nn.Module):
    """DETR ``TransformerEncoderLayer.forward_post``: positions on queries and keys, not on values."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(width, ffn)
        self.linear2 = nn.Linear(ffn, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, padding: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        q = k = _with_position(src, position)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, key_padding_mask=padding)[0]))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class DecoderLayer(nn.Module):
    """DETR ``TransformerDecoderLayer.forward_post``: self-attention among slots, cross-attention to the memory."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(width, ffn)
        self.linear2 = nn.Linear(ffn, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        padding: torch.Tensor,
        position: torch.Tensor,
        query_position: torch.Tensor,
    ) -> torch.Tensor:
        q = k = _with_position(tgt, query_position)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt)[0]))
        attended = self.multihead_attn(
            _with_position(tgt, query_position), _with_position(memory, position), memory, key_padding_mask=padding
        )[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class _Stack(nn.Module):
    def __init__(self, layers: list[nn.Module], norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm


class Transformer(nn.Module):
    """DETR ``Transformer`` with ``normalize_before=False`` and ``return_intermediate_dec=True``: no encoder norm,
    a decoder norm applied to every decoder layer's output. Returns ``(hs [L,B,Q,H], memory [B,S,H])``."""

    def __init__(self, width: int, heads: int, encoder_layers: int, decoder_layers: int, ffn: int, dropout: float):
        super().__init__()
        self.encoder = _Stack([EncoderLayer(width, heads, ffn, dropout) for _ in range(encoder_layers)])
        self.decoder = _Stack(
            [DecoderLayer(width, heads, ffn, dropout) for _ in range(decoder_layers)], nn.LayerNorm(width)
        )
        for parameter in self.parameters():  # DETR's _reset_parameters
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(
        self, src: torch.Tensor, padding: torch.Tensor, query_position: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, padding, position)
        # repeat, not expand: a view of a parameter made under no_grad still reports requires_grad, which trips
        # torch's FlopCounterMode module tracker (videoadapt params).
        query_position = query_position.unsqueeze(0).repeat(src.shape[0], 1, 1)
        tgt = torch.zeros_like(query_position)
        states = []
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory, padding, position, query_position)
            states.append(self.decoder.norm(tgt))
        return torch.stack(states), memory


class MomentDETR(nn.Module):
    """``(clip features [B,T,F], FrameFeatures, TextFeatures) -> (frames, video, outputs)``.

    ``outputs``: ``spans`` ``[B,Q,2]`` (normalised center, width in [0,1]), ``span_logits`` ``[B,Q,2]`` (index 0 =
    foreground), ``saliency`` ``[B,T]``, ``queries`` ``[B,Q,H]`` (last decoder layer), ``aux_spans`` and
    ``aux_span_logits`` ``[L-1,B,Q,2]`` (earlier decoder layers, for the auxiliary losses the official training
    uses by default), ``video_memory`` ``[B,T,H]`` (encoded clips); with ``contrastive_align``: ``align_queries``
    ``[B,Q,c]``, ``align_text`` ``[B,L,c]``, ``align_video`` ``[B,T,c]`` (L2-normalised).

    frames / video: the input clip features unchanged and their mean. Moment-DETR's product is the span set; its
    encoded tokens live in its own 256-d space, and projecting them into the joint space would add parameters the
    published design does not have, so a task that reads the usual fields sees mean pooling of the frozen frames.
    """

    takes_features = True
    needs_text = True

    def __init__(
        self,
        feature_width: int,
        text_width: int,
        hidden: int = 256,
        heads: int = 8,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        ffn: int = 1024,
        queries: int = 10,
        dropout: float = 0.1,
        input_dropout: float = 0.5,
        n_input_proj: int = 2,
        tef: bool = True,
        normalize: bool = True,
        contrastive_align: bool = False,
        contrastive_dim: int = 64,
    ) -> None:
        super().__init__()
        if not 1 <= n_input_proj <= 3:
            raise VideoadaptError(f"moment_detr: n_input_proj must be 1, 2 or 3, got {n_input_proj}")
        self.tef, self.normalize, self.contrastive_align = tef, normalize, contrastive_align
        video_width = feature_width + (2 if tef else 0)
        relu = [True] * 3
        relu[n_input_proj - 1] = False  # official: no ReLU after the last input projection
        self.input_txt_proj = nn.Sequential(
            *[
                LinearLayer(text_width if i == 0 else hidden, hidden, input_dropout, relu[i])
                for i in range(n_input_proj)
            ]
        )
        self.input_vid_proj = nn.Sequential(
            *[
                LinearLayer(video_width if i == 0 else hidden, hidden, input_dropout, relu[i])
                for i in range(n_input_proj)
            ]
        )
        self.transformer = Transformer(hidden, heads, encoder_layers, decoder_layers, ffn, dropout)
        self.query_embed = nn.Embedding(queries, hidden)
        self.span_embed = MLP(hidden, hidden, 2, 3)
        self.class_embed = nn.Linear(hidden, 2)
        self.saliency_proj = nn.Linear(hidden, 1)
        if contrastive_align:
            self.contrastive_align_projection_query = nn.Linear(hidden, contrastive_dim)
            self.contrastive_align_projection_txt = nn.Linear(hidden, contrastive_dim)
            self.contrastive_align_projection_vid = nn.Linear(hidden, contrastive_dim)

    def forward(
        self, frames: torch.Tensor, features: FrameFeatures | None = None, text: TextFeatures | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if text is None:
            raise VideoadaptError("moment_detr grounds a text query in the video: pass text= (one query per video)")
        b, t = frames.shape[:2]
        if text.tokens.shape[0] != b:
            raise VideoadaptError(f"moment_detr: {b} videos but {text.tokens.shape[0]} query texts; give one each")
        video_in = F.normalize(frames, dim=-1) if self.normalize else frames
        words = text.tokens.to(frames.dtype)
        words = F.normalize(words, dim=-1) if self.normalize else words
        if self.tef:
            start = torch.arange(t, device=frames.device, dtype=frames.dtype) / t
            tef = torch.stack((start, start + 1.0 / t), dim=1)  # official start_end_dataset: [t/T, (t+1)/T]
            video_in = torch.cat((video_in, tef.expand(b, -1, -1)), dim=-1)
        src_vid = self.input_vid_proj(video_in)
        src_txt = self.input_txt_proj(words)
        src = torch.cat((src_vid, src_txt), dim=1)
        valid = torch.cat((torch.ones(b, t, dtype=torch.bool, device=frames.device), text.mask.bool()), dim=1)
        position = torch.cat(
            (
                sine_positions(t, src.shape[-1], frames.device).to(src.dtype).expand(b, -1, -1),
                torch.zeros_like(src_txt),  # use_txt_pos=False: text tokens carry no position
            ),
            dim=1,
        )
        hs, memory = self.transformer(src, ~valid, self.query_embed.weight, position)
        logits = self.class_embed(hs)
        spans = self.span_embed(hs).sigmoid()
        video_memory = memory[:, :t]
        outputs = {
            "spans": spans[-1],
            "span_logits": logits[-1],
            "saliency": self.saliency_proj(video_memory).squeeze(-1),
            "queries": hs[-1],
            "aux_spans": spans[:-1],
            "aux_span_logits": logits[:-1],
            "video_memory": video_memory,
        }
        if self.contrastive_align:
            outputs["align_queries"] = F.normalize(self.contrastive_align_projection_query(hs[-1]), dim=-1)
            outputs["align_text"] = F.normalize(self.contrastive_align_projection_txt(memory[:, t:]), dim=-1)
            outputs["align_video"] = F.normalize(self.contrastive_align_projection_vid(video_memory), dim=-1)
        return frames, frames.mean(dim=1), outputs
