"""A BERT encoder of our own for the frozen MiniLM-L6 text tower, read from the package's ``config.json`` and
``model.safetensors`` with safetensors, and its tokenizer with the ``tokenizers`` library from ``tokenizer.json``.

Ours rather than transformers' ``AutoModel``/``AutoTokenizer`` because importing transformers' BERT costs 1.7-2.8 s
of a 2-core machine (``modeling_utils`` pulls in torch._dynamo, torch.distributed.tensor and sympy), more than
loading and running TinyCLIP. The computation is transformers' ``BertModel`` with its default sdpa attention
(encoder only: no pooler, no cache, no cross-attention); parameter names are the checkpoint's.
tests/test_tinyclip_without_transformers.py pins token ids, hidden states and sentence embeddings to transformers'.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

# Checkpoint entries the encoder does not use: BERT's pooler (sentence embeddings are mean-pooled instead) and the
# constant position-id buffer older transformers saved.
UNUSED_KEYS = ("pooler.", "embeddings.position_ids")


def _embedding(count: int, width: int, padding_idx: int | None = None) -> nn.Embedding:
    """``nn.Embedding``; on the meta device without its random initialisation, whose meta ``normal_`` would import
    torch._dynamo (a second)."""
    weight = torch.empty(count, width) if torch.empty(0).is_meta else None
    return nn.Embedding(count, width, padding_idx=padding_idx, _weight=weight)


class BertEmbeddings(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        width = config["hidden_size"]
        self.word_embeddings = _embedding(config["vocab_size"], width, config.get("pad_token_id", 0))
        self.position_embeddings = _embedding(config["max_position_embeddings"], width)
        self.token_type_embeddings = _embedding(config["type_vocab_size"], width)
        self.LayerNorm = nn.LayerNorm(width, eps=config["layer_norm_eps"])

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Word embeddings ``[N,L,D]`` plus token type 0 and absolute positions ``0..L-1``, normalised."""
        length = inputs_embeds.shape[1]
        device = inputs_embeds.device
        token_types = torch.zeros(1, length, dtype=torch.long, device=device)
        positions = torch.arange(length, device=device).unsqueeze(0)
        embeddings = inputs_embeds + self.token_type_embeddings(token_types)
        return self.LayerNorm(embeddings + self.position_embeddings(positions))


class BertSelfAttention(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        width = config["hidden_size"]
        self.num_attention_heads = config["num_attention_heads"]
        self.attention_head_size = width // self.num_attention_heads
        self.scaling = self.attention_head_size**-0.5
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        query = self.query(hidden_states).view(*hidden_shape).transpose(1, 2)
        key = self.key(hidden_states).view(*hidden_shape).transpose(1, 2)
        value = self.value(hidden_states).view(*hidden_shape).transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=self.scaling, is_causal=False
        )
        return out.transpose(1, 2).contiguous().reshape(*input_shape, -1).contiguous()


class DenseLayerNorm(nn.Module):
    """BERT's ``SelfOutput``/``Output``: ``LayerNorm(dense(x) + residual)``."""

    def __init__(self, width_in: int, width: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden_states) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = DenseLayerNorm(config["hidden_size"], config["hidden_size"], config["layer_norm_eps"])

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        if config["hidden_act"] != "gelu":
            raise ValueError(f"MiniLM: unsupported hidden_act {config['hidden_act']!r} (gelu)")
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # transformers' "gelu" (GELUActivation): the exact, erf-based GELU.
        return nn.functional.gelu(self.dense(hidden_states))


class BertLayer(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = DenseLayerNorm(config["intermediate_size"], config["hidden_size"], config["layer_norm_eps"])

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config["num_hidden_layers"]))


class MiniLM(nn.Module):
    """BERT's encoder (eval mode: dropout is never applied) with the checkpoint's parameter names."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        if config.get("position_embedding_type", "absolute") != "absolute" or config.get("is_decoder", False):
            raise ValueError("MiniLM: only an absolute-position BERT encoder is supported")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    @classmethod
    def from_directory(cls, path: Path) -> MiniLM:
        """Built on the meta device and given the file's tensors: no random initialisation to throw away."""
        from safetensors.torch import load_file

        config = json.loads((path / "config.json").read_text())
        with torch.device("meta"):
            model = cls(config)
        state = {k: v for k, v in load_file(path / "model.safetensors").items() if not k.startswith(UNUSED_KEYS)}
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    @staticmethod
    def attention_mask(mask: torch.Tensor, length: int) -> torch.Tensor | None:
        """transformers' bidirectional sdpa mask: None without padding, else a boolean ``[N,1,L,L]`` (True: attend),
        which sdpa applies as an additive -inf on the padded keys."""
        if bool(mask.all()):
            return None
        return mask.bool()[:, None, None, :].expand(mask.shape[0], 1, length, length)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last hidden states ``[N,L,D]`` of ``input_ids`` ``[N,L]`` or ``inputs_embeds`` ``[N,L,D]``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("MiniLM: give exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embeddings.word_embeddings(input_ids)
        hidden = self.embeddings(inputs_embeds)
        mask = None if attention_mask is None else self.attention_mask(attention_mask, hidden.shape[1])
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
        return hidden


class MiniLMTokenizer:
    """The ``tokenizers`` tokenizer of ``tokenizer.json``, padded to the longest text and truncated as transformers'
    ``BertTokenizer(..., padding=True, truncation=True, max_length=...)`` does: ``[CLS] ... [SEP]``, ``[PAD]`` (id 0)
    on the right."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        pad = json.loads((path / "special_tokens_map.json").read_text()).get("pad_token", "[PAD]")
        pad = pad["content"] if isinstance(pad, dict) else pad
        # tokenizer.json pads every text to 128 and truncates at 128; transformers replaces both per call.
        self.tokenizer.no_truncation()
        self.tokenizer.enable_padding(direction="right", pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        self._max_length: int | None = None

    def __call__(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` ``[N,L]`` (int64), L the longest text's length up to ``max_length``."""
        if max_length != self._max_length:
            self.tokenizer.enable_truncation(max_length=max_length, strategy="longest_first", direction="right")
            self._max_length = max_length
        encodings = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask
