"""Cost measures shared by `videoadapt profile`, `videoadapt params` and the benchmark's cost columns.

FLOPs follow the convention of the papers' tables (fvcore): one multiply-add counts as **one** FLOP, matrix
multiplications, convolutions and attention are counted, element-wise work (softmax, norms, activations) is not.
With it, the ViT-B/16 image tower at 224 px costs about 17.6 GFLOPs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from videoadapt.utils.machine import machine_description  # noqa: F401 - re-exported: cost columns name the machine


def _attention_macs(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    # softmax(Q K^T) V: [L x Dh] @ [Dh x S] then [L x S] @ [S x Dv], per batch and head. Returned as 2*MACs to
    # match the counter's own formulas (we halve the total once at the end).
    *batch, length, head_dim = query_shape
    source = key_shape[-2]
    value_dim = value_shape[-1]
    groups = 1
    for size in batch:
        groups *= size
    return 2 * groups * length * source * (head_dim + value_dim)


def _attention_ops() -> dict[Any, Callable[..., int]]:
    names = [
        "_scaled_dot_product_flash_attention_for_cpu",  # the CPU kernel; torch's counter does not know it
        "_scaled_dot_product_attention_math",
    ]
    ops = {}
    for name in names:
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            ops[op] = _attention_macs  # the counter looks operators up by overload packet
    return ops


def count_flops(fn: Callable[[], Any], modules: Sequence[nn.Module] = ()) -> float:
    """Multiply-accumulates of one call of ``fn`` (fvcore convention), as a float count.

    ``modules`` are the modules ``fn`` runs. While counting, their parameters stop requiring gradients (the
    counter's module tracker asserts on views of trainable parameters made under no_grad, such as expanded
    learned queries), and PyTorch's fused ``nn.TransformerEncoderLayer`` fast path is switched off: the counter
    does not see inside that fused kernel and would count a temporal transformer as free.
    """
    parameters = [p for m in modules for p in m.parameters() if p.requires_grad]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        for parameter in parameters:
            parameter.requires_grad_(False)
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_attention_ops()) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for parameter in parameters:
            parameter.requires_grad_(True)
    return counter.get_total_flops() / 2


def count_training_flops(step: Callable[[], Any]) -> float:
    """Multiply-accumulates (fvcore convention) of one training step ``step`` that runs forward *and* backward:
    the forward of whatever the step runs (not a cached backbone), plus the gradients it computes. Where no
    parameter upstream needs a gradient the backward stops, so a frozen backbone costs its forward only."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with FlopCounterMode(display=False, custom_mapping=_attention_ops()) as counter:
            step()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() / 2


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    # Shared tensors (tied embeddings) count once.
    seen: set[int] = set()
    total = 0
    for parameter in module.parameters():
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in seconds, after warm-up calls."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_second(size: int = 2048, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """The machine's dense matmul rate in real FLOP/s (2 per multiply-add), measured now with torch's threads."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    seconds = time_call(lambda: a @ b, repeats=repeats, warmup=2)
    return 2 * size**3 / seconds
