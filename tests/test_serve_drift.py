"""Drift in the server: a two-group model's recent rows against its training data, in-process
(Starlette's TestClient: no socket), on the breast-cancer model of ``cancer_model``."""

from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from mltk.serving.app import create_app  # noqa: E402
from mltk.serving.drift import MIN_ROWS, DriftMonitor, DriftWindow  # noqa: E402
from mltk.serving.settings import ServeSettings  # noqa: E402


def started(settings):
    client = TestClient(create_app(settings))
    client.__enter__()
    deadline = time.monotonic() + 120
    while client.get("/v2/health/ready").status_code != 200:  # the condition: models loaded
        assert time.monotonic() < deadline, client.get("/v2/health/ready").text
        time.sleep(0.05)
    return client


@pytest.fixture(scope="module")
def rows():
    """Every row of the breast-cancer data, as a client sends them (no target)."""
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    df.insert(0, "patient", [f"p{i}" for i in range(len(df))])
    return df


def send(client, df, name="cancer"):
    answer = client.post("/invocations", content=df.to_csv(index=False),
                         headers={"Content-Type": "text/csv",
                                  "X-Amzn-SageMaker-Target-Model": name})
    assert answer.status_code == 200, answer.text


def test_the_window_drifts_when_the_rows_move(cancer_model, rows, tmp_path):
    old = tmp_path / "old"  # a model folder from before profiles: no drift, and it says why
    shutil.copytree(cancer_model / "model", old)
    (old / "data_profile.json").unlink()
    settings = ServeSettings(models=(f"cancer={cancer_model / 'model'}", f"old={old}",
                                     "colors"), drift_window=400)
    client = started(settings)
    try:
        empty = client.get("/drift/cancer").json()
        assert empty["rows"] == 0 and empty["summary"] == "no rows yet"
        send(client, rows.iloc[:50])
        few = client.get("/drift/cancer").json()
        assert few["rows"] == 50 and "noisy below 100 rows" in few["summary"]

        send(client, rows.iloc[50:])  # the rest of the data the model learned from
        same = client.get("/drift/cancer").json()
        assert same["rows"] == 400 and same["rows_seen"] == len(rows) and same["window"] == 400
        assert same["thresholds"]["watch"] == 0.1 and same["thresholds"]["drift"] == 0.25
        assert len(same["features"]) == 30  # the features, not the id column
        assert all(f["status"] == "ok" for f in same["features"]), same["features"]
        assert max(f["psi"] for f in same["features"]) < 0.1
        assert same["summary"].startswith("0 of 30 features drift")

        shifted = rows.sample(400, random_state=0)
        shifted["worst perimeter"] *= 3
        send(client, shifted)  # the window now holds only these
        moved = {f["feature"]: f for f in client.get("/drift/cancer").json()["features"]}
        assert moved["worst perimeter"]["status"] == "drift" and \
            moved["worst perimeter"]["psi"] > 0.25
        assert sum(f["status"] == "drift" for f in moved.values()) == 1
        assert list(moved["worst perimeter"]) == ["feature", "psi", "missing_rate",
                                                  "new_categories", "status"]

        metrics = client.get("/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith(
            'mltk_drift_psi{feature="worst perimeter",model="cancer"}'))
        assert float(line.split()[-1]) == moved["worst perimeter"]["psi"]
        assert 'mltk_drift_rows{model="cancer"} 400.0' in metrics

        every = client.get("/drift").json()
        assert list(every["models"]) == ["cancer"]
        assert "re-run xgb-analyze" in every["unavailable"]["old"]
        assert "two-group" in every["unavailable"]["colors"]
        for name, words in (("old", "re-run xgb-analyze"), ("colors", "a colors model"),
                            ("nope", "no model named 'nope'")):
            answer = client.get(f"/drift/{name}")
            assert answer.status_code == 404 and words in answer.json()["error"], answer.text
    finally:
        client.__exit__(None, None, None)


def test_rows_posted_to_drift_are_checked_without_a_window(cancer_model, rows):
    """POST /drift/{name}: the rows of the body against the training data, nothing scored
    and nothing kept; with drift_window 0 the server keeps no rows at all."""
    client = started(ServeSettings(models=(f"cancer={cancer_model / 'model'}", "colors"),
                                   drift_window=0))
    try:
        send(client, rows.iloc[:5])
        answer = client.get("/drift/cancer")
        assert answer.status_code == 404 and "drift_window: 0" in answer.json()["error"]
        shifted = rows.copy()
        shifted["mean texture"] += 15
        answer = client.post("/drift/cancer", content=shifted.to_csv(index=False),
                             headers={"Content-Type": "text/csv"})
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        by = {f["feature"]: f for f in doc["features"]}
        assert doc["rows"] == len(rows) and by["mean texture"]["status"] == "drift"
        assert [f for f, r in by.items() if r["status"] != "ok"] == ["mean texture"]
        assert doc["summary"].startswith("1 of 30 features drift (mean texture)")
        same = client.post("/drift/cancer", json={"instances": rows.to_dict("records")})
        assert same.status_code == 200 and same.json()["summary"].startswith("0 of 30")
        for name, body, ctype, status, words in (
                ("colors", b"a,b\n1,2\n", "text/csv", 404, "two-group"),
                ("cancer", b"{", "application/json", 400, "JSON"),
                ("cancer", b"x", "image/png", 415, "image/png")):
            answer = client.post(f"/drift/{name}", content=body, headers={"Content-Type": ctype})
            assert answer.status_code == status and words in answer.json()["error"], answer.text
        assert "mltk_drift_psi{" not in client.get("/metrics").text
    finally:
        client.__exit__(None, None, None)


def test_the_window_keeps_the_last_rows():
    import pandas as pd

    from mltk.drift import DataProfile

    monitor = DriftMonitor(3)
    monitor.windows["m"] = DriftWindow(DataProfile.from_frame(pd.DataFrame({"x": range(200)})),
                                       3)
    monitor.observe("m", [{"x": i} for i in range(10)])
    monitor.observe("other", [{"x": 1}])  # a model without a window: nothing happens
    assert [r["x"] for r in monitor.windows["m"].snapshot()] == [7, 8, 9]
    assert monitor.windows["m"].seen == 10
    doc = monitor.report("m")
    assert doc["rows"] == 3 and f"noisy below {MIN_ROWS} rows" in doc["summary"]


@pytest.mark.slow
def test_a_real_server_measures_the_rows_sent_over_v2(cancer_model, rows):
    """``mltk serve --drift-window`` as a process: rows sent as one V2 ``[rows, columns]``
    tensor fill the window like SageMaker's CSV, and /metrics carries the PSI."""
    import httpx
    import numpy as np

    from tests.test_serve import Server

    s = Server(f"cancer={cancer_model / 'model'}", "--drift-window", "300")
    try:
        s.wait_ready()
        features = [t["name"] for t in httpx.get(s.url + "/v2/models/cancer").json()["inputs"]]
        shifted = rows.sample(300, random_state=1)
        shifted["mean radius"] += 10
        matrix = shifted[features].to_numpy(np.float64)
        body = {"inputs": [{"name": "rows", "shape": list(matrix.shape), "datatype": "FP64",
                            "data": matrix.ravel().tolist()}]}
        r = httpx.post(s.url + "/v2/models/cancer/infer", json=body, timeout=60)
        assert r.status_code == 200, r.text
        doc = httpx.get(s.url + "/drift/cancer").json()
        assert doc["rows"] == 300 and doc["window"] == 300
        by = {f["feature"]: f for f in doc["features"]}
        assert by["mean radius"]["status"] == "drift" and by["mean texture"]["status"] == "ok"
        metrics = httpx.get(s.url + "/metrics").text
        assert f'mltk_drift_psi{{feature="mean radius",model="cancer"}} ' \
            f'{by["mean radius"]["psi"]}' in metrics
    finally:
        assert s.stop() == 0, s.log()


def test_small_unbatched_requests_reach_the_window_too(cancer_model, rows):
    """Without batching, a small request to a row model is scored on the event loop (the lean
    path): its rows join the window all the same."""
    client = started(ServeSettings(models=(f"cancer={cancer_model / 'model'}",),
                                   max_batch_size=1))
    try:
        for i in range(3):
            send(client, rows.iloc[i:i + 1])  # one row a request
        send(client, rows.iloc[3:10])
        assert client.get("/drift/cancer").json()["rows"] == 10
    finally:
        client.__exit__(None, None, None)
