"""MLflow tracking and registry: a real ``mlflow server`` (SQLite store, local artifact root) on
a loopback port, started once; what mltk logged is read back with ``MlflowClient``, and the
registered model is served by ``mltk serve models:/...`` and scored by ``mlflow.pyfunc``, both
compared with ``mltk xgb-predict``. The server is waited on through its /health route.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mltk.errors import InputError
from mltk.tracking import Tracker, TrackingSettings, content_hash, data_identity, flatten
from tests.conftest import free_port

XGB_ARGS = ("--target", "diagnosis", "--id-cols", "patient", "--max-evals", "3",
            "--max-rounds", "30", "--folds", "3", "--booster", "gbtree", "--seed", "0")


# -- fast: no server ---------------------------------------------------------------------------
def test_flatten_keeps_every_key_and_data_identity_names_the_input(tmp_path):
    flat = flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None, "f": "x", "g": {},
                    "h": Path("p"), "i": True, "long": "y" * 7000})
    assert flat == {"a.b": "1", "a.c.d": "[1, 2]", "e": "None", "f": "x", "g": "{}",
                    "h": "p", "i": "True", "long": "y" * 5997 + "..."}
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    tags = data_identity("train", data, 1)
    assert tags == {"mltk.data.train.path": str(data.resolve()),
                    "mltk.data.train.hash": content_hash(data),
                    "mltk.data.train.records": "1"}
    assert content_hash(data).startswith("sha256:") and content_hash(tmp_path).startswith(
        "sha256-listing:")
    assert data_identity("train", "-", 5) == {"mltk.data.train.path": "-",
                                              "mltk.data.train.records": "5"}


def test_an_unreachable_tracking_server_warns_once_and_never_raises(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tracker = Tracker(TrackingSettings(enabled=True, tracking_uri=uri, register="m"))
    with caplog.at_level(logging.WARNING, logger="mltk"):
        with tracker.start({"a": {"b": 1}}, {"t": "x"}):
            tracker.log_metrics({"loss": 1.0}, step=1)
            tracker.log_artifacts(".", "model")
            assert tracker.register() is None
    assert tracker.error and tracker.error.startswith("connect:")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and uri in warnings[0] and "goes on" in warnings[0]
    # disabled: nothing is imported or sent
    off = Tracker()
    with off.start({"a": 1}):
        off.log_metrics({"x": 1.0})
    assert off.run_id is None and off.error is None


def test_model_uris_parse_and_name_the_model_and_mlmodel_is_a_pyfunc_flavour(tmp_path):
    from mltk.errors import InputError
    from mltk.predictors import parse_model_spec
    from mltk.storage import is_remote, model_name
    from mltk.storage.registry import ModelUri, parse_model_uri
    from mltk.tracking.mlmodel import write_mlmodel

    assert parse_model_uri("models:/churn/3") == ModelUri("churn", "3", None)
    assert parse_model_uri("models:/churn@prod") == ModelUri("churn", None, "prod")
    assert parse_model_uri("models:/churn/latest") == ModelUri("churn", "latest", None)
    with pytest.raises(InputError, match="expected models:/NAME/VERSION"):
        parse_model_uri("models:/churn")
    assert model_name("models:/churn@prod") == model_name("models:/churn/3") == "churn"
    assert is_remote("models:/churn/3")
    assert parse_model_spec("live=models:/churn@prod") == ("live", "models:/churn@prod")
    assert parse_model_spec("models:/churn@prod") == ("churn", "models:/churn@prod")
    write_mlmodel(tmp_path, "two-group")
    pytest.importorskip("mlflow")
    from mlflow.models import Model

    flavor = Model.load(str(tmp_path / "MLmodel")).flavors["python_function"]
    assert flavor["loader_module"] == "mltk.tracking.pyfunc" and flavor["data"] == "."


def test_a_downloaded_registry_folder_over_the_limits_is_refused(tmp_path):
    from mltk.storage import StorageSettings
    from mltk.storage.registry import check_folder

    (tmp_path / "m" / "sub").mkdir(parents=True)
    for name in ("config.yaml", "sub/a.bin", "sub/b.bin"):
        (tmp_path / "m" / name).write_bytes(b"x" * 6000)
    (tmp_path / "m" / "link").symlink_to("/etc")  # counted, never followed
    check_folder("models:/m/1", tmp_path / "m", StorageSettings(max_files=4))
    with pytest.raises(InputError, match=r"^models:/m/1: more than 3 files \(storage "
                       r"`max_files`\)$"):
        check_folder("models:/m/1", tmp_path / "m", StorageSettings(max_files=3))
    with pytest.raises(InputError, match=r"^models:/m/1: 0.0\d+ MB, over the limit of 0.01 MB "
                       r"\(storage `max_mb`\)$"):
        check_folder("models:/m/1", tmp_path / "m", StorageSettings(max_mb=0.01))


# -- a real MLflow server ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a free loopback port (once per session): its URL."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w+")  # noqa: SIM115 (closed below)
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(exe), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no background job runner (nine huey consumers mltk does not use)
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:  # the condition: /health answers 200
            assert proc.poll() is None, log.seek(0) or log.read()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn it started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()


@pytest.fixture(scope="session")
def cancer_csv(tmp_path_factory):
    """The breast-cancer data (id column ``patient``, 8 of its features, target
    ``diagnosis``) and 40 rows of it without the target."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    root = tmp_path_factory.mktemp("cancer-csv")
    df = load_breast_cancer(as_frame=True).frame
    df = df[[*df.columns[:8], "target"]]  # fewer features: a quicker analysis
    df["diagnosis"] = np.where(df.pop("target") == 1, "benign", "malignant")
    df.insert(0, "patient", [f"p{i}" for i in range(len(df))])
    df.to_csv(root / "data.csv", index=False)
    df.drop(columns=["diagnosis"]).head(40).to_csv(root / "rows.csv", index=False)
    return root


@pytest.fixture(scope="session")
def tracked(mlflow_server, cancer_csv, tmp_path_factory):
    """One ``mltk xgb-analyze --register cancer`` run against the server: (the run, its
    folder, the process)."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import mltk_executable

    out = tmp_path_factory.mktemp("tracked") / "analysis"
    proc = subprocess.run(
        mltk_executable() + ["xgb-analyze", str(cancer_csv / "data.csv"), *XGB_ARGS, "--out",
                             str(out), "--experiment", "cancer-tests", "--run-name", "first",
                             "--register", "cancer"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server})
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("cancer-tests")
    (run,) = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = "
                                "'first'")
    return run, out, proc


@pytest.mark.slow
def test_xgb_analyze_logs_params_trials_metrics_artifacts_and_a_version(
        tracked, mlflow_server, cancer_csv):
    import yaml
    from mlflow.tracking import MlflowClient

    run, out, proc = tracked
    client = MlflowClient(mlflow_server)
    assert run.info.status == "FINISHED"
    # every resolved setting is a param
    config = yaml.safe_load((out / "config.yaml").read_text())
    from mltk import settings

    resolved = settings.load("xgb", max_evals=3, max_rounds=30, folds=3, booster="gbtree",
                             seed=0).to_dict()
    expected = flatten(resolved)
    assert {k: run.data.params[k] for k in expected} == expected
    assert run.data.params["target"] == "diagnosis" and run.data.params["max_evals"] == "3"
    assert config["max_evals"] == 3
    # tags: version, command line, data identity
    tags = run.data.tags
    assert tags["mltk.version"] == config["mltk_version"]
    assert tags["mltk.command"].startswith("mltk xgb-analyze ") and "--register" in tags[
        "mltk.command"]
    assert tags["mltk.data.data.records"] == "569"
    assert tags["mltk.data.data.hash"] == content_hash(cancer_csv / "data.csv")
    # a metric per trial, and the final test metrics
    trials = client.get_metric_history(run.info.run_id, "cv_auc_mean")
    assert sorted(m.step for m in trials) == [0, 1, 2]
    rounds = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "rounds")}
    trials_csv = (out / "trials.csv").read_text().splitlines()
    assert len(rounds) == 3 == len(trials_csv) - 1
    report = json.loads((out / "report.json").read_text())
    assert run.data.metrics["test_roc_auc"] == pytest.approx(report["metrics"]["roc_auc"])
    assert run.data.metrics["test_best_mcc"] == pytest.approx(report["metrics"]["best_mcc"])
    # the folder (model, report, plots, MLmodel) as the model artifact
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model.ubj", "config.yaml", "report.html", "roc.png", "MLmodel"} <= names
    # registered: version 1 of "cancer", from this run
    version = client.get_model_version("cancer", "1")
    assert version.run_id == run.info.run_id
    assert "registered models:/cancer/1" in proc.stderr


@pytest.mark.slow
def test_serve_a_registered_alias_answers_like_xgb_predict(tracked, mlflow_server, cancer_csv,
                                                          mltk_proc, tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.test_serve import Server

    _, out, _ = tracked
    MlflowClient(mlflow_server).set_registered_model_alias("cancer", "prod", "1")
    expected = mltk_proc("xgb-predict", out, cancer_csv / "rows.csv", "--format", "json")
    assert expected.returncode == 0, expected.stderr
    env = {"MLFLOW_TRACKING_URI": mlflow_server,
           "MLTK_STORAGE_CACHE_DIR": str(tmp_path / "cache")}
    server = Server("models:/cancer@prod", env=env)
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/v2/models/cancer", timeout=10).status_code == 200
        got = httpx.post(server.url + "/invocations",
                         content=(cancer_csv / "rows.csv").read_text(),
                         headers={"Content-Type": "text/csv", "Accept": "application/json"},
                         timeout=60)
        assert got.status_code == 200, got.text
    finally:
        assert server.stop() == 0, server.log()
    answers = got.json()
    answers = answers.get("predictions", answers) if isinstance(answers, dict) else answers
    want = json.loads(expected.stdout)
    assert len(answers) == len(want) == 40
    for answer, row in zip(answers, want, strict=True):
        assert answer["probability"] == pytest.approx(row["probability"], abs=1e-6)
        assert answer["label"] == row["label"]
    assert "fetching model cancer from models:/cancer@prod" in server.log()
    # fetched once into the cache, keyed by the version the alias named
    assert len(list((tmp_path / "cache").glob("*.source.json"))) == 1
    missing = mltk_proc("serve", "models:/cancer@nope", "--port", str(free_port()), env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("Error: models:/cancer@nope: ")


@pytest.mark.slow
def test_serve_refuses_a_registered_version_over_the_storage_limits(
        tracked, mlflow_server, mltk_proc, monkeypatch, tmp_path):
    """As an over-size S3 object: one line naming the spec and the setting, exit 1, nothing
    kept in the cache; the listing alone refuses it (before any download)."""
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": mlflow_server,
           "MLTK_STORAGE_CACHE_DIR": str(tmp_path / "cache")}
    for limit, words in ((("MLTK_STORAGE_MAX_MB", "0.01"), "over the limit of 0.01 MB "
                           "(storage `max_mb`)"),
                         (("MLTK_STORAGE_MAX_FILES", "3"), "more than 3 files (storage "
                          "`max_files`)")):
        proc = mltk_proc("serve", "models:/cancer/1", "--port", str(free_port()),
                         env={**env, limit[0]: limit[1]}, timeout=300)
        assert proc.returncode == 1, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: models:/cancer/1: ") and last.endswith(words), last
        assert [p.name for p in (tmp_path / "cache").iterdir()
                if not p.name.endswith(".lock")] == []
    from mltk.storage import StorageSettings
    from mltk.storage.registry import check_listing

    version = MlflowClient(mlflow_server).get_model_version("cancer", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    with pytest.raises(InputError, match=r"more than 3 files \(storage `max_files`\)"):
        check_listing("models:/cancer/1", version, StorageSettings(max_files=3))
    check_listing("models:/cancer/1", version, StorageSettings())  # within the defaults


@pytest.mark.slow
def test_a_live_load_over_the_limits_is_refused_and_the_server_goes_on(
        tracked, mlflow_server, monkeypatch, tmp_path):
    pytest.importorskip("fastapi")
    from mltk.serving.settings import ServeSettings
    from tests.test_serving_repository import live_client

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLTK_STORAGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MLTK_STORAGE_MAX_MB", "0.01")
    with live_client(ServeSettings(multi_model=True, token="t")) as c:
        refused = c.post("/models", json={"model_name": "cancer", "url": "models:/cancer/1"})
        assert refused.status_code == 400, refused.text
        assert "models:/cancer/1: " in refused.json()["error"]
        assert "over the limit of 0.01 MB (storage `max_mb`)" in refused.json()["error"]
        assert c.get("/ping").status_code == 200
        assert c.get("/models").json()["models"] == []
        monkeypatch.delenv("MLTK_STORAGE_MAX_MB")  # the default limits: the same spec loads
        loaded = c.post("/models", json={"model_name": "cancer", "url": "models:/cancer/1"})
        assert loaded.status_code == 200, loaded.text


@pytest.mark.slow
def test_pyfunc_scores_the_folder_and_the_registered_version_like_the_cli(
        tracked, mlflow_server, cancer_csv, mltk_proc, monkeypatch, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    _, out, _ = tracked
    expected = mltk_proc("xgb-predict", out, cancer_csv / "rows.csv", "--format", "csv")
    assert expected.returncode == 0, expected.stderr
    want = pd.read_csv(__import__("io").StringIO(expected.stdout))
    rows = pd.read_csv(cancer_csv / "rows.csv")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    for i, uri in enumerate((str(out), "models:/cancer/1")):
        (tmp_path / str(i)).mkdir()
        got = mlflow.pyfunc.load_model(uri, dst_path=str(tmp_path / str(i)))
        pd.testing.assert_frame_equal(got.predict(rows), want, check_dtype=False, atol=1e-6)


@pytest.mark.slow
def test_an_unreachable_server_warns_and_a_failed_run_is_marked_failed(
        mlflow_server, cancer_csv, mltk_proc, tmp_path):
    from mlflow.tracking import MlflowClient

    nowhere = f"http://127.0.0.1:{free_port()}"
    proc = mltk_proc("xgb-analyze", cancer_csv / "data.csv", *XGB_ARGS, "--out",
                     tmp_path / "a", env={"MLFLOW_TRACKING_URI": nowhere})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "a" / "model.ubj").is_file()
    assert f"MLflow tracking at {nowhere} failed" in proc.stderr
    assert "the run goes on without it" in proc.stderr
    # a run that fails after its MLflow run started is closed as FAILED, not left RUNNING
    bad = mltk_proc("xgb-analyze", cancer_csv / "data.csv", "--target", "no_such_column",
                    "--out", tmp_path / "b", "--experiment", "failing",
                    env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert bad.returncode == 1 and "Error:" in bad.stderr
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("failing")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    # --no-mlflow wins over the environment
    off = mltk_proc("xgb-analyze", cancer_csv / "data.csv", "--target", "no_such_column",
                    "--out", tmp_path / "c", "--experiment", "failing", "--no-mlflow",
                    env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert off.returncode == 1
    assert len(client.search_runs([exp.experiment_id])) == 1


@pytest.mark.slow
def test_recommend_fit_logs_its_metrics_and_registers_the_model(mlflow_server, mltk_proc,
                                                                tmp_path):
    from mlflow.tracking import MlflowClient

    from mltk.datasets import make

    market = make("marketplace", tmp_path / "market", n=3000, seed=0)
    proc = mltk_proc("recommend", "fit", "-t", market.files["transactions"], "-i",
                     market.files["items"], "--out", tmp_path / "shop", "--experiment",
                     "shop-tests", "--register", "shop",
                     env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("shop-tests").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = json.loads((tmp_path / "shop" / "metrics.json").read_text())
    logged = {f"{part}_{k}": v for part, d in metrics.items() for k, v in d.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert logged and {k: run.data.metrics[k] for k in logged} == pytest.approx(logged)
    assert run.data.tags["mltk.data.transactions.records"] == str(
        sum(1 for _ in open(market.files["transactions"])) - 1)
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"config.yaml", "MLmodel", "index.parquet"} <= names
    assert client.get_model_version("shop", "1").run_id == run.info.run_id
    # the folder's pyfunc flavour answers like `mltk recommend query`
    import mlflow.pyfunc
    import pandas as pd

    item = pd.read_csv(market.files["items"])["item_id"].iloc[0]
    expected = mltk_proc("recommend", "query", tmp_path / "shop", "--item", str(item),
                         "--format", "json")
    assert expected.returncode == 0, expected.stderr[-3000:]
    got = mlflow.pyfunc.load_model(str(tmp_path / "shop")).predict(
        pd.DataFrame({"item_id": [str(item)]}))
    assert [r["item_id"] for r in got["recommendations"][0]] == [
        r["item_id"] for r in json.loads(expected.stdout)]


@pytest.mark.slow
def test_train_logs_metrics_per_epoch_and_registers_the_run_folder(mlflow_server, digits_dir,
                                                                  mltk_proc, tmp_path):
    from mlflow.tracking import MlflowClient

    from mltk.tfrecords import BuildOptions, build

    build(digits_dir, tmp_path / "shards", BuildOptions(split={"train": 0.8, "validation": 0.2},
                                                         shards=2, seed=0))
    proc = mltk_proc("train", "--data", tmp_path / "shards", "--out", tmp_path / "run",
                     "--model", "small_cnn", "--image-size", "32", "--gpus", "0", "--seed", "1",
                     "--epochs", "2", "--experiment", "digits-tests",
                     "--register", "digits", env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("digits-tests").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "small_cnn" and run.data.params["image_size"] == "32"
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    for name in ("loss", "accuracy", "lr", "images_per_second"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert sorted(steps) == list(range(1, len(history))), name
    last = dict(zip(header, history[-1].split(","), strict=True))
    assert run.data.metrics["loss"] == pytest.approx(float(last["loss"]))
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"config.yaml", "best.keras", "history.csv", "MLmodel"} <= names
    assert client.get_model_version("digits", "1").run_id == run.info.run_id
    # the run folder's pyfunc flavour gives the labels of `mltk predict`
    import mlflow.pyfunc
    import pandas as pd

    images = sorted(str(p) for p in digits_dir.rglob("*.jpg"))[:6]
    expected = mltk_proc("predict", tmp_path / "run", *images, "--format", "json")
    assert expected.returncode == 0, expected.stderr[-3000:]
    got = mlflow.pyfunc.load_model(str(tmp_path / "run")).predict(pd.DataFrame({"path": images}))
    want = json.loads(expected.stdout)
    assert list(got["label"]) == [r["label"] for r in want]
    assert list(got["probability"]) == pytest.approx([r["probability"] for r in want], abs=1e-5)
