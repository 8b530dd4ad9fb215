"""Models loaded and unloaded live (mltk.serving.repository): SageMaker's multi-model endpoint
API and the V2 repository extension, in process (Starlette's TestClient, colours models kept as
folders), and, slow, a real two-worker server loading an xgb-analyze model from a moto S3 server
while another model keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from mltk.predictors.image import gray_png as png  # noqa: E402
from mltk.serving.app import create_app  # noqa: E402
from mltk.serving.settings import ServeSettings, resolve_settings  # noqa: E402
from tests.test_storage import s3  # noqa: E402, F401 (the moto S3 server fixture)

PNG = {"Content-Type": "image/png"}


def colors_model(folder: Path, pad_kb: int = 0) -> Path:
    """A colours model kept as a folder; ``pad_kb`` of comments make its files that large."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("kind: colors\nk: 3\n" + ("#" * 1023 + "\n") * pad_kb)
    return folder


@contextlib.contextmanager
def live_client(settings: ServeSettings):
    with TestClient(create_app(settings)) as c:
        if settings.token:
            c.headers["Authorization"] = f"Bearer {settings.token}"
        deadline = time.monotonic() + 120
        while c.get("/ping").status_code != 200:  # the condition: start-up models loaded
            assert time.monotonic() < deadline, c.get("/ping").text
            time.sleep(0.05)
        yield c


def names(client) -> list[str]:
    answer = client.get("/models")
    assert answer.status_code == 200, answer.text
    return [m["modelName"] for m in answer.json()["models"]]


def test_sagemaker_multi_model_endpoints(tmp_path):
    a, b = colors_model(tmp_path / "a"), colors_model(tmp_path / "b")
    with live_client(ServeSettings(multi_model=True, token="s3cret")) as c:
        assert names(c) == []
        assert c.post("/models", json={"model_name": "a", "url": str(a)},
                      headers={"Authorization": ""}).status_code == 401
        loaded = c.post("/models", json={"model_name": "a", "url": str(a)})
        assert loaded.status_code == 200, loaded.text
        assert loaded.json() == {"modelName": "a", "modelUrl": str(a)}
        again = c.post("/models", json={"model_name": "a", "url": str(b)})
        assert again.status_code == 409 and "already loaded" in again.json()["error"]
        assert names(c) == ["a"]
        assert c.get("/models/a").json() == {"modelName": "a", "modelUrl": str(a)}
        assert c.get("/models/zz").status_code == 404
        # readiness and metadata follow at once
        assert c.get("/v2/models/a/ready").json() == {"name": "a", "ready": True}
        assert c.get("/v2/models/a").json()["name"] == "a"
        # invoke: SageMaker passes its TargetModel in the header, the name in the path
        got = c.post("/models/a/invoke", content=png(64),
                     headers={**PNG, "X-Amzn-SageMaker-Target-Model": "a.tar.gz"})
        assert got.status_code == 200, got.text
        assert got.json()["predictions"][0]["colors"][0]["name"] == "gray"
        assert c.post("/models/zz/invoke", content=png(64), headers=PNG).status_code == 404
        # a model that fails to load is named with the reason; the server goes on
        bad = c.post("/models", json={"model_name": "bad", "url": str(tmp_path / "none")})
        assert bad.status_code == 400 and "none: no such model folder" in bad.json()["error"]
        for body in ({"model_name": "x"}, {"model_name": "a/b", "url": str(b)}, [1]):
            assert c.post("/models", json=body).status_code == 400
        assert c.post("/models", json={"model_name": "b", "url": str(b)}).status_code == 200
        assert names(c) == ["a", "b"]
        # unloaded: gone at once, everywhere
        assert c.delete("/models/a").status_code == 200
        assert c.delete("/models/a").status_code == 404
        assert c.post("/models/a/invoke", content=png(64), headers=PNG).status_code == 404
        assert c.get("/v2/models/a/ready").status_code == 404
        assert names(c) == ["b"]
        assert c.get("/ping").status_code == 200


def test_memory_budget_answers_507_or_unloads_the_least_recently_used(tmp_path):
    models = {n: str(colors_model(tmp_path / n, pad_kb=40)) for n in "abc"}
    big = str(colors_model(tmp_path / "big", pad_kb=200))
    budget = {"multi_model": True, "memory_budget_mb": 0.1}  # two 40 KB models fit, not three
    with live_client(ServeSettings(**budget)) as c:
        for n in "ab":
            assert c.post("/models", json={"model_name": n, "url": models[n]}).status_code == 200
        full = c.post("/models", json={"model_name": "c", "url": models["c"]})
        assert full.status_code == 507 and "memory_budget_mb" in full.json()["error"]
        assert names(c) == ["a", "b"]
    with live_client(ServeSettings(**budget, lru_unload=True)) as c:
        for n in "ab":
            assert c.post("/models", json={"model_name": n, "url": models[n]}).status_code == 200
        assert c.post("/models/a/invoke", content=png(64), headers=PNG).status_code == 200
        made_room = c.post("/models", json={"model_name": "c", "url": models["c"]})
        assert made_room.status_code == 200, made_room.text
        assert names(c) == ["a", "c"]  # b was the least recently used
        assert c.post("/models/b/invoke", content=png(64), headers=PNG).status_code == 404
        too_big = c.post("/models", json={"model_name": "big", "url": big})
        assert too_big.status_code == 507 and "more than memory_budget_mb" in \
            too_big.json()["error"]
        assert names(c) == ["a", "c"]


def test_repository_index_load_and_unload(tmp_path, monkeypatch):
    monkeypatch.setenv("MLTK_STORAGE_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    colors_model(repo / "pal")
    shop = colors_model(tmp_path / "shop")
    with tarfile.open(repo / "shop.tar.gz", "w:gz") as tf:
        tf.add(shop, arcname=".")
    (repo / "broken").mkdir()
    (repo / "broken" / "config.yaml").write_text("kind: colors\nk: -1\n")  # k is bad
    (repo / "readme.txt").write_text("not a model")
    colors_model(repo / ".hidden")
    settings = ServeSettings(model_repository=str(repo), load_on_request=True)
    with live_client(settings) as c:
        index = c.post("/v2/repository/index").json()
        assert [(m["name"], m["state"]) for m in index] == [
            ("broken", "UNAVAILABLE"), ("pal", "UNAVAILABLE"), ("shop", "UNAVAILABLE")]
        assert c.get("/v2/models/pal/ready").status_code == 404
        loaded = c.post("/v2/repository/models/pal/load")
        assert loaded.status_code == 200, loaded.text
        assert c.get("/v2/models/pal/ready").status_code == 200  # at once
        assert c.get("/v2/models/pal").json()["name"] == "pal"
        got = c.post("/invocations", content=png(64),
                     headers={**PNG, "X-Amzn-SageMaker-Target-Model": "pal"})
        assert got.status_code == 200, got.text
        assert c.post("/v2/repository/models/pal/load").status_code == 200  # loaded already
        assert c.post("/v2/repository/models/shop/load").status_code == 200  # an archive
        broken = c.post("/v2/repository/models/broken/load")
        assert broken.status_code == 400, broken.text
        assert "'broken'" in broken.json()["error"] and " k" in broken.json()["error"]
        assert c.post("/v2/repository/models/nope/load").status_code == 404
        index = {m["name"]: m for m in c.post("/v2/repository/index", json={}).json()}
        assert index["pal"]["state"] == index["shop"]["state"] == "READY"
        assert index["broken"]["state"] == "UNAVAILABLE" and index["broken"]["reason"]
        ready = c.post("/v2/repository/index", json={"ready": True}).json()
        assert [m["name"] for m in ready] == ["pal", "shop"]
        assert c.post("/v2/repository/models/pal/unload").status_code == 200
        assert c.get("/v2/models/pal/ready").status_code == 404  # at once
        assert c.post("/v2/repository/models/pal/unload").status_code == 404
        assert c.post("/v2/repository/models/pal/load").status_code == 200  # again
        assert c.get("/v2/models/shop/ready").status_code == 200
        assert sorted(names(c)) == ["pal", "shop"]  # SageMaker's view of the same set


def test_settings_for_live_models(tmp_path):
    from mltk.serving.repository import startup_models

    colors_model(tmp_path / "repo" / "pal")
    with pytest.raises(Exception, match="no model to serve"):
        ServeSettings()
    at_start = ServeSettings(models=("colors",), model_repository=str(tmp_path / "repo"))
    assert startup_models(at_start) == ("colors", f"pal={tmp_path / 'repo' / 'pal'}")
    on_request = ServeSettings(model_repository=str(tmp_path / "repo"), load_on_request=True)
    assert startup_models(on_request) == ()
    sagemaker = resolve_settings((), environ={"SAGEMAKER_MULTI_MODEL": "true"})
    assert sagemaker.multi_model and sagemaker.models == ()  # no /opt/ml/model then
    assert resolve_settings((), environ={}).models == ("/opt/ml/model",)


def test_workers_share_one_set_of_models(tmp_path, monkeypatch):
    """Two apps over one state folder, as two worker processes of one server have."""
    monkeypatch.setenv("MLTK_SERVE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    a = colors_model(tmp_path / "a")
    settings = ServeSettings(multi_model=True)
    with live_client(settings) as one, live_client(settings) as two:
        assert one.post("/models", json={"model_name": "a", "url": str(a)}).status_code == 200
        assert names(two) == ["a"]
        got = two.post("/models/a/invoke", content=png(64), headers=PNG)  # loads it, waits
        assert got.status_code == 200, got.text
        assert two.get("/v2/models/a/ready").status_code == 200
        assert two.delete("/models/a").status_code == 200
        assert names(one) == []
        assert one.post("/models/a/invoke", content=png(64), headers=PNG).status_code == 404
        assert [m for m in one.post("/v2/repository/index").json()
                if m["state"] == "READY"] == []
        assert one.post("/models", json={"model_name": "a", "url": str(a)}).status_code == 200
        assert two.post("/models", json={"model_name": "a", "url": str(a)}).status_code == 409


def test_an_unload_waits_for_the_requests_in_flight(tmp_path):
    from mltk.serving.dataplane import DataPlane, ModelNotFound
    from mltk.serving.repository import LiveModels

    async def scenario() -> None:
        plane = DataPlane(ServeSettings(models=(f"a={colors_model(tmp_path / 'a')}",),
                                        multi_model=True))
        plane.load()
        live = LiveModels(plane, plane.settings)
        live.enter("a")  # a request for a is in flight
        unload = asyncio.create_task(live.remove("a"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not unload.done() and "a" in plane.models  # it waits for the request
        assert await live.admit("a") == (404, "model 'a' is being unloaded")  # new ones: 404
        assert await plane.infer("a", [png(64)])  # the one in flight is answered
        live.leave("a")
        await unload
        assert "a" not in plane.models
        with pytest.raises(ModelNotFound, match="unloaded"):  # found before, gone now: 404
            await plane.infer("a", [png(64)])
        await plane.close()

    asyncio.run(scenario())


def test_two_loads_of_one_name_make_one_model_and_a_409(tmp_path):
    from mltk.serving.codecs import CodecError
    from mltk.serving.dataplane import DataPlane
    from mltk.serving.repository import LiveModels

    async def scenario() -> None:
        plane = DataPlane(ServeSettings(multi_model=True))
        plane.load()
        live = LiveModels(plane, plane.settings)
        url = str(colors_model(tmp_path / "a"))
        results = await asyncio.gather(live.add("a", url), live.add("a", url),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["CodecError", "dict"]
        refused = next(r for r in results if isinstance(r, CodecError))
        assert refused.status == 409
        assert list(plane.models) == ["a"] and not live.loading
        await live.remove("a")
        assert not plane.models
        await plane.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))  # a lost load would hang, not fail


# -- a real server: two workers, models from S3 ---------------------------------------------
@pytest.mark.slow
def test_models_load_live_from_s3_while_others_answer(s3, tmp_path, cancer_model,  # noqa: F811
                                                      mltk_proc):
    from tests.test_serve import Server

    client, env = s3
    archive = tmp_path / "cancer.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(cancer_model / "model", arcname=".")
    client.upload_file(str(archive), "models", "repo/cancer.tar.gz")
    client.upload_file(str(archive), "models", "mme/churn/model.tar.gz")
    rows = (cancer_model / "rows.csv").read_text()
    expected = mltk_proc("xgb-predict", cancer_model / "model", cancer_model / "rows.csv",
                         "--format", "json")
    assert expected.returncode == 0, expected.stderr
    want = [r["probability"] for r in json.loads(expected.stdout)]
    server = Server("colors", "--workers", "2", "--model-repository", "s3://models/repo/",
                    "--load-on-request",
                    env={**env, "MLTK_STORAGE_CACHE_DIR": str(tmp_path / "cache")})
    answered, stop, flowing = [], threading.Event(), threading.Event()

    def colours() -> None:  # another model, asked again and again, each time a new connection
        while not stop.is_set():
            answered.append(httpx.post(server.url + "/invocations", content=png(64),
                                       headers={**PNG, "X-Amzn-SageMaker-Target-Model":
                                                "colors"}, timeout=60).status_code)
            flowing.set()

    hammer = threading.Thread(target=colours)
    try:
        server.wait_ready()
        hammer.start()
        assert flowing.wait(120)  # the condition: the colours requests are answered
        before = len(answered)
        loaded = httpx.post(server.url + "/v2/repository/models/cancer/load", timeout=300)
        assert loaded.status_code == 200, loaded.text
        during = len(answered) - before
        mme = httpx.post(server.url + "/models", json={
            "model_name": "churn", "url": "s3://models/mme/churn/model.tar.gz"}, timeout=300)
        assert mme.status_code == 200, mme.text
        stop.set()
        hammer.join(60)
        for _ in range(6):  # new connections: either worker answers, both have the models
            for path in ("/models/churn/invoke", "/invocations"):
                got = httpx.post(server.url + path, content=rows, timeout=60, headers={
                    "Content-Type": "text/csv", "Accept": "application/json",
                    "X-Amzn-SageMaker-Target-Model": "cancer"})
                assert got.status_code == 200, got.text
                answers = got.json()
                answers = answers.get("predictions", answers) if isinstance(answers, dict) \
                    else answers
                probs = [r["probability"] for r in answers]
                assert probs == pytest.approx(want, abs=1e-6)
        # unloaded while asked for: each request answered (200) or refused (404), never a 500
        during_unload, asking = [], threading.Event()

        def churn() -> None:
            while not stop_churn.is_set():
                during_unload.append(httpx.post(
                    server.url + "/models/churn/invoke", content=rows, timeout=60,
                    headers={"Content-Type": "text/csv"}).status_code)
                asking.set()

        stop_churn = threading.Event()
        asker = threading.Thread(target=churn)
        asker.start()
        assert asking.wait(120)
        assert httpx.delete(server.url + "/models/churn", timeout=60).status_code == 200
        stop_churn.set()
        asker.join(60)
        assert during_unload and set(during_unload) <= {200, 404}, during_unload
        for _ in range(6):
            gone = httpx.post(server.url + "/models/churn/invoke", content=rows, timeout=60,
                              headers={"Content-Type": "text/csv"})
            assert gone.status_code == 404, gone.text
            listed = httpx.get(server.url + "/models", timeout=60).json()["models"]
            assert [m["modelName"] for m in listed] == ["cancer", "colors"]
    finally:
        stop.set()
        if hammer.is_alive():
            hammer.join(60)
        assert server.stop() == 0, server.log()
    assert answered and set(answered) == {200}
    assert during >= 1  # the colours model answered while the other one loaded


def test_grpc_repository_calls_load_and_unload_the_live_models(tmp_path):
    """With --model-repository and --grpc-port, tritonclient's repository calls over gRPC load
    and unload the same live set as the REST routes, and inference follows at once."""
    grpc = pytest.importorskip("grpc")
    from mltk.serving import grpc_server
    from mltk.serving.launcher import free_port

    repo = tmp_path / "repo"
    colors_model(repo / "pal")
    port = free_port()
    settings = ServeSettings(model_repository=str(repo), load_on_request=True, grpc_port=port)
    pb = grpc_server.pb
    image = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    infer = pb.ModelInferRequest(model_name="pal", inputs=[image])
    infer.inputs[0].contents.bytes_contents.append(png(32))
    with live_client(settings) as c, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = grpc_server.pb_grpc.GRPCInferenceServiceStub(channel)
        index = stub.RepositoryIndex(pb.RepositoryIndexRequest())
        assert [(m.name, m.state) for m in index.models] == [("pal", "UNAVAILABLE")]
        assert not stub.ModelReady(pb.ModelReadyRequest(name="pal")).ready
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="pal"))
        assert stub.ModelReady(pb.ModelReadyRequest(name="pal")).ready
        assert c.get("/v2/models/pal/ready").status_code == 200  # REST sees the same set
        answer = stub.ModelInfer(infer)
        assert {o.name for o in answer.outputs} >= {"width", "height"}
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="nope"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="pal"))
        assert not stub.ModelReady(pb.ModelReadyRequest(name="pal")).ready
        assert c.get("/v2/models/pal/ready").status_code == 404
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(infer)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="pal"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
