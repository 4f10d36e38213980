"""The appearance embedding of a tracker: region tokens -> identity embeddings, learnt quasi-densely on frame pairs.

QDTrack (Pang et al., CVPR 2021) and OVTrack (Li et al., CVPR 2023) learn which boxes of two frames are the same
object from *every* region of a key frame against *every* region of a reference frame of the same clip, not from a
few sampled pairs. Conventions, as theirs:

* similarities of the contrastive loss are plain dot products of the (unnormalised) embeddings; the tracker's
  bi-softmax reads the same dot products (:mod:`videoadapt.temporal.association`);
* a key region takes part when it is assigned to a ground-truth track; reference regions are positives when
  assigned to the same track, negatives otherwise (background included);
* the multi-positive cross-entropy is ``log(1 + sum_{p in pos, n in neg} exp(s_n - s_p))``, the auxiliary loss is
  the squared error of the *cosine* similarity to 1 (positives) and 0 (negatives), each half averaged on its own;
* QDTrack's weights: 0.25 for the contrastive term, 1.0 for the auxiliary one.

OVTrack also distils the image-language model's region embeddings into its detector; here a linear map from the
appearance embedding into the joint space is pulled (L1 on unit vectors) toward the ILFM's region class embeddings,
so the identity space keeps what the ILFM knows about the object (shape, colour) besides what separates instances.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBED_WEIGHT = 0.25
AUX_WEIGHT = 1.0


class AppearanceEmbeddingHead(nn.Module):
    """QDTrack's embedding head in miniature: ``layers`` Linear+LayerNorm+ReLU of ``hidden`` then a linear map to
    ``dim``, on region tokens ``[..., width]``; :meth:`distilled` maps an embedding into the joint space
    ``[..., joint_dim]`` for the distillation loss."""

    def __init__(self, width: int, joint_dim: int, dim: int = 128, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        inner = width
        for _ in range(layers):
            blocks += [nn.Linear(inner, hidden), nn.LayerNorm(hidden), nn.ReLU()]
            inner = hidden
        self.mlp = nn.Sequential(*blocks)
        self.out = nn.Linear(inner, dim)
        self.distill = nn.Linear(dim, joint_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(tokens.float()))

    def distilled(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.distill(embeds)


def multi_positive_cross_entropy(similarity: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over key rows with at least one positive and one negative of
    ``log(1 + sum_{p,n} exp(s[n] - s[p]))``; ``similarity`` ``[K,M]``, ``positive`` ``[K,M]`` bool. Zero (with a
    gradient path) when no row qualifies."""
    negative = ~positive
    rows = positive.any(1) & negative.any(1)
    if not bool(rows.any()):
        return similarity.sum() * 0.0
    s, pos, neg = similarity[rows], positive[rows], negative[rows]
    differences = s[:, None, :] - s[:, :, None]  # [K, p, n] = s_n - s_p
    valid = pos[:, :, None] & neg[:, None, :]
    differences = differences.masked_fill(~valid, float("-inf")).flatten(1)
    zero = differences.new_zeros(len(differences), 1)
    return torch.logsumexp(torch.cat((differences, zero), 1), 1).mean()


def cosine_l2_loss(key: torch.Tensor, reference: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Squared error of the cosine similarity to 1 on positive pairs and 0 on negative ones, each half averaged
    on its own and the two summed (QDTrack samples negatives 3:1 instead; averaging apart is the deterministic
    counterpart)."""
    cosine = F.normalize(key, dim=-1) @ F.normalize(reference, dim=-1).T
    loss = cosine.sum() * 0.0
    if bool(positive.any()):
        loss = loss + ((cosine[positive] - 1.0) ** 2).mean()
    if bool((~positive).any()):
        loss = loss + (cosine[~positive] ** 2).mean()
    return loss


def quasi_dense_loss(
    key: torch.Tensor, reference: torch.Tensor, key_ids: torch.Tensor, reference_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(contrastive, auxiliary)`` of one frame pair: ``key`` ``[K,d]`` and ``reference`` ``[M,d]`` region
    embeddings with their track ids (``-1``: background). Key regions without a track do not take part."""
    keep = key_ids >= 0
    key, key_ids = key[keep], key_ids[keep]
    positive = key_ids[:, None] == reference_ids[None, :]
    similarity = key @ reference.T
    return multi_positive_cross_entropy(similarity, positive), cosine_l2_loss(key, reference, positive)


def distillation_loss(embeds: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between unit vectors of ``embeds`` and of the (detached) ``teacher`` ``[N,E]`` (OVTrack's
    L1 distillation of CLIP's region embeddings)."""
    return F.l1_loss(F.normalize(embeds.float(), dim=-1), F.normalize(teacher.detach().float(), dim=-1))
