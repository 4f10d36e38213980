"""Adapter configuration: which variant, how wide, where inserted."""

from __future__ import annotations

from dataclasses import dataclass, field

VARIANTS = ("st_adapter", "aim", "adaptformer", "linear")


@dataclass(frozen=True)
class AdapterConfig:
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

    ZeroI2V's other parts, usable with every variant:

    * ``stdha`` — spatial-temporal dual-headed attention with ``shift_div`` = ``stdha``: after the (frozen) key and
      value projections, the first ``width // stdha`` channels of every token take their key/value from the
      previous frame and the next ``width // stdha`` from the following frame (boundary frames keep their own):
      with 12 heads of 64 channels and ``stdha=12`` one head looks back and one forward (official
      mmaction/models/common/stdha.py ``TemporalShift`` with ``divide_head=False``). Zero parameters.
    * ``temporal_embedding=T`` — a zero-initialised per-frame embedding ``[T, D]`` added to every token of the
      first adapted block's input (ZeroI2V's ``temporal_embedding``, which it adds before ``ln_pre``).
    * ``train_post_norm`` — the vision tower's final LayerNorm trains too (ZeroI2V trains ``ln_post``).
    * ``dropout`` — dropout between the two linear maps of a ``linear`` adapter (official 0.1).
    """

    variant: str = "st_adapter"
    width: int | None = None
    kernel: tuple[int, int, int] = (3, 1, 1)
    before: tuple[str, ...] = ("mlp",)  # ST-Adapter insertion points: "attention" and/or "mlp"
    scale: float | None = None
    blocks: int | None = None
    stdha: int | None = None
    temporal_embedding: int | None = None
    train_post_norm: bool = False
    dropout: float = 0.1
    extra: dict = field(default_factory=dict)

    def bottleneck(self, dim: int) -> int:
        if self.width is not None:
            return self.width
        return {"st_adapter": dim // 2, "aim": dim // 4, "adaptformer": 64, "linear": dim // 4}[self.variant]

    def branch_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        return {"st_adapter": 1.0, "aim": 0.5, "adaptformer": 0.1, "linear": 0.5}[self.variant]
