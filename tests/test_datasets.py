"""Sample-data generators and `mltk datasets`."""

from __future__ import annotations

import csv
import json

import pytest

from mltk.datasets import make
from mltk.errors import MltkError


def test_labelled_images_matches_truth(tmp_path):
    import cv2

    info = make("labelled-images", tmp_path, n=40, seed=1)
    rows = list(csv.DictReader(open(info.truth)))
    assert len(rows) == 40 == info.n
    for row in rows:
        assert row["file"].split("/")[0] == row["label"]
        img = cv2.imread(str(tmp_path / row["file"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 3)
    assert len({r["label"] for r in rows}) == 10


def test_labelled_images_is_seeded(tmp_path):
    a = make("labelled-images", tmp_path / "a", n=10, seed=3)
    b = make("labelled-images", tmp_path / "b", n=10, seed=3)
    assert a.truth.read_text() == b.truth.read_text()
    c = make("labelled-images", tmp_path / "c", n=10, seed=4)
    assert a.truth.read_text() != c.truth.read_text()


def test_bad_requests(tmp_path):
    with pytest.raises(MltkError, match="unknown dataset"):
        make("nope", tmp_path)
    with pytest.raises(MltkError, match="at least 1"):
        make("labelled-images", tmp_path, n=0)


def test_cli_make(cli, tmp_path):
    result = cli("datasets", "make", "labelled-images", "--out", tmp_path, "--n", "5", "-f",
                 "ndjson")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["n"] == 5 and rec["truth"].endswith("truth.csv")
