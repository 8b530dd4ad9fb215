"""mltk serve --grpc-port: the Open Inference Protocol over gRPC (inference.GRPCInferenceService).

The slow tests run a real ``mltk serve`` process serving every model kind and call it with
tritonclient.grpc, comparing each answer with the REST V2 answer of the same server; the fast
ones run the servicer in this process on a real grpc.aio server, called through the generated
stub (typed contents, raw contents, status codes).
"""

from __future__ import annotations

import asyncio
import base64
import filecmp
import io
import signal
import threading
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from tests.conftest import free_port, wait_until_queued


# -- fast: generated code, and the servicer in this process ------------------------------------
def test_regenerating_the_grpc_modules_gives_the_committed_files(tmp_path):
    """In a process of its own: protoc's C++ core can crash a process that has loaded another
    protobuf runtime's descriptors (TensorFlow's, after other tests)."""
    import subprocess
    import sys

    from mltk.serving import grpc_codegen

    run = subprocess.run([sys.executable, "-m", "mltk.serving.grpc_codegen", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    here = Path(grpc_codegen.__file__).parent
    written = sorted(tmp_path.glob("*.py"))
    assert [p.name for p in written] == sorted(grpc_codegen.MODULES)
    for p in written:
        assert filecmp.cmp(p, here / p.name, shallow=False), f"{p.name} is stale: run " \
            "python -m mltk.serving.grpc_codegen"


def test_the_messages_live_beside_tritonclients():
    """mltk's `inference.*` messages are in a pool of their own: tritonclient.grpc (which
    declares the same names in protobuf's default pool) imports in the same process."""
    import tritonclient.grpc.service_pb2 as triton

    from mltk.serving import grpc_server

    req = grpc_server.pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\x01"])
    assert triton.ModelInferRequest.FromString(req.SerializeToString()).model_name == "m"


def _png(rgb=(200, 10, 10), side=16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), rgb).save(buf, "PNG")
    return buf.getvalue()


def _run_in_process(settings, calls, load=True):
    """Start the servicer on a grpc.aio server in this process and run ``calls(stub)`` (a
    coroutine function) against it; the plane's models loaded first when ``load``."""
    from mltk.serving import grpc_server
    from mltk.serving.dataplane import DataPlane

    plane = DataPlane(settings)
    if load:
        plane.load()
        assert plane.loaded, plane.load_error

    async def main():
        running = await grpc_server.start(plane, settings)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                return await calls(grpc_server.pb_grpc.GRPCInferenceServiceStub(channel),
                                   grpc_server.pb)
        finally:
            await running.stop()
            await plane.close()

    return asyncio.run(main())


def test_servicer_typed_and_raw_contents_and_status_codes():
    from mltk.serving.settings import ServeSettings

    settings = ServeSettings(models=("colors",), grpc_port=0, max_body_mb=0.05,
                             token="t0ken")
    png = _png()
    auth = (("authorization", "Bearer t0ken"),)

    async def calls(stub, pb):
        got = {"live": (await stub.ServerLive(pb.ServerLiveRequest())).live,
               "ready": (await stub.ServerReady(pb.ServerReadyRequest())).ready}
        with pytest.raises(grpc.aio.AioRpcError) as e:  # no token
            await stub.ModelMetadata(pb.ModelMetadataRequest(name="colors"))
        got["no token"] = e.value.code()
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="colors"), metadata=auth)
        got["outputs"] = [t.name for t in meta.outputs]
        tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES",
                                                       shape=[1])
        typed = pb.ModelInferRequest(model_name="colors", id="a", inputs=[tensor])
        typed.inputs[0].contents.bytes_contents.append(png)
        answer = await stub.ModelInfer(typed, metadata=auth)
        got["typed"] = (answer.id, list(answer.raw_output_contents),
                        {o.name: o for o in answer.outputs}["width"].contents.int64_contents[:])
        raw = pb.ModelInferRequest(model_name="colors", inputs=[tensor],
                                   raw_input_contents=[len(png).to_bytes(4, "little") + png],
                                   outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(
                                       name="width")])
        answer = await stub.ModelInfer(raw, metadata=auth)
        got["raw"] = ([o.name for o in answer.outputs],
                      np.frombuffer(answer.raw_output_contents[0], "<i8").tolist())
        codes = {}
        bad = [("unknown model", pb.ModelInferRequest(model_name="nope", inputs=[tensor])),
               ("wrong version", pb.ModelInferRequest(model_name="colors", model_version="2",
                                                      inputs=[tensor])),
               ("shape", pb.ModelInferRequest(model_name="colors", inputs=[
                   pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES",
                                                         shape=[2])],
                   raw_input_contents=[raw.raw_input_contents[0]])),
               ("stray field", pb.ModelInferRequest(model_name="colors", inputs=[
                   pb.ModelInferRequest.InferInputTensor(
                       name="image", datatype="BYTES", shape=[1],
                       contents=pb.InferTensorContents(fp32_contents=[1.0]))])),
               ("too large", pb.ModelInferRequest(model_name="colors", inputs=[tensor],
                                                  raw_input_contents=[b"x" * 60_000]))]
        for what, request in bad:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ModelInfer(request, metadata=auth)
            codes[what] = (e.value.code(), e.value.details())
        index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=auth)
        got["index"] = [(m.name, m.state) for m in index.models]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="x"),
                                           metadata=auth)
        got["load"] = e.value.code()
        return got, codes

    got, codes = _run_in_process(settings, calls)
    assert got["live"] and got["ready"]
    assert got["no token"] == grpc.StatusCode.UNAUTHENTICATED
    assert got["outputs"] == ["colors", "width", "height", "other_share"]
    assert got["typed"] == ("a", [], [16])  # typed contents in, typed contents out
    assert got["raw"] == (["width"], [16])  # raw in, raw out; only the output asked for
    assert codes["unknown model"][0] == grpc.StatusCode.NOT_FOUND
    assert "nope" in codes["unknown model"][1]
    assert codes["wrong version"][0] == grpc.StatusCode.NOT_FOUND
    assert codes["shape"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "shape [2] holds 2 values but 1 were sent" in codes["shape"][1]
    assert codes["stray field"] == (grpc.StatusCode.INVALID_ARGUMENT, "input 'image': BYTES "
                                    "values belong in contents.bytes_contents, not "
                                    "fp32_contents")
    assert codes["too large"][0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert got["index"] == [("colors", "READY")]
    assert got["load"] == grpc.StatusCode.UNIMPLEMENTED


def test_servicer_not_ready_is_unavailable():
    from mltk.serving.settings import ServeSettings

    async def calls(stub, pb):
        ready = (await stub.ServerReady(pb.ServerReadyRequest())).ready
        model_ready = (await stub.ModelReady(pb.ModelReadyRequest(name="colors"))).ready
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.ModelInfer(pb.ModelInferRequest(model_name="colors"))
        return ready, model_ready, e.value.code()

    sigint = signal.getsignal(signal.SIGINT)
    # (a call waits for this process's own models up to the timeout: 0.2 s here)
    assert _run_in_process(ServeSettings(models=("colors",), grpc_port=0, timeout=0.2), calls,
                           load=False) == (False, False, grpc.StatusCode.UNAVAILABLE)
    assert signal.getsignal(signal.SIGINT) is sigint  # the stop put the handler back


# -- slow: a real server process, tritonclient.grpc --------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, cancer_model, digits_run):
    from tests.test_serve import build_models

    return build_models(tmp_path_factory.mktemp("serve-grpc"), cancer_model, digits_run)


class GrpcServer:
    """``mltk serve --grpc-port`` as a subprocess (tests.test_serve.Server with a gRPC port)."""

    def __init__(self, *args: str) -> None:
        from tests.test_serve import Server

        self.grpc_port = free_port()
        self.http = Server(*args, "--grpc-port", str(self.grpc_port))
        self.http.wait_ready()
        self.url = self.http.url

    def client(self):
        import tritonclient.grpc as tg

        return tg.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")


@pytest.fixture(scope="module")
def server(models):
    s = GrpcServer(f"cancer={models['cancer']}", f"shop={models['shop']}",
                   f"digits={models['digits']}", "colors", "--max-latency-ms", "2")
    try:
        yield s
    finally:
        assert s.http.stop() == 0, s.http.log()


def _rest(server, model, inputs):
    r = httpx.post(f"{server.url}/v2/models/{model}/infer", json={"inputs": inputs},
                   timeout=60)
    assert r.status_code == 200, r.text
    return {t["name"]: t for t in r.json()["outputs"]}


def _same(grpc_result, rest):
    """Every output of the REST answer, in the gRPC answer: same shape, same values."""
    names = [o.name for o in grpc_result.get_response().outputs]
    assert names == list(rest)
    for name, t in rest.items():
        got = grpc_result.as_numpy(name)
        assert list(got.shape) == t["shape"], name
        if t["datatype"] == "BYTES":
            assert [v.decode() for v in got.ravel()] == t["data"], name
        else:
            assert np.allclose(got.ravel().astype(float), np.array(t["data"], float),
                               atol=1e-6, equal_nan=True), name


@pytest.mark.slow
def test_grpc_answers_match_rest_for_every_model_kind(server, models, digits_dir):
    import pandas as pd
    import tritonclient.grpc as tg

    client = server.client()
    assert client.is_server_live() and client.is_server_ready()
    assert [m.name for m in client.get_model_repository_index().models] == [
        "cancer", "shop", "digits", "colors"]
    # rows: one [rows, columns] FP64 matrix
    meta = client.get_model_metadata("cancer")
    features = [t.name for t in meta.inputs]
    matrix = pd.read_csv(models["rows"]).iloc[:5][features].to_numpy(np.float64)
    inp = tg.InferInput("rows", list(matrix.shape), "FP64")
    inp.set_data_from_numpy(matrix)
    result = client.infer("cancer", [inp], request_id="rows-1")
    assert result.get_response().id == "rows-1"
    _same(result, _rest(server, "cancer", [{"name": "rows", "shape": list(matrix.shape),
                                            "datatype": "FP64", "data": matrix.tolist()}]))
    # images: an image classifier and colours
    for model, files in (("digits", sorted(Path(digits_dir).rglob("*.jpg"))[:3]),
                         ("colors", sorted(Path(models["photos"]).glob("*.jpg"))[:2])):
        data = [f.read_bytes() for f in files]
        inp = tg.InferInput("image", [len(data)], "BYTES")
        inp.set_data_from_numpy(np.array(data, dtype=object))
        _same(client.infer(model, [inp]), _rest(server, model, [{
            "name": "image", "shape": [len(data)], "datatype": "BYTES",
            "data": [base64.b64encode(d).decode() for d in data]}]))
    # recommendations: item ids and k
    items = pd.read_csv(models["market"].files["items"])["item_id"].head(3).astype(str)
    ids, k = tg.InferInput("item_id", [3], "BYTES"), tg.InferInput("k", [1], "INT64")
    ids.set_data_from_numpy(np.array(items.tolist(), dtype=object))
    k.set_data_from_numpy(np.array([4], dtype=np.int64))
    _same(client.infer("shop", [ids, k]), _rest(server, "shop", [
        {"name": "item_id", "shape": [3], "datatype": "BYTES", "data": items.tolist()},
        {"name": "k", "shape": [1], "datatype": "INT64", "data": [4]}]))


@pytest.mark.slow
def test_grpc_errors_are_status_codes(server, models):
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    client = server.client()
    jpeg = sorted(Path(models["photos"]).glob("*.jpg"))[0].read_bytes()

    def image(data: bytes, n: int = 1):
        inp = tg.InferInput("image", [n], "BYTES")
        inp.set_data_from_numpy(np.array([data] * n, dtype=object))
        return inp

    cases = [(lambda: client.infer("nope", [image(jpeg)]), "StatusCode.NOT_FOUND", "nope"),
             (lambda: client.get_model_metadata("nope"), "StatusCode.NOT_FOUND", "nope"),
             (lambda: client.infer("digits", [image(b"abc")]), "StatusCode.INVALID_ARGUMENT",
              "not an image"),
             (lambda: client.infer("digits", [image(b"x" * (6 * 1024 * 1024 + 1))]),
              "StatusCode.RESOURCE_EXHAUSTED", ""),
             (lambda: client.infer("colors", [image(_huge_png())]),
              "StatusCode.RESOURCE_EXHAUSTED", "20000x20000"),
             (lambda: client.unload_model("colors"), "StatusCode.UNIMPLEMENTED", "")]
    for call, code, words in cases:
        with pytest.raises(InferenceServerException) as e:
            call()
        assert e.value.status() == code and words in e.value.message(), (code, e.value)
    assert not client.is_model_ready("nope")
    text = httpx.get(server.url + "/metrics").text  # gRPC calls counted beside REST's
    assert 'mltk_requests_total{model="digits",protocol="grpc",status="400"} 1.0' in text
    assert client.infer("colors", [image(jpeg)]).as_numpy("width").shape == (1,)


def _huge_png() -> bytes:
    from tests.test_serve import huge_png

    return huge_png()


@pytest.mark.slow
def test_sigterm_finishes_grpc_calls_in_flight(models):
    """Calls held in the batcher when SIGTERM arrives are all answered; exit 0."""
    import pandas as pd
    import tritonclient.grpc as tg

    n = 5  # a batch of n never fills: n - 1 calls wait until SIGTERM drains them
    s = GrpcServer(f"cancer={models['cancer']}", "--max-batch-size", str(n),
                   "--max-latency-ms", "600000")
    try:
        client = s.client()
        features = [t.name for t in client.get_model_metadata("cancer").inputs]
        row = pd.read_csv(models["rows"]).iloc[:1][features].to_numpy(np.float64)
        inp = tg.InferInput("rows", list(row.shape), "FP64")
        inp.set_data_from_numpy(row)
        done: list = []
        finished = threading.Event()

        def callback(result, error):
            done.append(error or result.as_numpy("probability").shape)
            if len(done) == n - 1:
                finished.set()

        for _ in range(n - 1):
            client.async_infer("cancer", [inp], callback)
        wait_until_queued(s.url, "cancer", n - 1)  # all n-1 inputs wait in the queue
        s.http.proc.send_signal(signal.SIGTERM)
        assert finished.wait(120)
        assert done == [(1,)] * (n - 1)
    finally:
        assert s.http.stop() == 0, s.http.log()


@pytest.mark.slow
def test_a_grpc_port_in_use_is_an_error_naming_it(mltk_proc):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = mltk_proc("serve", "colors", "--port", str(free_port()), "--grpc-port",
                         str(port), timeout=300)
    assert proc.returncode == 1
    assert f"Error: gRPC cannot listen on 127.0.0.1:{port} (the port is in use" in proc.stderr
