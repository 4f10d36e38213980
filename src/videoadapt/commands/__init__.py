"""CLI subcommands, one module each. A module registers a :class:`Command` under its name; `load_commands`
imports every module of this package, so adding a subcommand is adding a file.

Modules here stay cheap to import (no torch at import time): heavy imports go inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


def load_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
