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
    # index.html links each step's report.html; each opens offline in Chromium
    from tests.browser import open_report

    page = open_report(out / "index.html", tmp_path)
    assert f"{len(rows) - 1} of {len(rows) - 1} steps ran" in page.text
    hrefs = re.findall(r'href="([^"]+)"', page.dom)
    assert all((out / h).exists() for h in hrefs)
    reports = [h for h in hrefs if h.endswith("report.html")]
    assert {"colors/report.html", "xgb/report.html",
            "recommend/evaluation/report.html"} <= set(reports)
    for report in reports:
        assert open_report(out / report, tmp_path).images, report
