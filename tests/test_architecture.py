"""The package's shape (DESIGN.md, "Layout"): folders are layers, a file imports only from its own layer or below,
and no two files import each other, directly or around a longer loop. Read from the source with ``ast`` (imports
inside functions count too: they are dependencies all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "videoadapt"

# Lowest first; a file may import from its own layer and every layer before it.
LAYERS = (
    ("errors", "registry", "utils"),
    ("data", "metrics"),
    ("foundation",),
    ("temporal",),
    ("paradigms",),
    ("tasks",),
    ("model",),
    ("train", "inference"),
    ("bench",),
    ("commands", "cli", "__main__"),
)


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    return len(LAYERS)  # videoadapt/__init__.py: the package's face, may import any layer


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["videoadapt", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    # Imports for type annotations alone (``if TYPE_CHECKING:``) never run: they are not dependencies.
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("videoadapt") and name != module:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: _imports(module, path, known) for module, path in known.items()}


def test_every_file_imports_only_its_own_layer_or_below():
    violations = []
    for module, targets in _graph().items():
        for target in targets:
            if _layer(target) > _layer(module) and not _is_package_init_of(target, module):
                violations.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not violations, "\n".join(sorted(violations))


def test_inference_never_imports_the_training_loop():
    # DESIGN.md: inference (a Predictor, eval) loads and runs a run without the training code; what both need (the
    # model, its config, batches, evaluation) lives in the model layer below them.
    graph = _graph()
    inference = [m for m in graph if m.startswith("videoadapt.inference")]
    assert "videoadapt.inference.evaluate" in inference
    leaks = sorted(f"{m} imports {t}" for m in inference for t in graph[m] if t.startswith("videoadapt.train"))
    assert not leaks, "\n".join(leaks)


def _is_package_init_of(target: str, module: str) -> bool:
    return target == "videoadapt"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_files_import_each_other():
    # A package's __init__ re-exports its submodules and a submodule may use the package's registry helpers: those
    # edges go through the package, not between two files, so the package node is left out of the loop search.
    graph = {m: {t for t in ts if not _is_package(t)} for m, ts in _graph().items() if not _is_package(m)}
    cycles = _cycles(graph)
    assert not cycles, "import cycles between files:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _is_package(module: str) -> bool:
    return (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").is_file() if module != "videoadapt" else True


@pytest.mark.parametrize("bad", ["from videoadapt.bench import runner\n"])
def test_the_checker_sees_an_upward_import(tmp_path, bad):
    # The checks above must be able to fail: a data module importing the bench is a violation.
    known = {"videoadapt.data.x": tmp_path / "x.py", "videoadapt.bench.runner": tmp_path / "runner.py"}
    (tmp_path / "x.py").write_text(bad)
    assert _imports("videoadapt.data.x", known["videoadapt.data.x"], known) == {"videoadapt.bench.runner"}
    assert _layer("videoadapt.bench.runner") > _layer("videoadapt.data.x")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
