"""Adapter configuration: which variant, how wide, where inserted."""

from __future__ import annotations

from dataclasses import dataclass, field

VARIANTS = ("st_adapter", "aim", "adaptformer")


@dataclass(frozen=True)
class AdapterConfig:
    """``variant``:

    * ``st_adapter`` — ST-Adapter (Pan et al., NeurIPS 2022): ``fc1 -> depthwise Conv3d over (T,H,W) -> fc2`` on the
      patch tokens, added residually, ``before`` the attention and/or the MLP of a block;
    * ``aim`` — AIM (Yang et al., ICLR 2023): a temporal adapter after the block's own attention applied along
      time, a spatial adapter after its attention, and a joint adapter parallel to the MLP (scaled by ``scale``);
    * ``adaptformer`` — AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck MLP parallel to the block's MLP,
      scaled by ``scale``.

    ``width`` is the bottleneck width (default: half the token width for ST-Adapter, a quarter for AIM, 64 for
    AdaptFormer); ``blocks`` adapts only the last k blocks (default: all).
    """

    variant: str = "st_adapter"
    width: int | None = None
    kernel: tuple[int, int, int] = (3, 1, 1)
    before: tuple[str, ...] = ("mlp",)  # ST-Adapter insertion points: "attention" and/or "mlp"
    scale: float | None = None
    blocks: int | None = None
    extra: dict = field(default_factory=dict)

    def bottleneck(self, dim: int) -> int:
        if self.width is not None:
            return self.width
        return {"st_adapter": dim // 2, "aim": dim // 4, "adaptformer": 64}[self.variant]

    def branch_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        return {"st_adapter": 1.0, "aim": 0.5, "adaptformer": 0.1}[self.variant]
