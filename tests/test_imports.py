"""The direction of imports in mltk/, read from the source (nothing is imported).

Every import counts, those inside functions too (a lazy import still ties two modules): no
module may reach itself again through the modules it imports (no cycle), no module outside
mltk.cli may import mltk.cli (the cores never depend on the command line), and no module may
take a private name (``_name``) or a private module of another package (what two packages
share goes down into a shared module: mltk/_*.py, mltk/errors.py, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import mltk

ROOT = Path(mltk.__file__).resolve().parent

# Known exceptions: none. The lists may only stay empty.
ALLOWED_CLI_IMPORTS: set[tuple[str, str]] = set()
ALLOWED_PRIVATE: set[tuple[str, str]] = set()
ALLOWED_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def package_of(name: str) -> str:
    """mltk.classify.trainer -> mltk.classify; mltk._atomic (shared) -> mltk."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (ROOT / parts[-1]).is_dir() else "mltk"


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import of mltk in ``path``."""
    found: list[tuple[str, str | None]] = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "mltk"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "mltk":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, None) if sub in known else (base, alias.name))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m, _ in imports(name, path, known) if m in known and m != name}
            for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_imports_at_any_depth():
    edges = graph()
    assert "mltk.classify.trainer" in edges["mltk.classify"]
    assert "mltk.classify.models" in edges["mltk.classify.trainer"]  # inside a method
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles():
    assert [c for c in cycles(graph()) if c not in ALLOWED_CYCLES] == []


def test_only_the_cli_imports_the_cli():
    known = modules()
    found = {(name, m) for name, path in known.items()
             if not name.startswith("mltk.cli") and name != "mltk.__main__"
             for m, _ in imports(name, path, known) if m.startswith("mltk.cli")}
    assert found - ALLOWED_CLI_IMPORTS == set()


def is_private(name: str | None) -> bool:
    """``_name`` (``__version__`` and the like are public)."""
    return bool(name) and name.startswith("_") and not name.endswith("__")


def test_no_private_names_across_packages():
    known = modules()
    found = set()
    for name, path in known.items():
        for module, taken in imports(name, path, known):
            target = package_of(module)
            if target == package_of(name) or target == "mltk" and not is_private(taken):
                continue  # its own package, or a shared module of mltk (mltk/_*.py and others)
            if any(is_private(p) for p in module.split(".")[2:]) or is_private(taken):
                found.add((name, module))
    assert found - ALLOWED_PRIVATE == set()
