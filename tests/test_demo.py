"""`mltk demo` end to end, as a user runs it (the installed console script), and one cheap
step of it in-process (mltk.demo: steps, the failure of one, the index)."""

from __future__ import annotations

import re

import pytest


def test_one_step_writes_an_index_linking_its_outputs(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", "--out", out, "--step", "data", "-f", "ndjson")
    assert r.exit_code == 0, r.output
    (row,) = [__import__("json").loads(line) for line in r.stdout.splitlines()]
    assert (row["step"], row["ok"]) == ("data", True)
    assert row["summary"].startswith("300 real handwritten-digit scans")
    index = (out / "index.md").read_text()
    assert "## Sample data: labelled images\n" in index
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert links == ["data/labelled-images", "data/labelled-images/truth.csv"]
    assert all((out / link).exists() for link in links)
    html = (out / "index.html").read_text()
    assert "1 of 1 steps ran" in html and 'href="data/labelled-images/truth.csv"' in html


def test_a_failed_step_is_recorded_and_the_command_fails(cli, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "data").write_text("a file where the step writes a folder")
    r = cli("demo", "--out", out, "--step", "data", "-f", "csv")
    assert r.exit_code == 1
    assert r.stdout.splitlines()[1].startswith("data,False,")
    assert "some demo steps failed; see index.md" in r.stderr
    assert "## Sample data: labelled images — FAILED" in (out / "index.md").read_text()
    assert "0 of 1 steps ran" in (out / "index.html").read_text()


# Runs every capability (training included) through the installed command: minutes.
@pytest.mark.slow
def test_demo_runs_every_step_and_links_exist(mltk_proc, tmp_path):
    out = tmp_path / "demo"
    proc = mltk_proc("demo", "--out", out, "--format", "csv", timeout=900)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert rows[0] == "step,ok,seconds,summary"
    assert all(",True," in r for r in rows[1:]), proc.stdout
    assert "drift of the last" in proc.stdout  # the server's drift check of the scored rows
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
    assert {"colors/report.html", "xgb/report.html", "train/evaluation/report.html",
            "recommend/evaluation/report.html"} <= set(reports)
    for report in reports:
        assert open_report(out / report, tmp_path).images, report
