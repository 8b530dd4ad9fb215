"""report.html of every analysis opened in headless Chromium (tests/browser.py), and drift
(PSI) on generated data: the same distribution and a shifted one. The shared layout itself
(mltk._report) is tests/test_report.py."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from mltk.drift import DRIFT, WATCH, DataProfile, compare, load_reference
from mltk.errors import InputError
from tests.browser import open_report

FIELDS = ["feature", "psi", "missing_rate", "new_categories", "status"]


def users(n: int, seed: int, shift: bool = False) -> pd.DataFrame:
    """Generated rows: a number, a count, a category and a number with missing values; the
    shifted version moves each (mean +1 SD, counts up, another mix of levels plus a new one,
    many more missing values)."""
    rng = np.random.default_rng(seed)
    levels = ["web", "app", "store"]
    mix = [0.2, 0.3, 0.4, 0.1] if shift else [0.5, 0.3, 0.2, 0.0]
    spend = rng.normal(1.0 if shift else 0.0, 1.0, n)
    age = rng.normal(40, 10, n)
    age[rng.random(n) < (0.4 if shift else 0.05)] = np.nan
    return pd.DataFrame({"spend": spend, "visits": rng.poisson(5 if shift else 3, n),
                         "channel": rng.choice(levels + ["kiosk"], n, p=mix), "age": age})


# -- drift ----------------------------------------------------------------------------------

def test_psi_near_zero_for_the_same_distribution_and_high_for_a_shifted_one():
    profile = DataProfile.from_frame(users(5000, 0))
    same = {r["feature"]: r for r in compare(profile, users(5000, 1)).records()}
    assert all(r["psi"] < 0.02 and r["status"] == "ok" for r in same.values()), same
    assert same["channel"]["new_categories"] == [] and same["spend"]["new_categories"] is None
    assert abs(same["age"]["missing_rate"] - 0.05) < 0.02
    shifted = {r["feature"]: r for r in compare(profile, users(5000, 2, shift=True)).records()}
    assert all(r["psi"] > DRIFT and r["status"] == "drift" for r in shifted.values()), shifted
    assert shifted["channel"]["new_categories"] == ["kiosk"]
    assert abs(shifted["age"]["missing_rate"] - 0.4) < 0.03
    assert list(same["spend"]) == FIELDS


def test_status_thresholds_and_absent_columns():
    profile = DataProfile.from_frame(users(4000, 0))
    mild = users(4000, 3)
    mild["spend"] += 0.35  # a small move of the mean: watch, not drift
    result = compare(profile, mild.drop(columns=["age"]))
    by = {f.feature: f for f in result.features}
    assert WATCH <= by["spend"].psi < DRIFT and by["spend"].status == "watch"
    assert by["age"].psi is None and by["age"].status == "missing_column"
    assert "0.1" in result.summary() and "0.25" in result.summary()


def test_profile_round_trips_and_a_reference_table_is_profiled(tmp_path):
    df = users(500, 0)
    profile = DataProfile.from_frame(df)
    profile.save(tmp_path / "p.json")
    assert load_reference(tmp_path / "p.json") == profile
    df.to_csv(tmp_path / "ref.csv", index=False)
    assert load_reference(tmp_path / "ref.csv").features["channel"]["kind"] == "categorical"
    assert len(json.dumps(profile.to_dict())) < 5000  # compact
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.yaml").write_text("threshold: 0.5\n")
    with pytest.raises(InputError, match="re-run xgb-analyze"):
        load_reference(tmp_path / "model")


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv", "table"])
def test_drift_command_one_record_per_feature_in_every_format(cli, tmp_path, fmt):
    users(2000, 0).to_csv(tmp_path / "ref.csv", index=False)
    users(2000, 2, shift=True).to_csv(tmp_path / "new.csv", index=False)
    r = cli("drift", tmp_path / "ref.csv", tmp_path / "new.csv", "--format", fmt)
    assert r.exit_code == 0, r.output
    out = r.stdout
    if fmt == "json":
        rows = json.loads(out)
    elif fmt == "ndjson":
        rows = [json.loads(line) for line in out.splitlines()]
    elif fmt == "csv":
        assert out.splitlines()[0] == ",".join(FIELDS)
        rows = [dict(zip(FIELDS, line.split(","), strict=False)) for line in out.splitlines()[1:]]
    else:
        assert all(f in out for f in FIELDS) and out.count("drift") >= 4
        rows = None
    if rows is not None:
        assert [r["feature"] for r in rows] == ["spend", "visits", "channel", "age"]
        assert all(list(r) == FIELDS and r["status"] == "drift" for r in rows)
    assert "0.25 or more drift" in r.stderr


def test_drift_report_in_a_browser(cli, tmp_path):
    users(3000, 0).to_csv(tmp_path / "ref.csv", index=False)
    users(3000, 2, shift=True).to_csv(tmp_path / "new.csv", index=False)
    r = cli("drift", tmp_path / "ref.csv", tmp_path / "new.csv", "--report", tmp_path / "rep",
            "-f", "json")
    assert r.exit_code == 0, r.output
    psi = {x["feature"]: x["psi"] for x in json.loads(r.stdout)}
    page = open_report(tmp_path / "rep" / "report.html", tmp_path)
    assert "4 of 4 features drift" in page.text
    assert f"{max(psi.values()):.3f}" in page.text  # the largest shift, in the answer
    assert "0.1 to 0.25 watch" in page.text and len(page.images) == 1
    assert (tmp_path / "rep" / "drift.csv").read_text().startswith(",".join(FIELDS))


# -- xgb-analyze and xgb-predict ------------------------------------------------------------

def test_xgb_report_in_a_browser(cancer_model, tmp_path):
    folder = cancer_model / "model"
    report = json.loads((folder / "report.json").read_text())
    page = open_report(folder / "report.html", tmp_path)
    auc = f"{report['metrics']['roc_auc']:.3f}"
    assert f"test ROC AUC of {auc}" in page.text
    top = report["importance"][0]["feature"]
    assert f"most are {top} (" in page.text  # the top feature and its direction
    assert len(page.images) == 5  # roc, mcc, importance, SHAP, correlation


@pytest.mark.slow
def test_xgb_predict_drift_against_the_training_profile(cancer_model, mltk_proc, tmp_path):
    model, rows = cancer_model / "model", cancer_model / "rows.csv"
    plain = mltk_proc("xgb-predict", model, rows)
    df = pd.read_csv(rows)
    df["worst perimeter"] *= 3
    df.to_csv(tmp_path / "shifted.csv", index=False)
    p = mltk_proc("xgb-predict", model, tmp_path / "shifted.csv", "--drift", "--drift-report",
                  tmp_path / "drift")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == plain.stdout.splitlines()[0]  # data alone on stdout
    assert "Drift against the training data" in p.stderr and "0.25 or more drift" in p.stderr
    line = next(x for x in p.stderr.splitlines() if x.strip().startswith("worst perimeter "))
    assert line.split()[-1] == "drift"
    page = open_report(tmp_path / "drift" / "report.html", tmp_path)
    assert "worst perimeter" in page.text


def test_xgb_predict_drift_on_an_old_model_folder_says_to_rerun(cancer_model, mltk_proc,
                                                                tmp_path):
    old = tmp_path / "old"
    shutil.copytree(cancer_model / "model", old)
    (old / "data_profile.json").unlink()
    p = mltk_proc("xgb-predict", old, cancer_model / "rows.csv", "--drift")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("Error: ") and "re-run xgb-analyze" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


# -- colors ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def product_photos(tmp_path_factory):
    from mltk.datasets import make

    return make("product-images", tmp_path_factory.mktemp("photos"), n=60, seed=0)


def test_colors_report_in_a_browser(product_photos, mltk_proc, tmp_path):
    p = mltk_proc("colors", product_photos.path, "--report", tmp_path / "rep", "-f", "json",
                  "--seed", "0", "-j", "1")
    assert p.returncode == 0, p.stderr
    records = json.loads(p.stdout)
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    page = open_report(tmp_path / "rep" / "report.html", tmp_path)
    assert len(page.images) == len(records) == 60  # one thumbnail per photo
    assert all(max(img.size) <= 128 for img in page.images)
    main = summary.iloc[0]
    assert (f"The main colours of the folder are {main['name']} (a top colour in "
            f"{main['image_fraction']:.0%} of the images)") in page.text
    first = records[0]["colors"][0]
    assert f"{first['name']} {first['hex']}" in page.text  # a named swatch of the grid
    assert len(pd.read_csv(tmp_path / "rep" / "colors.csv")) == 60


def test_colors_grid_is_cut_with_a_note(product_photos):
    from mltk.colors import ColorSettings, analyze_paths, summarize
    from mltk.colors.report import render_html

    files = sorted(product_photos.path.glob("*.*"))[:8]
    records = list(analyze_paths(files, ColorSettings(), jobs=1))
    html = render_html(records, summarize(records), max_grid=3)
    assert html.count("<img ") == 3
    assert "The first 3 of 8 photos are shown; every image is in colors.csv." in html


# -- the demo -------------------------------------------------------------------------------

@pytest.mark.slow
def test_demo_index_html_links_the_step_reports(mltk_proc, tmp_path):
    out = tmp_path / "demo"
    p = mltk_proc("demo", "--out", out, "--step", "colors", "-f", "csv")
    assert p.returncode == 0, p.stderr
    page = open_report(out / "index.html", tmp_path)
    assert "1 of 1 steps ran" in page.text
    hrefs = __import__("re").findall(r'href="([^"]+)"', page.dom)
    assert "colors/report.html" in hrefs and all((out / h).exists() for h in hrefs)
    colors = open_report(out / "colors" / "report.html", tmp_path)
    assert "60 images analysed, 0 failed." in colors.text


# -- evaluate -------------------------------------------------------------------------------

@pytest.mark.slow
def test_evaluate_report_in_a_browser(digits_run, cli, tmp_path):
    """A barely trained classifier makes mistakes: the report shows its accuracy, the
    confusion matrix, the most confident mistakes as thumbnails from the TFRecords, and the
    per-class table."""
    import csv

    shards = digits_run.parent / "shards"
    r = cli("evaluate", digits_run, "--data", shards, "--out", tmp_path / "ev", "-f", "json")
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    preds = list(csv.DictReader((tmp_path / "ev" / "predictions.csv").open()))
    wrong = [p for p in preds if p["correct"] == "False"]
    assert wrong  # 3 training steps: plenty of mistakes
    page = open_report(tmp_path / "ev" / "report.html", tmp_path)
    assert (f"The classifier is right on {metrics['accuracy']:.1%} of the "
            f"{metrics['records']:,} records") in page.text
    assert f"macro F1 {metrics['macro_f1']:.3f}" in page.text
    shown = min(len(wrong), 24)
    assert len(page.images) == 1 + shown  # the confusion matrix and one thumbnail a mistake
    assert f"{shown} of the {len(wrong):,} misclassified records" in page.text
    worst = max(wrong, key=lambda p: (float(p["probability"]), -int(p["record"])))
    assert f"Record {worst['record']} ({worst['file']}): a {worst['true']} predicted as " \
        f"{worst['predicted']}" in page.dom  # the first card: the most confident mistake
    assert "Per-class precision, recall and F1" in page.text
    assert all(c["class"] in page.text for c in metrics["per_class"])


def test_evaluation_report_without_mistakes_or_predictions():
    from mltk.classify import Evaluation, metrics
    from mltk.classify.report import answer, render_html

    labels = np.array([0, 1, 2, 1])
    probs = np.eye(3)[labels] * 0.9 + 0.1 / 3
    m = metrics(labels, probs, ["cat", "dog", "fox"], top_k=2)
    html = render_html(Evaluation(m, None))
    assert "right on 100.0% of the 4 records (top-2: 100.0%)" in html
    assert "Run with <code>--out</code> to see the misclassified records." in html
    m = metrics(np.array([0, 0, 1, 2]), np.eye(3)[[1, 0, 1, 2]] * 0.9 + 0.1 / 3, ["a", "b", "c"])
    assert "the most frequent mistake is a taken for b (1 record, 50% of a)" in \
        " ".join(answer(m))


@pytest.mark.slow
def test_evaluate_report_of_the_raw_layout_shows_its_pixels(digits_run, digits_dir, cli,
                                                             tmp_path):
    """The legacy raw layout stores pixels, not JPEGs: the thumbnails are made from them."""
    import csv

    from mltk.tfrecords import BuildOptions, build

    build(digits_dir, tmp_path / "raw", BuildOptions(layout="raw", size=32, shards=1, seed=0))
    r = cli("evaluate", digits_run, "--data", tmp_path / "raw", "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    wrong = [p for p in csv.DictReader((tmp_path / "ev" / "predictions.csv").open())
             if p["correct"] == "False"]
    page = open_report(tmp_path / "ev" / "report.html", tmp_path)
    thumbs = page.images[1:]
    assert len(thumbs) == min(len(wrong), 24) > 0
    assert all(img.size == (32, 32) for img in thumbs)  # the stored pixels, not enlarged
    assert re.search(r'alt="Record \d+: a \d predicted as \d"', page.dom)  # no file names
