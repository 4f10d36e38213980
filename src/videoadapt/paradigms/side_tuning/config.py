"""Side-tuning configuration: which side network, how deep, how wide, and where its output lands.

One frozen dataclass for both designs (PEFT-style ``config``); each field says which design reads it. An option
the chosen design does not read is refused (it would change nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from videoadapt.errors import VideoadaptError
from videoadapt.paradigms.options import ParadigmConfig

if TYPE_CHECKING:
    import torch

    from videoadapt.foundation.base import FrameFeatures

DESIGNS = ("evl", "r2_tuning")
EVL_ONLY = ("frames", "temporal_conv", "temporal_pos_embed", "temporal_cross_attention")
R2_ONLY = ("width", "queries", "text", "tef")


@dataclass(frozen=True)
class SideTuningConfig(ParadigmConfig):
    """``design``:

    * ``evl`` — EVL (Lin et al., "Frozen CLIP Models are Efficient Video Learners", ECCV 2022): a transformer
      decoder whose learnable query token attends, layer by layer, to the last ``layers`` backbone blocks' tokens,
      each enriched by a temporal convolution, a temporal position embedding and a temporal cross-attention;
    * ``r2_tuning`` — R²-Tuning (Liu et al., ECCV 2024): one recurrent side block that walks the last ``layers``
      blocks from the deepest to the shallowest, pooling each frame's tokens with (learned or text) queries and
      refining the frame sequence with a temporal transformer layer.

    ``layers``: how many of the last backbone blocks the side network reads (default: 4, or fewer when the
    backbone is shallower; EVL's temporal cross-attention needs the input of each block it reads, so it reads
    blocks 1..L-1 only). ``heads``: attention heads of the side network (EVL: the backbone's, 12 on ViT-B; R²: 8).
    ``mlp_factor``: MLP expansion (4). ``dropout``: EVL's decoder-MLP dropout / R²'s projection dropout (0.5 in
    both official configs).

    EVL only: ``frames`` (rows of the temporal position table, 8 in the official 8-frame model; other clip lengths
    interpolate it), ``temporal_conv``, ``temporal_pos_embed``, ``temporal_cross_attention`` (the official
    ablation switches, all on).

    R² only: ``width`` (side width, 256 officially), ``queries`` (learnable query tokens when no text is used),
    ``text`` (pool with the query text's tokens instead: the head then needs ``text=``), ``tef`` (append each
    frame's normalised start/end time to its tokens, on officially).

    ``output``: where the frame and video features land. ``joint`` (default): in the ILFM's joint space E, so that
    the side-tuning arm starts from the image model's space like every other arm — EVL's final LayerNorm is a
    trainable copy of the ILFM's post-LayerNorm (the norm EVL's ``proj`` LayerNorm stands in for: EVL drops CLIP's
    ``ln_post`` and ``proj`` and puts a fresh LayerNorm before its classifier) followed by a trainable copy of the
    ILFM's visual projection; R²-Tuning's state (its own width) is added to the ILFM's frame embeddings through a
    zero-initialised linear map (its width is not D, so the ILFM's projection cannot take it). ``side``: the side
    network's own width, as published (EVL: D after a fresh LayerNorm; R²: ``width``), for a classifier of that
    width.
    """

    paradigm: ClassVar[str] = "side_tuning"
    design: Literal["evl", "r2_tuning"] = "evl"
    layers: int | None = None
    heads: int | None = None
    mlp_factor: float = 4.0
    dropout: float = 0.5
    # EVL
    frames: int = 8
    temporal_conv: bool = True
    temporal_pos_embed: bool = True
    temporal_cross_attention: bool = True
    # R²-Tuning
    width: int = 256
    queries: int = 4
    text: bool = False
    tef: bool = True
    output: Literal["joint", "side"] = "joint"

    def validate(self) -> None:
        for name in ("layers", "heads"):
            self.require(name, getattr(self, name) is None or getattr(self, name) >= 1, "a positive integer")
        for name in ("frames", "width", "queries"):
            self.require(name, getattr(self, name) >= 1, "a positive integer")
        self.require("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)")
        self.require("mlp_factor", self.mlp_factor > 0, "positive")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SideTuningConfig:
        design = options.get("design", "evl")
        other = {"evl": R2_ONLY, "r2_tuning": EVL_ONLY}.get(design, ())
        unread = [name for name in options if name in other]
        if unread:
            reader = "r2_tuning" if design == "evl" else "evl"
            raise VideoadaptError(f"side_tuning(design={design!r}): options {unread} are read by {reader} only")
        return super().from_options(options)

    def side_layers(self, blocks: int) -> int:
        """How many blocks the side network reads on a backbone of ``blocks`` blocks; refuses too many."""
        # EVL's temporal cross-attention recomputes block l's q/k from block l-1's output; block 0's input (the
        # embeddings) is not among the cached features, so EVL can read at most the last L-1 blocks.
        available = blocks - 1 if self.design == "evl" and self.temporal_cross_attention else blocks
        if available < 1:
            raise VideoadaptError(f"side_tuning: a {blocks}-block backbone leaves no block for the {self.design} side")
        if self.layers is None:
            return min(4, available)
        if self.layers > available:
            why = (
                " (its temporal cross-attention needs each block's input, so block 0 is out)"
                if available < blocks
                else ""
            )
            raise VideoadaptError(
                f"side_tuning: {self.design} reads {self.layers} side layers but this backbone offers {available} "
                f"of its {blocks} blocks{why}"
            )
        return self.layers


def block_tokens(features: FrameFeatures, blocks: int, design: str) -> list[torch.Tensor]:
    """The per-block tokens of ``features`` (one entry per backbone block, ``blocks`` of them), else an error."""
    layers = features.layers
    if layers is None or len(layers) != blocks:
        got = "none" if layers is None else len(layers)
        raise VideoadaptError(
            f"side_tuning {design} reads every block's tokens ({blocks} layers, got {got}); "
            "encode frames with all_layers=True"
        )
    return layers
