"""`mltk demo` end to end, as a user runs it (the installed console script)."""

from __future__ import annotations

import re

import pytest

# Runs every capability (training included) through the installed command: minutes.
pytestmark = pytest.mark.slow


def test_demo_runs_every_step_and_links_exist(mltk_proc, tmp_path):
    out = tmp_path / "demo"
    proc = mltk_proc("demo", "--out", out, "--format", "csv", timeout=900)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert rows[0] == "step,ok,seconds,summary"
    assert all(",True," in r for r in rows[1:]), proc.stdout
    index = (out / "index.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert len(links) >= 4
    for link in links:
        assert (out / link).exists(), link
