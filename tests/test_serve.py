"""mltk serve: a real server process on a loopback port, for every model kind and both protocols.

One server (module scope) serves an image classifier, a two-group model, a recommender and
colours; every answer is compared with the CLI command's for the same input. Servers are waited
on through their readiness route, never by sleeping.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port, mltk_executable, wait_until_queued

pytestmark = pytest.mark.slow


class Server:
    """``mltk serve`` as a subprocess; stopped with SIGTERM."""

    def __init__(self, *args: str, env: dict | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-{self.port}.err"
        self.stderr = open(self.stderr_path, "w+")  # noqa: SIM115 (closed in stop)
        cmd = mltk_executable() + ["serve", *args]
        if port is None:
            cmd += ["--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env={**os.environ, **(env or {})})

    def wait_ready(self, deadline_s: float = 300) -> None:
        """Poll /v2/health/ready until 200 (the condition), failing if the process dies."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.log()}")

    def log(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text()[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.stderr.close()
        return rc


# -- models -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, cancer_model, digits_run):
    return build_models(tmp_path_factory.mktemp("serve"), cancer_model, digits_run)


def build_models(root, cancer_model, digits_run):
    """A model of every kind (the recommender and the photos built in ``root``)."""
    from mltk import settings
    from mltk.datasets import make
    from mltk.recommend import fit
    from mltk.xgb import load_table

    market = make("marketplace", root / "market", n=3000, seed=0)
    fit(load_table(market.files["items"]), load_table(market.files["transactions"]),
        settings.load("recommend")).save(root / "shop")

    make("product-images", root / "photos", n=4, seed=0)
    return {"root": root, "cancer": cancer_model / "model", "rows": cancer_model / "rows.csv",
            "shop": root / "shop", "digits": digits_run, "photos": root / "photos",
            "market": market}


@pytest.fixture(scope="module")
def server(models):
    s = Server(f"cancer={models['cancer']}", f"shop={models['shop']}",
               f"digits={models['digits']}", "colors", "--max-latency-ms", "2")
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.log()


def post(server, body, ctype, model=None, accept=None, path="/invocations", **headers):
    h = {"Content-Type": ctype, **headers}
    if model:
        h["X-Amzn-SageMaker-Target-Model"] = model
    if accept:
        h["Accept"] = accept
    return httpx.post(server.url + path, content=body, headers=h, timeout=60)


def cli_json(cli, *args):
    result = cli(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def digit_images(digits_dir, n=3):
    return sorted(Path(digits_dir).rglob("*.jpg"))[:n]


# -- SageMaker protocol, one model kind at a time --------------------------------------------
def test_two_group_rows_match_xgb_predict(server, models, cli):
    expected = cli_json(cli, "xgb-predict", str(models["cancer"]), str(models["rows"]))
    csv_text = models["rows"].read_text()
    r = post(server, csv_text.encode(), "text/csv", "cancer", "application/json")
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [g["patient"] for g in got] == [e["patient"] for e in expected]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert np.allclose([g["probability"] for g in got], [e["probability"] for e in expected])
    # JSON objects in another column order, with an extra column: the same numbers
    import pandas as pd

    rows = pd.read_csv(models["rows"]).iloc[:5]
    objs = [dict(reversed(list(r.items())), extra="ignored") for r in rows.to_dict("records")]
    r = post(server, json.dumps({"instances": objs}).encode(), "application/json", "cancer")
    assert [g["label"] for g in r.json()["predictions"]] == [e["label"] for e in expected[:5]]
    # JSON Lines in, CSV out: one line per input line, in order
    lines = "".join(json.dumps(o) + "\n" for o in objs).encode()
    r = post(server, lines, "application/jsonlines", "cancer", "text/csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(r.text.splitlines()) == 5
    assert [ln.split(",")[0] for ln in r.text.splitlines()] == [e["patient"]
                                                                for e in expected[:5]]


def test_two_group_bad_rows_name_row_and_column(server, models):
    import pandas as pd

    rows = pd.read_csv(models["rows"]).iloc[:3].to_dict("records")
    rows[1]["mean radius"] = "abc"
    r = post(server, json.dumps(rows).encode(), "application/json", "cancer")
    assert r.status_code == 400
    assert r.json()["error"] == "row 2, column 'mean radius': 'abc' is not a number"
    del rows[1]["mean radius"]
    r = post(server, json.dumps(rows).encode(), "application/json", "cancer")
    assert r.status_code == 400 and "mean radius" in r.json()["error"]


def test_image_classifier_matches_predict(server, models, cli, digits_dir):
    files = digit_images(digits_dir)
    result = cli("predict", str(models["digits"]), *map(str, files), "--format", "ndjson")
    assert result.exit_code == 0, result.output
    expected = [json.loads(ln) for ln in result.stdout.splitlines()]
    for f, e in zip(files, expected, strict=True):
        r = post(server, f.read_bytes(), "image/jpeg", "digits")
        assert r.status_code == 200, r.text
        (got,) = r.json()["predictions"]
        assert got["label"] == e["label"]
        assert got["probability"] == pytest.approx(e["probability"], abs=1e-5)


def test_recommender_matches_query(server, models, cli, tmp_path):
    import pandas as pd

    items = pd.read_csv(models["market"].files["items"])["item_id"].head(3).tolist()
    qfile = tmp_path / "q.csv"
    qfile.write_text("item_id\n" + "".join(f"{i}\n" for i in items))
    expected = cli_json(cli, "recommend", "query", str(models["shop"]), "--queries",
                        str(qfile))
    r = post(server, qfile.read_bytes(), "text/csv", "shop")
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [g["recommendations"] for g in got] == [e["recommendations"] for e in expected]
    r = post(server, json.dumps({"item_id": "no-such-item"}).encode(), "application/json",
             "shop")
    assert r.status_code == 400 and "no-such-item" in r.json()["error"]


def test_colors_match_the_colors_command(server, models, cli):
    photo = sorted(Path(models["photos"]).glob("*.jpg"))[0]
    (expected,) = cli_json(cli, "colors", str(photo))
    r = post(server, photo.read_bytes(), "image/jpeg", "colors", "application/jsonlines")
    assert r.status_code == 200, r.text
    got = json.loads(r.text.splitlines()[0])
    assert {**got, "path": None} == {**expected, "path": None}


# -- errors ----------------------------------------------------------------------------------
def huge_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (about 60 kB): a decompression bomb."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(row * side, 9)) + chunk(b"IEND", b""))


def test_error_codes(server, models):
    jpeg = sorted(Path(models["photos"]).glob("*.jpg"))[0].read_bytes()
    cases = [
        (post(server, b"{not json", "application/json", "cancer"), 400, "line 1"),
        (post(server, b"abc", "image/png", "digits"), 400, "not an image"),
        (post(server, jpeg, "image/jpeg", "nope"), 404, "nope"),
        (post(server, jpeg, "image/jpeg"), 404, "X-Amzn-SageMaker-Target-Model"),
        (post(server, jpeg, "image/jpeg", "digits", "text/html"), 406, "text/html"),
        (post(server, jpeg, "text/plain", "digits"), 415, "text/plain"),
        (post(server, b"x" * (6 * 1024 * 1024 + 1), "image/jpeg", "digits"), 413, "max_body"),
        (post(server, huge_png(), "image/png", "digits"), 413, "20000x20000"),
        (post(server, huge_png(), "image/png", "colors"), 413, "20000x20000"),
        (httpx.get(server.url + "/v2/models/nope"), 404, "nope"),
        (httpx.get(server.url + "/no/such/route"), 404, "Not Found"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.text)
        assert words in response.json()["error"], (words, response.text)
    # the server is still fine afterwards
    assert post(server, jpeg, "image/jpeg", "colors").status_code == 200


def test_bad_input_does_not_grow_the_server(server, models):
    """Hundreds of bad requests of every kind: the server's memory settles (no leak per
    request), and it still answers."""
    def rss_mb() -> float:
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]
                   ) / 1024

    bomb, garbage = huge_png(), b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000
    bad = [(bomb, "image/png", "digits"), (garbage, "image/png", "colors"),
           (b'{"instances": [{"mean radius": "x"}]}', "application/json", "cancer"),
           (b"1,2,3\n4,5\n", "text/csv", "cancer"), (b"\xff" * 3000, "text/csv", "shop")]

    def burst(n: int) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(n):
                body, ctype, model = bad[i % len(bad)]
                r = client.post(server.url + "/invocations", content=body, headers={
                    "Content-Type": ctype, "X-Amzn-SageMaker-Target-Model": model})
                assert r.status_code in (400, 413), r.text

    burst(100)  # warm: allocator pools and caches fill first
    before = rss_mb()
    burst(500)
    assert rss_mb() - before < 40, (before, rss_mb())
    assert httpx.get(server.url + "/ping").status_code == 200


def test_custom_attributes_echoed_and_execution_parameters(server, models):
    photo = sorted(Path(models["photos"]).glob("*.jpg"))[0].read_bytes()
    r = post(server, photo, "image/jpeg", "colors",
             **{"X-Amzn-SageMaker-Custom-Attributes": "trace=42"})
    assert r.headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=42"
    params = httpx.get(server.url + "/execution-parameters").json()
    assert params == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                      "MaxPayloadInMB": 6}
    assert httpx.get(server.url + "/ping").status_code == 200


def test_metrics_docs_and_openapi(server, models):
    photo = sorted(Path(models["photos"]).glob("*.jpg"))[0].read_bytes()
    post(server, photo, "image/jpeg", "digits")
    text = httpx.get(server.url + "/metrics").text
    assert 'mltk_requests_total{model="digits",protocol="sagemaker",status="200"}' in text
    assert "mltk_batch_size_bucket" in text and "mltk_model_load_seconds" in text
    assert "mltk_queue_depth" in text
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/invocations" in spec["paths"] and "/v2/models/{name}/infer" in spec["paths"]
    page = httpx.get(server.url + "/docs").text
    assert "/invocations" in page and "<script" not in page and "cdn" not in page.lower()


def test_openapi_fuzz_finds_no_server_errors(server, tmp_path):
    """schemathesis over the server's own OpenAPI spec: no request gets a 5xx."""
    import sys

    st = Path(sys.executable).with_name("st")
    proc = subprocess.run([str(st), "run", server.url + "/openapi.json", "--checks",
                           "not_a_server_error", "--max-examples", "25",
                           "--generation-deterministic", "--workers", "1"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.split("SUMMARY")[-1]
    assert httpx.get(server.url + "/v2/health/live").status_code == 200  # still up


# -- Open Inference Protocol with a real client ----------------------------------------------
def test_v2_with_tritonclient(server, models, digits_dir):
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("digits")
    assert meta["inputs"][0]["name"] == "image" and meta["parameters"]["kind"] == \
        "image-classifier"
    assert client.is_model_ready("cancer")
    files = digit_images(digits_dir, 2)
    expected = [post(server, f.read_bytes(), "image/jpeg", "digits").json()["predictions"][0]
                for f in files]
    for binary in (True, False):  # binary tensors, then base64 text in JSON
        inp = th.InferInput("image", [2], "BYTES")
        data = [f.read_bytes() for f in files]
        if binary:
            inp.set_data_from_numpy(np.array(data, dtype=object), binary_data=True)
        else:
            inp.set_data_from_numpy(np.array([base64.b64encode(d) for d in data],
                                             dtype=object), binary_data=False)
        outputs = [th.InferRequestedOutput("label", binary_data=binary),
                   th.InferRequestedOutput("probability", binary_data=binary)]
        result = client.infer("digits", [inp], request_id="req-7", outputs=outputs)
        assert result.get_response()["id"] == "req-7"
        # [images, top_k] tensors, as the metadata declares them: the first column is the top-1
        labels = [v.decode() if isinstance(v, bytes) else v
                  for v in result.as_numpy("label")[:, 0]]
        assert labels == [e["label"] for e in expected]
        assert np.allclose(result.as_numpy("probability")[:, 0],
                           [e["probability"] for e in expected], atol=1e-6)
    with pytest.raises(InferenceServerException, match="nope"):
        client.infer("nope", [inp])


def test_v2_rows_as_columns_and_as_a_matrix(server, models, cli):
    import pandas as pd
    import tritonclient.http as th

    expected = cli_json(cli, "xgb-predict", str(models["cancer"]), str(models["rows"]))[:4]
    rows = pd.read_csv(models["rows"]).iloc[:4]
    meta = httpx.get(server.url + "/v2/models/cancer").json()
    features = [t["name"] for t in meta["inputs"]]
    matrix = rows[features].to_numpy(np.float64)
    client = th.InferenceServerClient(f"127.0.0.1:{server.port}")
    inp = th.InferInput("rows", list(matrix.shape), "FP64")
    inp.set_data_from_numpy(matrix)
    result = client.infer("cancer", [inp])
    assert np.allclose(result.as_numpy("probability"), [e["probability"] for e in expected])
    body = {"id": "x", "inputs": [{"name": c, "shape": [4], "datatype": "FP64",
                                   "data": rows[c].tolist()} for c in features]}
    r = httpx.post(server.url + "/v2/models/cancer/infer", json=body)
    assert r.status_code == 200, r.text
    out = {t["name"]: t["data"] for t in r.json()["outputs"]}
    assert r.json()["id"] == "x" and out["label"] == [e["label"] for e in expected]
    bad = {"inputs": [{"name": "rows", "shape": [2, 3], "datatype": "FP64", "data": [1, 2]}]}
    r = httpx.post(server.url + "/v2/models/cancer/infer", json=bad)
    assert r.status_code == 400 and "shape" in r.json()["error"]


# -- life cycle ------------------------------------------------------------------------------
def test_sagemaker_entrypoint_env_token_and_sigterm(models):
    """`docker run IMAGE serve`: no MODEL, the SageMaker variables, the model dir from env."""
    port = free_port()
    s = Server(port=port, env={"SAGEMAKER_BIND_TO_PORT": str(port),
                               "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                               "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
                               "MLTK_MODEL_DIR": str(models["cancer"]),
                               "MLTK_SERVE_TOKEN": "s3cret"})
    try:
        s.wait_ready()
        assert httpx.get(s.url + "/ping").status_code == 200  # health needs no token
        assert httpx.get(s.url + "/execution-parameters").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        params = httpx.get(s.url + "/execution-parameters", headers=auth).json()
        assert params["MaxConcurrentTransforms"] == 2
        row = models["rows"].read_text().splitlines()[:2]
        r = httpx.post(s.url + "/invocations", content="\n".join(row).encode(),
                       headers={**auth, "Content-Type": "text/csv"})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        for _ in range(3):  # spread over the two workers; metrics are summed across them
            httpx.post(s.url + "/invocations", content="\n".join(row).encode(),
                       headers={**auth, "Content-Type": "text/csv"})
        text = httpx.get(s.url + "/metrics", headers=auth).text
        name = models["cancer"].name  # a model is named after its folder
        assert f'mltk_requests_total{{model="{name}",protocol="sagemaker",status="200"}} 4.0' \
            in text
        assert f"{name} (two-group)" in s.log()
    finally:
        assert s.stop() == 0, s.log()


def test_sigterm_finishes_accepted_requests(models, digits_dir):
    """Requests held in the batcher when SIGTERM arrives are all answered; exit 0."""
    n = 6  # a batch of n never fills: n - 1 requests wait until SIGTERM drains them
    s = Server(f"digits={models['digits']}", "--max-batch-size", str(n), "--max-latency-ms",
               "600000")
    try:
        s.wait_ready()
        image = digit_images(digits_dir, 1)[0].read_bytes()
        results: list[int] = []

        def call():
            r = httpx.post(s.url + "/invocations", content=image,
                           headers={"Content-Type": "image/jpeg"}, timeout=120)
            results.append(r.status_code)

        threads = [threading.Thread(target=call) for _ in range(n - 1)]
        for t in threads:
            t.start()
        wait_until_queued(s.url, "digits", n - 1)  # all n-1 inputs wait in the queue
        s.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        assert results == [200] * (n - 1)
    finally:
        assert s.stop() == 0, s.log()


def test_full_queue_503_and_timeout_504(models, digits_dir, tmp_path):
    """One input held for a batch that never fills: a second is refused (503, max_queue 1),
    and the first runs out of time (504)."""
    config = tmp_path / "serve.yaml"
    config.write_text("max_queue: 1\n")
    s = Server(f"digits={models['digits']}", "--max-batch-size", "8", "--max-latency-ms",
               "600000", "--timeout", "15", "--config", str(config))
    try:
        s.wait_ready()
        image = digit_images(digits_dir, 1)[0].read_bytes()
        first: list[httpx.Response] = []
        t = threading.Thread(target=lambda: first.append(post(s, image, "image/jpeg")))
        t.start()
        end = time.monotonic() + 15
        while time.monotonic() < end:  # condition: the first input waits in the queue
            if 'mltk_queue_depth{model="digits"} 1.0' in httpx.get(s.url + "/metrics").text:
                break
            time.sleep(0.02)
        second = post(s, image, "image/jpeg")
        assert second.status_code == 503 and "max_queue" in second.json()["error"]
        assert second.headers["Retry-After"] == "1"  # RFC 9110: when to try again
        t.join(60)
        assert first[0].status_code == 504 and "timeout" in first[0].json()["error"]
    finally:
        assert s.stop() == 0, s.log()
