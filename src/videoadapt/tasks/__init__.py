"""Video tasks, one module each, registered by name: what is predicted, its head, loss, decoding and metrics.

>>> task = build_task("recognition", classifier="text")
>>> head = task.build_head(ilfm, encoder, train_data)
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from videoadapt.registry import registry
from videoadapt.tasks.base import Request, SurveyTable, Task, TaskHead, TextEncoder, feature_widths

_INFRASTRUCTURE = {"base"}


def load_tasks() -> None:
    """Import every task module so that each registers itself."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{__name__}.{module.name}")


def task_class(name: str) -> type[Task]:
    load_tasks()
    return registry.get("task", name)


def task_names() -> list[str]:
    load_tasks()
    return registry.names("task")


def build_task(name: str, **options: Any) -> Task:
    return task_class(name)(**options)


__all__ = [
    "Request",
    "SurveyTable",
    "Task",
    "TaskHead",
    "TextEncoder",
    "build_task",
    "feature_widths",
    "load_tasks",
    "task_class",
    "task_names",
]
