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


def test_purchases_has_its_planted_effects(tmp_path):
    import pandas as pd

    info = make("purchases", tmp_path / "a", n=4000, seed=0)
    df = pd.read_csv(info.files["data"])
    truth = json.loads(info.truth.read_text())
    assert (info.n, len(df), truth["target"], truth["positive"]) == (4000, 4000, "group",
                                                                       "one_time")
    one_time = df["group"] == "one_time"
    assert abs(one_time.mean() - 0.18) < 0.03 and truth["one_time_share"] == one_time.mean()
    by_coupon = one_time.groupby(df["coupon_first_order"]).mean()  # +0.9 log-odds
    assert by_coupon[1] > by_coupon[0] + 0.05
    assert df.loc[one_time, "sessions_30d"].median() < df.loc[~one_time, "sessions_30d"].median()
    assert df["sessions_30d"].corr(df["pages_viewed_30d"]) > 0.9  # the collinear pair
    assert 0.02 < df["avg_basket_yen"].isna().mean() < 0.08
    assert set(truth["noise"]) <= set(df) and "main_category" in truth["informative"]
    again = make("purchases", tmp_path / "b", n=4000, seed=0)
    assert again.files["data"].read_bytes() == info.files["data"].read_bytes()
