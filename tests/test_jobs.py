"""mltk jobs / mltk worker: the local backend, and Celery on real redis-server and worker processes.

Every wait is on a condition (a file, a route, a process ending). Without redis-server the
Celery tests skip, unless MLTK_REQUIRE_REDIS=1 (set by .ci/run), where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, mltk_executable

pytestmark = pytest.mark.slow


def mltk(*args, env=None, input=None, timeout=600, cwd=None):
    return subprocess.run(mltk_executable() + [str(a) for a in args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, input=input,
                          timeout=timeout, cwd=cwd)


def ndjson(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def wait_for(condition, what: str, timeout: float = 300, every: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from mltk.datasets import make

    root = tmp_path_factory.mktemp("jobs")
    make("product-images", root / "photos", n=120, seed=0)
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    expected = mltk("colors", root / "photos", "--format", "ndjson")
    assert expected.returncode == 0, expected.stderr
    return root / "photos", ndjson(expected.stdout)


# -- local backend ----------------------------------------------------------------------------
def test_local_colors_job_equals_the_command_and_is_idempotent(photos, tmp_path):
    folder, expected = photos
    job = tmp_path / "job"
    first = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "16", "-j",
                 "2")
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    results = mltk("jobs", "results", job)
    assert ndjson(results.stdout) == expected
    assert sum(1 for r in ndjson(results.stdout) if r["error"]) == 1  # the broken file
    parts = sorted((job / "parts").iterdir())
    stamps = [p.stat().st_mtime_ns for p in parts]
    again = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "16")
    assert again.returncode == 0 and again.stdout.strip() == job_id
    assert "8 done already" in again.stderr
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # nothing redone
    status = json.loads(mltk("jobs", "status", job, "--format", "json").stdout)[0]
    assert status["complete"] and status["items_done"] == 121 and status["errors"] == 1
    other = mltk("jobs", "submit", "colors", folder, "--out", job, "-k", "3")
    assert other.returncode == 1 and "holds another job" in other.stderr


def test_a_chunk_run_twice_writes_the_same_bytes(photos, tmp_path):
    from mltk.jobs import JobFolder, core

    folder = JobFolder(tmp_path / "job")
    core.create(folder, "colors", [str(photos[0])], {}, core.JobSettings(chunk_size=10))
    assert core.run_chunk(str(folder.path), 2) == "done"
    first = folder.part(2).read_bytes()
    assert core.run_chunk(str(folder.path), 2) == "skipped"  # done is never run again
    folder.part(2).unlink()
    assert core.run_chunk(str(folder.path), 2) == "done"
    assert folder.part(2).read_bytes() == first
    assert not list(folder.path.rglob("*.tmp*"))  # no temporary files left


def test_local_resume_after_a_lost_part(photos, tmp_path):
    folder, expected = photos
    job = tmp_path / "job"
    assert mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "40"
                ).returncode == 0
    (job / "parts" / "chunk-00001.ndjson").unlink()  # as if that chunk never finished
    assert json.loads(mltk("jobs", "status", job, "-f", "json").stdout)[0]["pending"] == 1
    again = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "40")
    assert again.returncode == 0 and "3 done already" in again.stderr
    assert ndjson(mltk("jobs", "results", job).stdout) == expected


def test_xgb_predict_job_bad_row_is_an_error_record(cancer_model, tmp_path):
    import pandas as pd

    rows = pd.read_csv(cancer_model / "rows.csv")
    expected = ndjson(mltk("xgb-predict", cancer_model / "model", cancer_model / "rows.csv",
                           "--format", "ndjson").stdout)
    rows["mean area"] = rows["mean area"].astype(object)
    rows.loc[6, "mean area"] = "lots"
    rows.to_csv(tmp_path / "bad.csv", index=False)
    r = mltk("jobs", "submit", "xgb-predict", cancer_model / "model", tmp_path / "bad.csv",
             "--out", tmp_path / "job", "--chunk-size", "16")
    assert r.returncode == 0, r.stderr
    got = ndjson(mltk("jobs", "results", tmp_path / "job").stdout)
    assert len(got) == 50 and [g["patient"] for g in got] == list(rows["patient"])
    assert got[6]["error"] == "row 7: column 'mean area': 'lots' is not a number"
    assert got[6]["probability"] is None
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if i != 6:
            assert g["error"] is None and g["label"] == e["label"]
            assert g["probability"] == pytest.approx(e["probability"])


def test_predict_job_equals_predict(digits_run, digits_dir, tmp_path):
    images = sorted(Path(digits_dir).rglob("*.jpg"))[:30]
    (tmp_path / "imgs").mkdir()
    for i, f in enumerate(images):
        shutil.copy(f, tmp_path / "imgs" / f"{i:03d}.jpg")
    (tmp_path / "imgs" / "999.jpg").write_bytes(b"not an image")
    expected = mltk("predict", digits_run, tmp_path / "imgs", "--top-k", "2", "-f", "ndjson")
    assert expected.returncode == 0, expected.stderr
    r = mltk("jobs", "submit", "predict", digits_run, tmp_path / "imgs", "--top-k", "2",
             "--out", tmp_path / "job", "--chunk-size", "8", "-j", "2")
    assert r.returncode == 0, r.stderr
    got = ndjson(mltk("jobs", "results", tmp_path / "job").stdout)
    want = ndjson(expected.stdout)
    assert [g["path"] for g in got] == [w["path"] for w in want]
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert got[-1]["error"] == want[-1]["error"] == "not an image (unrecognised format)"
    for g, w in zip(got[:-1], want[:-1], strict=True):
        assert g["probability"] == pytest.approx(w["probability"], abs=1e-5)


def test_recommend_job_equals_query(tmp_path):
    import pandas as pd

    from mltk import settings
    from mltk.datasets import make
    from mltk.recommend import fit
    from mltk.xgb import load_table

    market = make("marketplace", tmp_path / "market", n=1500, seed=0)
    fit(load_table(market.files["items"]), load_table(market.files["transactions"]),
        settings.load("recommend")).save(tmp_path / "model")
    ids = pd.read_csv(market.files["items"])["item_id"].head(25).tolist()
    queries = tmp_path / "q.csv"
    queries.write_text("item_id\n" + "".join(f"{i}\n" for i in ids) + "no-such-item\n")
    expected = ndjson(mltk("recommend", "query", tmp_path / "model", "--queries", queries,
                           "--format", "ndjson").stdout)
    r = mltk("jobs", "submit", "recommend", tmp_path / "model", queries, "--out",
             tmp_path / "job", "--chunk-size", "7", "-k", "10")
    assert r.returncode == 0, r.stderr
    assert ndjson(mltk("jobs", "results", tmp_path / "job").stdout) == expected


def _break_chunk(job: Path, chunk: int, size: int) -> None:
    """Make chunk ``chunk`` fail for good: its lines of items.ndjson become garbage."""
    lines = (job / "items.ndjson").read_text().splitlines(keepends=True)
    for i in range(chunk * size, (chunk + 1) * size):
        lines[i] = "{garbage\n"
    (job / "items.ndjson").write_text("".join(lines))


def test_a_failing_chunk_is_marked_and_the_rest_goes_on(photos, tmp_path):
    from mltk.jobs import JobFolder, core

    folder, expected = photos
    job = JobFolder(tmp_path / "job")
    core.create(job, "colors", [str(folder)], {}, core.JobSettings(chunk_size=40))
    _break_chunk(job.path, 1, 40)
    r = mltk("jobs", "submit", "colors", folder, "--out", job.path, "--chunk-size", "40")
    assert r.returncode == 1 and "chunk 1 failed: JSONDecodeError" in r.stderr
    st = json.loads(mltk("jobs", "status", job.path, "-f", "json").stdout)[0]
    assert (st["done"], st["failed"], st["pending"]) == (3, 1, 0)
    assert json.loads((job.path / "failed" / "chunk-00001.json").read_text())[
        "attempts"] == 1  # bad data is not retried
    results = mltk("jobs", "results", job.path)
    assert results.returncode == 1 and "chunk 1 is not done" in results.stderr
    # the cause fixed, the same submission runs that chunk only and clears the failure
    core.create(JobFolder(tmp_path / "fresh"), "colors", [str(folder)], {},
                core.JobSettings(chunk_size=40))
    shutil.copy(tmp_path / "fresh" / "items.ndjson", job.path / "items.ndjson")
    again = mltk("jobs", "submit", "colors", folder, "--out", job.path, "--chunk-size", "40")
    assert again.returncode == 0 and "3 done already" in again.stderr, again.stderr
    assert ndjson(mltk("jobs", "results", job.path).stdout) == expected
    assert not list((job.path / "failed").glob("*.json"))


def test_submit_usage_and_input_errors(photos, tmp_path):
    r = mltk("jobs", "submit", "colors", photos[0], "--out", tmp_path / "j", "--top-k", "3")
    assert r.returncode == 2 and "--top-k" in r.stderr
    r = mltk("jobs", "submit", "paint", "x", "--out", tmp_path / "j")
    assert r.returncode == 2 and "paint" in r.stderr
    r = mltk("jobs", "submit", "colors", tmp_path / "nope", "--out", tmp_path / "j")
    assert r.returncode == 1 and "nope" in r.stderr
    r = mltk("jobs", "status", tmp_path)
    assert r.returncode == 1 and "not a job folder" in r.stderr


# -- tfrecord-build: one chunk per shard, then labels.txt and manifest.json -------------------
TF_OPTIONS = ("--shards", "4", "--split", "train=0.75,validation=0.25", "--seed", "3",
              "--max-side", "40", "--quality", "90")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A labelled-images folder with one bad file, and `mltk tfrecord build` of it (relative
    paths, so the skipped file is listed as the command shows it)."""
    from mltk.datasets import make

    root = tmp_path_factory.mktemp("tfjob")
    make("labelled-images", root / "images", n=60, seed=0)
    (root / "images" / "3" / "broken.jpg").write_bytes(b"not an image")
    ref = mltk("tfrecord", "build", "images", "ref", *TF_OPTIONS, cwd=root)
    assert ref.returncode == 0, ref.stderr
    return root


def assert_same_dataset(got: Path, ref: Path) -> None:
    """The same shard bytes, labels.txt and manifest (apart from its timing)."""
    names = sorted(p.name for p in ref.iterdir())
    assert sorted(p.name for p in got.iterdir() if p.name != ".mltk-job.json") == names
    for name in names:
        if name != "manifest.json":
            assert (got / name).read_bytes() == (ref / name).read_bytes(), name
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (got, ref)]
    for m in manifests:
        assert m.pop("seconds") >= 0
    assert manifests[0] == manifests[1]


def test_local_tfrecord_build_job_writes_the_same_dataset(digits, tmp_path):
    shards, job = tmp_path / "shards", tmp_path / "job"
    submit = ("jobs", "submit", "tfrecord-build", "images", shards, "--out", job, *TF_OPTIONS)
    first = mltk(*submit, "-j", "2", cwd=digits)
    assert first.returncode == 0, first.stderr
    assert "4 items in 4 chunks" in first.stderr and "1 files skipped" in first.stderr
    assert_same_dataset(shards, digits / "ref")
    records = ndjson(mltk("jobs", "results", job).stdout)
    assert [r["file"] for r in records] == sorted(p.name for p in shards.glob("*.tfrecord"))
    assert [s for r in records for s in r["skipped"]] == [
        {"path": "images/3/broken.jpg", "reason": "not an image (unrecognised format)"}]
    stamps = {p: p.stat().st_mtime_ns for p in [*shards.iterdir(), *job.rglob("chunk-*")]}
    again = mltk(*submit, cwd=digits)
    assert again.returncode == 0 and again.stdout == first.stdout  # the same job id
    assert "4 done already" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing redone or rewritten
    lost = shards / records[1]["file"]
    lost.unlink()
    (job / "parts" / "chunk-00001.ndjson").unlink()  # as if that shard's chunk never finished
    third = mltk(*submit, cwd=digits)
    assert third.returncode == 0 and "3 done already" in third.stderr
    assert_same_dataset(shards, digits / "ref")
    assert {p for p in stamps if p.exists() and p.stat().st_mtime_ns != stamps[p]} == {
        lost, job / "parts" / "chunk-00001.ndjson", job / "stats" / "chunk-00001.json"}
    assert not list(shards.glob(".*tmp*")) and not (shards / ".mltk-build").exists()
    lost.unlink()  # the part says done, the shard is gone: no manifest over a missing shard
    (shards / "manifest.json").unlink()
    r = mltk("jobs", "results", job)
    assert r.returncode == 1 and f"{lost}: missing" in r.stderr
    assert not (shards / "manifest.json").exists()


def test_tfrecord_build_job_refuses_an_out_folder_of_another_build(digits, tmp_path):
    shards = tmp_path / "shards"
    r = mltk("jobs", "submit", "tfrecord-build", "images", "ref", "--out", tmp_path / "j0",
             cwd=digits)
    assert r.returncode == 1 and "ref is not empty" in r.stderr  # a `tfrecord build` output
    assert mltk("jobs", "submit", "tfrecord-build", "images", shards, "--out", tmp_path / "j1",
                "--shards", "2", cwd=digits).returncode == 0
    r = mltk("jobs", "submit", "tfrecord-build", "images", shards, "--out", tmp_path / "j2",
             "--shards", "2", "--seed", "9", cwd=digits)
    assert r.returncode == 1 and f"{shards} is not empty" in r.stderr
    assert not (tmp_path / "j2").exists()


# -- Celery on Redis --------------------------------------------------------------------------
REDIS = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS is None and os.environ.get("MLTK_REQUIRE_REDIS") != "1",
    reason="redis-server is not installed (apt-get install redis-server); "
    "MLTK_REQUIRE_REDIS=1 makes this a failure")


class Redis:
    def __init__(self, port: int | None = None) -> None:
        assert REDIS, "redis-server is required (MLTK_REQUIRE_REDIS=1)"
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                assert self.proc.poll() is None, "redis-server exited"
                return False

        wait_for(up, "redis-server", 60)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def restart(self) -> None:
        """Kill and start again on the same port: without persistence, every queue is gone."""
        self.stop()
        self.__init__(self.port)


class Worker:
    """``mltk worker`` in a process group of its own (killed as a node dies: all at once)."""

    def __init__(self, broker: str, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(mltk_executable() + ["worker", "--broker", broker],
                                     stdout=subprocess.DEVNULL, stderr=open(log, "w"),  # noqa: SIM115
                                     start_new_session=True)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown
        try:
            return self.proc.wait(120)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def redis_server():
    server = Redis()
    try:
        yield server
    finally:
        server.stop()


@needs_redis
def test_two_workers_share_a_job(photos, redis_server, tmp_path):
    folder, expected = photos
    workers = [Worker(redis_server.url, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        r = mltk("jobs", "submit", "colors", folder, "--out", tmp_path / "job", "--chunk-size",
                 "8", "--broker", redis_server.url, "--wait")
        assert r.returncode == 0, r.stderr
        assert ndjson(mltk("jobs", "results", tmp_path / "job").stdout) == expected
        ran = {json.loads(p.read_text())["worker"] for p in (tmp_path / "job" / "stats").iterdir()}
        assert len(ran) >= 1
        listed = mltk("jobs", "list", "--broker", redis_server.url, "-f", "json")
        assert json.loads(listed.stdout)[0]["complete"] is True
    finally:
        for w in workers:
            assert w.stop() == 0, w.log.read_text()[-2000:]


@needs_redis
def test_kill_9_a_worker_mid_job_then_another_finishes_it(photos, redis_server, tmp_path):
    folder, expected = photos
    job = tmp_path / "job"
    r = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "6", "--lease",
             "3", "--broker", redis_server.url)
    assert r.returncode == 0, r.stderr
    first = Worker(redis_server.url, tmp_path / "w1.log")
    # condition: the worker holds a chunk that has no part yet -> kill it with its children
    leased = wait_for(lambda: [p for p in (job / "leases").glob("*.json")]
                      if (job / "leases").exists() else None, "a chunk to start")
    first.kill9()
    n_chunks = len(json.loads((job / "job.json").read_text())["chunks"])
    assert len(list((job / "parts").glob("*.ndjson"))) < n_chunks, "the job ended before the kill"
    assert any(not (job / "parts" / p.name.replace(".json", ".ndjson")).exists()
               for p in leased)
    second = Worker(redis_server.url, tmp_path / "w2.log")
    try:
        waited = mltk("jobs", "wait", job, "--timeout", "300", timeout=400)
        assert waited.returncode == 0, waited.stderr
        got = ndjson(mltk("jobs", "results", job).stdout)
        assert got == expected  # every item exactly once, in order, as `mltk colors` prints
    finally:
        assert second.stop() == 0, (tmp_path / "w2.log").read_text()[-2000:]


@needs_redis
def test_celery_chunk_failing_for_good_fails_the_wait_not_the_job(photos, redis_server,
                                                                  tmp_path):
    from mltk.jobs import JobFolder, core, queue

    folder, expected = photos
    job = JobFolder(tmp_path / "job")
    core.create(job, "colors", [str(folder)], {}, core.JobSettings(chunk_size=40),
                redis_server.url)
    _break_chunk(job.path, 2, 40)
    queue.enqueue(queue.app_for(redis_server.url), job, range(4))
    worker = Worker(redis_server.url, tmp_path / "w.log")
    try:
        waited = mltk("jobs", "wait", job.path, "--timeout", "300", timeout=400)
        assert waited.returncode == 1 and "chunk 2 failed: JSONDecodeError" in waited.stderr
        st = core.status(job)
        assert (st["done"], st["failed"]) == (3, 1)
        assert json.loads((job.path / "failed" / "chunk-00002.json").read_text())[
            "attempts"] == 1  # bad data is not retried
    finally:
        assert worker.stop() == 0, (tmp_path / "w.log").read_text()[-2000:]


@needs_redis
def test_wait_enqueues_chunks_whose_message_was_lost(photos, redis_server, tmp_path):
    """A chunk reserved by a worker that died before starting it has no lease and no message
    in the queue: `mltk jobs wait` finds it once the queue stays empty for a lease time."""
    from mltk.jobs import JobFolder, core, queue

    folder, expected = photos
    job_dir = JobFolder(tmp_path / "job")
    job = core.create(job_dir, "colors", [str(folder)], {}, core.JobSettings(32, 2.0),
                      redis_server.url)
    queue.enqueue(queue.app_for(redis_server.url), job_dir, [0, 1, 2])  # chunk 3's is "lost"
    worker = Worker(redis_server.url, tmp_path / "w.log")
    try:
        waited = mltk("jobs", "wait", job_dir.path, "--timeout", "300", timeout=400)
        assert waited.returncode == 0, waited.stderr
        assert "re-enqueued chunk(s) [3]" in waited.stderr
        assert len(job["chunks"]) == 4
        assert ndjson(mltk("jobs", "results", job_dir.path).stdout) == expected
    finally:
        assert worker.stop() == 0, (tmp_path / "w.log").read_text()[-2000:]


@needs_redis
def test_redis_restart_then_submit_again_finishes_the_job(photos, redis_server, tmp_path):
    folder, expected = photos
    job = tmp_path / "job"
    worker = Worker(redis_server.url, tmp_path / "w.log")
    try:
        r = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "6",
                 "--broker", redis_server.url)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: (job / "parts").exists() and any((job / "parts").iterdir()),
                 "a first part")
        redis_server.restart()
        again = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "6",
                     "--broker", redis_server.url, "--wait", timeout=400)
        assert again.returncode == 0, again.stderr
        assert r.stdout == again.stdout  # the same job id
        assert ndjson(mltk("jobs", "results", job).stdout) == expected
    finally:
        assert worker.stop() == 0, (tmp_path / "w.log").read_text()[-2000:]


@needs_redis
def test_server_submits_and_follows_jobs(photos, redis_server, tmp_path):
    """mltk serve --broker: POST /jobs and GET /jobs/{id}, the original's API-to-Celery path."""
    import httpx

    folder, expected = photos
    port = free_port()
    worker = Worker(redis_server.url, tmp_path / "w.log")
    server = subprocess.Popen(mltk_executable() + [
        "serve", "colors", "--port", str(port), "--broker", redis_server.url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLTK_SERVE_TOKEN": "t0ken",
             "MLTK_SERVE_JOB_ROOTS": json.dumps([str(folder.parent), str(tmp_path)])})
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer t0ken"}
    try:
        def ready():
            try:
                return httpx.get(url + "/v2/health/ready").status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, "the server exited"
                return False

        wait_for(ready, "the server")
        body = {"kind": "colors", "args": [str(folder)], "out": str(tmp_path / "job"),
                "chunk_size": 32}
        r = httpx.post(url + "/jobs", json=body, headers=auth)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert r.json()["enqueued"] == r.json()["chunks"] == 4
        wait_for(lambda: httpx.get(f"{url}/jobs/{job_id}", headers=auth).json()["complete"],
                 "the job")
        assert ndjson(mltk("jobs", "results", tmp_path / "job").stdout) == expected
        assert httpx.get(url + "/jobs/0000", headers=auth).status_code == 404
        bad = httpx.post(url + "/jobs", json={**body, "kind": "paint"}, headers=auth)
        assert bad.status_code == 400 and "paint" in bad.json()["error"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
        assert worker.stop() == 0


@needs_redis
def test_tfrecord_build_job_on_workers_is_finished_by_the_last_chunk(digits, redis_server,
                                                                      tmp_path):
    shards, job = tmp_path / "shards", tmp_path / "job"
    workers = [Worker(redis_server.url, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        r = mltk("jobs", "submit", "tfrecord-build", "images", shards, "--out", job,
                 *TF_OPTIONS, "--broker", redis_server.url, cwd=digits)
        assert r.returncode == 0, r.stderr
        # nobody waits: the worker that writes the last shard writes labels.txt and manifest
        wait_for(lambda: (shards / "manifest.json").exists(), "the manifest", every=0.2)
        assert_same_dataset(shards, digits / "ref")
        waited = mltk("jobs", "wait", job, "--timeout", "60")
        assert waited.returncode == 0 and "1 files skipped" in waited.stderr
    finally:
        for w in workers:
            assert w.stop() == 0, w.log.read_text()[-2000:]
