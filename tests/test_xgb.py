"""mltk xgb-analyze / xgb-predict on real (breast cancer) and generated (purchases) data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mltk.settings
from mltk import settings as mltk_settings
from mltk.errors import InputError
from mltk.settings import SettingError
from mltk.xgb import Analysis, XgbSettings, analyze, load_table, predict, prepare

FAST = {"max_evals": 3, "max_rounds": 80, "folds": 3, "permutation_repeats": 2}


def settings(**kw):
    return mltk.settings.load("xgb", **{**FAST, **kw})


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    df = data.frame.copy()
    df["diagnosis"] = np.where(df.pop("target") == 1, "benign", "malignant")
    return df


@pytest.fixture(scope="module")
def cancer_run(cancer, tmp_path_factory):
    out = tmp_path_factory.mktemp("cancer")
    analysis = analyze(cancer, "diagnosis", settings())  # DART, the default
    analysis.save(out)
    return out, analysis.report


@pytest.mark.slow
def test_breast_cancer_auc_and_artefacts(cancer_run):
    out, report = cancer_run
    assert report["regression"]["coefficients"]  # separable data: a regularized fit, noted
    assert report["metrics"]["roc_auc"] >= 0.97
    assert report["data"]["positive"] == "malignant"  # the minority class by default
    assert report["tuning"]["params"]["booster"] == "dart"
    for name in ("report.md", "report.json", "model.ubj", "config.yaml", "trials.csv",
                 "test_predictions.csv", "roc.png", "mcc.png", "importance.png",
                 "shap_summary.png", "correlation.png"):
        assert (out / name).stat().st_size > 0, name
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3
    assert trials["learning_rate"].nunique() == 3  # the space really varies
    assert {"cv_auc_mean", "cv_auc_std", "rounds", "seconds", "rate_drop", "skip_drop"} <= set(
        trials.columns)
    assert len(report["metrics"]["sweep"]["thresholds"]) >= 100
    assert len(report["importance"]) == 30  # every feature listed, zero ones too


@pytest.mark.slow
def test_mcc_matches_sklearn_and_model_reproduces(cancer_run, cancer):
    import xgboost as xgb
    from sklearn.metrics import matthews_corrcoef

    out, report = cancer_run
    pred = pd.read_csv(out / "test_predictions.csv")
    t = report["metrics"]["best_threshold"]
    assert report["metrics"]["best_mcc"] == pytest.approx(
        matthews_corrcoef(pred["y_true"], (pred["probability"] >= t).astype(int)), abs=1e-9)
    booster = xgb.Booster(model_file=str(out / "model.ubj"))
    assert booster.num_boosted_rounds() == report["tuning"]["rounds"]  # refit, not sliced
    rows = cancer.iloc[pred["row"]]
    again = predict(out, rows)
    np.testing.assert_allclose(again["probability"], pred["probability"], rtol=0, atol=1e-6)
    assert set(again["label"]) <= {"benign", "malignant"}
    assert report["shap_additivity_max_gap"] < 1e-3


@pytest.mark.slow
def test_shap_contributions_add_up(cancer_run, cancer):
    import xgboost as xgb

    out, _ = cancer_run
    booster = xgb.Booster(model_file=str(out / "model.ubj"))
    X = cancer.drop(columns=["diagnosis"]).iloc[:50]
    dm = xgb.DMatrix(X)
    contribs = booster.predict(dm, pred_contribs=True)
    np.testing.assert_allclose(contribs.sum(1), booster.predict(dm, output_margin=True),
                               atol=1e-4)


@pytest.mark.slow
def test_purchases_informative_rank_above_noise(tmp_path, cli):
    from mltk.datasets import make

    info = make("purchases", tmp_path / "data", n=4000, seed=1)
    truth = json.loads(info.truth.read_text())
    result = cli("xgb-analyze", info.files["data"], "--target", "group", "--id-cols", "user_id",
                 "--out", tmp_path / "out", "--booster", "gbtree", "--max-evals", "4",
                 "--folds", "3", "-f", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    rank = {r["feature"]: r["rank"] for r in rows}
    worst_informative = max(rank[f] for f in truth["informative"])
    best_noise = min(rank[f] for f in truth["noise"])
    assert worst_informative < best_noise, rank
    assert list(rows[0]) == ["rank", "feature", "gain", "mean_abs_shap", "permutation_auc_drop",
                             "smd"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    collinear = {v["feature"] for v in report["regression"]["vif"] if v["collinear"]}
    assert set(truth["collinear"]) <= collinear
    coefs = {c["feature"]: c for c in report["regression"]["coefficients"]}
    assert coefs["coupon_first_order"]["coef"] > 0 and coefs["coupon_first_order"][
        "p_value"] < 0.001
    assert "test ROC AUC" in result.stderr
    cfg = mltk_settings.read_config(tmp_path / "out" / "config.yaml")
    assert cfg["booster"] == "gbtree" and cfg["positive"] == "one_time"
    scored = cli("xgb-predict", tmp_path / "out", info.files["data"], "-f", "csv")
    lines = scored.stdout.splitlines()
    assert lines[0] == "user_id,probability,label" and len(lines) == 4001


@pytest.mark.slow
def test_onehot_and_stdin(tmp_path, cli):
    from mltk.datasets.purchases import generate

    df = generate(1200, seed=2)
    result = cli("xgb-analyze", "-", "--target", "group", "--id-cols", "user_id", "--out",
                 tmp_path / "o", "--booster", "gbtree", "--categorical", "onehot",
                 "--max-evals", "2", "--folds", "3", "-f", "ndjson",
                 input=df.to_csv(index=False))
    assert result.exit_code == 0, result.output
    features = {json.loads(line)["feature"] for line in result.stdout.splitlines()}
    assert "main_category=home" in features
    assert len(predict(tmp_path / "o", df.head(5))) == 5


@pytest.mark.slow
def test_dropped_columns_warned(tmp_path, cli):
    from mltk.datasets.purchases import generate

    df = generate(600, seed=3)
    df["constant"] = 7
    df["empty"] = np.nan
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    result = cli("xgb-analyze", path, "--target", "group", "--out", tmp_path / "o",
                 "--booster", "gbtree", "--max-evals", "1", "--folds", "3", "--id-cols",
                 "user_id", "-f", "json")
    assert result.exit_code == 0, result.output
    assert "dropping column 'constant': constant" in result.stderr
    assert "dropping column 'empty': all values missing" in result.stderr


@pytest.mark.parametrize("frame, target, message", [
    (pd.DataFrame({"a": [], "y": []}), "y", "no rows"),
    (pd.DataFrame({"a": [1, 2, 3], "y": [1, 1, 1]}), "y", "single class"),
    (pd.DataFrame({"a": [1, 2, 3], "y": [0, 1, 0]}), "label", "target column 'label' not found"),
    (pd.DataFrame({"a": [1, 2, 3], "y": ["a", "b", "c"]}), "y", "3 distinct values"),
])
def test_bad_targets(frame, target, message):
    with pytest.raises(InputError, match=message):
        prepare(frame, target)


def test_prepare_drops_missing_targets_and_useless_columns(caplog):
    df = pd.DataFrame({"x": [1.0, 2, 3, 4, 5], "c": [7] * 5, "e": [np.nan] * 5,
                       "g": ["a", "b", None, "a", "b"]})
    prepared = prepare(df, "g", positive="b")
    assert prepared.y.tolist() == [0, 1, 0, 1]
    assert (prepared.positive, prepared.negative) == ("b", "a")
    assert prepared.dropped == {"c": "constant", "e": "all values missing"}
    assert prepared.features == ["x"]
    assert "dropping 1 rows with a missing target" in caplog.text
    with pytest.raises(InputError, match="no usable feature columns"):
        prepare(df.drop(columns=["x"]), "g")


def test_bad_input_cli(tmp_path, cli):
    path = tmp_path / "three.csv"
    pd.DataFrame({"x": range(9), "g": ["a", "b", "c"] * 3}).to_csv(path, index=False)
    result = cli("xgb-analyze", path, "--target", "g", "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: target 'g' has 3 distinct values ('a', 'b', 'c'); "
                                     "it must be binary")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli("xgb-analyze", empty, "--target", "g")
    assert result.exit_code == 1 and "the file is empty" in result.stderr
    assert cli("xgb-analyze", tmp_path / "nope.csv", "--target", "g").exit_code == 1
    two = tmp_path / "two.csv"
    pd.DataFrame({"x": range(20), "g": ["a", "b"] * 10}).to_csv(two, index=False)
    result = cli("xgb-analyze", two, "--target", "g", "--positive", "zzz")
    assert result.exit_code == 1 and "not a value" in result.stderr
    result = cli("xgb-predict", tmp_path, path)
    assert result.exit_code == 1 and "not an xgb-analyze output folder" in result.stderr


@pytest.mark.slow
def test_parquet_input(tmp_path, cli):
    from mltk.datasets.purchases import generate

    df = generate(800, seed=4)
    df.to_parquet(tmp_path / "d.parquet")
    result = cli("xgb-analyze", tmp_path / "d.parquet", "--target", "group", "--id-cols",
                 "user_id", "--out", tmp_path / "o", "--booster", "gbtree", "--max-evals", "1",
                 "--folds", "3", "--positive", "repeat", "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["data"]["positive"] == "repeat" and report["data"]["rows"] == 800


# -- settings: typed, checked, errors naming the setting ------------------------------------


def test_settings_defaults_are_configs_xgb_yaml():
    loaded = mltk.settings.load("xgb", environ={})
    assert isinstance(loaded, XgbSettings) and loaded == XgbSettings()
    assert loaded.to_dict() == mltk_settings.defaults("xgb")  # saved beside the model as before
    assert set(XgbSettings.docs()) == set(mltk_settings.defaults("xgb"))
    assert all(XgbSettings.docs().values())
    assert XgbSettings.of({"folds": 3}).folds == 3 and XgbSettings.of(None) == XgbSettings()


def test_settings_errors_name_the_setting_and_its_origin():
    with pytest.raises(SettingError, match="folds must be an integer of at least 2") as caught:
        mltk.settings.load("xgb", environ={}, folds=1)
    assert caught.value.key == "folds"
    with pytest.raises(SettingError, match="^MLTK_XGB_MAX_EVALS: max_evals must be"):
        mltk.settings.load("xgb", environ={"MLTK_XGB_MAX_EVALS": "abc"})
    with pytest.raises(SettingError, match="space.max_depth.type must be uniform"):
        XgbSettings(space={"max_depth": {"type": "normal", "low": 1, "high": 2}})
    with pytest.raises(SettingError, match="dart_space.rate_drop.high must be a number"):
        XgbSettings(dart_space={"rate_drop": {"type": "uniform", "low": 0, "high": "x"}})
    with pytest.raises(SettingError, match=r"space.gamma \(uniform\) has unknown key\(s\) hi"):
        XgbSettings(space={"gamma": {"type": "uniform", "low": 0, "high": 1, "hi": 2}})
    with pytest.raises(SettingError, match="tune_rows must be auto, all or a positive integer"):
        XgbSettings(tune_rows="some")
    assert XgbSettings(tune_rows="5000").tune_rows == 5000  # --tune-rows passes text
    assert XgbSettings(tune_rows="ALL").tune_rows == "all"
    with pytest.raises(Exception, match="unknown setting"):
        XgbSettings.of({"fold": 3})


def test_a_bad_option_is_a_usage_error_naming_it(tmp_path, cli):
    result = cli("xgb-analyze", tmp_path / "never-read.csv", "--target", "g", "--folds", "1")
    assert result.exit_code == 2
    assert "--folds" in result.stderr and "at least 2" in result.stderr
    result = cli("xgb-analyze", tmp_path / "x.csv", "--target", "g",
                 env={"MLTK_XGB_MAX_EVALS": "abc"})
    assert result.exit_code == 1 and "MLTK_XGB_MAX_EVALS: max_evals must be" in result.stderr


# -- the library: in memory first, written on request ---------------------------------------


@pytest.mark.slow
def test_analysis_in_memory_then_saved_as_the_command_writes_it(cancer, tmp_path, cli,
                                                                monkeypatch):
    import yaml

    data = tmp_path / "cancer.csv"
    cancer.head(300).to_csv(data, index=False)
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump({"booster": "gbtree", "max_evals": 2, "max_rounds": 30,
                                      "folds": 3, "permutation_repeats": 1}))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    analysis = analyze(load_table(data), "diagnosis", mltk.settings.load("xgb", config))
    assert isinstance(analysis, Analysis) and list(work.iterdir()) == []  # nothing written
    assert analysis.metrics["roc_auc"] > 0.9 and 0 < analysis.threshold < 1
    assert len(analysis.trials) == 2 and len(analysis.predictions) == 60
    assert analysis.importance["feature"].nunique() == 30
    assert analysis.config["booster"] == "gbtree" and analysis.settings.max_evals == 2
    saved = analysis.save(tmp_path / "lib")
    result = cli("xgb-analyze", data, "--target", "diagnosis", "--config", config, "--out",
                 tmp_path / "cli", "-f", "json")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in saved.iterdir())
    assert files == sorted(p.name for p in (tmp_path / "cli").iterdir())
    for name in ("model.ubj", "config.yaml", "test_predictions.csv", "report.md",
                 "data_profile.json"):
        assert (saved / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    lib, cmd = (json.loads((d / "report.json").read_text()) for d in (saved, tmp_path / "cli"))
    assert lib["seconds"] == analysis.report["seconds"] > 0
    assert untimed(lib) == untimed(cmd)


def untimed(report):
    """A report without the seconds things took (which differ from run to run)."""
    report = json.loads(json.dumps(report))
    del report["seconds"], report["fit_seconds"], report["tuning"]["seconds"]
    del report["tuning"]["best"]["seconds"]
    return report


def test_tuning_folds_train_side_by_side_with_the_same_curves(cancer):
    """The CV folds train at once, each with its share of the cores (one thread each when
    the cores are no more than the folds): every fold's AUC curve is the one a single
    thread computes fold after fold, for gbtree and DART."""
    from mltk.xgb.tune import CrossValidation, base_params, fold_threads

    assert fold_threads(5, "cpu", cpus=2) == (2, 1)
    assert fold_threads(5, "cpu", cpus=16) == (5, 3)
    assert fold_threads(3, "cuda", cpus=16) == (1, 0)  # one GPU: one fold at a time
    X = cancer.drop(columns="diagnosis")
    y = (cancer["diagnosis"] == "malignant").to_numpy().astype(int)
    for booster in ("gbtree", "dart"):
        params = {**base_params(booster, "cpu", 0, 1.0), "max_depth": 3, "subsample": 0.8,
                  "learning_rate": 0.1}
        curves = {}
        for cpus in (1, 6):
            with CrossValidation(X, y, folds=3, seed=0, max_rounds=40, early_stopping=10,
                                 categorical=True, cpus=cpus) as cv:
                assert (cv.parallel, cv.nthread) == ((1, 1) if cpus == 1 else (3, 2))
                curves[cpus] = cv(params)
        assert len(curves[1]) == 3 and curves[1] == curves[6], booster


def test_vifs_from_the_inverse_correlation_are_the_regressions_vifs():
    """The VIFs come from one inverse of the correlation matrix: the same numbers as a
    regression of each column on the others (statsmodels); a collinear design still says
    which columns are collinear."""
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    from mltk.xgb.explain import variance_inflation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4))
    Z = pd.DataFrame({"a": x[:, 0], "b": 0.9 * x[:, 0] + 0.4 * x[:, 1], "c": x[:, 2],
                      "d": x[:, 3] - 0.5 * x[:, 2]})
    Z = (Z - Z.mean()) / Z.std()
    design = np.column_stack([np.ones(len(Z)), Z.to_numpy()])
    expected = {c: variance_inflation_factor(design, i + 1) for i, c in enumerate(Z.columns)}
    got = variance_inflation(Z)
    assert [r["feature"] for r in got] == sorted(expected, key=lambda c: -expected[c])
    for r in got:
        assert r["vif"] == pytest.approx(expected[r["feature"]], rel=1e-9)
        assert r["collinear"] == (r["feature"] in ("a", "b"))
    Z["e"] = Z["a"] + Z["c"]  # a linear combination of two others
    flagged = {r["feature"] for r in variance_inflation(Z) if r["collinear"]}
    assert {"a", "c", "e"} <= flagged
