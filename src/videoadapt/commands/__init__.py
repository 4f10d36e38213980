"""CLI subcommands, one module each. A module registers a :class:`Command` under its name; `load_commands`
imports every module of this package, so adding a subcommand is adding a file.

Modules here stay cheap to import (no torch at import time): heavy imports go inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


class _OldSpelling(argparse.Action):
    """A flag's former name: still accepted for one release, with a note on stderr naming the new one."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        print(
            f"{parser.prog}: {option_string} is now {self.new}; the old name goes in the next release", file=sys.stderr
        )
        setattr(namespace, self.dest, values)


def old_spelling(parser: argparse.ArgumentParser, old: str, new: str, **kwargs: Any) -> None:
    """Accept ``old`` (hidden from ``--help``) as ``new``, whose ``dest`` it fills; ``kwargs`` as ``new`` takes
    (``type``)."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_OldSpelling, new=new, help=argparse.SUPPRESS, **kwargs)


def task_names_text(last: str = "or") -> str:
    """Every task's name for a help text ("recognition, ..., tracking or segmentation"), from the one list."""
    from videoadapt.data.records import TASKS

    return f"{', '.join(TASKS[:-1])} {last} {TASKS[-1]}"


def load_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
