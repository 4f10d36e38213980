"""Identities across frames without a tracker (MinVIS): match each frame's queries to the previous frame's.

A query mask head trained per frame gives, on consecutive frames, query embeddings that stay close for the same
object (the queries are the same learnt ones, and an object changes little between frames). MinVIS therefore
re-orders the queries of frame ``t`` by the Hungarian assignment (``scipy.optimize.linear_sum_assignment``) that
maximises the cosine similarity to the (already re-ordered) queries of frame ``t - 1``; after it, query slot ``q``
of every frame is one video instance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def associate_queries(embeddings: torch.Tensor) -> torch.Tensor:
    """``embeddings [T,Q,D]`` of one video's frames -> ``order [T,Q]`` (long): slot ``q`` of frame ``t`` is that
    frame's query ``order[t, q]``; frame 0 keeps its own order."""
    t, q = embeddings.shape[:2]
    order = torch.empty(t, q, dtype=torch.long)
    order[0] = torch.arange(q)
    if t == 0:
        return order
    unit = F.normalize(embeddings.detach().float(), dim=-1).cpu()
    previous = unit[0]
    for k in range(1, t):
        similarity = (previous @ unit[k].T).numpy()  # [slot, query of frame k]
        slots, chosen = linear_sum_assignment(-similarity)
        row = np.empty(q, dtype=np.int64)
        row[slots] = chosen
        order[k] = torch.from_numpy(row)
        previous = unit[k][order[k]]
    return order
