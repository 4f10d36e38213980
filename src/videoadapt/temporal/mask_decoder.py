"""A query-based mask head on one frame's patch tokens (Mask2Former/MinVIS in shape, small).

Learnt queries read a frame's patch tokens in ``layers`` transformer decoder layers (self-attention among the
queries, cross-attention to the tokens); each query then gives

* a **mask**: ``mask_embed(query) · pixel_features``, where the per-pixel features come from the patch tokens
  alone: each token is expanded into its ``upsample × upsample`` sub-patch cells by a linear map (a pixel shuffle:
  a ViT token encodes its whole patch, so what lies where inside it is still there to read), added to the
  bilinearly upsampled token, and refined by one 3×3 convolution so that neighbouring patches agree at their
  borders. Masks are at ``grid × upsample`` cells (8×8 patches, ×4: 32×32 for a 64-pixel frame);
* a **class embedding** in the joint image-text space, compared with the category names' text embeddings by
  cosine similarity (open vocabulary: any name is a class), plus a **no-object** logit;
* an **identity embedding** (the normalised query state) that matches queries across frames (MinVIS).

Options: ``context_layers`` transformer encoder layers over the tokens before both (0: none) and ``fine_hidden``
units of an MLP for the sub-patch map (0: linear).

Input ``tokens [N,P,D]`` (N frames, P = rows × cols patches); outputs (dict): ``states [N,Q,H]``, ``class_embeds
[N,Q,E]``, ``no_object [N,Q]``, ``masks [N,Q,rows*u,cols*u]`` (logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskQueryDecoder(nn.Module):
    def __init__(
        self,
        width: int,
        embed_dim: int,
        grid: tuple[int, int],
        hidden: int = 192,
        queries: int = 16,
        layers: int = 2,
        pixel_dim: int = 32,
        upsample: int = 4,
        context_layers: int = 0,
        fine_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.rows, self.cols = int(grid[0]), int(grid[1])
        self.upsample, self.pixel_dim = int(upsample), int(pixel_dim)
        self.token_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.space = nn.Parameter(torch.zeros(self.rows * self.cols, hidden))
        nn.init.normal_(self.space, std=0.02)
        self.query_content = nn.Parameter(torch.zeros(queries, hidden))
        self.query_position = nn.Parameter(torch.zeros(queries, hidden))
        nn.init.normal_(self.query_content, std=0.02)
        nn.init.normal_(self.query_position, std=0.02)
        layer = nn.TransformerDecoderLayer(
            hidden, max(1, hidden // 64), 4 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, int(layers))
        # Optional context for the pixel decoder: the tokens attend to each other first (Mask2Former's pixel decoder
        # does this with deformable attention), so a cell can know where its object's other patches are.
        self.context = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(
                    hidden,
                    max(1, hidden // 64),
                    4 * hidden,
                    dropout=0.0,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                ),
                int(context_layers),
            )
            if int(context_layers) > 0
            else None
        )
        self.norm = nn.LayerNorm(hidden)
        # Pixel decoder: coarse (the token itself) + fine (its sub-patch cells), then a 3x3 refinement.
        self.coarse = nn.Linear(hidden, pixel_dim)
        cells = pixel_dim * self.upsample * self.upsample
        # The sub-patch cells from the token: linear, or through an MLP of ``fine_hidden`` units (a cell's content
        # is no linear function of a token made for classification).
        self.fine = (
            nn.Sequential(nn.Linear(hidden, int(fine_hidden)), nn.GELU(), nn.Linear(int(fine_hidden), cells))
            if int(fine_hidden) > 0
            else nn.Linear(hidden, cells)
        )
        self.refine = nn.Sequential(
            nn.Conv2d(pixel_dim, pixel_dim, 3, padding=1), nn.GELU(), nn.Conv2d(pixel_dim, pixel_dim, 1)
        )
        self.mask_embed = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, pixel_dim)
        )
        self.class_embed = nn.Linear(hidden, embed_dim)
        self.no_object = nn.Linear(hidden, 1)

    @property
    def mask_size(self) -> tuple[int, int]:
        return self.rows * self.upsample, self.cols * self.upsample

    def pixel_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N,P,H]`` projected tokens -> ``[N,C,rows*u,cols*u]``."""
        n, u, c = tokens.shape[0], self.upsample, self.pixel_dim
        coarse = self.coarse(tokens).transpose(1, 2).reshape(n, c, self.rows, self.cols)
        coarse = F.interpolate(coarse, scale_factor=u, mode="bilinear", align_corners=False)
        fine = self.fine(tokens).reshape(n, self.rows, self.cols, c, u, u)
        fine = fine.permute(0, 3, 1, 4, 2, 5).reshape(n, c, self.rows * u, self.cols * u)
        pixels = coarse + fine
        return pixels + self.refine(pixels)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N,P,D]`` patch tokens -> ``[N,P,H]``: projected, positioned, and through the context layers if any."""
        x = self.token_in(tokens.float()) + self.space
        return x if self.context is None else self.context(x)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.project(tokens)
        n = x.shape[0]
        queries = self.query_content.expand(n, -1, -1) + self.query_position
        states = self.norm(self.decoder(queries, x))
        pixels = self.pixel_features(x)
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embed(states), pixels)
        return {
            "states": states,
            "class_embeds": self.class_embed(states),
            "no_object": self.no_object(states).squeeze(-1),
            "masks": masks,
        }
