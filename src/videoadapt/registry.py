"""One registry for every pluggable concept (commands, paradigms, tasks, backbones, ...).

Names are registered where the thing is defined (LAVIS style), so adding a paradigm or a task is adding a file::

    @registry.register("task", "recognition")
    class Recognition(Task): ...

    registry.get("task", "recognition")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from videoadapt.errors import UnknownNameError

T = TypeVar("T")


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    def register(self, kind: str, name: str) -> Callable[[T], T]:
        """Decorator that files ``obj`` under ``kind``/``name``; registering a name twice is a bug."""

        def add(obj: T) -> T:
            entries = self._entries.setdefault(kind, {})
            if name in entries and entries[name] is not obj:
                raise ValueError(f"{kind} {name!r} is registered twice ({entries[name]!r} and {obj!r})")
            entries[name] = obj
            return obj

        return add

    def get(self, kind: str, name: str) -> Any:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownNameError(kind, name, self.names(kind)) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries.get(kind, {}))

    def items(self, kind: str) -> list[tuple[str, Any]]:
        return sorted(self._entries.get(kind, {}).items())


registry = Registry()
