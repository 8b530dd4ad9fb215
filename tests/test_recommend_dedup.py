"""mltk recommend query --dedup: candidates whose photo duplicates the query item's, or a
better candidate's, are dropped and the list is refilled to k, from a real ``mltk dedup``
result over real photos (slow) or a similarity index over photo vectors (fast)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mltk.similar.itemdups import DuplicateItems


@pytest.fixture
def photo_index(tmp_path):
    """An exact index over 6 photo paths: b.jpg is a near copy of a.jpg, d.jpg of c.jpg."""
    from mltk import settings
    from mltk.similar import SimilarityIndex, VectorSet

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    x[1] = x[0] + 0.01
    x[3] = x[2] + 0.01
    ids = np.array([str(tmp_path / f"{c}.jpg") for c in "abcdef"], dtype=object)
    index, _ = SimilarityIndex.build(VectorSet(x, ids, pd.DataFrame(index=range(6)), {}, "p"),
                                     settings.load("similar"))
    index.save(tmp_path / "photos-index")
    return tmp_path


def test_split_keeps_order_and_drops_duplicates_of_the_query_and_of_kept_items(photo_index):
    from mltk.similar import SimilarityIndex

    index = SimilarityIndex.load(photo_index / "photos-index")
    photos = {i: str(photo_index / f"{c}.jpg") for i, c in enumerate("abcdef")}
    photos[7] = None  # no photo: duplicates nothing
    dups = DuplicateItems(photos, index=index, min_score=0.95)
    items = [{"item_id": i, "rank": r} for r, i in enumerate([1, 2, 7, 3, 4, 5], 1)]
    kept, dropped = dups.split(0, items)
    assert [it["item_id"] for it in kept] == [2, 7, 4, 5]
    assert dropped == [{"item_id": 1, "duplicate_of": 0}, {"item_id": 3, "duplicate_of": 2}]
    strict = DuplicateItems(photos, index=index, min_score=0.99999)
    assert len(strict.split(0, items)[0]) == 6
    by_group = DuplicateItems({0: "x/a.jpg", 1: "x/../x/b.jpg", 2: "c.jpg"},
                              groups={"x/a.jpg": 1, "x/b.jpg": 1})  # paths compared resolved
    assert by_group.split(0, [{"item_id": 1}, {"item_id": 2}])[1] == [
        {"item_id": 1, "duplicate_of": 0}]


def test_a_file_that_is_not_a_dedup_result_is_one_clear_error(tmp_path):
    from mltk.errors import InputError

    (tmp_path / "items.csv").write_text("item_id,photo\n1,a.jpg\n")
    (tmp_path / "other.csv").write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="not a dedup result"):
        DuplicateItems.load(tmp_path / "items.csv", tmp_path / "other.csv")
    with pytest.raises(InputError, match="no 'picture' column"):
        DuplicateItems.load(tmp_path / "items.csv", tmp_path / "other.csv",
                            photo_column="picture")


@pytest.mark.slow
def test_recommend_query_drops_photo_duplicates_from_a_dedup_result(cli, tmp_path):
    from mltk import settings
    from mltk.datasets import make
    from mltk.recommend import fit
    from mltk.xgb import load_table

    market = make("marketplace", tmp_path / "market", n=1500, seed=0)
    fit(load_table(market.files["items"]), load_table(market.files["transactions"]),
        settings.load("recommend")).save(tmp_path / "model")
    make("near-duplicates", tmp_path / "photos", n=3, seed=0, copies=1)
    dedup = cli("dedup", tmp_path / "photos", "-f", "csv")
    assert dedup.exit_code == 0, dedup.output
    (tmp_path / "dups.csv").write_text(dedup.stdout)

    def query(*extra):
        result = cli("recommend", "query", tmp_path / "model", "--item", str(item), *extra,
                     "-f", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    items = pd.read_csv(market.files["items"])
    item = next(i for i in items["item_id"].head(50)
                if len(json.loads(cli("recommend", "query", tmp_path / "model", "--item",
                                      str(i), "-k", "14", "-f", "json").stdout)) == 14)
    plain = [r["item_id"] for r in query("-k", "14")]
    photo = {item: "000_0_original.jpg", plain[0]: "000_1_resize.jpg",
             plain[1]: "001_0_original.jpg", plain[2]: "001_1_crop.jpg",
             plain[3]: "002_0_original.jpg",
             plain[12]: "002_1_copy.jpg"}  # a duplicate below the 10th result: not listed
    names = sorted(p.name for p in (tmp_path / "photos").glob("*.jpg"))
    photo = {k: str(tmp_path / "photos" / next(n for n in names if n.startswith(v[:6])))
             for k, v in photo.items()}
    items["photo"] = items["item_id"].map(photo)
    items.to_csv(tmp_path / "catalogue.csv", index=False)
    got = query("-k", "10", "--dedup", tmp_path / "dups.csv", "--catalogue",
                tmp_path / "catalogue.csv")
    want = [i for i in plain if i not in (plain[0], plain[2])][:10]
    assert [r["item_id"] for r in got] == want
    assert [r["rank"] for r in got] == list(range(1, 11))
    explained = query("-k", "10", "--explain", "--dedup", tmp_path / "dups.csv",
                      "--catalogue", tmp_path / "catalogue.csv")[0]["explain"]
    assert explained["duplicates"] == [{"item_id": plain[0], "duplicate_of": item},
                                       {"item_id": plain[2], "duplicate_of": plain[1]}]
    alone = cli("recommend", "query", tmp_path / "model", "--item", str(item), "--dedup",
                tmp_path / "dups.csv")
    assert alone.exit_code == 2 and "--dedup and --catalogue go together" in alone.output
