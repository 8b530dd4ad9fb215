"""The demo's similar step (embed -> index -> query, and dedup) on a trained run: its outputs
exist, the query neighbours and dedup groups are real answers, and index.md links them."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

pytestmark = pytest.mark.slow  # embeds 300 scans and dedups 24 photos (the run is trained once)


def test_demo_similar_step_embeds_indexes_queries_and_dedups(digits_run, digits_dir,
                                                             tmp_path):
    from mltk import demo

    out = tmp_path / "demo"
    shutil.copytree(digits_run, out / "train")  # as the train step leaves it
    shutil.copytree(digits_dir, out / "data" / "labelled-images")
    (report,) = demo.run(out, only=["similar"])
    assert report.ok, report.summary
    assert "`mltk embed` gave 300 digit scans 16-d vectors" in report.summary
    records = json.loads((out / "similar" / "neighbours.json").read_text())
    assert len(records) == 10 and all(len(r["neighbors"]) == 5 for r in records)
    assert all(r["query"] not in [n["id"] for n in r["neighbors"]] for r in records)
    with open(out / "similar" / "dedup.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and sum(1 for r in rows if r["group"]) >= 16
    index = (out / "index.md").read_text()
    assert "similar/index" in index and "similar/dedup.csv" in index
