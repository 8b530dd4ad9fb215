"""Speed of `mltk jobs`: a job on two Celery workers against `mltk colors -j 2`, in one run.

Photos: `mltk datasets make product-images --n 5000` (240-480 px, one in five a PNG). On the
same cores, each configuration is timed --repeat times, interleaved; the best run is kept
(other work on a shared machine only ever slows a run down) and the median shown beside it:

- `mltk colors -j 2 DIR -f ndjson > /dev/null`, end to end (interpreter and pool start-up
  included, as a user sees it);
- `mltk jobs submit colors DIR --out JOB -j 2`: the local backend (no broker), default chunks;
- `mltk jobs submit colors DIR --out JOB --broker URL --wait --chunk-size N` for N in 64, 256
  and 1,024, on two `mltk worker --concurrency 1` processes and a redis-server started here (a
  free loopback port, no persistence). Workers are long-lived in practice, so they are started,
  answer a ping and have each run a warm-up chunk before any timing; a run is timed from
  submission until `--wait` returns (planning, enqueueing and the 0.5 s status polling
  included).

Every job's merged results (`mltk jobs results`) must equal `mltk colors`' records: the same
paths in the same order, the same colours. Target: two workers at the default chunk size within
10% of `-j 2`'s images/s. The workers and redis-server are always stopped.

Run: .venv/bin/python benchmarks/bench_jobs.py [--n 5000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLTK = [str(Path(sys.executable).with_name("mltk"))]
CHUNK_SIZES = (64, 256, 1024)
TARGET = 0.90  # two workers' images/s over -j 2's


def mltk(*args: object, stdout: int | None = subprocess.PIPE) -> str:
    r = subprocess.run(MLTK + [str(a) for a in args], stdout=stdout, stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"mltk {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")
    return r.stdout or ""


def timed(*args: object) -> float:
    t0 = time.perf_counter()
    mltk(*args, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    def __init__(self) -> None:
        import redis

        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit("redis-server exited")
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, "redis-server")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Worker:
    """`mltk worker --concurrency 1` in a process group of its own (it forks a child)."""

    def __init__(self, broker: str, log: Path) -> None:
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(MLTK + ["worker", "--broker", broker,
                                                 "--concurrency", "1"],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_workers(broker: str, photos: list[Path], tmp: Path) -> list[Worker]:
    """Two workers that answer a ping and have each run a warm-up chunk."""
    from mltk.jobs import queue

    workers = [Worker(broker, tmp / f"worker{i}.log") for i in range(2)]
    app = queue.app_for(broker)

    def both_up() -> bool:
        for w in workers:
            if w.proc.poll() is not None:
                raise SystemExit(f"a worker exited:\n{w.log.read_text()[-2000:]}")
        return len(app.control.ping(timeout=0.5)) >= 2

    wait_for(both_up, "two workers to answer a ping")
    for attempt in range(5):
        job = tmp / f"warm-up-{attempt}"
        mltk("jobs", "submit", "colors", *photos[:8], "--out", job, "--chunk-size", 1,
             "--broker", broker, "--wait")
        ran = {json.loads(p.read_text())["worker"] for p in (job / "stats").glob("*.json")}
        if len(ran) >= 2:
            return workers
    raise SystemExit("the warm-up chunks all went to one worker")


def check(job: Path, expected: list[dict]) -> None:
    got = [json.loads(ln) for ln in mltk("jobs", "results", job, "-f", "ndjson").splitlines()]
    if [r["path"] for r in got] != [r["path"] for r in expected]:
        raise SystemExit(f"{job}: the results' paths differ from mltk colors' (or their order)")
    if got != expected:
        bad = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
        raise SystemExit(f"{job}: record {bad} differs from mltk colors':\n{got[bad]}\n"
                         f"{expected[bad]}")


def busy(job: Path, wall: float) -> float:
    """The share of the two processes' time spent inside chunks (the best run's is shown)."""
    seconds = sum(json.loads(p.read_text())["seconds"] for p in (job / "stats").glob("*.json"))
    return seconds / (2 * wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="photos (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (best kept)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 300 photos, the default chunk size, one run of each")
    args = parser.parse_args()
    from mltk.jobs.core import DEFAULT_CHUNK_SIZE

    n, repeat = (300, 1) if args.quick else (args.n, args.repeat)
    sizes = [DEFAULT_CHUNK_SIZE] if args.quick else sorted({*CHUNK_SIZES, DEFAULT_CHUNK_SIZE})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_jobs_") as name:
        tmp = Path(name)
        photos_dir = tmp / "photos"
        mltk("datasets", "make", "product-images", "--out", photos_dir, "--n", n, "-q")
        photos = sorted(p for p in photos_dir.iterdir() if p.suffix in (".jpg", ".png"))
        # untimed: the reference records (and the photos in the page cache)
        expected = [json.loads(ln) for ln in
                    mltk("colors", "-j", 2, photos_dir, "-f", "ndjson").splitlines()]
        assert len(expected) == n and not any(r["error"] for r in expected)
        redis_server = RedisServer()
        workers: list[Worker] = []
        try:
            workers = start_workers(redis_server.url, photos, tmp)
            runs: dict[str, list[float]] = {}
            shares: dict[str, list[float]] = {}
            configs: list[tuple[str, list[object] | None]] = [
                ("mltk colors -j 2", None),
                (f"local backend -j 2, chunk {DEFAULT_CHUNK_SIZE}", ["-j", 2]),
                *[(f"2 Celery workers, chunk {s}", ["--chunk-size", s, "--broker",
                                                     redis_server.url, "--wait"])
                  for s in sizes]]
            count = 0
            for r in range(repeat):
                for label, options in configs[r % len(configs):] + configs[:r % len(configs)]:
                    if options is None:
                        wall = timed("colors", "-j", 2, photos_dir, "-f", "ndjson")
                    else:
                        count += 1
                        job = tmp / f"job-{count}"
                        wall = timed("jobs", "submit", "colors", photos_dir, "--out", job,
                                     *options)
                        check(job, expected)
                        shares.setdefault(label, []).append(busy(job, wall))
                    runs.setdefault(label, []).append(wall)
                    print(f"  run {r + 1}: {label:34s} {wall:6.2f} s", file=sys.stderr, flush=True)
        finally:
            for w in workers:
                w.stop()
            redis_server.stop()
    load_after = os.getloadavg()

    rate = {label: n / min(walls) for label, walls in runs.items()}
    base = rate["mltk colors -j 2"]
    median_base = n / statistics.median(runs["mltk colors -j 2"])
    print(f"{n} product photos (240-480 px, 1 in 5 PNG), {os.cpu_count()} cores shared by the "
          f"workers and Redis, best and median of {repeat} run(s)")
    print(f"  {'':34s} {'best s':>7s} {'img/s':>7s} {'vs -j 2':>8s} {'median s':>9s} "
          f"{'vs -j 2':>8s} {'in chunks':>10s}")
    for label, walls in runs.items():
        best = walls.index(min(walls))
        share = f"{shares[label][best]:10.0%}" if label in shares else ""
        median = statistics.median(walls)
        print(f"  {label:34s} {min(walls):7.2f} {rate[label]:7.1f} {rate[label] / base:8.2f} "
              f"{median:9.2f} {n / median / median_base:8.2f} {share}")
    default = rate[f"2 Celery workers, chunk {DEFAULT_CHUNK_SIZE}"] / base
    print(f"target: 2 workers at the default chunk size ({DEFAULT_CHUNK_SIZE}) within 10% of "
          f"-j 2: {'met' if default >= TARGET else 'NOT met'} ({default:.2f}x)")
    fastest = max(sizes, key=lambda s: rate[f"2 Celery workers, chunk {s}"])
    print(f"fastest chunk size on two workers: {fastest}")
    print(f"every job's results equal mltk colors' {n} records (same paths, same order)")
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{x:.2f}" for x in load_before)
          + "; after: " + ", ".join(f"{x:.2f}" for x in load_after))


if __name__ == "__main__":
    main()
