"""mltk recommend: rules, filters, RankNet, NDCG, evaluation, bad input."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from mltk import settings
from mltk import settings as mltk_settings
from mltk.errors import InputError
from mltk.recommend import Recommender, fit, mine_rules, ndcg
from mltk.recommend.data import load_items, load_transactions
from mltk.recommend.rules import baskets

pytest.importorskip("keras")
SMALL = {"classifier": {"layers": [128, 64], "epochs": 6}, "ranknet": {"epochs": 4}}
MODEL_FILES = {"rules.csv", "meta_categories.csv", "index.parquet", "classifier.keras",
               "ranknet.keras", "users.parquet", "metrics.json", "config.yaml",
               "MLmodel", "python_env.yaml"}  # the last two: MLflow's pyfunc flavour


def small_settings(**values):
    """The shipped defaults with small networks (a section given replaces the defaults' one;
    the keys it leaves out keep their defaults)."""
    return settings.load("recommend", **{**SMALL, **values})


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    from mltk.datasets import make

    return make("marketplace", tmp_path_factory.mktemp("market"), n=3000, seed=0)


@pytest.fixture(scope="module")
def fitted(market, tmp_path_factory):
    """A recommender fitted on the marketplace's tables in memory, in an empty working folder;
    (recommender, what appeared in that folder and the data folder meanwhile)."""
    tables = {name: pd.read_csv(market.files[name]) for name in ("items", "transactions",
                                                                 "users")}
    work = tmp_path_factory.mktemp("work")
    data_before = sorted(os.listdir(market.path))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        rec = fit(tables["items"], tables["transactions"], small_settings(), tables["users"])
    finally:
        os.chdir(cwd)
    appeared = sorted(os.listdir(work)) + sorted(set(os.listdir(market.path)) -
                                                 set(data_before))
    return rec, appeared


@pytest.fixture(scope="module")
def model(fitted, tmp_path_factory):
    rec, _ = fitted
    out = rec.save(tmp_path_factory.mktemp("model") / "m")
    return out, rec.report


def test_rules_recover_planted_groups(market):
    from sklearn.metrics import adjusted_rand_score

    cfg = small_settings()
    items = load_items(market.files["items"], cfg)
    tx = load_transactions(market.files["transactions"], items, cfg)
    basket_df, cats = baskets(tx, items, "item_id", "category_id")
    assert all(isinstance(t, pd.SparseDtype) for t in basket_df.dtypes)  # never dense
    rules, meta, summary = mine_rules(tx, items, cfg)
    assert {"support", "confidence", "lift", "leverage", "conviction"} <= set(rules.columns)
    truth = json.loads(market.truth.read_text())["category_group"]
    ari = adjusted_rand_score([truth[str(c)] for c in meta["category_id"]], meta["meta_id"])
    assert ari >= 0.8
    assert summary["meta_categories"] == meta["meta_id"].nunique()


def test_classifier_and_ranknet_quality(model):
    _, report = model
    c = report["classifier"]
    assert c["top5_accuracy"] > c["popularity_top5_accuracy"]
    r = report["ranknet"]
    assert r["ndcg_linear"] > r["ndcg_linear_random"] + 0.2


def test_every_recommendation_passes_every_filter(model, market):
    out, _ = model
    rec = Recommender.load(out)
    items = pd.read_csv(market.files["items"]).set_index("item_id")
    band = rec.settings.price_band
    kinds, sexes = ["model", "line", "series", "kigata"], ["man", "women"]
    dup_products = items["product_id"][items["product_id"].duplicated(keep=False)]
    queries = list(items.index[:150]) + list(dup_products.index)
    n_results = 0
    for q in queries:
        result = rec.query(int(q), 10, explain=True)
        metas = set(result.explain["top_meta"])
        for r in result.items:
            n_results += 1
            a, b = items.loc[q], items.loc[r["item_id"]]
            assert r["item_id"] != q
            assert a["product_id"] != b["product_id"]  # no other listing of the same product
            assert (a[kinds] == b[kinds]).all() and (a[sexes] == b[sexes]).all()
            assert abs(a["price"] - b["price"]) <= band
            assert r["meta_id"] in metas
        scores = [r["score"] for r in result.items]
        assert scores == sorted(scores, reverse=True)
    assert n_results > 500


def test_ndcg_matches_sklearn_with_ties():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 15))
        y = rng.integers(0, 4, n).astype(float)
        s = rng.integers(0, 5, n).astype(float)  # many ties
        k = int(rng.integers(1, n + 1))
        assert ndcg([y], [s], k) == pytest.approx(ndcg_score([y], [s], k=k), abs=1e-12)
    # exponential gains: 2^rel - 1 fed to scikit-learn as the gains
    y, s = rng.integers(0, 4, 10).astype(float), rng.random(10)
    assert ndcg([y], [s], 5, "exponential") == pytest.approx(
        ndcg_score([2 ** y - 1], [s], k=5), abs=1e-12)


def test_ranknet_is_pairwise():
    """Shifting every query's labels by its own constant changes nothing for a pairwise model
    (a pointwise one would learn different targets)."""
    import tensorflow as tf

    from mltk.recommend.models import train_ranknet
    from mltk.recommend.settings import RankNetSettings

    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype("float32")
    groups = rng.integers(0, 6, 300)
    labels = X[:, 0] * 2 + X[:, 1] + rng.normal(0, 0.1, 300)
    shifted = labels + np.array([0, 10, -5, 100, 3, -40])[groups]
    small = RankNetSettings(layers=[16], learning_rate=0.01, pairs_per_query=200, epochs=3,
                            batch_size=64)
    a = train_ranknet(X, labels, groups, small, seed=1).predict(X, verbose=0)
    b = train_ranknet(X, shifted, groups, small, seed=1).predict(X, verbose=0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert np.corrcoef(a.ravel(), labels)[0, 1] > 0.8


def test_cli_query_batch_explain_and_errors(model, cli, tmp_path):
    out, _ = model
    result = cli("recommend", "query", out, "--item", "11", "-k", "3", "--explain", "-f", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)[0]
    assert len(payload["recommendations"]) <= 3
    assert {"in_meta", "same_kind", "same_sex", "in_price_band", "not_same_product",
            "missing_price"} <= set(payload["explain"]["filters"][0])
    bad = cli("recommend", "query", out, "--item", "999999")
    assert bad.exit_code == 1 and bad.stderr.strip() == "Error: unknown item id 999999"
    queries = tmp_path / "q.csv"
    queries.write_text("item_id,user_id\n11,\n999999,\n21,5\n21,424242\n")
    result = cli("recommend", "query", out, "--queries", queries, "-f", "ndjson", "-k", "2")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["error"] for r in rows] == [None, "line 3: unknown item id 999999", None,
                                          "line 5: unknown user id 424242"]
    assert [r["line"] for r in rows] == [2, 3, 4, 5]
    assert rows[2]["user_id"] == 5 and rows[2]["recommendations"]


def test_missing_values_and_bad_tables(market, tmp_path, cli):
    items = pd.read_csv(market.files["items"])
    items.loc[:40, "price"] = np.nan
    items.loc[41:60, "kigata"] = np.nan
    items = items.drop(columns=["ps"])
    items.to_csv(tmp_path / "items.csv", index=False)
    tx = pd.read_csv(market.files["transactions"])
    tx = pd.concat([tx, pd.DataFrame({"user_id": [1, 2], "item_id": [-5, -6],
                                      "timestamp": [1, 2]})])
    tx.to_csv(tmp_path / "tx.csv", index=False)
    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text("classifier: {layers: [32], epochs: 2, batch_size: 256, dropout: 0.0, "
                        "learning_rate: 0.001, val_fraction: 0.2}\n"
                        "ranknet: {layers: [8], epochs: 1, pairs_per_query: 200, "
                        "batch_size: 256, learning_rate: 0.01, val_fraction: 0.2, ndcg_k: 10}\n")
    result = cli("recommend", "fit", "-t", tmp_path / "tx.csv", "-i", tmp_path / "items.csv",
                 "--out", tmp_path / "m", "--config", cfg_file, "-f", "json")
    assert result.exit_code == 0, result.output
    assert "2 transactions name unknown items; skipped" in result.stderr
    assert "signal column(s) missing from the items, counted as 0: ps" in result.stderr
    rec = Recommender.load(tmp_path / "m")
    idx = rec.index
    for name, row in (("no price (column 'price')", 0), ("a missing kind flag", 41)):
        item = int(items.loc[row, "item_id"])
        with pytest.raises(InputError, match=rf"^item {item} has {re.escape(name)}"):
            rec.query(item, 10, explain=True)
    # a priced item whose candidates include unpriced ones: they are dropped, and counted
    unpriced = np.isnan(idx.price)
    for q in range(len(idx.item_id)):
        tops = idx.top_meta[q]
        near = np.isin(idx.meta, tops) & (idx.kind == idx.kind[q]) & (idx.sex == idx.sex[q])
        if not unpriced[q] and idx.kind[q] >= 0 and idx.sex[q] >= 0 and (near & unpriced).any():
            break
    result = rec.query(int(idx.item_id[q]), 10, explain=True)
    assert sum(f["missing_price"] for f in result.explain["filters"]) > 0
    assert all(not np.isnan(r["price"]) for r in result.items)
    dup = pd.concat([items, items.head(2)])
    dup.to_csv(tmp_path / "dup.csv", index=False)
    result = cli("recommend", "rules", "-t", tmp_path / "tx.csv", "-i", tmp_path / "dup.csv",
                 "--out", tmp_path / "r")
    assert result.exit_code == 1 and "duplicate item ids" in result.stderr
    with pytest.raises(InputError, match="not a recommend model folder"):
        Recommender.load(tmp_path)


def test_evaluate_against_baselines(model, market, cli, tmp_path):
    from tests.browser import open_report

    out, _ = model
    result = cli("recommend", "evaluate", out, "-t", market.files["transactions"], "-f", "json",
                 "--report", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"mltk", "popular_in_category", "random_in_meta"}
    assert rows["mltk"]["hit_rate"] > rows["random_in_meta"]["hit_rate"]
    assert all(0 <= r["coverage"] <= 1 for r in rows.values())
    # report.html: the answer with mltk's hit rate beside both baselines', opened in Chromium
    page = open_report(tmp_path / "rep" / "report.html", tmp_path)
    m = rows["mltk"]
    assert (f"(hit rate@10 {m['hit_rate']:.3f}, against "
            f"{rows['popular_in_category']['hit_rate']:.3f} for most bought in the category "
            f"and {rows['random_in_meta']['hit_rate']:.3f}") in page.text
    assert len(page.images) == 1
    assert len(pd.read_csv(tmp_path / "rep" / "evaluation.csv")) == 3


def test_fewer_than_k_says_so_and_relaxing_widens_the_band(model):
    out, _ = model
    rec = Recommender.load(out)
    q = int(rec.index.item_id[0])
    strict = rec.index.query(q, 500, 100.0)
    assert len(strict.items) < 500 and strict.note.startswith(f"only {len(strict.items)} of 500")
    relaxed = rec.index.query(q, 500, 100.0, relax=True)
    assert len(relaxed.items) >= len(strict.items)
    assert "price band widened to ±800" in relaxed.note
    assert all(abs(r["price"] - rec.index.price[0]) <= 800 for r in relaxed.items)


def test_fit_in_memory_writes_nothing_until_save(fitted, model, market, tmp_path):
    rec, appeared = fitted
    out, report = model
    assert appeared == []
    assert {p.name for p in out.iterdir()} == MODEL_FILES  # and no temporary files left
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(report))
    # config.yaml: the settings as the shipped defaults spell them, and the fitted numbers
    saved = mltk_settings.read_config(out / "config.yaml")
    assert list(saved) == [*rec.settings.to_dict(), "n_meta", "context_stats", "user_stats",
                           "item_stats"]
    defaults = mltk_settings.defaults("recommend")
    assert {k: saved[k] for k in defaults if k not in SMALL} == {
        k: v for k, v in defaults.items() if k not in SMALL}
    assert saved["classifier"] == {**defaults["classifier"], **SMALL["classifier"]}
    # the saved-then-loaded recommender answers as the one in memory, with a user too
    loaded = Recommender.load(out)
    assert loaded.settings == rec.settings and loaded.report == report
    ids = pd.read_csv(market.files["items"])["item_id"].head(40).tolist()
    users = pd.read_csv(market.files["users"])["user_id"].head(3).tolist()
    for i in ids:
        assert vars(loaded.query(i, 10, explain=True)) == vars(rec.query(i, 10, explain=True))
    for i, u in zip(ids, users, strict=False):
        assert loaded.query(i, 5, u).items == rec.query(i, 5, u).items
    # a loaded recommender saves the same folder elsewhere (files it did not read are copied)
    again = Recommender.load(loaded.save(tmp_path / "copy"))
    assert {p.name for p in (tmp_path / "copy").iterdir()} == MODEL_FILES
    assert again.query(ids[0], 5, users[0]).items == rec.query(ids[0], 5, users[0]).items
