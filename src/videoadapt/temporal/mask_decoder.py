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

``pixel_stride`` s > 0 (1, 2 or 4) adds the frame's **pixels** (Mask2Former's pixel decoder keeps a stride-4 map of
the image; here solid shapes make the pixels themselves say where an edge is): a light convolutional stem of
``stem_dim`` channels reads the frame at stride s; the token features above, bilinearly upsampled to that
resolution, are concatenated with it, and two convolutions (3×3, 1×1; the last zero-initialised, so that training
starts from the token-only head) add a correction to them. Masks are then at the frame's size / s.

Input ``tokens [N,P,D]`` (N frames, P = rows × cols patches) and, with a pixel stem, ``pixels [N,3,S,S]`` (the
frames as the ILFM sees them); outputs (dict): ``states [N,Q,H]``, ``class_embeds [N,Q,E]``, ``no_object [N,Q]``,
``masks [N,Q,h,w]`` (logits; ``h, w`` = ``rows*u, cols*u``, or ``S/s`` with a pixel stem).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videoadapt.errors import VideoadaptError


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
        pixel_stride: int = 0,
        stem_dim: int = 32,
    ) -> None:
        super().__init__()
        if int(pixel_stride) not in (0, 1, 2, 4):
            raise VideoadaptError(f"mask decoder: pixel_stride must be 0 (no pixels), 1, 2 or 4, not {pixel_stride}")
        self.pixel_stride = int(pixel_stride)
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
                enable_nested_tensor=False,  # no padding here; the fast path it names is off with norm_first anyway
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
        self.stem: nn.Module | None = None
        self.fuse: nn.Module | None = None
        if self.pixel_stride:
            stem: list[nn.Module] = []
            channels = 3
            for _ in range(self.pixel_stride.bit_length() - 1):  # one stride-2 convolution per halving
                stem += [nn.Conv2d(channels, stem_dim, 3, stride=2, padding=1), nn.GELU()]
                channels = stem_dim
            stem += [nn.Conv2d(channels, stem_dim, 3, padding=1), nn.GELU()]
            self.stem = nn.Sequential(*stem)
            self.fuse = nn.Sequential(
                nn.Conv2d(pixel_dim + stem_dim, pixel_dim, 3, padding=1), nn.GELU(), nn.Conv2d(pixel_dim, pixel_dim, 1)
            )
            nn.init.zeros_(self.fuse[-1].weight)
            nn.init.zeros_(self.fuse[-1].bias)
        self.mask_embed = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, pixel_dim)
        )
        self.class_embed = nn.Linear(hidden, embed_dim)
        self.no_object = nn.Linear(hidden, 1)

    @property
    def mask_size(self) -> tuple[int, int]:
        """The token-only masks' cells (with a pixel stem, masks follow the pixels: see ``forward``'s output)."""
        return self.rows * self.upsample, self.cols * self.upsample

    def with_pixels(self, features: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Token pixel features ``[N,C,h,w]`` + frames ``[N,3,S,S]`` -> ``[N,C,S/s,S/s]``."""
        assert self.stem is not None and self.fuse is not None
        seen = self.stem(pixels.float())
        up = F.interpolate(features, size=seen.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.fuse(torch.cat((up, seen), 1))

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

    def forward(self, tokens: torch.Tensor, pixels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.stem is not None and (pixels is None or pixels.shape[0] != tokens.shape[0] or pixels.ndim != 4):
            got = None if pixels is None else tuple(pixels.shape)
            raise VideoadaptError(
                f"mask decoder with a pixel stem: pass the {tokens.shape[0]} frames as pixels [N,3,S,S] (got {got})"
            )
        x = self.project(tokens)
        n = x.shape[0]
        queries = self.query_content.expand(n, -1, -1) + self.query_position
        states = self.norm(self.decoder(queries, x))
        features = self.pixel_features(x)
        if self.stem is not None:
            features = self.with_pixels(features, pixels)  # type: ignore[arg-type]
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embed(states), features)
        return {
            "states": states,
            "class_embeds": self.class_embed(states),
            "no_object": self.no_object(states).squeeze(-1),
            "masks": masks,
        }
