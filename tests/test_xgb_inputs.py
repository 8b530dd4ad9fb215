"""xgb-predict and xgb-analyze on awkward input: bad values are errors naming rows and columns
(never scored as missing in silence), duplicate and mixed columns are warned about, and an
explanation stage that fails leaves the rest of the analysis standing."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from mltk import settings
from mltk.errors import ConfigError, InputError
from mltk.xgb import InvalidRowsError, TwoGroupModel, analyze, load_table, predict, prepare
from mltk.xgb.data import apply_schema

FAST = {"booster": "gbtree", "max_evals": 2, "max_rounds": 20, "folds": 3,
        "permutation_repeats": 1}


def small_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numbers (age), text categories (city), booleans (member) and an id column."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"uid": np.arange(1, n + 1), "age": rng.integers(18, 80, n).astype(float),
                       "city": rng.choice(["Tokyo", "Osaka", "Kyoto"], n),
                       "member": rng.random(n) < 0.5})
    score = (df["age"] - 50) / 10 + (df["city"] == "Tokyo") + df["member"] + rng.normal(0, 1, n)
    df["group"] = np.where(score > 0.5, "buyer", "browser")
    return df


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("xgb_inputs")
    analyze(small_table(), "group", settings.load("xgb", **FAST), id_cols=["uid"]).save(out)
    return out


@pytest.fixture
def rows():
    """Five good rows as a CSV reads them back."""
    return small_table().head(5).drop(columns=["group"])


def write(tmp_path, df, name="new.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


# -- xgb-predict: values the model cannot score are errors ---------------------------------


@pytest.mark.slow
def test_text_in_a_number_column_names_row_and_column(model_dir, rows, tmp_path, cli):
    bad = rows.astype(object)
    bad.loc[2, "age"] = "abc"
    result = cli("xgb-predict", model_dir, write(tmp_path, bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "Error: row 3, column 'age': 'abc' is not a number"


@pytest.mark.slow
def test_a_whole_text_column_names_the_first_rows_and_the_count(model_dir, rows, tmp_path, cli):
    bad = rows.assign(age=["forty", "fifty", "?", "old", "young"])
    result = cli("xgb-predict", model_dir, write(tmp_path, bad))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: 5 values in 5 rows cannot be scored (by column: 'age' 5): row 1, column 'age': "
        "'forty' is not a number; row 2, column 'age': 'fifty' is not a number; row 3, column "
        "'age': '?' is not a number; ...")


@pytest.mark.slow
def test_unseen_and_recased_categories_are_errors_unless_asked(model_dir, rows, tmp_path, cli):
    bad = rows.copy()
    bad.loc[1, "city"] = "tokyo"
    bad.loc[3, "city"] = "Nagoya"
    path = write(tmp_path, bad)
    result = cli("xgb-predict", model_dir, path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: 2 values in 2 rows cannot be scored (by column: 'city' 2): row 2, column 'city':"
        " 'tokyo' is not a category seen in training (did you mean 'Tokyo'?); row 4, column "
        "'city': 'Nagoya' is not a category seen in training (known: 'Kyoto', 'Osaka', "
        "'Tokyo')")
    result = cli("xgb-predict", model_dir, path, "--unknown-categories", "missing", "-f", "json")
    assert result.exit_code == 0, result.output
    assert ("scored 2 values of categories not seen in training as missing: column 'city': 2"
            in result.stderr)
    as_missing = predict(model_dir, bad.assign(city=bad["city"].where(~bad.index.isin([1, 3]))))
    got = pd.DataFrame(json.loads(result.stdout))
    np.testing.assert_allclose(got["probability"], as_missing["probability"], rtol=1e-6)


@pytest.mark.slow
def test_missing_values_stay_allowed(model_dir, rows, tmp_path, cli):
    gaps = rows.astype(object)
    gaps.loc[0, "age"] = None
    gaps.loc[1, "city"] = None
    gaps.loc[2, "member"] = None
    result = cli("xgb-predict", model_dir, write(tmp_path, gaps), "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    scored = pd.DataFrame(json.loads(result.stdout))
    assert list(scored.columns) == ["uid", "probability", "label"] and len(scored) == 5
    np.testing.assert_allclose(scored["probability"], predict(model_dir, gaps)["probability"],
                               rtol=1e-6)


@pytest.mark.slow
def test_columns_by_name_in_any_order_extra_ignored_missing_named(model_dir, rows, tmp_path,
                                                                 cli):
    expected = predict(model_dir, rows)
    shuffled = rows[["member", "city", "uid", "age"]].assign(note="extra")
    again = predict(model_dir, shuffled)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), expected.reset_index(drop=True))
    result = cli("xgb-predict", model_dir, write(tmp_path, rows.drop(columns=["age", "city"])))
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: column(s) missing from the data: 'age', 'city'"


@pytest.mark.slow
def test_numbers_in_any_spelling_match_a_text_category(tmp_path):
    # A categorical column of codes and words: in new files pandas may read the codes as
    # integers or, with a gap, as floats (3.0); they are still the training level '3'.
    df = small_table(seed=1)
    df["plan"] = np.where(df["uid"] % 3 == 0, "free", (df["uid"] % 3).astype(str))
    out = tmp_path / "m"
    analyze(df, "group", settings.load("xgb", **FAST), id_cols=["uid"]).save(out)
    model = TwoGroupModel(out)
    assert model.categories["plan"] == ["1", "2", "free"]
    new = df.head(4).drop(columns=["group"])
    as_numbers = new.assign(plan=[1.0, 2.0, np.nan, 1.0])
    as_text = new.assign(plan=["1", "2", None, "1"])
    typed = apply_schema(as_numbers, model.features, model.categories)
    assert typed["plan"].astype(object).where(typed["plan"].notna(), None).tolist() == [
        "1", "2", None, "1"]
    np.testing.assert_array_equal(model.score(as_numbers)["probability"],
                                  model.score(as_text)["probability"])


# -- the load-once model -------------------------------------------------------------------


@pytest.mark.slow
def test_two_group_model_loads_once_and_scores_json_records(model_dir, rows):
    model = TwoGroupModel(model_dir)
    assert model.features == ["age", "city", "member"]
    assert model.id_cols == ["uid"]
    assert {model.positive, model.negative} == {"buyer", "browser"}
    assert 0 < model.threshold < 1
    assert model.categories == {"city": ["Kyoto", "Osaka", "Tokyo"], "member": ["False", "True"]}
    assert model.config["target"] == "group"
    expected = model.score(rows)
    assert list(expected.columns) == ["uid", "probability", "label"]
    pd.testing.assert_frame_equal(predict(model_dir, rows), expected)
    records = [{"uid": int(r.uid), "age": a, "city": r.city, "member": bool(r.member)}
               for r, a in zip(rows.itertuples(), ["23", 61, 40.0, " 35 ", 70], strict=True)]
    typed = rows.assign(age=[23.0, 61.0, 40.0, 35.0, 70.0])
    from_json = model.score(pd.DataFrame.from_records(records))
    np.testing.assert_array_equal(from_json["probability"], model.score(typed)["probability"])
    text_bools = pd.DataFrame.from_records(records).assign(
        member=["true" if m else "false" for m in rows["member"]])
    np.testing.assert_array_equal(model.score(text_bools)["probability"],
                                  model.score(typed)["probability"])


@pytest.mark.slow
def test_records_are_scored_without_pandas_to_the_same_numbers(model_dir):
    """score_records (the server's path) gives exactly score()'s numbers, labels and ids on
    numbers, missing values in every spelling, booleans and categories, and hands back (None)
    every row it cannot type exactly, so that score() raises the error naming it."""
    model = TwoGroupModel(model_dir)
    rng = np.random.default_rng(1)
    records = small_table(300, seed=1).drop(columns=["group"]).to_dict("records")
    for r in records:
        r["uid"] = int(r["uid"])
        r["member"] = bool(r["member"])
        for key in ("age", "city", "member"):
            if rng.random() < 0.1:
                r[key] = [None, "", "NA", "nan", "null"][int(rng.integers(5))]
        if rng.random() < 0.1:
            r["member"] = str(r["member"]).lower() if isinstance(r["member"], bool) else None
        if rng.random() < 0.05:
            r["city"] = float("nan")  # a blank cell of a CSV read by pandas: missing
    fast = model.score_records(records)
    slow = model.score(pd.DataFrame.from_records(records)).to_dict("records")
    assert fast is not None and len(fast) == len(slow) == 300
    for a, b in zip(fast, slow, strict=True):
        assert a == {"uid": b["uid"], "probability": float(b["probability"]),
                     "label": b["label"]}
    # what needs pandas' rules (or its error) is handed back
    good = records[0]
    for bad in ({**good, "age": "old"}, {**good, "city": "Nagoya"}, {**good, "uid": 1.5},
                {k: v for k, v in good.items() if k != "age"}):
        assert model.score_records([good, bad]) is None
    assert model.score_records([]) is None


def test_two_group_model_errors_carry_rows_and_columns(model_dir, rows):
    model = TwoGroupModel(model_dir)
    records = rows.to_dict("records")
    records[1]["age"] = "n/a?"
    records[4]["city"] = "Sapporo"
    with pytest.raises(InputError) as caught:
        model.score(pd.DataFrame.from_records(records))
    err = caught.value
    assert isinstance(err, InvalidRowsError) and err.count == 2 and err.rows == 2
    assert [(p.row, p.column, p.value) for p in err.problems] == [(2, "age", "n/a?"),
                                                                  (5, "city", "Sapporo")]
    with pytest.raises(ConfigError, match="unknown_categories must be error or missing"):
        model.score(rows, unknown_categories="ignore")
    with pytest.raises(InputError, match="not an xgb-analyze output folder"):
        TwoGroupModel(model_dir.parent)


# -- xgb-analyze: duplicate and mixed columns ----------------------------------------------


def test_duplicate_header_names_are_warned(tmp_path, caplog):
    path = tmp_path / "dup.csv"
    path.write_text("noise_a,x,noise_a,noise_a.1,g\n1,2,3,4,a\n5,6,7,8,b\n")
    with caplog.at_level(logging.WARNING, logger="mltk"):
        df = load_table(path)
    assert list(df.columns) == ["noise_a", "x", "noise_a.2", "noise_a.1", "g"]
    assert ("duplicate column names in the header: 'noise_a' appears 2 times (the later ones "
            "are read as 'noise_a.2')") in caplog.text
    frame = pd.DataFrame([[1, 2, "a"], [3, 4, "b"]], columns=["x", "x", "g"])
    with pytest.raises(InputError, match="column name\\(s\\) used more than once: 'x'"):
        prepare(frame, "g")


def test_duplicate_header_warned_by_the_command(tmp_path, cli):
    df = small_table(120)
    path = tmp_path / "dup.csv"
    text = df.to_csv(index=False).replace("member", "age", 1)
    path.write_text(text)
    result = cli("xgb-analyze", path, "--target", "group", "--id-cols", "uid", "--out",
                 tmp_path / "o", "--max-evals", "1", "--booster", "gbtree", "--folds", "3",
                 "--max-rounds", "10", "-f", "json")
    assert result.exit_code == 0, result.output
    assert "'age' appears 2 times (the later ones are read as 'age.1')" in result.stderr


def test_mixed_numbers_and_text_are_warned(tmp_path, caplog):
    df = small_table(100)
    df["income"] = df["age"].astype(int).astype(str)
    df.loc[[3, 7], "income"] = ["unknown", "?"]
    with caplog.at_level(logging.WARNING, logger="mltk"):
        prep = prepare(load_table(write(tmp_path, df)), "group", id_cols=["uid"])
    assert "income" in prep.categorical
    assert ("column 'income': 98 numbers and 2 text values; treated as categorical (text "
            "values: " in caplog.text)
    assert "column 'city'" not in caplog.text  # all text: nothing to say


# -- xgb-analyze: optional stages fail soft ------------------------------------------------


def separable_categorical(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Like the Mushrooms data: all categorical, the class a function of one column (odor),
    with a relabelled copy of it and columns it determines."""
    rng = np.random.default_rng(seed)
    odor = rng.choice(list("afnpsy"), n)
    return pd.DataFrame({
        "odor": odor,
        "smell": pd.Series(odor).map(dict(a="x", f="y", n="z", p="u", s="v", y="w")),
        "cap": rng.choice(list("bcx"), n),
        "gill": np.where(np.isin(odor, list("afn")), "b", rng.choice(list("nw"), n)),
        "ring": np.where(np.isin(odor, list("af")), "p", "e"),
        "edible": np.where(np.isin(odor, list("afn")), "e", "p")})


@pytest.mark.slow
def test_separable_categorical_data_still_gives_a_report(tmp_path, cli):
    path = write(tmp_path, separable_categorical(), "mushrooms.csv")
    out = tmp_path / "o"
    result = cli("xgb-analyze", path, "--target", "edible", "--out", out, "--booster", "gbtree",
                 "--max-evals", "2", "--seed", "0", "--folds", "3", "--max-rounds", "20",
                 "-f", "json")
    assert result.exit_code == 0, result.output
    assert "Warning: regression could not be computed (" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert "Hessian matrix is singular" in report["not_computed"]["regression"]
    assert report["regression"]["coefficients"] == []
    assert report["metrics"]["roc_auc"] == 1.0
    md = (out / "report.md").read_text()
    assert "The logistic regression could not be computed: " in md
    for name in ("model.ubj", "config.yaml", "roc.png", "importance.png", "shap_summary.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_any_explanation_stage_can_fail(tmp_path, cli, monkeypatch):
    from mltk.xgb import explain, plots

    def broken(*args, **kwargs):
        raise MemoryError("no room for SHAP")

    def broken_plot(*args, **kwargs):
        raise ValueError("cannot draw")

    monkeypatch.setattr(explain, "shap_values", broken)
    monkeypatch.setattr(explain, "variance_inflation", broken)
    monkeypatch.setattr(plots, "roc", broken_plot)
    out = tmp_path / "o"
    (out).mkdir()
    (out / "roc.png").write_bytes(b"stale")  # from an earlier run: must not survive
    result = cli("xgb-analyze", write(tmp_path, small_table(150)), "--target", "group",
                 "--id-cols", "uid", "--out", out, "--max-evals", "1", "--booster", "gbtree",
                 "--folds", "3", "--max-rounds", "10", "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["not_computed"] == {
        "shap": "MemoryError: no room for SHAP", "vif": "MemoryError: no room for SHAP",
        "roc.png": "ValueError: cannot draw",
        "shap_summary.png": "needs the SHAP values, which were not computed"}
    assert all(f["mean_abs_shap"] is None for f in report["importance"])
    assert report["regression"]["coefficients"] and report["regression"]["vif"] == []
    assert not (out / "roc.png").exists() and not (out / "shap_summary.png").exists()
    assert (out / "importance.png").exists() and (out / "correlation.png").exists()
    md = (out / "report.md").read_text()
    assert "- shap: MemoryError: no room for SHAP" in md and "](roc.png)" not in md
    html = (out / "report.html").read_text()  # the plots drawn embedded, the others listed
    assert html.count("<img ") == 3 and "shap: MemoryError: no room for SHAP" in html
    rows = json.loads(result.stdout)
    assert rows[0]["mean_abs_shap"] is None and rows[0]["gain"] is not None
    assert "Warning: shap could not be computed (MemoryError: no room for SHAP)" in result.stderr


def test_rows_dropped_for_a_missing_target_keep_ids_aligned():
    """test_predictions: each row's id and row number are its own, also after rows with no
    target were dropped before the split."""
    df = small_table(300, seed=2)
    df.loc[df.index[::7], "group"] = None
    analysis = analyze(df, "group", settings.load("xgb", **FAST), id_cols=["uid"])
    pred = analysis.predictions
    assert len(pred) > 0
    assert (df["uid"].iloc[pred["row"]].to_numpy() == pred["uid"].to_numpy()).all()
    truth = (df["group"].iloc[pred["row"]] == analysis.config["positive"]).astype(int)
    assert (truth.to_numpy() == pred["y_true"].to_numpy()).all()


def test_an_interrupted_save_leaves_no_loadable_mix(tmp_path, monkeypatch):
    """config.yaml marks a complete folder: a save over an older analysis that fails midway
    leaves a folder xgb-predict refuses, not a new model with the old threshold."""
    from mltk.xgb import report

    analysis = analyze(small_table(), "group", settings.load("xgb", **FAST), id_cols=["uid"])
    analysis.save(tmp_path)
    TwoGroupModel(tmp_path)  # loads

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_markdown", broken)
    with pytest.raises(RuntimeError):
        analysis.save(tmp_path)
    with pytest.raises(InputError, match="not an xgb-analyze output folder"):
        TwoGroupModel(tmp_path)
