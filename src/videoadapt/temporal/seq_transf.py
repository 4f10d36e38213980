"""CLIP4Clip's seqTransf as published: a temporal transformer initialised from CLIP's text tower.

Luo et al., "CLIP4Clip: An Empirical Study of CLIP for End to End Video Clip Retrieval", Neurocomputing 2022;
official code ArrowLuo/CLIP4Clip ``modules/modeling.py``. In ``CLIP4Clip.__init__`` the sequential head is
``frame_position_embeddings = nn.Embedding(max_position_embeddings, hidden_size)`` with ``max_position_embeddings``
set to CLIP's text ``context_length`` (77), and ``transformerClip``, ``cross_num_hidden_layers`` (4) residual
attention blocks of the text tower's width and heads. ``CLIP4ClipPreTrainedModel.from_pretrained`` then fills both
from CLIP's state dict (the "initialization trick"): ``positional_embedding`` -> ``frame_position_embeddings``,
``transformer.resblocks.{i}`` for ``i < cross_num_hidden_layers`` -> ``transformerClip.resblocks.{i}``.
``_loose_similarity`` runs ``transformerClip(frames + positions)`` (no causal mask: only the video mask) and adds
the frames once more, ``visual_output + visual_output_original``.

So the module starts as the text tower's first blocks applied to the frame embeddings — not as the identity: at
initialisation its output is ``2 x frames + positions + what the copied blocks add``. That is the published
design, which :class:`~videoadapt.temporal.transformer.TemporalTransformer` (zero-initialised branches, the
default elsewhere) deliberately is not. Only a text tower of the joint width with CLIP-style blocks
(``layer_norm1``, ``self_attn``, ``layer_norm2``, ``mlp``, called as ``block(hidden, attention_mask)``) can be
copied; the head that builds this module checks that.

Deviation: CLIP4Clip L2-normalises every frame before mean pooling; here the video embedding is the plain mean of
the output frames, as every head of this package gives it (tasks normalise where their loss needs it).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from videoadapt.errors import VideoadaptError


class SeqTransf(nn.Module):
    """``frames [B,T,E] -> (frames + blocks(frames + positions), their mean)`` with copies of the first ``layers``
    ``text_blocks`` and the first ``max_frames`` rows of ``text_positions`` (default: all of them, 77 on CLIP)."""

    def __init__(
        self,
        text_blocks: Sequence[nn.Module],
        text_positions: torch.Tensor,
        layers: int = 4,
        max_frames: int | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= layers <= len(text_blocks):
            raise VideoadaptError(f"seqtransf: layers must be in 1..{len(text_blocks)} (text blocks), got {layers}")
        rows = text_positions.shape[0]
        max_frames = rows if max_frames is None else max_frames
        if not 1 <= max_frames <= rows:
            raise VideoadaptError(f"seqtransf: max_frames must be in 1..{rows} (text positions), got {max_frames}")
        # Copies: the text tower keeps its own (frozen) blocks; these train as the video head.
        self.blocks = nn.ModuleList(copy.deepcopy(block) for block in list(text_blocks)[:layers])
        self.position = nn.Parameter(text_positions[:max_frames].detach().clone())
        for parameter in self.parameters():
            parameter.requires_grad_(True)
        self.max_frames = max_frames

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = frames.shape[1]
        if t > self.max_frames:
            raise VideoadaptError(f"seqtransf was built for at most {self.max_frames} frames, got {t}")
        hidden = frames + self.position[:t].to(frames.dtype)
        for block in self.blocks:
            out = block(hidden, None)  # no mask: every frame sees every frame, as in CLIP4Clip
            hidden = out[0] if isinstance(out, tuple) else out
        out = frames + hidden  # visual_output + visual_output_original
        return out, out.mean(dim=1)
