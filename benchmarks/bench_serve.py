"""Speed of `mltk serve` (issue 12), every figure from one run on loopback (127.0.0.1).

1. Two-group model (`xgb-analyze --max-evals 2` on `purchases`), one row per request from
   32 concurrent connections: requests/s, p50, p99 and the server's CPU per request (user +
   system time of the server's processes over the measured run, divided by the requests) of
   `mltk serve` with adaptive batching (default flags) and without (`--max-batch-size 1`),
   of MLServer 1.7.1 with its XGBoost runtime serving the same `model.ubj`, with and without
   adaptive batching (in a virtualenv the benchmark makes once: `--mlserver-venv`), of the
   original stack (the same predictor in a minimal Flask app under gunicorn, sync workers,
   one predict per request) with the same number of worker processes, and of the predictor
   called in-process, one row per call (the limit). mltk gets the row as a JSON object
   (`/invocations`) and, like MLServer, as one V2 `[1, n]` FP32 tensor with the categorical
   column as the model's category code (rows without missing values, so that MLServer can
   take them too); the answers of all three forms are compared. OMP_NUM_THREADS is 1 for
   every server and in-process run of this part unless `--threads` says otherwise. Targets: >= 1.5x
   Flask's requests/s, p99 <= 20 ms; unbatched: <= 0.5 ms of server CPU per request and
   >= 75% of the in-process rate; batched: >= 1.5x MLServer's best. Beside them, the same
   server over gRPC (`--grpc-port`: ModelInfer, one row as raw V2 tensors).
2. Image classifiers (`small_cnn` at 150 px; `--models` adds `mobilenet_v3_small`), trained for
   2 steps on the digits, single-image requests (product JPEGs) from 32 concurrent clients:
   images/s with adaptive batching (default flags), with `--max-batch-size 1`, over gRPC
   (adaptive batching, one image as a raw BYTES tensor per call), and the model's own throughput
   in-process (`predict_prepared` on batches of 32 prepared images; the limit).
   Target: >= 80% of the limit.
3. Colours: images/s of `mltk serve colors` with 2 concurrent clients (or one per worker)
   against `mltk colors -j 1` on the same photos. Target: >= 70%.

The load generator is raw asyncio streams in this process: HTTP/1.1 keep-alive, reconnecting
when the server closes the connection (gunicorn's sync workers do after every response; the
connect is then part of the request's latency). Its own ceiling, against a server that answers
a fixed response, is measured first. For gRPC it is grpc.aio with mltk's generated stub, one
channel (one HTTP/2 connection) per client, one call in flight on each. Client and servers
share the machine's cores. Each server is a subprocess on a free port, ready once
`/v2/health/ready` (Flask: `/ping`) answers 200, and stopped with SIGTERM whatever happens.
Every measurement runs `--rounds` times, interleaved with the others of its part, and the best
round is kept (other work on a shared machine slows a round, it never speeds one up).
`--threads N` sets OMP_NUM_THREADS for every server and in-process run alike (XGBoost's OpenMP
threads spin-wait badly when the cores are busy). Models and photos are made with the mltk CLI
in `--workdir` (kept, and reused by the next run, when given; a temporary folder otherwise).

Run: nice -n 10 .venv/bin/python benchmarks/bench_serve.py [--requests 3000] [--images 480]
     [--seconds 30] [--rounds 2] [--workers 1] [--models small_cnn,mobilenet_v3_small]
     [--workdir DIR] [--mlserver-venv DIR | --no-mlserver] [--only rows] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mltk.serving.launcher import free_port, http_get, running

ROW_CLIENTS = 32
IMAGE_CLIENTS = 32
LIMIT_BATCH = 32
#: MLServer as its own virtualenv holds it: uvloop 0.21 (its parallel_workers process crashes
#: at start with uvloop >= 0.22) and httptools (pip brings h11 only), as mltk has.
MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-xgboost==1.7.1", "uvloop>=0.21,<0.22",
                     "httptools")
MLSERVER_BATCH = 32  # max_batch_size with adaptive batching, as mltk's default
MLSERVER_BATCH_TIME = 0.005  # max_batch_time, s (mltk's default max_latency_ms is 5)

FLASK_APP = '''\
"""The original stack: one mltk predictor behind Flask, one predict per request."""
import os

from flask import Flask, jsonify, request

from mltk.predictors import open_predictor

predictor = open_predictor(os.environ["BENCH_MODEL"])
app = Flask(__name__)


@app.get("/ping")
def ping():
    return {"status": "ok"}


@app.post("/invocations")
def invocations():
    doc = request.get_json()
    rows = doc.get("instances", [doc]) if isinstance(doc, dict) else doc
    out = predictor.predict(rows)
    return jsonify({"predictions": [o if isinstance(o, dict) else {"error": str(o)}
                                    for o in out]})
'''


# -- load generator -------------------------------------------------------------------------------
@dataclasses.dataclass
class Load:
    """What one measured run of the load generator saw."""

    ok: int
    seconds: float
    latencies: list[float]  # seconds, sorted, successful requests only
    errors: dict[str, int]
    connects: int

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def post(port: int, path: str, content_type: str, body: bytes) -> bytes:
    """One raw HTTP/1.1 request, built once and sent many times."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection); the body is read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length, close = None, head[0].startswith("HTTP/1.0")
    for line in head[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value == "close"
        elif name == "transfer-encoding" and "chunked" in value:
            raise RuntimeError("chunked responses are not expected here")
    if length is None:
        await reader.read()
        return status, True
    await reader.readexactly(length)
    return status, close


async def _drive(port: int, requests: Sequence[bytes], total: int, clients: int,
                 seconds: float) -> Load:
    """``clients`` connections send ``requests`` (cycled) until ``total`` have been sent or
    ``seconds`` have passed; each connection has one request in flight at a time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sent = connects = 0
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def connection() -> None:
        nonlocal sent, connects
        reader = writer = None
        try:
            while sent < total and loop.time() < deadline:
                req = requests[sent % len(requests)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        connects += 1
                    writer.write(req)
                    status, close = await _response(reader)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    status, close = 0, True
                if status == 200:
                    latencies.append(time.perf_counter() - t0)
                elif status:
                    errors[f"HTTP {status}"] += 1
                if close and writer is not None:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    return Load(len(latencies), elapsed, sorted(latencies), dict(errors), connects)


def load(port: int, requests: Sequence[bytes], total: int, clients: int, seconds: float,
         warmup: int, between: Callable[[], object] | None = None) -> tuple[Load, object]:
    """A warm-up of ``warmup`` requests, ``between()`` (e.g. read metrics), the measured run."""
    asyncio.run(_drive(port, requests, warmup, clients, seconds))
    before = between() if between else None
    return asyncio.run(_drive(port, requests, total, clients, seconds)), before


async def _drive_grpc(port: int, requests: Sequence[object], total: int, clients: int,
                      seconds: float) -> Load:
    """``_drive`` over gRPC: ``clients`` channels call ModelInfer with ``requests`` (cycled)."""
    import grpc

    from mltk.serving.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sent = 0
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def channel() -> None:
        nonlocal sent
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = GRPCInferenceServiceStub(ch)
            while sent < total and loop.time() < deadline:
                req = requests[sent % len(requests)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    await stub.ModelInfer(req)
                    latencies.append(time.perf_counter() - t0)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(channel() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    return Load(len(latencies), elapsed, sorted(latencies), dict(errors), clients)


def load_grpc(port: int, requests: Sequence[object], total: int, clients: int, seconds: float,
              warmup: int, between: Callable[[], object] | None = None) -> tuple[Load, object]:
    """``load`` over gRPC."""
    asyncio.run(_drive_grpc(port, requests, warmup, clients, seconds))
    before = between() if between else None
    return asyncio.run(_drive_grpc(port, requests, total, clients, seconds)), before


def grpc_request(model: str, tensors: Sequence[tuple[str, str, list[int], bytes]]) -> object:
    """A ModelInferRequest of raw tensors: (name, datatype, shape, raw bytes) each."""
    from mltk.serving import grpc_predict_v2_pb2 as pb

    return pb.ModelInferRequest(
        model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
            name=n, datatype=d, shape=s) for n, d, s, _ in tensors],
        raw_input_contents=[raw for *_, raw in tensors])


def raw_bytes(values: Sequence[bytes]) -> bytes:
    """BYTES elements as raw tensor contents: a 4-byte little-endian length before each."""
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


def grpc_row(model: str, row: dict, inputs: Sequence[dict]) -> object:
    """One row as one [1] tensor per column, of the model's declared datatypes."""
    import struct

    tensors = []
    for t in inputs:
        v = row.get(t["name"])
        if v == "":
            v = None  # missing
        if t["datatype"] == "BYTES":
            raw = raw_bytes([b"" if v is None else str(v).encode()])
        else:
            raw = struct.pack("<d", float("nan") if v is None else float(v))
        tensors.append((t["name"], t["datatype"], [1], raw))
    return grpc_request(model, tensors)


def measured(port: int, pid: int, requests: Sequence[bytes], total: int, clients: int,
             seconds: float, warmup: int) -> tuple[Load, float]:
    """The measured run and the server's CPU per successful request, in ms."""
    result, before = load(port, requests, total, clients, seconds, warmup,
                          lambda: tree_cpu(pid))
    return result, (tree_cpu(pid) - before) / max(1, result.ok) * 1000


# -- servers --------------------------------------------------------------------------------------
def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    return http_get(f"http://127.0.0.1:{port}{path}", timeout)


@contextlib.contextmanager
def serving(cmd: list[str], port: int, ready_path: str, env: dict[str, str] | None = None,
            timeout: float = 300.0) -> Iterator[subprocess.Popen]:
    """The server ``cmd`` running until the block ends (SIGTERM, then SIGKILL after 30 s)."""
    with tempfile.TemporaryFile() as log, running(
            cmd, f"http://127.0.0.1:{port}{ready_path}", log, env=env, timeout=timeout) as proc:
        yield proc


def mltk_serve(models: Sequence[str], port: int, workers: int, *flags: str) -> Iterator:
    """``mltk serve`` on ``port`` (``--grpc-port N`` among ``flags`` adds gRPC)."""
    cmd = [sys.executable, "-m", "mltk", "serve", *models, "--port", str(port),
           "--workers", str(workers), *flags]
    return serving(cmd, port, "/v2/health/ready")


def flask_gunicorn(model: Path, port: int, workers: int, app_dir: Path) -> Iterator:
    (app_dir / "bench_flask_app.py").write_text(FLASK_APP)
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
           "--bind", f"127.0.0.1:{port}", "--chdir", str(app_dir), "--log-level", "warning",
           "bench_flask_app:app"]
    return serving(cmd, port, "/ping", env={"BENCH_MODEL": os.fspath(model)})


def mlserver_exe(venv: Path) -> Path | None:
    """MLServer's ``mlserver`` in ``venv``, installed there the first time; None (the error
    printed) when pip cannot install it."""
    exe = venv / "bin" / "mlserver"
    if exe.exists():
        return exe
    print(f"installing {', '.join(MLSERVER_PACKAGES)} in {venv} (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True, text=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        *MLSERVER_PACKAGES], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        lines = [x for x in (exc.stderr or exc.stdout or "").splitlines()
                 if x.strip() and not x.startswith("WARNING: Location")]
        print(f"  MLServer left out: `{' '.join(map(str, exc.cmd))}` exited {exc.returncode}:")
        print("\n".join("    " + x for x in lines[-15:]))
        return None
    return exe if exe.exists() else None


def mlserver(exe: Path, model: Path, port: int, folder: Path, batching: bool,
             parallel_workers: int) -> Iterator:
    """MLServer serving ``model.ubj`` of an xgb-analyze folder as model ``xgb``."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"name": "xgb", "implementation": "mlserver_xgboost.XGBoostModel",
                "parameters": {"uri": os.fspath(model / "model.ubj")}}
    if batching:
        settings.update(max_batch_size=MLSERVER_BATCH, max_batch_time=MLSERVER_BATCH_TIME)
    (folder / "model-settings.json").write_text(json.dumps(settings))
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": parallel_workers, "debug": False}))
    return serving([os.fspath(exe), "start", os.fspath(folder)], port, "/v2/models/xgb/ready")


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its living descendants (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == p]
    return total / tick


def http_post(port: int, path: str, body: bytes) -> dict:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {answer.status} {data[:300]!r}")
        return json.loads(data)
    finally:
        conn.close()


def echo_server(port: int) -> Iterator:
    cmd = [sys.executable, __file__, "--worker", "echo", str(port)]
    return serving(cmd, port, "/ping")


def batch_stats(port: int, model: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram for ``model``."""
    text = get(port, "/metrics")[1].decode()
    found = {}
    for part in ("sum", "count"):
        m = re.search(rf'^mltk_batch_size_{part}{{model="{re.escape(model)}"}} (\S+)$', text,
                      re.M)
        found[part] = float(m.group(1)) if m else 0.0
    return found["sum"], found["count"]


def uvicorn_flavour() -> str:
    """Which HTTP parser and event loop uvicorn picks here (auto: httptools/uvloop if present)."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn with {http} and {loop}"


# -- in-process workers (fresh interpreters, so nothing heavy loads in the load generator) ------
def in_process(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(kind: str, args: list[str]) -> None:
    if kind == "echo":
        return echo(int(args[0]))
    from mltk.predictors import open_predictor

    if kind == "rows":
        p = open_predictor(args[0])
        rows = json.loads(Path(args[1]).read_text())
        n = int(args[2])
        for r in rows[:50]:
            p.predict([r])
        lat = []
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            t = time.perf_counter()
            p.predict([rows[i % len(rows)]])
            lat.append(time.perf_counter() - t)
        rate = n / (time.perf_counter() - t0)
        cpu = (time.process_time() - c0) / n * 1000
        batches = [rows[i:i + LIMIT_BATCH] for i in range(0, len(rows) - LIMIT_BATCH + 1,
                                                          LIMIT_BATCH)]
        t0 = time.perf_counter()
        for b in batches:
            p.predict(b)
        batched = len(batches) * LIMIT_BATCH / (time.perf_counter() - t0)
        lat.sort()
        print(json.dumps({"rate": rate, "p50": percentile(lat, 50) * 1000,
                          "p99": percentile(lat, 99) * 1000, "batched": batched, "cpu": cpu}))
    elif kind == "images":
        p = open_predictor(args[0])
        photos = [f.read_bytes() for f in sorted(Path(args[1]).glob("*.jpg"))]
        n = int(args[2])
        t0 = time.perf_counter()
        prepared = [p.prepare(b) for b in photos]
        prepare_rate = len(photos) / (time.perf_counter() - t0)
        batch = (prepared * LIMIT_BATCH)[:LIMIT_BATCH]
        for _ in range(2):
            p.predict_prepared(batch)
        rounds = max(2, n // LIMIT_BATCH)
        t0 = time.perf_counter()
        for _ in range(rounds):
            p.predict_prepared(batch)
        limit = rounds * LIMIT_BATCH / (time.perf_counter() - t0)
        singles = max(8, min(n, LIMIT_BATCH * 2))
        p.predict_prepared(batch[:1])
        t0 = time.perf_counter()
        for i in range(singles):
            p.predict_prepared([batch[i % LIMIT_BATCH]])
        single = singles / (time.perf_counter() - t0)
        print(json.dumps({"limit": limit, "single": single, "prepare": prepare_rate}))
    elif kind == "colors":
        from mltk import settings as mltk_settings
        from mltk.colors import ColorSettings, analyze_paths

        settings = ColorSettings.from_config(mltk_settings.merged("colors", {}))
        paths = photo_files(Path(args[0]))
        list(analyze_paths(paths[:5], settings, jobs=1))  # imports and first-call costs
        t0 = time.perf_counter()
        for rec in analyze_paths(paths, settings, jobs=1):
            assert rec["error"] is None, rec
        print(json.dumps({"rate": len(paths) / (time.perf_counter() - t0)}))
    else:
        raise SystemExit(f"unknown worker {kind!r}")


def echo(port: int) -> None:
    """A server that reads each request and answers a fixed small JSON body (keep-alive)."""
    body = b'{"predictions": [{"probability": 0.5, "label": "repeat"}]}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                m = re.search(rb"content-length:\s*(\d+)", head)
                await reader.readexactly(int(m.group(1)) if m else 0)
                writer.write(answer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- models and data ------------------------------------------------------------------------------
def mltk(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mltk", "-q", *args], check=True,
                   stdout=subprocess.DEVNULL)


def prepare_workdir(work: Path, models: Sequence[str], n_photos: int) -> None:
    """Data and models made with the CLI, each skipped when the folder already holds it."""
    if not (work / "purchases" / "purchases.csv").exists():
        mltk("datasets", "make", "purchases", "--out", str(work / "purchases"), "--n", "3000")
    if not (work / "xgb" / "model.ubj").exists():
        print("making the two-group model (xgb-analyze --max-evals 2) ...", flush=True)
        mltk("xgb-analyze", str(work / "purchases" / "purchases.csv"), "--target", "group",
             "--id-cols", "user_id", "--out", str(work / "xgb"), "--max-evals", "2",
             "--seed", "0")
    if not (work / "shards" / "manifest.json").exists():
        mltk("datasets", "make", "labelled-images", "--out", str(work / "digits"), "--n", "300")
        mltk("tfrecord", "build", str(work / "digits"), str(work / "shards"), "--split",
             "train=0.9,validation=0.1", "--shards", "2", "--seed", "0")
    for model in models:
        if not (work / model / "config.yaml").exists():
            print(f"training {model} at 150 px for 2 steps ...", flush=True)
            mltk("train", "--data", str(work / "shards"), "--out", str(work / model), "--model",
                 model, "--image-size", "150", "--steps", "2", "--gpus", "0", "--seed", "0",
                 "--overwrite")
    photos = work / "photos"
    if len(photo_files(photos)) != n_photos:
        mltk("datasets", "make", "product-images", "--out", str(photos), "--n", str(n_photos))


def photo_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("product_*") if p.suffix in (".jpg", ".png"))


def read_rows(csv_file: Path, n: int) -> list[dict]:
    """The first ``n`` rows as JSON objects (numbers as numbers), the target column dropped."""
    def value(text: str) -> object:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with open(csv_file, newline="", encoding="utf-8") as fh:
        rows = []
        for row in csv.DictReader(fh):
            row.pop("group", None)
            rows.append({k: value(v) for k, v in row.items()})
            if len(rows) == n:
                return rows
    return rows


# -- the three measurements -----------------------------------------------------------------------
def rounds_of(n: int, runs: dict[str, Callable[[], object]]) -> dict[str, list]:
    """Every run ``n`` times, interleaved (A B C A B C), so that other work on a shared machine
    slows each configuration alike; callers keep each one's best round."""
    out: dict[str, list] = {k: [] for k in runs}
    for _ in range(n):
        for k, fn in runs.items():
            out[k].append(fn())
    return out


def best(loads: list[Load]) -> Load:
    return max(loads, key=lambda x: x.rate)


def spread(rates: list[float]) -> str:
    return "rounds: " + " / ".join(f"{r:.0f}" for r in rates) if len(rates) > 1 else ""


def line(name: str, rate: float, p50: float | None = None, p99: float | None = None,
         extra: str = "", cpu: float | None = None) -> None:
    lat = f"{p50:8.1f} {p99:8.1f}" if p50 is not None else f"{'':8s} {'':8s}"
    if cpu is not None:
        lat += f" {cpu:11.3f}"
    print(f"  {name:56s} {rate:9.1f} {lat}  {extra}".rstrip(), flush=True)


def header(unit: str, cpu: bool = False) -> None:
    print(f"  {'':56s} {unit:>9s} {'p50 ms':>8s} {'p99 ms':>8s}"
          + (f" {'CPU ms/req':>11s}" if cpu else ""))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report_errors(name: str, loads: list[Load]) -> None:
    errors: Counter[str] = Counter()
    for result in loads:
        errors.update(result.errors)
    if errors:
        print(f"    ({name}: {sum(errors.values())} failed requests: {dict(errors)})")


def bench_generator(args: argparse.Namespace, rows: list[dict]) -> None:
    port = free_port()
    reqs = [post(port, "/invocations", "application/json",
                 json.dumps({"instances": [r]}).encode()) for r in rows]
    with echo_server(port):
        result, _ = load(port, reqs, max(5000, args.requests * 2), ROW_CLIENTS, args.seconds,
                         200)
    print(f"load generator ceiling (raw asyncio streams, {ROW_CLIENTS} connections, against a "
          f"fixed-response asyncio server on the same cores): {result.rate:,.0f} requests/s")


def tensor_rows(model: Path, rows: list[dict]) -> list[tuple[dict, list[float]]]:
    """The rows without missing values, each with its V2 ``[1, n]`` values: the model's
    features in order, a category as its code, every number rounded to FP32."""
    import struct

    import yaml

    cfg = yaml.safe_load((model / "config.yaml").read_text())
    features = [str(c) for c in cfg["raw_features"]]
    levels = {str(c): [str(v) for v in lv] for c, lv in (cfg.get("categories") or {}).items()}

    def fp32(x: float) -> float:
        return struct.unpack("<f", struct.pack("<f", x))[0]

    out = []
    for r in rows:
        if any(r.get(c) in ("", None) for c in features):
            continue
        values = [fp32(float(levels[c].index(str(r[c]))) if c in levels else float(r[c]))
                  for c in features]
        numbers = {c: v for c, v in zip(features, values, strict=True) if c not in levels}
        out.append(({**r, **numbers}, values))
    return out


def v2_tensor(values: list[float]) -> bytes:
    return json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(values)],
                                   "datatype": "FP32", "data": values}]}).encode()


ANSWERED = 20  # rows whose answers are compared across servers and forms


def record_answers(answers: dict[str, list[float]], port: int,
                   complete: list[tuple[dict, list[float]]], mlserver: bool) -> None:
    """The probabilities of the first complete rows: mltk as a JSON row and as a V2 tensor,
    or MLServer's (its ``predict`` output: the probability of this binary:logistic model)."""
    head = complete[:ANSWERED]
    if mlserver:
        if "MLServer" not in answers:
            answers["MLServer"] = [http_post(port, "/v2/models/xgb/infer", v2_tensor(v))[
                "outputs"][0]["data"][0] for _, v in head]
        return
    if "mltk JSON row" in answers:
        return
    answers["mltk JSON row"] = [http_post(port, "/invocations", json.dumps(
        {"instances": [r]}).encode())["predictions"][0]["probability"] for r, _ in head]
    answers["mltk V2 tensor"] = [next(
        o["data"][0] for o in http_post(port, "/v2/models/xgb/infer", v2_tensor(v))["outputs"]
        if o["name"] == "probability") for _, v in head]


def bench_rows(args: argparse.Namespace, work: Path, rows: list[dict]) -> None:
    model = work / "xgb"
    rows_file = work / "rows.json"
    rows_file.write_text(json.dumps(rows))
    bodies = [json.dumps({"instances": [r]}).encode() for r in rows]
    complete = tensor_rows(model, rows)
    tensors = [v2_tensor(v) for _, v in complete]
    warm = ROW_CLIENTS * 4
    answers: dict[str, list[float]] = {}
    exe = None if args.no_mlserver else mlserver_exe(args.mlserver_venv or
                                                     work / "mlserver-venv")

    def run_load(port: int, pid: int, path: str, payloads: list[bytes]) -> tuple[Load, float]:
        reqs = [post(port, path, "application/json", b) for b in payloads]
        return measured(port, pid, reqs, args.requests, ROW_CLIENTS, args.seconds, warm)

    def ours(*flags: str) -> Callable[[], dict]:
        def run() -> dict:
            port = free_port()
            with mltk_serve([str(model)], port, args.workers, *flags) as proc:
                record_answers(answers, port, complete, mlserver=False)
                return {"json": run_load(port, proc.pid, "/invocations", bodies),
                        "v2": run_load(port, proc.pid, "/v2/models/xgb/infer", tensors)}
        return run

    def peer(batching: bool) -> Callable[[], tuple[Load, float]]:
        def run() -> tuple[Load, float]:
            port = free_port()
            assert exe is not None
            with tempfile.TemporaryDirectory() as folder, mlserver(
                    exe, model, port, Path(folder), batching, args.mlserver_workers) as proc:
                record_answers(answers, port, complete, mlserver=True)
                return run_load(port, proc.pid, "/v2/models/xgb/infer", tensors)
        return run

    def theirs() -> tuple[Load, float]:
        port = free_port()
        with tempfile.TemporaryDirectory() as app_dir, \
                flask_gunicorn(model, port, args.workers, Path(app_dir)) as proc:
            return run_load(port, proc.pid, "/invocations", bodies)

    def over_grpc() -> tuple[Load, float]:
        port, grpc_port = free_port(), free_port()
        with mltk_serve([str(model)], port, args.workers, "--grpc-port", str(grpc_port)) as proc:
            inputs = json.loads(get(port, f"/v2/models/{model.name}")[1])["inputs"]
            reqs = [grpc_row(model.name, r, inputs) for r in rows]
            result, before = load_grpc(grpc_port, reqs, args.requests, ROW_CLIENTS, args.seconds,
                                       warm, lambda: tree_cpu(proc.pid))
            return result, (tree_cpu(proc.pid) - before) / max(1, result.ok) * 1000

    def limit() -> dict:
        return in_process("rows", str(model), str(rows_file), str(args.requests))

    runs: dict[str, Callable[[], object]] = {"adaptive": ours(),
                                             "single": ours("--max-batch-size", "1"),
                                             "grpc": over_grpc}
    if exe is not None:
        runs.update({"peer-single": peer(False), "peer-batched": peer(True)})
    runs.update({"flask": theirs, "limit": limit})
    report_rows(args, rounds_of(args.rounds, runs), answers, len(complete))


def best_of(runs: list, form: str | None = None) -> tuple[Load, float]:
    """The round with the best rate: (load, CPU ms per request)."""
    pairs = [r[form] if form else r for r in runs]
    return max(pairs, key=lambda x: x[0].rate)


def report_rows(args: argparse.Namespace, runs: dict[str, list], answers: dict[str, list],
                n_complete: int) -> None:
    print(f"\n1. two-group model (xgb-analyze), one row per request, {ROW_CLIENTS} "
          f"connections, {args.workers} worker process(es) per server, best of {args.rounds}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; CPU: the server's processes' "
          f"user + system time per request")
    header("req/s", cpu=True)
    shown = [("adaptive", "json", "mltk serve, adaptive batching, JSON row"),
             ("adaptive", "v2", "mltk serve, adaptive batching, V2 [1, n] FP32"),
             ("single", "json", "mltk serve --max-batch-size 1, JSON row"),
             ("single", "v2", "mltk serve --max-batch-size 1, V2 [1, n] FP32"),
             ("grpc", None, "mltk serve over gRPC (ModelInfer, one row of raw tensors)"),
             ("peer-single", None, "MLServer 1.7.1 (XGBoost runtime), no batching, V2"),
             ("peer-batched", None, f"MLServer, adaptive batching ({MLSERVER_BATCH}, "
              f"{MLSERVER_BATCH_TIME * 1000:g} ms), V2"),
             ("flask", None, "Flask + gunicorn (sync, one predict per request), JSON")]
    got: dict[tuple[str, str | None], tuple[Load, float]] = {}
    for key, form, label in shown:
        if key not in runs:
            continue
        result, cpu = got[key, form] = best_of(runs[key], form)
        line(label, result.rate, result.ms(50), result.ms(99),
             spread([(r[form] if form else r)[0].rate for r in runs[key]]), cpu=cpu)
        report_errors(label, [(r[form] if form else r)[0] for r in runs[key]])
    lim = max(runs["limit"], key=lambda x: x["rate"])
    line("predictor in-process, one row per call (the limit)", lim["rate"], lim["p50"],
         lim["p99"], spread([x["rate"] for x in runs["limit"]]), cpu=lim["cpu"])
    line(f"  (in-process, {LIMIT_BATCH} rows per call: rows/s)",
         max(x["batched"] for x in runs["limit"]))
    verdicts(got, lim)
    if answers:
        names = list(answers)
        same = all(answers[k] == answers[names[0]] for k in names)
        worst = max(abs(a - b) for k in names for a, b in zip(answers[k], answers[names[0]],
                                                                strict=True))
        print(f"  answers ({min(ANSWERED, n_complete)} rows, {', '.join(names)}): "
              + ("identical" if same else f"NOT identical (largest difference {worst:.3g})"))


def verdicts(got: dict[tuple[str, str | None], tuple[Load, float]], lim: dict) -> None:
    a, single = got["adaptive", "json"][0], got["single", "json"]
    b = got.get(("flask", None), (None, 0.0))[0]
    if b is not None:
        ratio = a.rate / b.rate if b.rate else float("inf")
        print(f"  mltk serve / Flask: {ratio:.2f}x (target >= 1.5x: {verdict(ratio >= 1.5)}); "
              f"p99 {a.ms(99):.1f} ms (target <= 20 ms: {verdict(a.ms(99) <= 20)})")
    share = single[0].rate / lim["rate"]
    print(f"  unbatched (--max-batch-size 1, JSON row): {single[1]:.3f} ms of server CPU per "
          f"request (target <= 0.5: {verdict(single[1] <= 0.5)}); {single[0].rate:.0f} req/s "
          f"= {share:.0%} of the in-process one-row rate (target >= 75%: "
          f"{verdict(share >= 0.75)}; a single-process server's ceiling is in-process CPU per "
          f"call / server CPU per request = {lim['cpu'] / single[1]:.0%})")
    peers = [got[k, None] for k in ("peer-single", "peer-batched") if (k, None) in got]
    if peers:
        best_peer = max(peers, key=lambda x: x[0].rate)
        ours_v2 = got["adaptive", "v2"][0]
        print(f"  batched: mltk serve (V2) / MLServer's best: "
              f"{ours_v2.rate / best_peer[0].rate:.2f}x (target >= 1.5x: "
              f"{verdict(ours_v2.rate >= 1.5 * best_peer[0].rate)}); unbatched server CPU per "
              f"request, mltk V2 / MLServer: {got['single', 'v2'][1]:.3f} / "
              f"{got['peer-single', None][1]:.3f} ms")
    print(f"  ({ROW_CLIENTS} requests always in flight at {a.rate:.0f} req/s: a mean latency of "
          f"at least {ROW_CLIENTS / a.rate * 1000:.0f} ms (Little's law))")


def bench_images(args: argparse.Namespace, work: Path, model_name: str) -> None:
    model = work / model_name
    photos = [p for p in photo_files(work / "photos") if p.suffix == ".jpg"]
    bodies = [p.read_bytes() for p in photos]

    def served(*flags: str) -> Callable[[], tuple[Load, float]]:
        def run() -> tuple[Load, float]:
            port = free_port()
            with mltk_serve([str(model)], port, args.workers, *flags):
                reqs = [post(port, "/invocations", "image/jpeg", b) for b in bodies]
                result, before = load(port, reqs, args.images, IMAGE_CLIENTS, args.seconds,
                                      IMAGE_CLIENTS * 2, lambda p=port: batch_stats(p, model_name))
                total, count = batch_stats(port, model_name)
            return result, (total - before[0]) / max(1.0, count - before[1])
        return run

    def over_grpc() -> tuple[Load, float]:
        port, grpc_port = free_port(), free_port()
        with mltk_serve([str(model)], port, args.workers, "--grpc-port", str(grpc_port)):
            reqs = [grpc_request(model_name, [("image", "BYTES", [1], raw_bytes([b]))])
                    for b in bodies]
            result, before = load_grpc(grpc_port, reqs, args.images, IMAGE_CLIENTS,
                                       args.seconds, IMAGE_CLIENTS * 2,
                                       lambda p=port: batch_stats(p, model_name))
            total, count = batch_stats(port, model_name)
        return result, (total - before[0]) / max(1.0, count - before[1])

    def limit() -> dict:
        return in_process("images", str(model), str(work / "photos"), str(args.images))

    runs = rounds_of(args.rounds, {"adaptive": served(), "single": served("--max-batch-size",
                                                                          "1"),
                                   "grpc": over_grpc, "limit": limit})
    print(f"\n2. image classifier {model_name}, 150 px, single-image requests ({len(photos)} "
          f"product JPEGs, 240-480 px), {IMAGE_CLIENTS} clients, {args.workers} worker(s), "
          f"best of {args.rounds}")
    header("img/s")
    rates = {}
    for key, label in (("adaptive", "mltk serve, adaptive batching (default flags)"),
                       ("single", "mltk serve --max-batch-size 1 (no batching)"),
                       ("grpc", "mltk serve over gRPC, adaptive batching (raw BYTES)")):
        result, mean_batch = max(runs[key], key=lambda x: x[0].rate)
        line(label, result.rate, result.ms(50), result.ms(99),
             f"mean batch {mean_batch:.1f}  {spread([x[0].rate for x in runs[key]])}")
        report_errors(label, [x[0] for x in runs[key]])
        rates[key] = result.rate
    lim = {k: max(x[k] for x in runs["limit"]) for k in runs["limit"][0]}
    line(f"in-process predict_prepared, batches of {LIMIT_BATCH} (the limit)", lim["limit"], None,
         None, spread([x["limit"] for x in runs["limit"]]))
    line("  (in-process predict_prepared, one image per call)", lim["single"])
    line("  (in-process prepare alone: decode + resize, one thread)", lim["prepare"])
    line("  (in-process prepare, then batches of 32, serially)",
         1 / (1 / lim["prepare"] + 1 / lim["limit"]))
    print(f"  adaptive batching / limit: {rates['adaptive'] / lim['limit']:.0%} (target >= 80%: "
          f"{verdict(rates['adaptive'] >= 0.8 * lim['limit'])}); adaptive / no batching: "
          f"{rates['adaptive'] / rates['single']:.2f}x")


def bench_colors(args: argparse.Namespace, work: Path) -> None:
    photos = photo_files(work / "photos")
    clients = max(2, args.workers)

    def served() -> Load:
        port = free_port()
        with mltk_serve(["colors"], port, args.workers):
            reqs = [post(port, "/invocations",
                         "image/png" if p.suffix == ".png" else "image/jpeg", p.read_bytes())
                    for p in photos]
            return load(port, reqs, len(reqs) * args.color_rounds, clients, args.seconds, 8)[0]

    def cli() -> dict:
        return in_process("colors", str(work / "photos"))

    runs = rounds_of(args.rounds, {"served": served, "cli": cli})
    print(f"\n3. colours, {len(photos)} product photos (240-480 px, JPEG and PNG), {clients} "
          f"clients, {args.workers} worker(s), best of {args.rounds}")
    header("img/s")
    a = best(runs["served"])
    line("mltk serve colors", a.rate, a.ms(50), a.ms(99), spread([x.rate for x in runs["served"]]))
    report_errors("mltk serve colors", runs["served"])
    c = max(x["rate"] for x in runs["cli"])
    line("mltk colors -j 1 (analyze_paths, one process)", c, None, None,
         spread([x["rate"] for x in runs["cli"]]))
    print(f"  serve / colors -j 1: {a.rate / c:.0%} (target >= 70%: {verdict(a.rate >= 0.7 * c)})")


@contextlib.contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """OMP_NUM_THREADS=n for the servers and in-process runs started in the block."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000,
                        help="row requests per server (3000)")
    parser.add_argument("--images", type=int, default=480,
                        help="image requests per classifier server (480)")
    parser.add_argument("--color-rounds", type=int, default=3,
                        help="passes over the photos for the colours server (3)")
    parser.add_argument("--photos", type=int, default=120, help="product photos (120)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="cap on each measured run, in seconds (30)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of every server (1)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds of every measurement; the best is kept (2)")
    parser.add_argument("--threads", type=int,
                        help="OMP_NUM_THREADS for the servers and the in-process runs (unset; "
                        "1 in part 1)")
    parser.add_argument("--models", default="small_cnn",
                        help="image models, comma-separated (small_cnn; also mobilenet_v3_small)")
    parser.add_argument("--only", default="rows,images,colors",
                        help="parts to run, comma-separated (rows,images,colors)")
    parser.add_argument("--workdir", type=Path, help="keep data and models here (and reuse them)")
    parser.add_argument("--mlserver-venv", type=Path,
                        help="MLServer's virtualenv, made there once (WORKDIR/mlserver-venv)")
    parser.add_argument("--mlserver-workers", type=int, default=0,
                        help="MLServer's parallel_workers (0: inference in its server process)")
    parser.add_argument("--no-mlserver", action="store_true", help="leave MLServer out")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1:])
    if args.quick:
        args.requests, args.images, args.color_rounds = 300, 64, 1
        args.photos, args.seconds, args.rounds = 40, 10.0, 1
    if args.threads:  # inherited by every server and in-process run
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    only = set(args.only.split(","))
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        prepare_workdir(work, models if "images" in only else [], args.photos)
        rows = read_rows(work / "purchases" / "purchases.csv", 256)
        print(f"{os.cpu_count()} cores shared by the load generator and the server; "
              f"loopback; {uvicorn_flavour()}; OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}")
        bench_generator(args, rows)
        if "rows" in only:
            with omp_threads(args.threads or 1):
                bench_rows(args, work, rows)
        if "images" in only:
            for model in models:
                bench_images(args, work, model)
        if "colors" in only:
            bench_colors(args, work)


if __name__ == "__main__":
    main()
