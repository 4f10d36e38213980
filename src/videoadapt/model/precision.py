"""``run.precision``: what ``auto`` means on this machine.

``auto`` is bf16 autocast where the hardware computes in bf16 natively, fp32 elsewhere. On a CPU without bf16
instructions oneDNN emulates bf16 by converting to fp32 and back, which is slower than fp32 and only loses
precision, so ``auto`` never picks it there.

* CUDA: ``torch.cuda.is_bf16_supported()`` (compute capability 8.0 or newer: A100, H100, RTX 30xx and later).
* x86 CPU: the AVX512-BF16 or AMX-BF16 instructions, as torch's own CPU feature detection (cpuinfo) reports them:
  AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later. Measured on the 2-core AMD EPYC (Zen 5)
  build machine: bench cells that train TinyCLIP run 2.2-2.6x faster under bf16 autocast than in fp32
  (``benchmarks/train_rate.py``).
* Anything else (older x86, Arm, Apple): fp32.
"""

from __future__ import annotations

import contextlib

import torch

from videoadapt.errors import VideoadaptError

CPU_BF16_FEATURES = ("avx512_bf16", "amx_bf16")


def cpu_features() -> dict[str, bool]:
    """torch's view of this CPU's instruction set extensions (empty where torch cannot tell)."""
    query = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if query is None:
        return {}
    try:
        return {k: bool(v) for k, v in query().items() if isinstance(v, bool)}
    except RuntimeError:
        return {}


def native_bf16(cuda: bool) -> bool:
    """True when the device the run trains on (a CUDA GPU if ``cuda``, else the CPU) computes bf16 natively."""
    if cuda:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    features = cpu_features()
    return any(features.get(name, False) for name in CPU_BF16_FEATURES)


def resolve_precision(precision: str, cuda: bool) -> str:
    """Accelerate's ``mixed_precision`` for ``run.precision``: ``no``, ``bf16``, or ``auto`` resolved on this
    machine."""
    if precision == "auto":
        return "bf16" if native_bf16(cuda) else "no"
    if precision not in ("no", "bf16"):
        raise VideoadaptError(f"run.precision must be no, bf16 or auto, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision`` ``"bf16"`` (resolved), nothing for ``"no"``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
