"""mltk recommend: what query, --explain, --queries, -k and rules do with incomplete input.

The model folders here are built from the index alone (no Keras): a query without --user
never touches the learned models, so the filters can be checked against a brute-force
reading of the catalogue, item by item.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mltk import settings
from mltk import settings as mltk_settings
from mltk.errors import InputError
from mltk.recommend import QueryRow, Recommender, read_queries
from mltk.recommend.features import kind_codes, sex_codes
from mltk.recommend.index import CandidateIndex
from mltk.settings import SettingError

KINDS = ["model", "line", "series", "kigata"]
SEXES = ["man", "women"]
BAND = 2000.0


def catalogue(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Items with every kind of gap: missing prices, kind and sex flags, product ids."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 4, n)
    sex = rng.integers(0, 3, n)
    items = pd.DataFrame({
        "item_id": np.arange(n) * 10 + 1, "category_id": rng.integers(0, 12, n),
        "meta_id": rng.integers(0, 4, n),
        "price": np.round(rng.uniform(1000, 9000, n), -1),
        **{k: (kind == i).astype(float) for i, k in enumerate(KINDS)},
        "man": (sex != 1).astype(float), "women": (sex != 0).astype(float),
        "product_id": np.arange(n).astype(float)})
    items.loc[rng.choice(n, 30, replace=False), "price"] = np.nan
    items.loc[rng.choice(n, 30, replace=False), "kigata"] = np.nan
    items.loc[rng.choice(n, 20, replace=False), "women"] = np.nan
    items.loc[rng.choice(n, 10, replace=False), "product_id"] = np.nan
    dup = rng.choice(n, 40, replace=False)
    items.loc[dup[20:], "product_id"] = items.loc[dup[:20], "product_id"].to_numpy()
    # the case: two items of different kinds, both lacking a kind flag, side by side
    items.loc[0, ["meta_id", "price", *KINDS, *SEXES]] = [0, 5000, 1, 0, 0, np.nan, 1, 0]
    items.loc[1, ["meta_id", "price", *KINDS, *SEXES]] = [0, 5010, 0, 0, np.nan, 1, 1, 0]
    items.loc[2, ["meta_id", "price", *KINDS, *SEXES]] = [0, np.nan, 1, 0, 0, 0, 1, 0]
    items.loc[3, ["meta_id", "price", *KINDS, *SEXES]] = [0, 5020, 1, 0, 0, 0, 1, 0]
    return items


def save_model(items: pd.DataFrame, folder, **values) -> Recommender:
    """A model folder with the index fit builds (same kind/sex encoding), and no networks; its
    config.yaml is written as a plain mapping (as earlier versions did), so it may hold bad
    values."""
    rng = np.random.default_rng(1)
    meta = items["meta_id"].to_numpy()
    table = pd.DataFrame({
        "item_id": items["item_id"].to_numpy(), "category_id": items["category_id"].to_numpy(),
        "meta_id": meta, "kind_code": kind_codes(items, KINDS), "sex_code": sex_codes(items, SEXES),
        "price": items["price"].to_numpy(float),
        "product_code": pd.factorize(items["product_id"])[0],
        "net_score": rng.normal(size=len(items)), "rank_score": rng.random(len(items))})
    top_meta = np.stack([meta, (meta + 1) % 4, (meta + 2) % 4], 1)
    folder.mkdir(parents=True, exist_ok=True)
    CandidateIndex(table, top_meta).save(folder)
    cfg = settings.load("recommend", price_band=BAND).to_dict()
    cfg.update(values)
    mltk_settings.write_config(folder / "config.yaml", cfg)
    return Recommender.load(folder)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    items = catalogue()
    return items, save_model(items, tmp_path_factory.mktemp("shop"))


def expected_candidates(items: pd.DataFrame, q: int) -> set:
    """Brute force over the raw catalogue: what the documented filters let through."""
    a = items.iloc[q]
    metas = {a["meta_id"], (a["meta_id"] + 1) % 4, (a["meta_id"] + 2) % 4}
    keep = items["meta_id"].isin(metas)
    for col in [*KINDS, *SEXES]:
        keep &= items[col].notna() & (items[col] == a[col])
    keep &= items["price"].notna() & ((items["price"] - a["price"]).abs() <= BAND)
    keep &= items.index != q
    if pd.notna(a["product_id"]):
        keep &= items["product_id"] != a["product_id"]
    return set(items.loc[keep, "item_id"].tolist())


def test_query_and_explain_agree_with_the_filters_for_every_item(shop):
    items, rec = shop
    answered = 0
    for q in range(len(items)):
        a = items.iloc[q]
        lacking = a[["price", *KINDS, *SEXES]].isna()
        try:
            result = rec.query(int(a["item_id"]), 1000, explain=True)
        except InputError as exc:
            assert lacking.any(), str(exc)
            assert str(exc).startswith(f"item {int(a['item_id'])} has ")
            continue
        assert not lacking.any(), f"item {a['item_id']} lacks {list(lacking[lacking].index)}"
        answered += 1
        got = [r["item_id"] for r in result.items]
        assert set(got) == expected_candidates(items, q)
        info = result.explain
        assert info["survivors"] == info["returned"] == len(got) == sum(
            f["not_same_product"] for f in info["filters"])
        for f in info["filters"]:
            assert f["in_meta"] >= f["same_kind"] + f["missing_kind"]
            assert f["same_kind"] >= f["same_sex"] + f["missing_sex"]
            assert f["same_sex"] >= f["in_price_band"] + f["missing_price"]
            assert f["in_price_band"] >= f["not_same_product"]
        top3 = rec.query(int(a["item_id"]), 3, explain=True)
        assert [r["item_id"] for r in top3.items] == got[:3]
        assert top3.explain["filters"] == info["filters"]
    assert answered > 250


def test_explain_counts_what_each_filter_drops_for_a_missing_value(shop):
    items, rec = shop
    info = rec.query(int(items.loc[3, "item_id"]), 10, explain=True).explain  # meta 0, model
    meta0 = info["filters"][0]
    assert meta0["meta_id"] == 0
    # items 0 and 1 (meta 0, a kind flag missing) are counted as dropped by the kind filter,
    # item 2 (meta 0, model, man, no price) as dropped by the price band
    assert meta0["missing_kind"] >= 2 and meta0["missing_price"] >= 1
    ids = {r["item_id"] for r in rec.query(int(items.loc[3, "item_id"]), 1000).items}
    assert not ids & set(items.loc[[0, 1, 2], "item_id"].tolist())


@pytest.mark.parametrize(("row", "message"), [
    (0, "item 1 has a missing kind flag (columns model, line, series, kigata): "
        "the kind filter needs them"),
    (2, "item 21 has no price (column 'price'): the price-band filter needs one"),
])
def test_a_query_item_lacking_a_filter_field_is_an_error(shop, cli, tmp_path, row, message):
    items, rec = shop
    item = int(items.loc[row, "item_id"])
    with pytest.raises(InputError) as exc:
        rec.query(item, 10, explain=True)
    assert str(exc.value) == message
    with pytest.raises(InputError):
        rec.index.query(item, 10, BAND)
    [record] = rec.batch([{"item_id": item}])
    assert record["error"] == message and record["recommendations"] == []
    result = cli("recommend", "query", rec.folder, "--item", item, "--explain")
    assert result.exit_code == 1 and result.stderr.strip() == f"Error: {message}"


def test_a_query_item_lacking_a_sex_flag_is_an_error(shop):
    items, rec = shop
    row = int(np.flatnonzero(items["women"].isna() & items["price"].notna()
                             & items[KINDS].notna().all(axis=1))[0])
    item = int(items.loc[row, "item_id"])
    with pytest.raises(InputError, match=rf"^item {item} has a missing sex flag \(columns "
                                         r"man, women\): the sex filter needs them$"):
        rec.query(item)


def test_flag_codes_keep_missing_apart_from_none_and_absent_columns():
    df = pd.DataFrame({"model": [1, 0, 0, np.nan, 0], "line": [0, 1, 0, 0, 0],
                       "kigata": [0, 0, 0, 0, 1], "man": [1, 0, 1, 1, np.nan],
                       "women": [1, 1, 0, 0, 0]})
    # series is absent: counted as 0 (as the RankNet and classifier features do)
    assert kind_codes(df, ["model", "line", "series", "kigata"]).tolist() == [0, 1, 4, -1, 3]
    assert kind_codes(df, []).tolist() == [0] * 5  # no kind flags configured: no kind filter
    assert sex_codes(df, ["man", "women"]).tolist() == [3, 1, 2, 2, -1]
    assert sex_codes(df, ["man", "women", "other"]).tolist() == [6, 2, 4, 4, -1]
    assert sex_codes(df, []).tolist() == [0] * 5


def test_an_unknown_product_is_never_its_own_duplicate(tmp_path):
    items = catalogue(60, seed=3)  # one group, one price, no kind set, no product ids
    items["meta_id"], items["price"], items["product_id"] = 0, 5000.0, np.nan
    items[KINDS], items[SEXES] = 0.0, 1.0
    rec = save_model(items, tmp_path / "m")
    result = rec.query(int(items.loc[0, "item_id"]), 100, explain=True)
    assert len(result.items) == 59 == sum(f["not_same_product"] for f in
                                          result.explain["filters"])


def test_evaluate_counts_unqueryable_items_as_misses(shop, tmp_path, caplog):
    from mltk.recommend import evaluate

    items, rec = shop
    # users 1, 2 last bought after items lacking a kind flag / a price
    tx = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [1, 31, 21, 31, 31, 41],
                       "timestamp": range(6)})
    with caplog.at_level("WARNING"):
        rows = {r["method"]: r for r in evaluate(rec, tx, k=5)}
    assert rows["mltk"]["users"] == 3
    assert "2 query items lack a price or a kind/sex flag; counted as misses" in caplog.text
    assert evaluate(rec.folder, tx, k=5) == list(rows.values())  # a model folder too
    with pytest.raises(InputError, match="^tx.csv: no user with two or more purchases"):
        evaluate(rec, tx.head(1), source="tx.csv")
    with pytest.raises(InputError, match="^transactions need a 'user_id' column$"):
        evaluate(rec, tx.drop(columns="user_id"))


# -- k ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, -3, 2.5, "5", True])
def test_k_must_be_a_positive_integer(shop, k):
    items, rec = shop
    item = int(items.loc[3, "item_id"])
    with pytest.raises(InputError, match=rf"^k must be a positive integer, got {k!r}$"):
        rec.query(item, k)
    with pytest.raises(InputError, match="^k must be a positive integer"):
        rec.batch([{"item_id": item}], k)  # at once, before the first row
    with pytest.raises(InputError, match="^k must be a positive integer"):
        rec.index.query(item, k, BAND)


def test_k_defaults_to_the_model_setting_and_is_checked_there_too(shop, tmp_path):
    items, rec = shop
    item = int(items.loc[3, "item_id"])
    assert len(rec.query(item, 1000).items) > 4
    assert len(rec.query(item).items) == min(rec.settings.k, len(rec.query(item, 1000).items))
    assert len(rec.query(item, np.int64(4)).items) == 4
    with pytest.raises(SettingError, match=r"config.yaml: k must be a positive integer, got 0$"):
        save_model(items, tmp_path / "m", k=0)  # a bad saved setting: when the folder is read


@pytest.mark.parametrize("k", ["0", "-3"])
def test_cli_k_is_a_usage_error(shop, cli, tmp_path, k):
    items, rec = shop
    result = cli("recommend", "query", rec.folder, "--item", int(items.loc[3, "item_id"]),
                 "-k", k)
    assert result.exit_code == 2 and "-k" in result.output and not result.stdout.strip()
    tx = tmp_path / "tx.csv"
    tx.write_text("user_id,item_id\n1,1\n1,31\n")
    result = cli("recommend", "evaluate", rec.folder, "-t", tx, "-k", k)
    assert result.exit_code == 2 and "-k" in result.output


# -- --queries ------------------------------------------------------------------------------------
def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_read_queries_turns_each_bad_csv_line_into_an_error_row():
    rows = list(read_queries(lines(
        "item_id,user_id\n31,\n41,5,9\n\n,7\n\"51\"x,1\n61,2\n11.0,\n"), "q.csv"))
    assert rows == [
        QueryRow(2, {"item_id": 31, "user_id": None}),
        QueryRow(3, {}, "expected 2 fields (item_id,user_id), got 3"),
        QueryRow(5, {"item_id": None, "user_id": 7}),
        QueryRow(6, {}, "unreadable CSV (',' expected after '\"')"),
        QueryRow(7, {"item_id": 61, "user_id": 2}),
        QueryRow(8, {"item_id": 11, "user_id": None})]


def test_read_queries_turns_each_bad_json_line_into_an_error_row():
    rows = list(read_queries(lines(
        '\n{"item_id": 31}\n{"item_id": 41,\n[41]\n"41"\n7\nnull\n{"user_id": 3}\n'
        '{"item_id": "x1", "user_id": 2}\n'), "-"))
    assert [(r.line, r.error) for r in rows] == [
        (2, None), (3, "invalid JSON (Expecting property name enclosed in double quotes, "
                       "column 16)"),
        (4, "expected a JSON object, got an array"), (5, "expected a JSON object, got a string"),
        (6, "expected a JSON object, got a number"), (7, "expected a JSON object, got null"),
        (8, None), (9, None)]
    assert rows[-1].fields == {"item_id": "x1", "user_id": 2}


def test_read_queries_stops_only_for_a_file_with_nothing_to_read():
    for text in ("", "\n  \n"):
        with pytest.raises(InputError, match=r"^q.csv: no queries \(the file is empty\)$"):
            read_queries(lines(text), "q.csv")
    with pytest.raises(InputError, match="^q.csv: line 1: expected a CSV header with an "
                                         "item_id column"):
        read_queries(lines("id,user\n1,2\n"), "q.csv")
    # a byte-order mark is not part of the first column's name
    assert list(read_queries(lines("\ufeffitem_id\n31\n"), "q.csv")) == [
        QueryRow(2, {"item_id": 31})]


def test_batch_records_name_the_line_and_go_on(shop):
    items, rec = shop
    good = int(items.loc[3, "item_id"])
    rows = [QueryRow(2, {"item_id": good}), QueryRow(3, {}, "invalid JSON (x)"),
            QueryRow(4, {"user_id": 1}), QueryRow(5, {"item_id": 999999}), [good],
            {"item_id": good}]
    records = list(rec.batch(rows, 2, explain=True))
    assert [r["error"] for r in records] == [
        None, "line 3: invalid JSON (x)", "line 4: no item_id",
        "line 5: unknown item id 999999", "expected a mapping with an item_id, got list", None]
    assert [r["line"] for r in records] == [2, 3, 4, 5, None, None]
    assert [r["row"] for r in records] == list(range(6))
    assert all(list(r) == ["row", "item_id", "user_id", "recommendations", "note", "explain",
                           "error", "line"] for r in records)
    assert len(records[0]["recommendations"]) == 2 and records[0]["explain"]["filters"]


@pytest.mark.parametrize(("name", "text"), [
    ("q.csv", "item_id,user_id\n31,\n41,5,9\n,\n999999,\n\"51\"x,1\n31,\n"),
    ("q.ndjson", '{"item_id": 31}\n{"item_id": 41,\n{}\n{"item_id": 999999}\n[1]\n'
                 '{"item_id": 31}\n'),
])
def test_cli_queries_file_bad_lines_get_error_records(shop, cli, tmp_path, name, text):
    items, rec = shop
    path = tmp_path / name
    path.write_text(text)
    result = cli("recommend", "query", rec.folder, "--queries", path, "-f", "ndjson", "-k", "2")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in records] == list(range(2, 8) if name == "q.csv" else range(1, 7))
    errors = [r["error"] for r in records]
    assert errors[0] is None and errors[-1] is None
    assert all(e.startswith(f"line {r['line']}: ") for r, e in zip(records[1:-1], errors[1:-1],
                                                                 strict=True))
    assert "unknown item id 999999" in errors[3]
    assert len(records[-1]["recommendations"]) == 2
    assert "4 queries failed" in result.stderr
    assert f"{errors[1]}\n" in result.stderr  # the warning names the line too


def test_cli_queries_from_stdin_and_missing_or_empty_files(shop, cli, tmp_path):
    items, rec = shop
    result = cli("recommend", "query", rec.folder, "--queries", "-", "-f", "json",
                 input='{"item_id": 31}\nnot json\n')
    assert result.exit_code == 0, result.output
    assert [r["error"] for r in json.loads(result.stdout)] == [
        None, "line 2: invalid JSON (Expecting value, column 1)"]
    missing = tmp_path / "nope.csv"
    result = cli("recommend", "query", rec.folder, "--queries", missing)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {missing}: No such file or directory"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli("recommend", "query", rec.folder, "--queries", empty, "-f", "ndjson")
    assert result.exit_code == 1 and not result.stdout
    assert result.stderr.strip() == f"Error: {empty}: no queries (the file is empty)"


# -- rules ----------------------------------------------------------------------------------------
def test_rules_need_no_price_and_find_the_same_rules(cli, tmp_path):
    from mltk.datasets import make

    market = make("marketplace", tmp_path / "mk", n=1200, seed=0)
    items = pd.read_csv(market.files["items"])
    items.drop(columns=["price", "model", "man", "rating"]).to_csv(tmp_path / "bare.csv",
                                                                   index=False)
    args = ("recommend", "rules", "-t", market.files["transactions"], "-f", "json")
    full = cli(*args, "-i", market.files["items"], "--out", tmp_path / "full")
    bare = cli(*args, "-i", tmp_path / "bare.csv", "--out", tmp_path / "bare")
    assert full.exit_code == 0 and bare.exit_code == 0, bare.output
    assert full.stdout == bare.stdout
    assert json.loads(full.stdout)[0]["rules"] > 0
    for name in ("rules.csv", "meta_categories.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "bare" / name).read_text()
    assert "missing from the items" not in bare.stderr  # rules do not use them
    # fit still needs the price
    fit = cli("recommend", "fit", "-t", market.files["transactions"], "-i", tmp_path / "bare.csv",
              "--out", tmp_path / "m")
    assert fit.exit_code == 1
    assert fit.stderr.strip() == f"Error: {tmp_path / 'bare.csv'}: items need a 'price' column " \
                                 "(price)"


# -- settings -------------------------------------------------------------------------------------
def test_settings_are_checked_and_name_the_setting():
    from mltk.recommend import RecommendSettings

    s = settings.load("recommend", k=5)
    assert isinstance(s, RecommendSettings) and s.k == 5 and s.rules.min_support == 0.002
    assert s.columns.kind_flags == tuple(KINDS) and s.signals["add_fav"] == 4
    with pytest.raises(SettingError, match="k must be a positive integer, got 0") as exc:
        settings.load("recommend", k=0)
    assert exc.value.key == "k"
    with pytest.raises(SettingError, match=r"^MLTK_RECOMMEND_RULES: rules\.min_support must be "
                                           r"a number in \(0, 1\], got 2$"):
        settings.load("recommend", environ={"MLTK_RECOMMEND_RULES": "{min_support: 2}"})
    # a section given in part keeps the defaults of the keys it leaves out
    assert settings.load("recommend", environ={"MLTK_RECOMMEND_RULES": "{min_lift: 3}"}
                         ).rules.replace(min_lift=1.5) == s.rules
    with pytest.raises(SettingError, match=r"rules has unknown key\(s\) min_suport"):
        settings.load("recommend", rules={"min_suport": 0.1})
    with pytest.raises(SettingError, match=r"^command line: signals\.ps must be a finite number"):
        settings.load("recommend", signals={"ps": "high"})
    with pytest.raises(SettingError, match=r"rules\.algorithm must be apriori \| fpgrowth"):
        settings.load("recommend", rules={"algorithm": "eclat"})


def test_every_setting_is_documented():
    from mltk.recommend import settings as module

    classes = [module.RecommendSettings, module.ColumnSettings, module.RuleSettings,
               module.ClassifierSettings, module.RankNetSettings]
    for cls in classes:
        assert all(doc.strip() for doc in cls.docs().values()), cls.__name__
    defaults = mltk_settings.defaults("recommend")
    assert settings.load("recommend").to_dict() == defaults  # the YAML's keys, values, order
    assert list(settings.load("recommend").to_dict()) == list(defaults)


def test_cli_bad_rule_settings_name_the_option_or_the_variable(cli, tmp_path):
    tx, items = tmp_path / "tx.csv", tmp_path / "items.csv"
    tx.write_text("user_id,item_id\n1,1\n1,2\n")
    items.write_text("item_id,category_id\n1,1\n2,2\n")
    args = ("recommend", "rules", "-t", tx, "-i", items, "--out", tmp_path / "r")
    result = cli(*args, "--min-support", "2")
    assert result.exit_code == 2 and "--min-support" in result.output
    assert "rules.min_support must be a number in (0, 1], got 2.0" in " ".join(
        result.output.replace("│", " ").split())
    result = cli(*args, env={"MLTK_RECOMMEND_RULES": "{min_support: 2}"})
    assert result.exit_code == 1 and result.stderr.strip() == (
        "Error: MLTK_RECOMMEND_RULES: rules.min_support must be a number in (0, 1], got 2")
    assert not (tmp_path / "r").exists()


def test_rules_are_the_same_whatever_the_string_hashing(tmp_path, mltk_proc):
    """Rules tied on lift and confidence come out in one order in every process (mlxtend's
    order follows Python's per-process string hashing), and so do the meta-categories."""
    from mltk.datasets import make

    market = make("marketplace", tmp_path / "market", n=2000, seed=0)
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"rules{hash_seed}"
        result = mltk_proc("recommend", "rules", "-t", market.files["transactions"], "-i",
                           market.files["items"], "--out", out, "-q",
                           env={"PYTHONHASHSEED": hash_seed})
        assert result.returncode == 0, result.stderr
        outputs.append([(out / name).read_bytes()
                        for name in ("rules.csv", "meta_categories.csv")])
    assert outputs[0] == outputs[1]
