"""TinyCLIP's vision blocks: CLIP encoder blocks of our own, in the module tree of transformers' ``CLIPEncoderLayer``.

Ours rather than transformers' because importing ``transformers.models.clip.modeling_clip`` pulls in
``modeling_utils`` (torch._dynamo, torch.distributed.tensor, sympy): 1.7-2.8 s of a 2-core machine, more than
loading and running TinyCLIP itself. The tree and names are transformers' (``layer_norm1``,
``self_attn.{q_proj,k_proj,v_proj,out_proj}``, ``layer_norm2``, ``mlp.{fc1,fc2}``, built in the same order so that
a seeded initialisation draws the same weights), so the shipped checkpoint loads unchanged and every paradigm that
adapts CLIP blocks adapts these the same way. tests/test_tinyclip_without_transformers.py pins them to
``CLIPEncoderLayer``'s numbers: equal in fp32 (eager), forward and backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention, with the softmax in the scores' own dtype. In fp32 it is the same computation;
    under bf16 autocast transformers' version softmaxes into an fp32 copy and casts it back, while torch's bf16
    softmax already accumulates in fp32 and rounds once: the same probabilities without two copies of every
    attention map (a bf16 training step of TinyCLIP is ~8% faster)."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
) -> tuple[torch.Tensor, None]:
    """torch's fused attention, called as transformers' ``sdpa_attention_forward`` calls it for a non-causal
    encoder (no attention weights come back)."""
    out = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=False
    )
    return out.transpose(1, 2).contiguous(), None


class QuickGELU(nn.Module):
    """CLIP's original activation, transformers' ``quick_gelu``: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(name: str) -> nn.Module:
    """transformers' ``ACT2FN[name]`` for the activations CLIP configs use: ``gelu`` is the exact (erf) GELU,
    ``nn.functional.gelu`` as transformers' ``GELUActivation`` calls it."""
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"TinyCLIP: unsupported hidden_act {name!r} (gelu or quick_gelu)")


class CLIPAttention(nn.Module):
    """Multi-head self-attention with transformers' ``CLIPAttention`` parameters and attributes; ``forward``
    returns ``(output, weights)`` (weights are None under sdpa)."""

    def __init__(self, width: int, heads: int, attn_implementation: str = "eager", dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"TinyCLIP: width {width} is not a multiple of {heads} heads")
        self.embed_dim = width
        self.num_heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = False
        self.attn_implementation = attn_implementation
        # transformers' order (k, v, q, out): a seeded initialisation draws the same weights.
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    @property
    def attn_implementation(self) -> str:
        return self._attn_implementation

    @attn_implementation.setter
    def attn_implementation(self, name: str) -> None:
        if name not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"TinyCLIP: attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {name!r}")
        self._attn_implementation = name

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        queries = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        keys = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        values = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        attend = eager_attention if self._attn_implementation == "eager" else sdpa_attention
        out, weights = attend(
            self,
            queries,
            keys,
            values,
            attention_mask,
            scaling=self.scale,
            dropout=0.0 if not self.training else self.dropout,
        )
        return self.out_proj(out.reshape(*input_shape, -1).contiguous()), weights


class CLIPMLP(nn.Module):
    def __init__(self, width: int, hidden: int, hidden_act: str) -> None:
        super().__init__()
        self.activation_fn = activation(hidden_act)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class CLIPEncoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``; LayerNorm eps 1e-5 (``CLIPVisionConfig``'s
    default ``layer_norm_eps``)."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_hidden: int,
        hidden_act: str = "gelu",
        attn_implementation: str = "eager",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.embed_dim = width
        self.self_attn = CLIPAttention(width, heads, attn_implementation)
        self.layer_norm1 = nn.LayerNorm(width, eps=layer_norm_eps)
        self.mlp = CLIPMLP(width, mlp_hidden, hidden_act)
        self.layer_norm2 = nn.LayerNorm(width, eps=layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(hidden_states=self.layer_norm1(hidden_states), attention_mask=attention_mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        return residual + self.mlp(self.layer_norm2(hidden_states))
