"""qscale's module import graph: errors.py is a leaf, and checkpoint.py, hub.py, source.py and
guard.py lie on no import cycle (they once closed a 22-module one: errors -> guard -> loader
-> … -> checkpoint -> hub -> checkpoint).

The graph is read from the source with ``ast``, every ``import`` statement counted wherever it
stands (module level, inside a function, under ``TYPE_CHECKING``): a late import breaks no
cycle, it only hides one. ``import a.b`` and ``from a import b`` give an edge to the module
``a.b`` where there is one, else to ``a``; the packages a dotted name passes through are not
counted, or every module would sit on a cycle through ``qscale/__init__.py``, which re-exports
the API. The package itself counts where a module names it (``from qscale import rules``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qscale

ROOT = Path(qscale.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if MODULES[module].name != "__init__.py":
                package.pop()
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                 for a in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:  # `import qscale.x.y` names the module x.y
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the qscale modules it imports."""
    graph = {}
    for module, path in MODULES.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(module, node)
        edges.discard(module)
        graph[module] = edges
    return graph


GRAPH = import_graph()


def reachable(start: str) -> set[str]:
    """Every module ``start`` imports, directly or not."""
    seen: set[str] = set()
    todo = list(GRAPH[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += GRAPH[m]
    return seen


def path_back(start: str) -> list[str] | None:
    """An import chain from ``start`` back to itself, if there is one."""
    parents: dict[str, str] = {}
    todo = [start]
    while todo:
        m = todo.pop(0)
        for n in sorted(GRAPH[m]):
            if n == start:
                chain = [m]
                while chain[-1] != start:
                    chain.append(parents[chain[-1]])
                return [*reversed(chain), start]
            if n not in parents:
                parents[n] = m
                todo.append(n)
    return None


def test_the_graph_reads_the_known_edges():
    # a guard against a parser that silently finds nothing
    assert "qscale.errors" in GRAPH["qscale.checkpoint"]
    assert "qscale.checkpoint" in GRAPH["qscale.hub"]
    assert "qscale.hub" in GRAPH["qscale.source"]  # a late import, counted all the same
    assert "qscale.progress" in GRAPH["qscale.checkpoint"]  # under TYPE_CHECKING


def test_errors_is_a_leaf():
    assert GRAPH["qscale.errors"] == set()


@pytest.mark.parametrize(
    "module", ["qscale.errors", "qscale.checkpoint", "qscale.hub", "qscale.source", "qscale.guard"]
)
def test_on_no_import_cycle(module):
    assert path_back(module) is None, " -> ".join(path_back(module) or ())


def test_checkpoint_does_not_reach_the_hub_or_the_package():
    below = reachable("qscale.checkpoint")
    assert "qscale.hub" not in below
    assert "qscale" not in below  # qscale/__init__ imports everything


def test_public_api_unchanged():
    from qscale import source

    assert qscale.read_checkpoint is source.read_checkpoint
    assert all(hasattr(qscale, name) for name in qscale.__all__)
    assert {"read_checkpoint", "check", "Checkpoint", "QscaleError", "__version__"} <= set(
        qscale.__all__
    )
