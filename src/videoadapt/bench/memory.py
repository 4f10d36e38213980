"""Peak memory of a stretch of work above what was held when it began, the same way on every row: on a GPU
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU the peak resident set size (Linux
``VmHWM``, reset through ``/proc/self/clear_refs``). The bench starts it once a cell's model is built, so it
counts what training adds to the weights: gradients, optimizer state and activations."""

from __future__ import annotations

import resource
from dataclasses import dataclass

import torch


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> bool:
    """Make the kernel's peak-RSS counter start again from the current size (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class PeakMemory:
    """``start()`` then ``stop()`` -> MB above the start (None where it cannot be measured)."""

    device: str = "cpu"
    baseline: int = 0
    reset: bool = False

    def start(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.baseline = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.reset = True
            return
        try:
            self.baseline = current_rss_bytes()
            self.reset = reset_peak_rss()
        except OSError:
            self.reset = False

    def stop(self) -> tuple[float | None, str]:
        """(MB, how it was measured)."""
        if self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - self.baseline
            return peak / 2**20, "torch.cuda.max_memory_allocated above the allocation after building"
        if not self.reset:
            return None, "not measured (no /proc/self/clear_refs)"
        try:
            peak = peak_rss_bytes()
        except OSError:
            return None, "not measured (no /proc/self/status)"
        return (peak - self.baseline) / 2**20, "VmHWM above the RSS after building"
