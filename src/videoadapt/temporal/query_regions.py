"""Where a sentence points in every frame: query-conditioned attention over the patch tokens (region tokens).

Grounding heads (temporal and spatio-temporal) share it. Each patch token ``[B,T,P,D]`` is projected, given a
learnt position in the patch grid, reads the query's words once (cross-attention, residual), and a small MLP
scores it; the softmax over a frame's patches says where the described object is. A frame's state is the
attended content, an embedding of the attention's mean position and spread *and of their change since the previous
frame* (motion, growth: the verbs of the sentence), the frame's time position and the pooled query.

Outputs (dict): ``states [B,T,H]``, ``logits [B,T,P]`` (before the softmax, for a loss on the attention), ``mean
[B,T,2]`` (normalised (x, y) of the attention's centre of mass) and ``spread [B,T,2]``.
"""

from __future__ import annotations

import torch
from torch import nn

from videoadapt.errors import VideoadaptError

MAX_FRAMES = 512


class QueryRegionReader(nn.Module):
    def __init__(self, width: int, text_width: int, hidden: int, grid: tuple[int, int]) -> None:
        super().__init__()
        rows, cols = int(grid[0]), int(grid[1])
        self.rows, self.cols = rows, cols
        self.patch_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.text_in = nn.Sequential(nn.LayerNorm(text_width), nn.Linear(text_width, hidden))
        self.space = nn.Parameter(torch.zeros(rows * cols, hidden))
        self.time = nn.Parameter(torch.zeros(MAX_FRAMES, hidden))
        nn.init.normal_(self.space, std=0.02)
        nn.init.normal_(self.time, std=0.02)
        self.read_words = nn.MultiheadAttention(hidden, max(1, hidden // 64), batch_first=True)
        self.word_norm = nn.LayerNorm(hidden)
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.where = nn.Linear(8, hidden)
        ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        centres = torch.stack(((xs.flatten() + 0.5) / cols, (ys.flatten() + 0.5) / rows), -1).float()
        self.register_buffer("centres", centres, persistent=False)  # [P,2] normalised (x, y) of patch centres

    def forward(self, patches: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if patches.dim() != 4:
            raise VideoadaptError(f"query region reader: patches must be [B,T,P,D], got {tuple(patches.shape)}")
        b, t, p, _ = patches.shape
        if p != self.rows * self.cols:
            raise VideoadaptError(
                f"query region reader: {p} patch tokens per frame, but it was built for a {self.rows}x{self.cols} grid"
            )
        if t > MAX_FRAMES:
            raise VideoadaptError(f"query region reader: {t} frames per clip; at most {MAX_FRAMES}")
        device = self.space.device
        x = self.patch_in(patches.float().to(device)) + self.space  # [B,T,P,H]
        words = self.text_in(tokens.float().to(device))  # [B,L,H]
        valid = mask.to(device).bool()
        flat = x.reshape(b, t * p, -1)
        read, _ = self.read_words(flat, words, words, key_padding_mask=~valid, need_weights=False)
        x = self.word_norm(flat + read).reshape(b, t, p, -1)
        logits = self.score(x).squeeze(-1)  # [B,T,P]
        attention = logits.softmax(-1)
        content = torch.einsum("btp,btph->bth", attention, x)
        mean = torch.einsum("btp,pc->btc", attention, self.centres)
        spread = torch.einsum("btp,btpc->btc", attention, (self.centres - mean.unsqueeze(2)) ** 2).add(1e-6).sqrt()
        where = torch.cat((mean, spread), -1)
        change = torch.cat((torch.zeros_like(where[:, :1]), where[:, 1:] - where[:, :-1]), 1)
        pooled = (words * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        states = content + self.where(torch.cat((where, 10.0 * change), -1)) + self.time[:t] + pooled.unsqueeze(1)
        return {"states": states, "logits": logits, "mean": mean, "spread": spread}
