"""The wheel ships every package and the default configs."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "mltk").rglob("__init__.py")}
    assert found | {"mltk.configs"} == listed


def test_wheel_contains_configs_and_exactly_the_source_modules(tmp_path):
    """Built from a copy without build/ (setuptools would ship a stale build/lib's modules,
    e.g. ones since renamed), the wheel holds the configs and exactly mltk/'s modules."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", "dist", ".venv", ".git", "*.egg-info", "__pycache__", ".pytest_cache",
        "demo-output", ".whl"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("mltk-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split("/")[-1] for n in names if n.startswith("mltk/configs/")}
    expected = {p.name for p in (ROOT / "configs").glob("*.yaml")}
    assert expected <= shipped
    modules = {n for n in names if n.startswith("mltk/") and n.endswith(".py")
               and not n.startswith("mltk/configs/")}
    assert modules == {p.relative_to(ROOT).as_posix() for p in (ROOT / "mltk").rglob("*.py")}
    templates = {p.relative_to(ROOT).as_posix()
                 for p in (ROOT / "mltk" / "_report" / "templates").glob("*.html.j2")}
    assert templates and templates <= set(names)  # every report.html's layout


def test_no_package_exports_a_name_that_is_also_its_module():
    """`mltk.tfrecords.build` must mean one thing: a package's exported function and one of
    its modules never share a name (the module would be unreachable by attribute)."""
    import importlib
    import pkgutil
    import types

    import mltk

    clashes = []
    for info in pkgutil.walk_packages(mltk.__path__, "mltk."):
        if not info.ispkg or info.name.startswith("mltk.configs"):
            continue
        package = importlib.import_module(info.name)
        for sub in pkgutil.iter_modules(package.__path__):
            value = getattr(package, sub.name, None)
            if value is not None and not isinstance(value, types.ModuleType):
                clashes.append(f"{info.name}.{sub.name}")
    assert clashes == []


def test_no_function_is_rated_worse_than_c_by_radon():
    """Cyclomatic complexity at most 20 for every function in mltk/ (radon's grade C)."""
    from radon.complexity import cc_rank, cc_visit

    import mltk

    root = Path(mltk.__file__).resolve().parent
    worse = [f"{path.relative_to(root)}:{block.lineno} {block.fullname} {block.complexity}"
             for path in sorted(root.rglob("*.py"))
             for block in cc_visit(path.read_text(encoding="utf-8"))
             if cc_rank(block.complexity) not in "ABC"]
    assert worse == []
