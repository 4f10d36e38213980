"""Reusable temporal modules: they turn per-frame features ``[B,T,D]`` into video features."""

from videoadapt.temporal.pooling import MeanPool
from videoadapt.temporal.transformer import TemporalTransformer

__all__ = ["MeanPool", "TemporalTransformer"]
