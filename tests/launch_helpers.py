"""Checking `accelerate launch` runs in tests.

A known, still open teardown bug: under load, a rank that has finished every step and written its outputs can
abort at interpreter exit ("terminate called without an active exception", gloo on CPU), so the launcher exits
non-zero although the work is complete. Such a run is accepted, with a warning, only when the run wrote the file
that marks it complete; any other failure fails the test with the launcher's output.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

TEARDOWN_ABORT = "terminate called without an active exception"


def check_launch(result: subprocess.CompletedProcess, completed: Path) -> None:
    if result.returncode == 0:
        return
    if TEARDOWN_ABORT in result.stderr and completed.is_file():
        message = f"a rank aborted at exit after completing ({completed.name} written): known teardown bug"
        warnings.warn(message, stacklevel=2)
        return
    raise AssertionError(f"launch failed with exit code {result.returncode}:\n{result.stderr[-3000:]}")
