"""mltk jobs never trusts a part it cannot check, says one consistent thing about a job, refuses
inputs that are not regular files and stops a chunk at its time limit (the local pool, and
`mltk colors` for the inputs); the broker's password is never shown (real redis-server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, mltk_executable
from tests.test_jobs import mltk, ndjson, needs_redis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """24 product photos and what `mltk colors` prints for them."""
    from mltk.datasets import make

    root = tmp_path_factory.mktemp("integrity")
    make("product-images", root / "photos", n=24, seed=1)
    expected = mltk("colors", root / "photos", "--format", "ndjson")
    assert expected.returncode == 0, expected.stderr
    return root / "photos", ndjson(expected.stdout)


def status(job: Path) -> dict:
    r = mltk("jobs", "status", job, "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def test_parts_of_another_plan_are_run_again_not_counted(photos, tmp_path):
    folder, expected = photos
    job = tmp_path / "job"
    assert mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "10"
                ).returncode == 0  # 3 parts: 10, 10 and 4 records
    (job / "job.json").unlink()
    r = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "4")
    assert r.returncode == 0, r.stderr
    assert "0 done already" in r.stderr  # parts 0-2 are of the old plan: run again
    st = status(job)
    assert st["complete"] and (st["done"], st["items_done"]) == (6, 24)
    got = mltk("jobs", "results", job)
    assert got.returncode == 0 and ndjson(got.stdout) == expected


def test_one_plan_per_folder_when_submits_race(photos, tmp_path):
    """Three submissions of one job, three chunk sizes, at once: one plan is written, the
    others are told which chunk size the folder holds; the job's results are whole."""
    folder, expected = photos
    job = tmp_path / "job"
    procs = [subprocess.Popen(mltk_executable() + [
        "jobs", "submit", "colors", str(folder), "--out", str(job), "--chunk-size", str(size),
        "-j", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for size in (3, 5, 7)]
    outcomes = [(p.wait(300), p.stderr.read()) for p in procs]
    ok = [err for rc, err in outcomes if rc == 0]
    refused = [err for rc, err in outcomes if rc != 0]
    assert len(ok) == 1 and len(refused) == 2, outcomes
    size = json.loads((job / "job.json").read_text())["chunk_size"]
    for err in refused:
        assert f"cut into chunks of {size} items" in err, err
    assert ndjson(mltk("jobs", "results", job).stdout) == expected


def test_damaged_parts_are_not_done_and_results_says_so_first(photos, tmp_path):
    folder, expected = photos
    job = tmp_path / "job"
    assert mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "4"
                ).returncode == 0
    parts = sorted((job / "parts").iterdir())
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) - len(data.splitlines(keepends=True)[-1])])  # a line
    parts[2].write_bytes(b"")  # emptied
    data = parts[3].read_bytes()
    parts[3].write_bytes(data[: len(data) // 2])  # cut mid-line
    (job / "stats" / "chunk-00004.json").unlink()  # a part without its stats
    st = status(job)
    assert (st["done"], st["pending"], st["complete"]) == (2, 4, False)
    assert st["items_done"] == 8 and st["eta_seconds"] is None
    r = mltk("jobs", "status", job)
    assert "chunk 1 is not done: parts/chunk-00001.ndjson is damaged" in r.stderr
    got = mltk("jobs", "results", job)
    assert got.returncode == 1 and got.stdout == ""  # nothing printed before the error
    assert "chunk 1 is not done: parts/chunk-00001.ndjson is damaged" in got.stderr
    again = mltk("jobs", "submit", "colors", folder, "--out", job)  # its plan's chunk size
    assert again.returncode == 0 and "2 done already" in again.stderr, again.stderr
    assert ndjson(mltk("jobs", "results", job).stdout) == expected


def test_wait_on_a_local_job_with_parts_missing_says_how_to_finish(photos, tmp_path):
    folder, _ = photos
    job = tmp_path / "job"
    assert mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "12",
                "--lease", "0.5").returncode == 0
    (job / "parts" / "chunk-00001.ndjson").write_bytes(b"")
    r = mltk("jobs", "wait", job, "--timeout", "120")
    assert r.returncode == 1 and "1 chunk(s) not done" in r.stderr
    assert "submit it again" in r.stderr and "2/2 chunks done" not in r.stderr


def test_cancel_then_submit_resumes_and_results_refuses_first(photos, tmp_path):
    from mltk.jobs import JobFolder, core

    folder, expected = photos
    job = JobFolder(tmp_path / "job")
    core.create(job, "colors", [str(folder)], {}, core.JobSettings(chunk_size=6))
    assert core.run_chunk(str(job.path), 0) == "done"
    assert mltk("jobs", "cancel", job.path).returncode == 0
    got = mltk("jobs", "results", job.path)
    assert got.returncode == 1 and got.stdout == ""
    assert "was cancelled with 1 of 4 chunks done; submit it again to resume it" in got.stderr
    again = mltk("jobs", "submit", "colors", folder, "--out", job.path)
    assert again.returncode == 0, again.stderr
    assert "was cancelled: resuming it" in again.stderr and "1 done already" in again.stderr
    assert not status(job.path)["cancelled"]
    assert ndjson(mltk("jobs", "results", job.path).stdout) == expected


def test_a_lease_of_a_dead_worker_is_not_running(photos, tmp_path):
    from mltk.jobs import JobFolder, core

    folder, _ = photos
    job = JobFolder(tmp_path / "job")
    core.create(job, "colors", [str(folder)], {}, core.JobSettings(chunk_size=12))
    took = subprocess.run([sys.executable, "-c", "import sys; from mltk.jobs import JobFolder; "
                           "JobFolder(sys.argv[1]).take_lease(0)", str(job.path)])
    assert took.returncode == 0 and job.lease_age(0) is not None  # a fresh lease, holder gone
    st = status(job.path)
    assert (st["running"], st["pending"]) == (0, 2)
    assert core.stale_chunks(job, job.load()) == [0]


def test_inputs_that_are_not_regular_files_are_error_records(photos, tmp_path):
    import shutil
    import socket

    from mltk.jobs import JobFolder, core

    folder, expected = photos
    fifo, sock, gone = tmp_path / "pipe.jpg", tmp_path / "sock.jpg", tmp_path / "dir.jpg"
    os.mkfifo(fifo)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    shutil.copy(sorted(folder.glob("*.jpg"))[0], gone)
    good = sorted(folder.glob("*.jpg"))[:2]
    args = [str(p) for p in (fifo, "/dev/zero", sock, gone, *good)]
    job = JobFolder(tmp_path / "job")
    core.create(job, "colors", args, {})
    gone.unlink()
    gone.mkdir()  # a file when planned, a folder when run
    try:  # in a process of its own: without the fix, opening the FIFO waits for ever
        run = subprocess.run([sys.executable, "-c", "import sys; from mltk.jobs import "
                              "JobFolder, core; core.run_local(JobFolder(sys.argv[1]))",
                              str(job.path)], timeout=300, capture_output=True, text=True)
    finally:
        listener.close()
    assert run.returncode == 0, run.stderr
    assert core.status(job)["complete"]
    got = ndjson(mltk("jobs", "results", tmp_path / "job").stdout)
    assert [g["error"] for g in got[:4]] == [
        "not a regular file (a FIFO, device or socket)"] * 2 + [
        "cannot read file (No such device or address)", "is a directory"]
    by_path = {e["path"]: e for e in expected}
    assert got[4:] == [by_path[str(p)] for p in good]


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # /dev/zero must not eat it all


def test_colors_refuses_dev_zero_and_a_fifo_and_goes_on(photos, tmp_path):
    folder, expected = photos
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = sorted(folder.glob("*.jpg"))[0]
    r = subprocess.run(mltk_executable() + ["colors", "/dev/zero", str(fifo), str(good),
                                            "-f", "ndjson"],
                       capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = ndjson(r.stdout)
    assert [row["error"] for row in rows[:2]] == [
        "not a regular file (a FIFO, device or socket)"] * 2
    assert rows[2] == {**next(e for e in expected if e["path"] == str(good))}


def test_a_chunk_past_its_time_limit_fails_naming_the_limit(photos, tmp_path):
    folder, _ = photos
    r = mltk("jobs", "submit", "colors", folder, "--out", tmp_path / "job", "--chunk-size",
             "24", "--chunk-seconds", "0.001")
    assert r.returncode == 1
    assert "chunk 0 failed: ran longer than its time limit of 0.001 s (chunk_seconds)" \
        in r.stderr
    st = status(tmp_path / "job")
    assert (st["failed"], st["complete"]) == (1, False)
    again = mltk("jobs", "submit", "colors", folder, "--out", tmp_path / "job",
                 "--chunk-seconds", "600")  # as the message says
    assert again.returncode == 0 and status(tmp_path / "job")["complete"], again.stderr


# -- Celery on a Redis with a password ----------------------------------------------------------
class SecretRedis:
    """redis-server --requirepass: the broker URL carries a password."""

    def __init__(self, password: str) -> None:
        import redis

        from tests.test_jobs import REDIS, wait_for

        self.port = free_port()
        self.url = f"redis://:{password}@127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--requirepass",
                                      password],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=password)

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


PASSWORD = "sekret-3141"


@pytest.fixture(scope="module")
def secret_broker(tmp_path_factory):
    """A password-protected redis-server and one `mltk worker` on it."""
    from tests.test_jobs import Worker

    server = SecretRedis(PASSWORD)
    log = tmp_path_factory.mktemp("worker") / "w.log"
    worker = Worker(server.url, log)
    try:
        yield server, log
    finally:
        try:
            assert worker.stop() == 0, log.read_text()[-2000:]
        finally:
            server.stop()


@needs_redis
def test_the_broker_password_is_never_shown_nor_stored(photos, secret_broker, tmp_path):
    server, log = secret_broker
    folder, expected = photos
    job = tmp_path / "job"
    shown = server.url.replace(PASSWORD, "***")
    r = mltk("jobs", "submit", "colors", folder, "--out", job, "--chunk-size", "12",
             "--broker", server.url, "--wait", timeout=400)
    assert r.returncode == 0, r.stderr
    assert f"enqueued 2 chunks on {shown}" in r.stderr
    assert PASSWORD not in r.stdout + r.stderr + (job / "job.json").read_text()
    assert json.loads((job / "job.json").read_text())["broker"] == \
        f"redis://127.0.0.1:{server.port}/0"
    # wait and list take the password from the environment, as workers do
    env = {"MLTK_BROKER_URL": server.url}
    waited = mltk("jobs", "wait", job, "--timeout", "300", env=env)
    assert waited.returncode == 0 and PASSWORD not in waited.stderr, waited.stderr
    listed = mltk("jobs", "list", "-f", "json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["complete"] is True
    assert PASSWORD not in listed.stdout + listed.stderr
    # without the password: a clear error, saying how to give it
    lost = mltk("jobs", "wait", job, env={"MLTK_BROKER_URL": ""})
    assert lost.returncode == 1 and "give its password in --broker" in lost.stderr
    wrong = server.url.replace(PASSWORD, "not-the-one")
    bad = mltk("jobs", "submit", "colors", folder, "--out", tmp_path / "j2", "--broker", wrong)
    assert bad.returncode == 1 and "refused the connection" in bad.stderr
    assert "not-the-one" not in bad.stderr and shown in bad.stderr
    assert ndjson(mltk("jobs", "results", job).stdout) == expected
    assert PASSWORD not in log.read_text()  # the worker's log


@needs_redis
def test_a_chunk_past_its_time_limit_on_a_worker(photos, secret_broker, tmp_path):
    server, _ = secret_broker
    folder, _ = photos
    r = mltk("jobs", "submit", "colors", folder, "--out", tmp_path / "job", "--chunk-size",
             "24", "--chunk-seconds", "0.001", "--broker", server.url, "--wait", timeout=400)
    assert r.returncode == 1
    assert "chunk 0 failed: ran longer than its time limit of 0.001 s (chunk_seconds)" \
        in r.stderr


# -- POST /jobs -----------------------------------------------------------------------------------
class JobServer:
    def __init__(self, models: list[str], broker: str, env: dict[str, str]) -> None:
        import httpx

        from tests.test_jobs import wait_for

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(mltk_executable() + [
            "serve", *models, "--port", str(self.port), "--broker", broker],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **env})

        def ready():
            try:
                return httpx.get(self.url + "/v2/health/ready").status_code == 200
            except httpx.TransportError:
                assert self.proc.poll() is None, "the server exited"
                return False

        wait_for(ready, "the server")

    def stop(self) -> str:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err[-2000:]
        return err


@needs_redis
def test_jobs_over_http_need_the_token_and_the_roots(photos, secret_broker, tmp_path):
    import httpx

    server, _ = secret_broker
    folder, _ = photos
    body = {"kind": "colors", "args": [str(folder)], "out": str(tmp_path / "job")}
    open_server = JobServer(["colors"], server.url, {"MLTK_SERVE_TOKEN": ""})
    try:
        r = httpx.post(open_server.url + "/jobs", json=body)
        assert r.status_code == 403 and "need a bearer token" in r.json()["error"]
        assert httpx.get(open_server.url + "/jobs/0000").status_code == 403
    finally:
        open_server.stop()
    rootless = JobServer(["colors"], server.url, {"MLTK_SERVE_TOKEN": "t0ken"})
    try:
        r = httpx.post(rootless.url + "/jobs", json=body,
                       headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 403 and "set its job_roots" in r.json()["error"]
    finally:
        rootless.stop()
    assert not (tmp_path / "job").exists()


@needs_redis
def test_job_requests_are_checked_before_202_and_never_leak_files(
        photos, secret_broker, cancer_model, tmp_path_factory, tmp_path):
    import httpx

    server, _ = secret_broker
    folder, _ = photos
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    secret = elsewhere / "secret.yaml"
    secret.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    inside = tmp_path / "bad.yaml"
    inside.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    roots = [str(folder.parent), str(tmp_path), str(cancer_model)]
    api = JobServer(["colors", f"cancer={cancer_model / 'model'}"], server.url,
                    {"MLTK_SERVE_TOKEN": "t0ken", "MLTK_SERVE_JOB_ROOTS": json.dumps(roots)})
    auth = {"Authorization": "Bearer t0ken"}
    colors = {"kind": "colors", "args": [str(folder)], "out": str(tmp_path / "job")}

    def post(body):
        r = httpx.post(api.url + "/jobs", json=body, headers=auth)
        assert "hashhash" not in r.text and PASSWORD not in r.text
        return r.status_code, r.json().get("error")

    try:
        for config in (str(secret), "/etc/shadow", str(inside)):
            status, err = post({**colors, "options": {"config": config}})
            assert status in (400, 403), err
            assert "options.config" in err, err
        assert post({**colors, "out": str(elsewhere / "job")}) == (
            403, f"out: {str(elsewhere / 'job')!r} is not under the server's job_roots")
        assert post({**colors, "args": [str(elsewhere)]})[0] == 403
        assert post({**colors, "args": ["photos"]})[0] == 400  # relative
        assert post({**colors, "options": {"k": -5}}) == (
            400, "k must be a positive integer, got -5")
        assert post({**colors, "chunk_size": "abc"}) == (
            400, "chunk_size must be a positive integer, got 'abc'")
        assert post({**colors, "options": {"crop": "x"}})[0] == 400
        xgb = {"kind": "xgb-predict", "out": str(tmp_path / "xgb"),
               "args": [str(cancer_model / "model"), str(cancer_model / "rows.csv")]}
        status, err = post(xgb)
        assert status == 400 and "by the name this server serves it under" in err
        assert not (tmp_path / "xgb").exists() and not (tmp_path / "job").exists()
        r = httpx.post(api.url + "/jobs", headers=auth, json={
            **xgb, "args": ["cancer", str(cancer_model / "rows.csv")], "chunk_size": 20})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert (r.json()["chunks"], r.json()["enqueued"]) == (3, 3)
        from tests.test_jobs import wait_for

        wait_for(lambda: httpx.get(f"{api.url}/jobs/{job_id}", headers=auth).json()[
            "complete"], "the job")
        got = ndjson(mltk("jobs", "results", tmp_path / "xgb").stdout)
        assert len(got) == 50 and all(g["error"] is None for g in got)
    finally:
        err = api.stop()
    assert "hashhash" not in err and PASSWORD not in err
