"""mltk.serving.job_requests: ``POST /jobs`` and ``GET /jobs/{id}`` in-process (Starlette's
TestClient, a real redis-server as the broker, no worker): every check of a request before
anything runs, and the 202 of one that passes. Jobs run by workers are tests/test_jobs.py
(slow)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from mltk.jobs.queue import queue_length  # noqa: E402
from mltk.predictors.image import gray_png  # noqa: E402
from mltk.serving import job_requests  # noqa: E402
from mltk.serving.app import create_app  # noqa: E402
from mltk.serving.codecs import CodecError  # noqa: E402
from mltk.serving.launcher import free_port  # noqa: E402
from mltk.serving.settings import ServeSettings  # noqa: E402

REDIS = shutil.which("redis-server")
AUTH = {"Authorization": "Bearer t0ken"}


@pytest.fixture(scope="module")
def broker():
    """A redis-server of its own (no persistence), waited on until it answers."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server failed"
            time.sleep(0.01)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(30)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A job root with three photos in ``in/``, and a folder outside every root."""
    root = tmp_path_factory.mktemp("jobs")
    (root / "in").mkdir()
    for i in range(3):
        (root / "in" / f"{i}.png").write_bytes(gray_png(16))
    return root, tmp_path_factory.mktemp("elsewhere")


def client_of(**settings) -> TestClient:
    return TestClient(create_app(ServeSettings(models=("colors",), **settings)))


@pytest.fixture(scope="module")
def client(broker, roots):
    with client_of(token="t0ken", broker=broker, job_roots=(str(roots[0]),)) as c:
        c.headers.update(AUTH)
        yield c


def test_a_checked_request_is_planned_registered_and_enqueued(client, broker, roots):
    root, _ = roots
    body = {"kind": "colors", "args": [str(root / "in")], "out": str(root / "job"),
            "chunk_size": 2}
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["out"] == str(root / "job") and doc["chunks"] == doc["enqueued"] == 2
    assert doc["resumed"] is False and queue_length(broker) == 2
    status = client.get(f"/jobs/{doc['id']}").json()
    assert (status["items"], status["pending"], status["complete"]) == (3, 2, False)
    assert client.get("/jobs/0000").status_code == 404


@pytest.mark.parametrize("body, status, words", [
    ([1], 400, "expected a JSON object"),
    ({"kind": "colors", "args": "x", "out": "/o"}, 400, "args (a list of text)"),
    ({"kind": "paint", "args": [], "out": "/o"}, 400, "unknown job kind 'paint'"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "priority": 1}, 400,
     "unknown field(s) priority"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": ["x"]}, 400,
     "options must be an object"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": []}, 400,
     "options must be an object"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": ""}, 400,
     "options must be an object"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "chunk_size": 0}, 400, "chunk_size"),
    ({"kind": "colors", "args": ["IN"], "out": "relative/out"}, 400,
     "out must be an absolute path"),
    ({"kind": "colors", "args": ["ELSEWHERE"], "out": "OUT"}, 403,
     "args[0]: '{ELSEWHERE}' is not under the server's job_roots"),
    ({"kind": "colors", "args": ["IN/../../.."], "out": "OUT"}, 403, "not under"),
    ({"kind": "colors", "args": ["IN"], "out": "OUT", "options": {"palette": "ELSEWHERE"}},
     403, "options.palette"),
    ({"kind": "predict", "args": ["ELSEWHERE", "IN"], "out": "OUT"}, 400,
     "by the name this server serves it under (served: none)"),
])
def test_a_bad_request_is_refused_naming_the_field(client, roots, body, status, words):
    root, elsewhere = roots
    paths = {"IN": str(root / "in"), "OUT": str(root / "refused"), "ELSEWHERE": str(elsewhere)}

    def fill(value):
        if isinstance(value, str):
            return next((value.replace(k, v) for k, v in paths.items() if value.startswith(k)),
                        value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return {k: fill(v) for k, v in value.items()} if isinstance(value, dict) else value

    r = client.post("/jobs", json=fill(body))
    assert r.status_code == status, r.text
    assert words.format(**paths) in r.json()["error"]
    assert not (root / "refused").exists()  # nothing was planned


def test_a_config_file_that_cannot_be_used_is_named_not_quoted(client, roots):
    root, _ = roots
    (root / "bad.yaml").write_text("secret: [1\n")
    r = client.post("/jobs", json={"kind": "colors", "args": [str(root / "in")],
                                   "out": str(root / "cfg-job"),
                                   "options": {"config": str(root / "bad.yaml")}})
    assert r.status_code == 400
    assert r.json()["error"] == (f"options.config: {str(root / 'bad.yaml')!r} is not a valid "
                                 "colors config file (run the job's command with it to see why)")


def test_without_a_token_or_roots_no_job_is_taken(broker, roots):
    root, _ = roots
    body = {"kind": "colors", "args": [str(root / "in")], "out": str(root / "x")}
    with client_of(broker=broker, job_roots=(str(root),)) as c:
        for r in (c.post("/jobs", json=body), c.get("/jobs/abc")):
            assert r.status_code == 403 and "need a bearer token" in r.json()["error"]
    with client_of(token="t0ken", broker=broker) as c:
        r = c.post("/jobs", json=body, headers=AUTH)
        assert r.status_code == 403 and "takes no paths" in r.json()["error"]


def test_a_broker_that_is_down_is_503_for_submit_and_status(roots):
    root, _ = roots
    down = f"redis://127.0.0.1:{free_port()}/0"
    with client_of(token="t0ken", broker=down, job_roots=(str(root),)) as c:
        c.headers.update(AUTH)
        submitted = c.post("/jobs", json={"kind": "colors", "args": [str(root / "in")],
                                          "out": str(root / "down")})
        followed = c.get("/jobs/abc")
    for r in (submitted, followed):
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert "cannot reach the broker" in r.json()["error"]


def test_models_are_taken_by_served_name_never_by_path(roots):
    root, _ = roots
    models = ("colors", f"digits={root / 'model'}")
    req = job_requests.parse({"kind": "predict", "args": ["digits", str(root / "in")],
                              "out": str(root / "p"), "chunk_size": 5}, models, [str(root)])
    assert (req.kind, req.args, req.settings.chunk_size) == (
        "predict", [str(root / "model"), str(root / "in")], 5)
    with pytest.raises(CodecError, match=r"served: digits\), not 'colors'") as err:
        job_requests.parse({"kind": "predict", "args": ["colors"], "out": str(root / "p")},
                           models, [str(root)])
    assert err.value.status == 400


# -- links inside a root that lead out of it (mltk.jobs.roots) -------------------------------
def test_real_paths_decide_whether_a_path_is_under_the_roots(tmp_path):
    from mltk.jobs.roots import OutsideRoots, check, check_tree, problem

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "a" / "b").mkdir(parents=True)
    (elsewhere / "dir").mkdir(parents=True)
    (elsewhere / "secret.png").write_bytes(b"x")
    (root / "in.png").write_bytes(b"x")
    (root / "a" / "b" / "file-out.png").symlink_to(elsewhere / "secret.png")
    (root / "a" / "b" / "dir-out").symlink_to(elsewhere / "dir")
    (root / "a" / "b" / "file-in.png").symlink_to(root / "in.png")
    (root / "a" / "dir-in").symlink_to(root / "a" / "b")
    roots = [str(root)]
    assert problem(root / "in.png", roots) is None
    assert problem(root / "a" / "b" / "file-in.png", roots) is None  # a link that stays in
    assert problem(root / "a" / "dir-in" / "file-in.png", roots) is None
    link = root / "a" / "b" / "file-out.png"
    assert problem(link, roots) == (f"{link}: leads outside the job roots (taken under "
                                    f"{root}; refused)")  # where it leads is not said
    deep = root / "a" / "b" / "dir-out" / "new" / "x.png"  # a folder link, at any depth
    assert problem(deep, roots) == (f"{deep}: leads outside the job roots (taken under "
                                    f"{root}; refused)")
    assert problem(elsewhere / "dir", roots) == (f"{elsewhere / 'dir'}: not under the job "
                                                 f"roots {root} (refused)")
    with pytest.raises(OutsideRoots, match=r"dir-out: leads outside the job roots"):
        check(root / "a" / "b" / "dir-out", roots)
    with pytest.raises(OutsideRoots, match=r"/a/b/(dir|file)-out(\.png)?: leads outside"):
        check_tree(root, roots)
    (root / "a" / "b" / "dir-out").unlink()
    (root / "a" / "b" / "file-out.png").unlink()
    check_tree(root, roots)  # only links that stay inside are left


def test_a_file_link_leaving_the_root_is_refused_on_its_own_and_the_rest_runs(
        client, roots, tmp_path):
    """A colours job over a folder in the root holding a real image, a link to an image in
    the root and a link to an image outside it: run as a worker runs it, the outside one gets
    its error record (the image is never read) and the others their colours."""
    from mltk.jobs import JobFolder, core

    root, elsewhere = roots
    (elsewhere / "secret.png").write_bytes(gray_png(16))
    photos = root / "linked"
    photos.mkdir()
    (photos / "a.png").write_bytes(gray_png(16))
    (photos / "b-inside.png").symlink_to(root / "in" / "0.png")
    (photos / "c-outside.png").symlink_to(elsewhere / "secret.png")
    r = client.post("/jobs", json={"kind": "colors", "args": [str(photos)],
                                   "out": str(root / "linked-job"), "chunk_size": 10})
    assert r.status_code == 202, r.text
    # as a worker with the server's roots does
    assert core.run_chunk(str(root / "linked-job"), 0, roots=[str(root)]) == "done"
    records = list(core.results(JobFolder(root / "linked-job")))
    assert [rec["path"] for rec in records] == [
        str(photos / "a.png"), str(photos / "b-inside.png"), str(photos / "c-outside.png")]
    assert [rec["error"] for rec in records[:2]] == [None, None]
    assert records[0]["colors"] and records[1]["colors"]
    assert records[2]["error"] == (f"{photos / 'c-outside.png'}: leads outside the job roots "
                                   f"(taken under {root}; refused)")
    assert records[2]["colors"] == [] and records[2]["width"] is None


def test_folder_links_leaving_the_root_refuse_the_job_before_it_is_planned(client, roots):
    root, elsewhere = roots
    (elsewhere / "dogs").mkdir()
    (elsewhere / "dogs" / "d.png").write_bytes(gray_png(16))
    src = root / "classes"
    (src / "cat").mkdir(parents=True)
    (src / "cat" / "c.png").write_bytes(gray_png(16))
    (src / "dog").symlink_to(elsewhere / "dogs")  # a class folder that is a link outside
    r = client.post("/jobs", json={"kind": "tfrecord-build",
                                   "args": [str(src), str(root / "shards")],
                                   "out": str(root / "tf-job")})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == (f"{src / 'dog' / 'd.png'}: leads outside the job roots "
                                 f"(taken under {root}; refused)")
    assert not (root / "tf-job").exists() and not (root / "shards").exists()
    # a job folder whose parts/ is a link outside: its parts would be written there
    (root / "trap-job").mkdir()
    (root / "trap-job" / "parts").symlink_to(elsewhere, target_is_directory=True)
    r = client.post("/jobs", json={"kind": "colors", "args": [str(root / "in")],
                                   "out": str(root / "trap-job")})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == (f"{root / 'trap-job' / 'parts'}: leads outside the job roots "
                                 f"(taken under {root}; refused)")
    assert not (root / "trap-job" / "job.json").exists()


@pytest.mark.slow
def test_predict_and_embed_refuse_a_linked_image_on_its_own(digits_run, digits_dir, tmp_path):
    """The same per-item refusal for the kinds that read images through a model."""
    from mltk.jobs import JobFolder, core

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "photos").mkdir(parents=True)
    elsewhere.mkdir()
    first, second = sorted(p for p in digits_dir.rglob("*.jpg"))[:2]
    (elsewhere / "secret.jpg").write_bytes(first.read_bytes())
    (root / "photos" / "a.jpg").write_bytes(second.read_bytes())
    (root / "photos" / "b.jpg").symlink_to(elsewhere / "secret.jpg")
    why = (f"{root / 'photos' / 'b.jpg'}: leads outside the job roots (taken under {root}; "
           "refused)")
    for kind, options in (("predict", {}), ("embed", {"vectors": str(root / "vectors")})):
        folder = JobFolder(root / f"{kind}-job")
        core.create(folder, kind, [str(digits_run), str(root / "photos")], options,
                    roots=[str(root)])
        assert core.run_chunk(str(folder.path), 0, roots=[str(root)]) == "done"
        records = list(core.results(folder))
        assert [r["error"] for r in records] == [None, why], kind
        assert records[0]["path"] == str(root / "photos" / "a.jpg")


def test_a_request_path_is_checked_and_given_to_the_job_by_its_real_path(roots):
    """What was checked is what the job uses: a link inside the root is replaced by its real
    path (a link swapped in afterwards is not followed); one leading outside is 403 naming the
    field, the path and the root, never where it leads."""
    root, elsewhere = roots
    (root / "alias").symlink_to(root / "in", target_is_directory=True)
    (root / "away").symlink_to(elsewhere, target_is_directory=True)
    req = job_requests.parse({"kind": "colors", "args": [str(root / "alias")],
                              "out": str(root / "alias" / "job")}, ("colors",), [str(root)])
    assert req.args == [str(root / "in")] and req.out == str(root / "in" / "job")
    with pytest.raises(CodecError) as err:
        job_requests.parse({"kind": "colors", "args": [str(root / "away")],
                            "out": str(root / "job")}, ("colors",), [str(root)])
    assert err.value.status == 403
    assert str(err.value) == (f"args[0]: {str(root / 'away')!r} leads outside the job roots "
                              f"(taken under {root})")
    assert str(elsewhere) not in str(err.value)
