"""Adapter configuration: which variant, how wide, where inserted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from videoadapt.errors import VideoadaptError
from videoadapt.paradigms.options import TemporalHeadConfig

VARIANTS = ("st_adapter", "aim", "adaptformer", "linear")
# Options only some variants read (giving one to another variant would change nothing).
VARIANT_OPTIONS = {
    "kernel": ("st_adapter",),
    "before": ("st_adapter",),
    "scale": ("aim", "adaptformer", "linear"),
    "dropout": ("linear",),
}


@dataclass(frozen=True)
class AdapterConfig(TemporalHeadConfig):
    """``variant``:

    * ``st_adapter`` — ST-Adapter (Pan et al., NeurIPS 2022): ``fc1 -> depthwise Conv3d over (T,H,W) -> fc2`` on the
      patch tokens, added residually, ``before`` the attention and/or the MLP of a block;
    * ``aim`` — AIM (Yang et al., ICLR 2023): a temporal adapter after the block's own attention applied along
      time, a spatial adapter after its attention, and a joint adapter parallel to the MLP (scaled by ``scale``);
    * ``adaptformer`` — AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck MLP parallel to the block's MLP,
      scaled by ``scale``.
    * ``linear`` — ZeroI2V's linear adapters (Li et al., ECCV 2024; official leexinhao/ZeroI2V,
      mmaction/models/backbones/vit_zero_clip.py ``ResidualAttentionBlock_ZeroI2V`` with ``num_tadapter=2``):
      ``x + scale * fc2(dropout(fc1(x)))`` with no nonlinearity, densely placed — before the attention (after
      ``layer_norm1``), after the attention, before the MLP (after ``layer_norm2``) and after the MLP — so that
      :meth:`AdaptedBlock.merge` can fold all four into the frozen Linear layers after training.

    ``width`` is the bottleneck width (default: half the token width for ST-Adapter, a quarter for AIM and linear
    adapters, 64 for AdaptFormer); ``blocks`` adapts only the last k blocks (default: all).

    Parts of AIM and ZeroI2V, usable with every variant:

    * ``stdha`` — ZeroI2V's spatial-temporal dual-headed attention with ``shift_div`` = ``stdha``: after the
      (frozen) key and value projections, the first ``width // stdha`` channels of every token take their key/value
      from the previous frame and the next ``width // stdha`` from the following frame (boundary frames keep their
      own): with 12 heads of 64 channels and ``stdha=12`` one head looks back and one forward (official
      mmaction/models/common/stdha.py ``TemporalShift`` with ``divide_head=False``). Zero parameters.
    * ``temporal_embedding=T`` — a zero-initialised, trained per-frame embedding ``[T, D]`` added to every token of
      frame t after the patch and position embeddings, before the vision tower's pre-LayerNorm (``ln_pre``): AIM's
      and ZeroI2V's ``temporal_embedding`` (``ViT_CLIP.forward`` in both official repositories). Without it an
      adapted model whose temporal modules are permutation-equivariant (AIM's frozen attention applied across
      frames) followed by mean pooling cannot tell a clip from the same clip played backwards.
    * ``train_post_norm`` — the vision tower's final LayerNorm trains too (AIM's tools/train.py and ZeroI2V's
      ``init_weights`` leave ``ln_post`` trainable).
    * ``dropout`` — dropout between the two linear maps of a ``linear`` adapter (official 0.1).

    The default head (when no paradigm of the composition brings one): ``temporal`` ("mean": the published designs
    average the frames), ``space`` and module options; a module option named like an adapter option (``width``,
    ``dropout``) cannot be given here — compose with ``post_network``.
    """

    paradigm: ClassVar[str] = "adapter"
    variant: Literal["st_adapter", "aim", "adaptformer", "linear"] = "st_adapter"
    width: int | None = None
    kernel: tuple[int, int, int] = (3, 1, 1)
    before: tuple[Literal["attention", "mlp"], ...] = ("mlp",)  # ST-Adapter insertion points
    scale: float | None = None
    blocks: int | None = None
    stdha: int | None = None
    temporal_embedding: int | None = None
    train_post_norm: bool = False
    dropout: float = 0.1

    def validate(self) -> None:
        self.require("width", self.width is None or self.width >= 1, "at least 1")
        self.require("kernel", all(k >= 1 and k % 2 == 1 for k in self.kernel), "odd sizes of at least 1")
        self.require("before", len(self.before) > 0 and len(set(self.before)) == len(self.before), "distinct")
        self.require("blocks", self.blocks is None or self.blocks >= 1, "at least 1")
        self.require("stdha", self.stdha is None or self.stdha >= 2, "at least 2 (ZeroI2V's shift_div)")
        self.require("temporal_embedding", self.temporal_embedding is None or self.temporal_embedding >= 1, ">= 1")
        self.require("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AdapterConfig:
        variant = options.get("variant", "st_adapter")
        for name, variants in VARIANT_OPTIONS.items():
            if name in options and variant in VARIANTS and variant not in variants:
                raise VideoadaptError(
                    f"adapter: option {name} is read by variant {' and '.join(variants)} only, not by {variant}"
                )
        return super().from_options(options)

    def bottleneck(self, dim: int) -> int:
        if self.width is not None:
            return self.width
        return {"st_adapter": dim // 2, "aim": dim // 4, "adaptformer": 64, "linear": dim // 4}[self.variant]

    def branch_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        return {"st_adapter": 1.0, "aim": 0.5, "adaptformer": 0.1, "linear": 0.5}[self.variant]
