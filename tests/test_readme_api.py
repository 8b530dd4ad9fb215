"""The README's "Library API" section runs as written: each ```python block, in a fresh
interpreter, in an empty folder (its asserts are the checks)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SLOW = ("mltk.classify", "mltk.recommend",  # blocks that train networks
        "from mltk.xgb import")  # tunes and refits a DART model (~20 s)


def api_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Library API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_an_example_per_capability():
    joined = "\n".join(api_blocks())
    for used in ("from mltk import settings", "mltk.colors", "mltk.tfrecords", "mltk.classify",
                 "mltk.xgb", "mltk.recommend", "mltk.predictors", "mltk.jobs"):
        assert used in joined, f"no example uses {used}"


@pytest.mark.parametrize("block", [
    pytest.param(b, id=re.findall(r"from (mltk\.\w+|mltk) import", b)[-1],
                 marks=[pytest.mark.slow] if any(s in b for s in SLOW) else [])
    for b in api_blocks()])
def test_example_runs(block, tmp_path):
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"{block}\n--- stderr ---\n{result.stderr[-3000:]}"
