"""A similarity index served (predictor kind ``similar``): ids, vectors and images in, the
records of ``mltk index query`` out, over SageMaker /invocations and V2.

In-process: the predictor, its codecs and the app (Starlette's TestClient) on a real index of
clustered vectors with metadata (fast). As a process: ``mltk serve`` of an index built with
``--model`` from a trained run, image queries included, against ``mltk index query`` (slow).
"""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pandas as pd
import pytest

from mltk.errors import InputError
from mltk.predictors import detect_kind, open_predictor
from tests.test_similar import clustered


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """An exact index of 500 clustered 16-d vectors, ids item0.., category and price."""
    from mltk import settings
    from mltk.similar import SimilarityIndex, VectorSet

    root = tmp_path_factory.mktemp("similar-serve")
    x = clustered(500, 16, seed=4)
    rng = np.random.default_rng(2)
    meta = pd.DataFrame({"category": rng.choice(["bags", "shoes"], len(x)),
                         "price": rng.integers(100, 10_000, len(x))})
    ids = np.array([f"item{i}" for i in range(len(x))], dtype=object)
    index, _ = SimilarityIndex.build(VectorSet(x, ids, meta, {}, "shop"),
                                     settings.load("similar"))
    index.save(root / "index")
    np.save(root / "q.npy", x[:3] + 0.01)
    return root, x


def cli_query(cli, *args):
    result = cli("index", "query", *args, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def npy(x) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(x, np.float32))
    return buf.getvalue()


def test_the_predictor_answers_as_index_query(cli, shop):
    root, x = shop
    assert detect_kind(root / "index") == "similar"
    p = open_predictor(root / "index")
    assert p.kind == "similar" and p.name == "index"
    got = p.predict([{"id": "item7", "k": 4}, {"vector": x[0] + 0.01, "k": 4},
                     {"id": "item9", "k": 3, "where": "category == 'bags'"}])
    want = cli_query(cli, root / "index", "item7", "-k", "4")
    want += cli_query(cli, root / "index", "--vectors", root / "q.npy", "-k", "4")[:1]
    want += cli_query(cli, root / "index", "item9", "-k", "3", "--where", "category == 'bags'")
    assert got[0] == want[0] and got[2] == want[2]
    assert got[1]["neighbors"] == want[1]["neighbors"]
    assert "item7" not in [n["id"] for n in got[0]["neighbors"]]  # the item itself left out
    assert {n["category"] for n in got[2]["neighbors"]} == {"bags"}


@pytest.mark.parametrize("query, words", [
    ({"id": "nope"}, "no such id"),
    ({"vector": [0.1, 0.2]}, "vectors have 2 dims; the index has 16"),
    ({"image": b"\xff\xd8 not a jpeg"}, "this index has no model"),
    ({"id": "item1", "k": 0}, "k must be a positive integer"),
    ({"id": "item1", "where": "colour == 'red'"}, "colour"),
    ({"id": "item1", "vector": [0.0] * 16}, "one of id, image or vector"),
])
def test_a_bad_query_is_its_own_error_and_the_rest_go_on(shop, query, words):
    root, _ = shop
    p = open_predictor(root / "index")
    bad, good = p.predict([query, {"id": "item1", "k": 2}])
    assert isinstance(bad, InputError) and words in str(bad), bad
    assert len(good["neighbors"]) == 2


def test_codecs_read_ids_vectors_and_images():
    from mltk.serving import similar_codec
    from mltk.serving.codecs import CodecError

    assert similar_codec.decode("application/json", b'{"instances": ["a", 3, [0.5, 1]]}') == [
        {"id": "a"}, {"id": 3}, {"vector": [0.5, 1]}]
    assert similar_codec.decode("application/json", b"[0.5, 1.5]") == [{"vector": [0.5, 1.5]}]
    one = similar_codec.decode("application/json",
                               b'{"b64": "' + base64.b64encode(b"PNG") + b'", "k": 2}')
    assert one == [{"image": b"PNG", "k": 2}]
    assert similar_codec.decode("application/jsonlines", b'{"id": "x", "where": "a == 1"}\n'
                                b'"y"\n') == [{"id": "x", "where": "a == 1"}, {"id": "y"}]
    assert similar_codec.decode("text/csv", b"id\nitem1\n12\n") == [{"id": "item1"},
                                                                    {"id": 12}]
    assert similar_codec.decode("text/csv", b"0.5,1,2\n") == [{"vector": [0.5, 1, 2]}]
    rows = similar_codec.decode("application/x-npy", npy([[1, 2], [3, 4]]))
    assert [r["vector"].tolist() for r in rows] == [[1, 2], [3, 4]]
    assert similar_codec.decode("image/jpeg", b"JPEG") == [b"JPEG"]
    with pytest.raises(CodecError, match="not accepted"):
        similar_codec.decode("text/plain", b"x")
    with pytest.raises(CodecError, match="line 1: 2 fields"):
        similar_codec.decode("text/csv", b"a,b\n")
    req = {"inputs": [{"name": "vector", "shape": [2, 2]}, {"name": "k", "shape": [1]}]}
    assert similar_codec.v2_items({"vector": [1.0, 2.0, 3.0, 4.0], "k": [5]}, req) == [
        {"vector": [1.0, 2.0], "k": 5}, {"vector": [3.0, 4.0], "k": 5}]
    with pytest.raises(CodecError, match="one of the inputs"):
        similar_codec.v2_items({"k": [5]}, req)


@pytest.fixture(scope="module")
def client(shop):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mltk.serving.app import create_app
    from mltk.serving.settings import ServeSettings

    root, _ = shop
    with TestClient(create_app(ServeSettings(models=(f"shop={root / 'index'}",)))) as c:
        deadline = time.monotonic() + 120
        while c.get("/v2/health/ready").status_code != 200:  # the condition: models loaded
            assert time.monotonic() < deadline, c.get("/v2/health/ready").text
            time.sleep(0.05)
        yield c


def test_sagemaker_and_v2_give_the_records_of_index_query(client, cli, shop):
    root, x = shop
    want = cli_query(cli, root / "index", "item3", "item4", "-k", "5")
    answer = client.post("/invocations", content=b'{"instances": [{"id": "item3", "k": 5}, '
                         b'{"id": "item4", "k": 5}]}', headers={"Content-Type":
                                                                "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == want
    by_vector = client.post("/invocations", content=npy(x[:3] + 0.01),
                            headers={"Content-Type": "application/x-npy"})
    vq = cli_query(cli, root / "index", "--vectors", root / "q.npy")
    assert [r["neighbors"] for r in by_vector.json()["predictions"]] == [
        r["neighbors"] for r in vq]
    v2 = client.post("/v2/models/shop/infer", json={"inputs": [
        {"name": "id", "datatype": "BYTES", "shape": [2], "data": ["item3", "item4"]},
        {"name": "k", "datatype": "INT64", "shape": [1], "data": [5]}]})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["query"] == ["item3", "item4"]
    assert [json.loads(n) for n in outputs["neighbors"]] == [r["neighbors"] for r in want]
    meta = client.get("/v2/models/shop").json()
    assert meta["platform"] == "mltk-similar" and meta["parameters"]["count"] == 500
    assert {"name": "vector", "datatype": "FP32", "shape": [-1, 16]} in meta["inputs"]
    unknown = client.post("/invocations", content=b'"nope"',
                          headers={"Content-Type": "application/json"})
    assert unknown.status_code == 400 and "no such id" in unknown.json()["error"]


@pytest.mark.slow
def test_mltk_serve_answers_image_queries_as_index_query(cli, digits_run, digits_dir,
                                                         tmp_path):
    import httpx

    from tests.test_serve import Server

    photos = sorted(digits_dir.rglob("*.jpg"))[:60]
    built = cli("index", "build", *photos, "--model", digits_run, "--out", tmp_path / "idx")
    assert built.exit_code == 0, built.output
    asked = [photos[5], photos[40]]
    want = cli_query(cli, tmp_path / "idx", *map(str, asked), "-k", "4")
    server = Server(f"digits={tmp_path / 'idx'}")
    try:
        server.wait_ready()
        for photo, expected in zip(asked, want, strict=True):
            answer = httpx.post(server.url + "/invocations", content=photo.read_bytes(),
                                headers={"Content-Type": "image/jpeg"}, params={}, timeout=60)
            assert answer.status_code == 200, answer.text
            (got,) = answer.json()["predictions"]
            ids = [n["id"] for n in got["neighbors"]]
            assert len(ids) == 10 and ids[:4] == [n["id"] for n in expected["neighbors"]]
            assert got["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        v2 = httpx.post(server.url + "/v2/models/digits/infer", json={"inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1],
             "data": [base64.b64encode(asked[0].read_bytes()).decode()]},
            {"name": "k", "datatype": "INT64", "shape": [1], "data": [4]}]}, timeout=60)
        assert v2.status_code == 200, v2.text
        neighbors = json.loads({o["name"]: o["data"] for o in v2.json()["outputs"]}
                               ["neighbors"][0])
        assert [n["id"] for n in neighbors] == [n["id"] for n in want[0]["neighbors"]]
        # the same photo by its id: the item itself is left out, the rest in the same order
        by_id = httpx.post(server.url + "/invocations", json={"id": str(asked[1]), "k": 3},
                           timeout=60).json()["predictions"][0]
        assert by_id["query"] == str(asked[1])
        assert [n["id"] for n in by_id["neighbors"]] == ids[1:4]
    finally:
        assert server.stop() == 0, server.log()


def test_an_emptied_index_loads_and_answers_each_query_with_its_error(shop, tmp_path):
    import shutil

    from mltk.similar import SimilarityIndex

    root, _ = shop
    shutil.copytree(root / "index", tmp_path / "index")
    index = SimilarityIndex.load(tmp_path / "index")
    index.remove(index.items["id"].tolist())
    index.save(tmp_path / "index")
    p = open_predictor(tmp_path / "index")
    p.warmup()  # an empty index is served: it says so per query, not at start
    (outcome,) = p.predict([{"vector": [0.5] * 16, "k": 3}])
    assert isinstance(outcome, InputError) and "the index is empty" in str(outcome)
    big = open_predictor(root / "index").predict([{"id": "item0", "k": 10_000}])[0]
    assert len(big["neighbors"]) == 499  # k above the count: every other item
