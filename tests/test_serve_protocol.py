"""mltk serve as its clients read it: one request never fails another, large requests are
answered whole, the CLI and the server read numbers alike, the V2 metadata matches the answers,
and malformed requests are 400s (never 500s).

A real ``mltk serve`` process serves every model kind (as in test_serve.py) and a two-group
model with a categorical column; its answers are compared with the CLI's.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.test_serve import Server, build_models, post

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory, cancer_model, digits_run):
    return build_models(tmp_path_factory.mktemp("serve-protocol"), cancer_model, digits_run)


@pytest.fixture(scope="module")
def users_model(models):
    """A two-group model of the purchases data (native categorical ``main_category``), and
    20 of its rows without the target."""
    from mltk import settings
    from mltk.datasets.purchases import generate
    from mltk.xgb import analyze

    root = models["root"]
    df = generate(1200, seed=2)
    analyze(df, "group", settings.load("xgb", max_evals=2, max_rounds=30, folds=3,
                                       booster="gbtree"), id_cols=["user_id"]
            ).save(root / "users")
    df.drop(columns=["group"]).head(20).to_csv(root / "users.csv", index=False)
    return root / "users", root / "users.csv"


@pytest.fixture(scope="module")
def server(models, users_model):
    s = Server(f"cancer={models['cancer']}", f"shop={models['shop']}",
               f"digits={models['digits']}", "colors", f"users={users_model[0]}",
               "--max-latency-ms", "20")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log()


def rows_csv(models, n=None):
    lines = models["rows"].read_text().splitlines()
    return lines[0], lines[1:] if n is None else lines[1:n + 1]


def with_cell(line: str, column: int, value: str) -> str:
    cells = line.split(",")
    cells[column] = value
    return ",".join(cells)


# -- one request never fails another -------------------------------------------------------
def test_an_infinite_value_fails_only_its_own_request(server, models):
    """100 good requests and bad ones (inf in CSV, 1e400 in JSON, Infinity in V2) sent at once
    and batched together: every good one 200, every bad one 400 naming row and column."""
    header, rows = rows_csv(models)
    meta = httpx.get(server.url + "/v2/models/cancer").json()
    features = [t["name"] for t in meta["inputs"]]
    col = header.split(",").index("mean radius")
    good = [((header + "\n" + rows[i % len(rows)]).encode(), "text/csv") for i in range(100)]
    obj = dict(zip(header.split(","), rows[0].split(","), strict=True))
    v2 = {"inputs": [{"name": "rows", "shape": [1, len(features)], "datatype": "FP64",
                      "data": [1.0] * len(features)}]}
    bad = [((header + "\n" + with_cell(rows[1], col, "inf")).encode(), "text/csv"),
           (json.dumps([obj, obj]).replace(obj["mean radius"], "1e400", 1).encode()
            .replace(b'"1e400"', b"1e400"), "application/json"),
           (json.dumps(v2).replace("1.0", "Infinity", 1).encode(), "v2")]
    requests = good[:50] + bad + good[50:]

    def send(req):
        body, ctype = req
        if ctype == "v2":
            return httpx.post(server.url + "/v2/models/cancer/infer", content=body,
                              headers={"Content-Type": "application/json"}, timeout=60)
        return post(server, body, ctype, "cancer")

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, requests))
    statuses = [r.status_code for r in answers]
    assert statuses[:50] + statuses[53:] == [200] * 100, [r.text for r in answers
                                                           if r.status_code != 200][:3]
    assert [r.json()["error"] for r in answers[50:53]] == [
        "row 1, column 'mean radius': inf is not a finite number",
        "row 1, column 'mean radius': inf is not a finite number",
        "row 1, column 'mean radius': inf is not a finite number"]
    assert "Traceback" not in server.log()


def test_xgb_predict_refuses_infinite_values_as_the_server_does(models, mltk_proc, tmp_path):
    header, rows = rows_csv(models, 3)
    col = header.split(",").index("mean radius")
    data = tmp_path / "inf.csv"
    data.write_text("\n".join([header, rows[0], with_cell(rows[1], col, "1e400"),
                               rows[2]]) + "\n")
    result = mltk_proc("xgb-predict", models["cancer"], data)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: row 2, column 'mean radius': inf is not a finite number")


def test_a_large_request_is_answered_whole_in_order(server, models, cli):
    """1000 rows (more than max_queue, 256): one answer of 1000 records in order, the same as
    xgb-predict's, as SageMaker batch transform (MULTI_RECORD, 6 MB) expects."""
    header, rows = rows_csv(models)
    many = [f"q{i}," + rows[i % len(rows)].split(",", 1)[1] for i in range(1000)]
    body = ("\n".join([header, *many]) + "\n").encode()
    r = post(server, body, "text/csv", "cancer", "application/jsonlines")
    assert r.status_code == 200, r.text
    got = [json.loads(line) for line in r.text.splitlines()]
    assert [g["patient"] for g in got] == [f"q{i}" for i in range(1000)]
    result = cli("xgb-predict", str(models["cancer"]), str(models["rows"]), "--format", "json")
    expected = json.loads(result.stdout)
    assert np.allclose([g["probability"] for g in got],
                       [expected[i % len(rows)]["probability"] for i in range(1000)])
    params = httpx.get(server.url + "/execution-parameters").json()
    assert params["BatchStrategy"] == "MULTI_RECORD" and params["MaxPayloadInMB"] == 6


# -- one number parser ---------------------------------------------------------------------
TRICKY_CELLS = ["1_000", "١٢", "１２", "True", "false", " 12 ", "+5", ".5", "5.", "1e3", "0x10",
                "inf", "-Infinity", "1e400", "9" * 400, "NaN", "NA", "", "12abc", "1 2"]


def test_the_server_and_xgb_predict_read_csv_numbers_alike(server, models, cli, tmp_path):
    """Each tricky cell in a number column: both score it to the same probability, or both
    refuse it."""
    header, rows = rows_csv(models, 1)
    col = header.split(",").index("mean radius")
    for cell in TRICKY_CELLS:
        text = header + "\n" + with_cell(rows[0], col, f'"{cell}"') + "\n"
        data = tmp_path / "cell.csv"
        data.write_text(text)
        result = cli("xgb-predict", str(models["cancer"]), str(data), "--format", "json")
        r = post(server, text.encode(), "text/csv", "cancer")
        assert (result.exit_code == 0) == (r.status_code == 200), (cell, result.output, r.text)
        if r.status_code == 200:
            assert r.json()["predictions"][0]["probability"] == pytest.approx(
                json.loads(result.stdout)[0]["probability"]), cell
        else:
            assert r.status_code == 400 and "mean radius" in r.json()["error"], (cell, r.text)


# -- V2 metadata matches the answers -------------------------------------------------------
def v2_request(server, models, name, users_csv):
    """A JSON infer request of two inputs for each kind of model, from real data."""
    import base64

    import pandas as pd

    if name in ("digits", "colors"):
        from pathlib import Path

        files = sorted(Path(models["photos"]).glob("*.jpg"))[:2]
        data = [base64.b64encode(f.read_bytes()).decode() for f in files]
        return {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": data}]}
    if name == "shop":
        items = pd.read_csv(models["market"].files["items"])["item_id"].head(2)
        return {"inputs": [{"name": "item_id", "shape": [2], "datatype": "BYTES",
                            "data": [str(i) for i in items]}]}
    rows = pd.read_csv(models["rows"] if name == "cancer" else users_csv).head(2)
    meta = httpx.get(server.url + f"/v2/models/{name}").json()
    return {"inputs": [{"name": t["name"], "shape": [2], "datatype": t["datatype"],
                        "data": [v if t["datatype"] != "BYTES" else str(v)
                                 for v in rows[t["name"]].tolist()]} for t in meta["inputs"]]}


@pytest.mark.parametrize("name", ["digits", "cancer", "shop", "colors", "users"])
def test_v2_metadata_outputs_are_the_answer_outputs(server, models, users_model, name):
    """A client that reads the outputs from the metadata gets exactly those: names,
    datatypes, and shapes whose fixed dimensions are the metadata's."""
    meta = httpx.get(server.url + f"/v2/models/{name}").json()
    body = v2_request(server, models, name, users_model[1])
    r = httpx.post(server.url + f"/v2/models/{name}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    declared = meta["outputs"]
    answered = r.json()["outputs"]
    assert [(t["name"], t["datatype"]) for t in answered] == [
        (t["name"], t["datatype"]) for t in declared]
    for got, spec in zip(answered, declared, strict=True):
        assert len(got["shape"]) == len(spec["shape"]) and got["shape"][0] == 2
        assert got["shape"][1:] == spec["shape"][1:]
        assert len(got["data"]) == int(np.prod(got["shape"]))
    # asking for each declared output by name, in binary: the same tensors
    for spec in declared:
        body["outputs"] = [{"name": spec["name"], "parameters": {"binary_data": True}}]
        r = httpx.post(server.url + f"/v2/models/{name}/infer", json=body, timeout=60)
        assert r.status_code == 200, r.text
        head = json.loads(r.content[:int(r.headers["Inference-Header-Content-Length"])])
        assert [t["name"] for t in head["outputs"]] == [spec["name"]]


def test_v2_image_classifier_answers_top_k_tensors(server, models):
    meta = httpx.get(server.url + "/v2/models/digits").json()
    assert meta["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1, 3]},
                               {"name": "probability", "datatype": "FP32", "shape": [-1, 3]}]
    body = v2_request(server, models, "digits", None)
    got = httpx.post(server.url + "/v2/models/digits/infer", json=body).json()["outputs"]
    records = [post(server, json.dumps({"instances": [{"b64": d}]}).encode(),
                    "application/json", "digits").json()["predictions"][0]
               for d in body["inputs"][0]["data"]]
    labels = np.array(got[0]["data"]).reshape(got[0]["shape"])
    assert labels.tolist() == [[r["label"], r["label_2"], r["label_3"]] for r in records]


# -- V2 requests checked -------------------------------------------------------------------
def test_v2_malformed_requests_are_400_never_500(server, models):
    meta = httpx.get(server.url + "/v2/models/cancer").json()
    n = len(meta["inputs"])

    def req(**fields):
        t = {"name": "rows", "shape": [1, n], "datatype": "FP64", "data": [1.0] * n}
        extra = fields.pop("request", {})
        return {"inputs": [{**t, **fields}], **extra}

    bad = [
        (req(datatype="NOPE"), "datatype 'NOPE'"),
        ({"inputs": [{"name": "rows", "shape": [1, n], "data": [1.0] * n}]}, "no 'datatype'"),
        (req(shape=[True, n]), "'shape'"),
        (req(shape=[-1, n]), "'shape'"),
        (req(request={"id": 7}), "'id' must be text"),
        (req(request={"outputs": "probability"}), "'outputs' must be a list"),
        (req(request={"outputs": [{"name": "nope"}]}), "unknown output(s): nope"),
        (req(request={"parameters": [1]}), "'parameters' must be an object"),
        (req(parameters="x"), "'parameters' must be an object"),
        (req(request={"parameters": {"binary_data_output": "yes"}}), "binary_data_output"),
        (req(data=["a"] * n), "is not a FP64 value"),
        ({"inputs": [req()["inputs"][0], {"name": "zzz", "shape": [1], "datatype": "FP64",
                                          "data": [1.0]}]}, "unknown input(s) 'rows', 'zzz'"),
        ({"inputs": [req()["inputs"][0], req()["inputs"][0]]}, "given twice"),
    ]
    url = server.url + "/v2/models/cancer/infer"
    for body, words in bad:
        r = httpx.post(url, json=body)
        assert r.status_code == 400 and words in r.json()["error"], (body, r.text)
    good = req(request={"id": "r-1"})
    r = httpx.post(url, json=good)
    assert r.status_code == 200 and r.json()["id"] == "r-1"
    raw = json.dumps(good).replace("1.0", "1" * 400, 1)  # parsed, then refused by row
    texts = [(raw, "row 1, column 'mean radius'"),
             (json.dumps(good).replace('"r-1"', '"\\ud800"'), "surrogate"),
             ('{"inputs": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
             (json.dumps(good).replace("1.0", "1" * 5000, 1), "digits")]
    for text, words in texts:
        r = httpx.post(url, content=text.encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and words in r.json()["error"], (text[:80], r.text)
    assert "internal error" not in server.log()


def test_v2_versions_and_http_semantics(server):
    for path in ("", "/ready"):
        assert httpx.get(server.url + f"/v2/models/cancer/versions/1{path}").status_code == 200
        r = httpx.get(server.url + f"/v2/models/cancer/versions/999{path}")
        assert r.status_code == 404 and "no version '999'" in r.json()["error"]
    r = httpx.post(server.url + "/v2/models/cancer/versions/999/infer", json={"inputs": []})
    assert r.status_code == 404
    r = httpx.put(server.url + "/invocations")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = httpx.post(server.url + "/v2/health/ready")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


def test_sagemaker_bodies_python_reads_but_no_reply_can_carry_are_400(server):
    cases = [(b'{"mean radius": "\\udfff"}', "application/json", "surrogate"),
             (b"[" * 100000 + b"]" * 100000, "application/json", "nested too deeply"),
             (b'{"mean radius": ' + b"7" * 5000 + b"}", "application/json", "digits"),
             (b'{"x": 1}\n{"x": "\\ud800"}\n', "application/jsonlines", "line 2: invalid JSON"),
             (b"1," + b"a" * 200_000 + b"\n", "text/csv", "field larger than field limit")]
    for body, ctype, words in cases:
        r = post(server, body, ctype, "cancer")
        assert r.status_code == 400 and words in r.json()["error"], (body[:40], r.text)
    assert "internal error" not in server.log()


def test_a_500_is_logged_with_its_traceback(caplog):
    """A server error is a bug: its answer says so, and stderr has the traceback."""
    from mltk.serving.app import failure

    try:
        raise RuntimeError("the model fell over")
    except RuntimeError as exc:
        response = failure(exc)
    assert response.status_code == 500
    assert json.loads(response.body) == {
        "error": "internal error (RuntimeError); the server's log has its traceback"}
    assert "Traceback" in caplog.text and "RuntimeError: the model fell over" in caplog.text


# -- issue 27: category codes in a numeric row tensor --------------------------------------
def test_v2_row_tensor_with_category_codes(server, users_model, cli):
    """A [1, n] FP32 row holding the model's own category codes (listed in the metadata) gets
    the answers of the text form, which are xgb-predict's."""
    import pandas as pd

    model, data = users_model
    rows = pd.read_csv(data).head(4)
    meta = httpx.get(server.url + "/v2/models/users").json()
    features = [t["name"] for t in meta["inputs"]]
    levels = meta["parameters"]["categories"]["main_category"]
    expected = json.loads(cli("xgb-predict", str(model), str(data), "--format", "json").stdout)
    text_form = {"inputs": [{"name": c, "shape": [4], "datatype": "BYTES" if c in
                             ("main_category",) else "FP64",
                             "data": [str(v) if c == "main_category" else float(v)
                                      for v in rows[c]]} for c in features]}
    codes = rows[features].assign(main_category=[levels.index(v)
                                                 for v in rows["main_category"]])
    for i in range(4):
        one = {"inputs": [{"name": "row", "shape": [1, len(features)], "datatype": "FP32",
                           "parameters": {"binary_data_size": len(features) * 4}}]}
        head = json.dumps(one).encode()
        raw = codes.iloc[[i]].to_numpy(np.float32).tobytes()
        r = httpx.post(server.url + "/v2/models/users/infer", content=head + raw,
                       headers={"Content-Type": "application/octet-stream",
                                "Inference-Header-Content-Length": str(len(head))})
        assert r.status_code == 200, r.text
        out = {t["name"]: t["data"] for t in r.json()["outputs"]}
        assert out["label"] == [expected[i]["label"]]
        assert out["probability"][0] == pytest.approx(expected[i]["probability"], abs=1e-6)
    r = httpx.post(server.url + "/v2/models/users/infer", json=text_form)
    assert r.status_code == 200, r.text
    out = {t["name"]: t["data"] for t in r.json()["outputs"]}
    assert out["label"] == [e["label"] for e in expected[:4]]
    bad = {"inputs": [{"name": "row", "shape": [1, len(features)], "datatype": "FP32",
                       "data": codes.iloc[0].tolist()}]}
    bad["inputs"][0]["data"][features.index("main_category")] = len(levels) + 5
    r = httpx.post(server.url + "/v2/models/users/infer", json=bad)
    assert r.status_code == 400 and "is not a category code" in r.json()["error"]
