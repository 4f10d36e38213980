"""Inject adapters into the vision blocks of an ILFM.

Every supported block (transformers' CLIP and SigLIP encoder layers, which TinyCLIP reuses) is a pre-LN block
with the same parts: ``layer_norm1``, ``self_attn``, ``layer_norm2``, ``mlp``. :class:`AdaptedBlock` replaces a
block in its ``ModuleList`` and recomputes it from those parts with the adapters in place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoadapt.errors import VideoadaptError
from videoadapt.foundation.base import ImageLanguageModel
from videoadapt.paradigms.adapter.config import AdapterConfig
from videoadapt.paradigms.adapter.layer import (
    BottleneckAdapter,
    Chain,
    LinearAdapter,
    STAdapter,
    TemporalEmbedding,
    shifted_attention,
)
from videoadapt.paradigms.base import TemporalContext

BLOCK_PARTS = ("layer_norm1", "self_attn", "layer_norm2", "mlp")
LINEAR_PLACES = ("attention_in", "attention_out", "mlp_in", "mlp_out")


def _attend(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = block.self_attn(hidden_states=x, attention_mask=None)
    return out[0] if isinstance(out, tuple) else out


class AdaptedBlock(nn.Module):
    def __init__(
        self, block: nn.Module, config: AdapterConfig, dim: int, grid: tuple[int, int], context: TemporalContext
    ) -> None:
        super().__init__()
        missing = [p for p in BLOCK_PARTS if not hasattr(block, p)]
        if missing:
            raise VideoadaptError(
                f"adapter: {type(block).__name__} lacks {missing}; only CLIP-style blocks are supported"
            )
        self.block = block
        self.config = config
        self.context = context
        width = config.bottleneck(dim)
        self.scale = config.branch_scale()
        if config.variant == "st_adapter":
            self.before = nn.ModuleDict({p: STAdapter(dim, width, config.kernel, grid, context) for p in config.before})
        elif config.variant == "linear":
            self.linear = nn.ModuleDict(
                {p: LinearAdapter(dim, width, self.scale, config.dropout) for p in LINEAR_PLACES}
            )
        elif config.variant == "aim":
            self.temporal = BottleneckAdapter(dim, width, skip=False)
            self.spatial = BottleneckAdapter(dim, width, skip=True)
            self.joint = BottleneckAdapter(dim, width, skip=False)
        else:
            self.parallel = BottleneckAdapter(dim, width, skip=False, activation="relu")

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.stdha:
            return shifted_attention(self.block.self_attn, x, self.context.frames, self.config.stdha)
        return _attend(self.block, x)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the linear adapters into the block's frozen Linear layers (eval-mode function unchanged).

        An adapter ``a(x) = A x + c`` before a Linear ``W x + b`` gives ``W A x + (W c + b)``; after it,
        ``A W x + (A b + c)``. ``attention_in`` feeds q, k and v (STDHA shifts k/v channels after the projection,
        which commutes with this); ``attention_out`` follows ``out_proj``; ``mlp_in`` feeds ``fc1``; ``mlp_out``
        follows ``fc2``."""
        if self.config.variant != "linear":
            raise VideoadaptError(f"adapter: only linear adapters merge, not {self.config.variant!r}")
        attention, mlp = self.block.self_attn, self.block.mlp
        for place, layers, before in (
            ("attention_in", [attention.q_proj, attention.k_proj, attention.v_proj], True),
            ("attention_out", [attention.out_proj], False),
            ("mlp_in", [mlp.fc1], True),
            ("mlp_out", [mlp.fc2], False),
        ):
            if place not in self.linear:
                continue
            a, c = self.linear[place].affine()
            for layer in layers:
                if layer.bias is None:
                    raise VideoadaptError(f"adapter: cannot merge into {type(layer).__name__} without a bias")
                w, b = layer.weight.double(), layer.bias.double()
                new_w, new_b = (w @ a, w @ c + b) if before else (a @ w, a @ b + c)
                layer.weight.copy_(new_w.to(layer.weight.dtype))
                layer.bias.copy_(new_b.to(layer.bias.dtype))
            del self.linear[place]

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        b = self.block
        x = hidden_states
        variant = self.config.variant
        if variant == "st_adapter":
            if "attention" in self.before:
                x = self.before["attention"](x)
            x = x + self._attend(b.layer_norm1(x))
            if "mlp" in self.before:
                x = self.before["mlp"](x)
            return x + b.mlp(b.layer_norm2(x))
        if variant == "linear":
            # ZeroI2V: x + S(attn(T_in(ln_1(x)))); x + MLP_out(mlp(MLP_in(ln_2(x)))). Merged places are identities.
            def place(name: str, t: torch.Tensor) -> torch.Tensor:
                return self.linear[name](t) if name in self.linear else t

            x = x + place("attention_out", self._attend(place("attention_in", b.layer_norm1(x))))
            return x + place("mlp_out", b.mlp(place("mlp_in", b.layer_norm2(x))))
        if variant == "aim":
            # Temporal adaptation: the block's own (frozen) attention, applied across the frames of each token.
            bt, n, d = x.shape
            t = self.context.frames
            xt = x.view(bt // t, t, n, d).transpose(1, 2).reshape(-1, t, d)
            xt = self.temporal(_attend(b, b.layer_norm1(xt)))
            x = x + xt.view(bt // t, n, t, d).transpose(1, 2).reshape(bt, n, d)
            x = x + self.spatial(self._attend(b.layer_norm1(x)))
            normed = b.layer_norm2(x)
            return x + b.mlp(normed) + self.scale * self.joint(normed)
        x = x + self._attend(b.layer_norm1(x))
        # AdaptFormer's branch reads the residual stream itself, not the LayerNorm output (official code).
        return x + b.mlp(b.layer_norm2(x)) + self.scale * self.parallel(x)


def inject_adapters(ilfm: ImageLanguageModel, config: AdapterConfig, context: TemporalContext) -> list[AdaptedBlock]:
    blocks = ilfm.vision_blocks()
    count = len(blocks) if config.blocks is None else config.blocks
    if not 1 <= count <= len(blocks):
        raise VideoadaptError(f"adapter: blocks must be in 1..{len(blocks)}, got {count}")
    dims = ilfm.dims
    adapted = []
    for index in range(len(blocks) - count, len(blocks)):
        if isinstance(blocks[index], AdaptedBlock):
            raise VideoadaptError("adapter: this backbone already has adapters")
        block = AdaptedBlock(blocks[index], config, dims.width, dims.patch_grid, context)
        for name, parameter in block.named_parameters():
            parameter.requires_grad_(not name.startswith("block."))
        blocks[index] = block
        adapted.append(block)
    if config.temporal_embedding:
        insert_temporal_embedding(ilfm, TemporalEmbedding(config.temporal_embedding, dims.width, context))
    if config.train_post_norm:
        for module in ilfm.vision_modules():
            for name, child in module.named_modules():
                if name.split(".")[-1] in ("post_layernorm", "ln_post"):
                    child.requires_grad_(True)
    return adapted


# Where the embedded tokens enter the tower: the pre-LayerNorm (CLIP's ln_pre; transformers' CLIP spells it
# pre_layrnorm, TinyCLIP pre_layernorm), or, on a tower without one (SigLIP), the embeddings' output.
PRE_NORMS = ("pre_layrnorm", "pre_layernorm", "ln_pre")


def insert_temporal_embedding(ilfm: ImageLanguageModel, embedding: TemporalEmbedding) -> None:
    """Add ``embedding`` to the tokens after the patch and position embeddings, before the pre-LayerNorm — where
    AIM and ZeroI2V add their ``temporal_embedding`` (``ViT_CLIP.forward``: ``x + temporal_embedding`` then
    ``ln_pre``). The pre-LayerNorm (or, without one, the embeddings module) is replaced in its parent by a
    :class:`Chain` holding it and the embedding."""
    for root in ilfm.vision_modules():
        for parent in root.modules():
            for name in PRE_NORMS:
                norm = getattr(parent, name, None)
                if isinstance(norm, nn.LayerNorm):
                    setattr(parent, name, Chain(embedding, norm))
                    return
            embeddings = getattr(parent, "embeddings", None)
            if isinstance(embeddings, nn.Module) and not any(hasattr(parent, n) for n in PRE_NORMS):
                parent.embeddings = Chain(embeddings, embedding)
                return
    raise VideoadaptError(
        f"adapter: temporal_embedding goes before the pre-LayerNorm of the vision tower; {ilfm.name} has neither "
        f"{', '.join(PRE_NORMS)} nor an embeddings module"
    )


def merge_linear_adapters(ilfm: ImageLanguageModel) -> int:
    """Fold every linear (ZeroI2V) adapter of ``ilfm`` into the frozen weights; returns how many blocks merged.

    Afterwards the blocks compute the same function (in eval mode) without adapter parameters; STDHA needs none,
    and the temporal embedding (``T x D``) and trained post-LayerNorm stay, as in the official reparameterisation.
    """
    merged = 0
    for block in ilfm.vision_blocks():
        if isinstance(block, AdaptedBlock) and block.config.variant == "linear" and len(block.linear):
            block.merge()
            merged += 1
    return merged
