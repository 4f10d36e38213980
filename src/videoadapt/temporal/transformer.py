"""A temporal transformer over frame embeddings (CLIP4Clip "seqTransf", ActionCLIP's "Transf").

Frame embeddings plus learned frame-position embeddings go through a few pre-LN transformer layers whose residual
branches are added to the frame embeddings (CLIP4Clip keeps the input as a residual around the whole module), then
averaged over time. The last projection of each residual branch starts at zero, so at initialisation the module is
the identity and the video embedding equals mean pooling of the pretrained frame embeddings: training starts from
the image model's answer.
"""

from __future__ import annotations

import torch
from torch import nn

from videoadapt.errors import VideoadaptError


class TemporalTransformer(nn.Module):
    def __init__(self, width: int, layers: int = 4, heads: int = 8, max_frames: int = 64) -> None:
        super().__init__()
        for name, value in (("layers", layers), ("heads", heads), ("max_frames", max_frames)):
            if value < 1:
                raise VideoadaptError(f"temporal transformer: {name} must be at least 1, got {value}")
        if width % heads:
            heads = next(h for h in range(min(heads, width), 0, -1) if width % h == 0)
        self.position = nn.Parameter(torch.zeros(max_frames, width))
        nn.init.normal_(self.position, std=0.01)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                heads,
                dim_feedforward=4 * width,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        for layer in self.layers:
            nn.init.zeros_(layer.self_attn.out_proj.weight)
            nn.init.zeros_(layer.self_attn.out_proj.bias)
            nn.init.zeros_(layer.linear2.weight)
            nn.init.zeros_(layer.linear2.bias)
        self.max_frames = max_frames

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = frames.shape[1]
        if t > self.max_frames:
            raise VideoadaptError(f"temporal transformer was built for at most {self.max_frames} frames, got {t}")
        hidden = frames + self.position[:t].to(frames.dtype)
        for layer in self.layers:
            hidden = layer(hidden)
        out = hidden - self.position[:t].to(frames.dtype)  # = frames + what the layers' residual branches added
        return out, out.mean(dim=1)
