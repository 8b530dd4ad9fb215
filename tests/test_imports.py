"""The direction of imports in mltk/, read from the source (nothing is imported).

Every import counts, those inside functions too (a lazy import still ties two modules): no
module may reach itself again through the modules it imports (no cycle), no module outside
mltk.cli may import mltk.cli (the cores never depend on the command line), and no module may
take a private name (``_name``) or a private module of another package (what two packages
share goes down into a shared module: mltk/_*.py, mltk/errors.py, ...).

Tests and benchmarks use mltk's public names only, so a refactor never breaks them by accident:
no private name or private module is imported, named in a string (``monkeypatch.setattr``,
``import_module``) or reached as an attribute (``classify._something``). The one exception is a
shared private module's own unit tests: tests/test_<name>.py may import mltk/_<name>.
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
ALLOWED_PRIVATE_IN_TESTS: set[tuple[str, str]] = set()  # (file, what it uses)


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


# -- tests and benchmarks -----------------------------------------------------------------------

def private_part(dotted: str, own: str | None) -> bool:
    """Whether ``mltk.a.b`` names something private; ``own`` (mltk._name) is the one private
    module allowed, in its own test file, and only its public names."""
    parts = dotted.split(".")
    private = [i for i, p in enumerate(parts) if is_private(p)]
    return bool(private) and not (private == [1] and ".".join(parts[:2]) == own)


def mltk_imports(tree: ast.AST) -> tuple[list[tuple[int, str]], set[str]]:
    """(line, dotted name) of every import of mltk, and the names those imports bind."""
    imported: list[tuple[int, str]] = []
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            taken = [(a.name, a.asname or a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            taken = [(f"{node.module}.{a.name}", a.asname or a.name) for a in node.names]
        else:
            continue
        for dotted, name in taken:
            if dotted.split(".")[0] == "mltk":
                imported.append((node.lineno, dotted))
                bound.add(name)
    return imported, bound


def named_in_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every call whose first argument is a dotted name in mltk:
    ``monkeypatch.setattr("mltk.x._y", ...)``, ``import_module("mltk._x")``."""
    first = [n.args[0] for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args]
    return [(a.lineno, a.value) for a in first
            if isinstance(a, ast.Constant) and isinstance(a.value, str)
            and a.value.startswith("mltk.") and all(p.isidentifier() for p in a.value.split("."))]


def reached_privately(tree: ast.AST, bound: set[str]) -> list[tuple[int, str]]:
    """(line, expression) of every private attribute of a name an mltk import bound:
    ``mod.sub._name``, ``Class._name``, ``getattr(mod, "_name")``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append((node.lineno, ".".join([base.id, *reversed(chain)])))
        elif isinstance(node, ast.Call) and len(node.args) >= 2 \
                and isinstance(node.args[0], ast.Name) and node.args[0].id in bound \
                and isinstance(node.args[1], ast.Constant) and is_private(node.args[1].value):
            found.append((node.lineno, f"{node.args[0].id}.{node.args[1].value}"))
    return found


def private_uses(path: Path) -> list[str]:
    """What ``path`` (a test or benchmark) uses of mltk's private names, as ``line: name``."""
    own = f"mltk._{path.stem[5:]}" if path.stem.startswith("test_") else None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported, bound = mltk_imports(tree)
    found = [(line, name) for line, name in imported + named_in_strings(tree)
             if private_part(name, own)] + reached_privately(tree, bound)
    return [f"{line}: {name}" for line, name in sorted(set(found))]


def private_uses_under(checkout: Path) -> set[tuple[str, str]]:
    """(file, name) of every private name of mltk used by the checkout's tests and benchmarks."""
    return {(p.relative_to(checkout).as_posix(), use.split(": ", 1)[1])
            for folder in ("tests", "benchmarks")
            for p in sorted((checkout / folder).rglob("*.py")) for use in private_uses(p)}


def test_tests_and_benchmarks_use_no_private_names_of_mltk():
    assert private_uses_under(ROOT.parent) - ALLOWED_PRIVATE_IN_TESTS == set()


def test_the_private_name_check_finds_each_kind_of_use(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_x.py").write_text("from mltk._imaging import decode\n")
    assert private_uses_under(tmp_path) == {("benchmarks/bench_x.py", "mltk._imaging.decode")}
    planted = tmp_path / "tests" / "test_planted.py"
    planted.write_text(
        "import mltk._atomic\n"
        "from mltk import _config, classify\n"
        "from mltk.classify.trainer import _Run, Trainer\n"
        "from mltk.serving import app as served\n"
        "def test_x(monkeypatch):\n"
        "    classify._something()\n"
        "    served._Guard.x\n"
        "    Trainer._fit\n"
        "    monkeypatch.setattr('mltk.serving.app._json_bytes', None)\n"
        "    getattr(classify, '_hidden')\n"
        "    classify.Classifier, classify.__name__, _config_like._x\n")
    assert private_uses(planted) == [
        "1: mltk._atomic", "2: mltk._config", "3: mltk.classify.trainer._Run",
        "6: classify._something", "7: served._Guard", "8: Trainer._fit",
        "9: mltk.serving.app._json_bytes", "10: classify._hidden"]
    own = tmp_path / "tests" / "test_atomic.py"  # a private module's own tests: public names
    own.write_text("from mltk import _atomic\nfrom mltk._atomic import write_text, _tmp\n"
                   "_atomic.atomic_path, _atomic._hidden\nimport mltk._config\n")
    assert private_uses(own) == ["2: mltk._atomic._tmp", "3: _atomic._hidden",
                                 "4: mltk._config"]
    assert len(private_uses_under(tmp_path)) == 1 + 8 + 3  # what the tree's own test would see
