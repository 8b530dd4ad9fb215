"""Speed of `mltk serve` (issue 12), every figure from one run on loopback (127.0.0.1).

1. Two-group model (`xgb-analyze --max-evals 2` on `purchases`), one JSON row per request from
   32 concurrent connections: requests/s, p50 and p99 of `mltk serve`, of the original stack
   (the same predictor in a minimal Flask app under gunicorn, sync workers, one predict per
   request) with the same number of worker processes, and of the predictor called in-process,
   one row per call (the limit). Target: >= 1.5x Flask's requests/s, p99 <= 20 ms. Beside it,
   the same server called over gRPC (`--grpc-port`: ModelInfer, one row as raw V2 tensors).
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
     [--workdir DIR] [--quick]
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
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            p.predict([rows[i % len(rows)]])
            lat.append(time.perf_counter() - t)
        rate = n / (time.perf_counter() - t0)
        batches = [rows[i:i + LIMIT_BATCH] for i in range(0, len(rows) - LIMIT_BATCH + 1,
                                                          LIMIT_BATCH)]
        t0 = time.perf_counter()
        for b in batches:
            p.predict(b)
        batched = len(batches) * LIMIT_BATCH / (time.perf_counter() - t0)
        lat.sort()
        print(json.dumps({"rate": rate, "p50": percentile(lat, 50) * 1000,
                          "p99": percentile(lat, 99) * 1000, "batched": batched}))
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
         extra: str = "") -> None:
    lat = f"{p50:8.1f} {p99:8.1f}" if p50 is not None else f"{'':8s} {'':8s}"
    print(f"  {name:56s} {rate:9.1f} {lat}  {extra}".rstrip(), flush=True)


def header(unit: str) -> None:
    print(f"  {'':56s} {unit:>9s} {'p50 ms':>8s} {'p99 ms':>8s}")


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


def bench_rows(args: argparse.Namespace, work: Path, rows: list[dict]) -> None:
    model = work / "xgb"
    rows_file = work / "rows.json"
    rows_file.write_text(json.dumps(rows))
    bodies = [json.dumps({"instances": [r]}).encode() for r in rows]
    warm = ROW_CLIENTS * 4

    def ours() -> Load:
        port = free_port()
        with mltk_serve([str(model)], port, args.workers):
            reqs = [post(port, "/invocations", "application/json", b) for b in bodies]
            return load(port, reqs, args.requests, ROW_CLIENTS, args.seconds, warm)[0]

    def theirs() -> Load:
        port = free_port()
        with tempfile.TemporaryDirectory() as app_dir, \
                flask_gunicorn(model, port, args.workers, Path(app_dir)):
            reqs = [post(port, "/invocations", "application/json", b) for b in bodies]
            return load(port, reqs, args.requests, ROW_CLIENTS, args.seconds, warm)[0]

    def over_grpc() -> Load:
        port, grpc_port = free_port(), free_port()
        with mltk_serve([str(model)], port, args.workers, "--grpc-port", str(grpc_port)):
            inputs = json.loads(get(port, f"/v2/models/{model.name}")[1])["inputs"]
            reqs = [grpc_row(model.name, r, inputs) for r in rows]
            return load_grpc(grpc_port, reqs, args.requests, ROW_CLIENTS, args.seconds, warm)[0]

    def limit() -> dict:
        return in_process("rows", str(model), str(rows_file), str(args.requests))

    runs = rounds_of(args.rounds, {"ours": ours, "grpc": over_grpc, "theirs": theirs,
                                   "limit": limit})
    print(f"\n1. two-group model (xgb-analyze), one JSON row per request, {ROW_CLIENTS} "
          f"connections, {args.workers} worker process(es) per server, best of {args.rounds}")
    header("req/s")
    a, b = best(runs["ours"]), best(runs["theirs"])
    lim = max(runs["limit"], key=lambda x: x["rate"])
    line(f"mltk serve ({uvicorn_flavour()})", a.rate, a.ms(50), a.ms(99),
         spread([x.rate for x in runs["ours"]]))
    report_errors("mltk serve", runs["ours"])
    g = best(runs["grpc"])
    line("mltk serve over gRPC (ModelInfer, one row of raw tensors)", g.rate, g.ms(50),
         g.ms(99), spread([x.rate for x in runs["grpc"]]))
    report_errors("mltk serve over gRPC", runs["grpc"])
    line("Flask + gunicorn (sync workers, one predict per request)", b.rate, b.ms(50),
         b.ms(99), spread([x.rate for x in runs["theirs"]]))
    report_errors("Flask", runs["theirs"])
    line("predictor in-process, one row per call (the limit)", lim["rate"], lim["p50"],
         lim["p99"], spread([x["rate"] for x in runs["limit"]]))
    line(f"  (in-process, {LIMIT_BATCH} rows per call: rows/s)",
         max(x["batched"] for x in runs["limit"]))
    ratio = a.rate / b.rate if b.rate else float("inf")
    print(f"  mltk serve / Flask: {ratio:.2f}x (target >= 1.5x: {verdict(ratio >= 1.5)}); "
          f"p99 {a.ms(99):.1f} ms (target <= 20 ms: {verdict(a.ms(99) <= 20)}); "
          f"mltk serve / in-process: {a.rate / lim['rate']:.0%}")
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
                        help="OMP_NUM_THREADS for the servers and the in-process runs (unset)")
    parser.add_argument("--models", default="small_cnn",
                        help="image models, comma-separated (small_cnn; also mobilenet_v3_small)")
    parser.add_argument("--only", default="rows,images,colors",
                        help="parts to run, comma-separated (rows,images,colors)")
    parser.add_argument("--workdir", type=Path, help="keep data and models here (and reuse them)")
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
            bench_rows(args, work, rows)
        if "images" in only:
            for model in models:
                bench_images(args, work, model)
        if "colors" in only:
            bench_colors(args, work)


if __name__ == "__main__":
    main()
