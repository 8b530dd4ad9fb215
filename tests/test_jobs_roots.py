"""Job roots at run time (mltk.jobs.roots): the roots a chunk is kept to are the worker's own,
never job.json's; every file a chunk reads and folder it writes is checked by real path, and
a link made after submission counts. Real files and links, chunks run in-process as a worker
runs them; ``mltk worker --job-roots`` on a real redis-server is the slow test at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time

import pytest

from mltk.jobs import JobFolder, core, kinds
from mltk.jobs.roots import OutsideRoots, check_tree
from mltk.predictors.image import gray_png


@pytest.fixture
def tree(tmp_path):
    """A job root with three images in ``in/`` and a folder outside it with a secret one."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "in").mkdir(parents=True)
    elsewhere.mkdir()
    for i in range(3):
        (root / "in" / f"{i}.png").write_bytes(gray_png(16))
    (elsewhere / "secret.png").write_bytes(gray_png(16))
    return root, elsewhere


def test_the_worker_keeps_to_its_own_roots_whatever_job_json_says(tree):
    """The roots are not in job.json (so editing it changes nothing), and a link planted after
    submission is refused by the chunk run with the worker's roots, its target not named."""
    root, elsewhere = tree
    folder = JobFolder(root / "job")
    job = core.create(folder, "colors", [str(root / "in")], {}, roots=[str(root)])
    assert "roots" not in job["inputs"]
    (root / "in" / "3-late.png").symlink_to(elsewhere / "secret.png")  # after submission
    items = folder.items(0, 3) + [[str(root / "in" / "3-late.png"), "late.png"]]
    records = kinds.run(job, items, 0, 4, roots=[str(root)])
    assert [r["error"] for r in records[:3]] == [None, None, None]
    assert records[3]["error"] == (f"{root / 'in' / '3-late.png'}: leads outside the job roots "
                                   f"(taken under {root}; refused)")
    assert str(elsewhere) not in json.dumps(records)
    assert core.run_chunk(str(folder.path), 0, roots=[str(root)]) == "done"


def test_a_job_submitted_with_roots_is_the_same_job_without_them(tree):
    """The roots are not part of the job's identity: a job taken over HTTP resumes from the
    CLI, and after a root is added."""
    root, _ = tree
    folder = JobFolder(root / "job")
    first = core.create(folder, "colors", [str(root / "in")], {}, roots=[str(root)])
    again = core.create(folder, "colors", [str(root / "in")], {})
    more = core.create(folder, "colors", [str(root / "in")], {},
                       roots=[str(root), str(root.parent)])
    assert first["id"] == again["id"] == more["id"] and first["plan"] == again["plan"]


def test_a_link_made_in_the_job_folder_after_submission_is_never_written_through(tree):
    root, elsewhere = tree
    folder = JobFolder(root / "job")
    core.create(folder, "colors", [str(root / "in")], {}, roots=[str(root)])
    (folder.path / "parts").symlink_to(elsewhere, target_is_directory=True)
    assert core.run_chunk(str(folder.path), 0, roots=[str(root)]) == "refused"
    assert os.listdir(elsewhere) == ["secret.png"]  # nothing written there
    assert folder.failure(0)["reason"] == (f"{folder.path / 'parts'}: leads outside the job "
                                           f"roots (taken under {root}; refused)")
    (folder.path / "failed").rename(root / "failed-before")
    (folder.path / "failed").symlink_to(elsewhere, target_is_directory=True)
    assert core.run_chunk(str(folder.path), 0, roots=[str(root)]) == "refused"
    assert os.listdir(elsewhere) == ["secret.png"]  # not even the failure
    (folder.path / "failed").unlink()
    assert core.run_chunk(str(folder.path), 0) == "done"  # without roots: as before


def _job(kind: str, **inputs) -> dict:
    return {"id": "x", "kind": kind, "inputs": inputs, "settings": {}, "model": {"digest": "x"}}


def test_data_files_and_output_folders_are_checked_when_a_chunk_runs(tree):
    """xgb-predict's data, recommend's queries, a tfrecord-build shard's files and its OUT,
    embed's vectors: a link leading outside, made after submission, fails the chunk (or the
    last step) before anything is read or written."""
    root, elsewhere = tree
    (elsewhere / "data.csv").write_text("a\n1\n")
    (elsewhere / "out").mkdir()
    (root / "data.csv").symlink_to(elsewhere / "data.csv")
    (root / "out").symlink_to(elsewhere / "out", target_is_directory=True)
    (root / "in" / "x.png").symlink_to(elsewhere / "secret.png")
    roots = [str(root)]
    why = "{}: leads outside the job roots (taken under " + str(root) + "; refused)"
    for job, items, named in (
            (_job("xgb-predict", data=str(root / "data.csv")), None, root / "data.csv"),
            (_job("recommend", queries=str(root / "data.csv")), None, root / "data.csv"),
            (_job("tfrecord-build", out=str(root / "tf")),
             [{"items": [[str(root / "in" / "0.png"), 0, "0.png"],
                         [str(root / "in" / "x.png"), 0, "x.png"]]}], root / "in" / "x.png"),
            (_job("tfrecord-build", out=str(root / "out")), [{"items": []}], root / "out")):
        with pytest.raises(OutsideRoots) as err:
            kinds.run(job, items, 0, 1, roots)
        assert str(err.value) == why.format(named), job["kind"]
    with pytest.raises(OutsideRoots, match=r"/out: leads outside the job roots"):
        kinds.finalize(_job("embed", out=str(root / "out")), [], 0.0, roots)
    assert os.listdir(elsewhere / "out") == [] and not (root / "tf").exists()


def test_a_folder_that_cannot_be_read_is_refused_not_skipped(tmp_path):
    """os.walk skips a folder it cannot list; check_tree refuses it (its links were never
    checked). A path too long to open stands in for an unreadable folder (root reads all)."""
    deep = tmp_path / "out"
    deep.mkdir()
    with contextlib.chdir(deep):
        for _ in range(20):  # 20 x 250 characters: past PATH_MAX, reached one step at a time
            os.mkdir("d" * 250)
            os.chdir("d" * 250)
        os.symlink("/", "escape")
    with pytest.raises(OutsideRoots, match=r"cannot be read to check its links"):
        check_tree(deep, [str(tmp_path)])
    with contextlib.chdir(deep):  # pytest cannot remove it by full path either
        shutil.rmtree("d" * 250)


@pytest.mark.slow
def test_mltk_worker_keeps_chunks_to_its_job_roots(tree, tmp_path):
    """``mltk worker --job-roots``: a chunk of a job whose job.json was edited (roots or not)
    still has a link planted after submission refused, on a real redis-server and worker."""
    import redis as redis_client

    from mltk.jobs import queue
    from tests.conftest import free_port, mltk_executable

    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    root, elsewhere = tree
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    worker = None
    try:
        _wait(lambda: _pings(redis_client.Redis(port=port)), "redis-server")
        folder = JobFolder(root / "job")
        core.create(folder, "colors", [str(root / "in")], {}, broker=url, roots=[str(root)])
        os.unlink(root / "in" / "2.png")
        (root / "in" / "2.png").symlink_to(elsewhere / "secret.png")
        job = json.loads(folder.job_file.read_text())
        job["inputs"]["roots"] = ["/"]  # an edited job.json counts for nothing
        folder.job_file.write_text(json.dumps(job))
        worker = subprocess.Popen(mltk_executable() + ["worker", "--broker", url,
                                                       "--job-roots", str(root)],
                                  stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / "w.log", "w"),  # noqa: SIM115
                                  start_new_session=True)
        queue.enqueue(queue.app_for(url), folder, [0])
        _wait(lambda: folder.is_done(0) or worker.poll() is not None, "the chunk")
        assert folder.is_done(0), (tmp_path / "w.log").read_text()[-2000:]
        records = list(core.results(folder))
        assert [r["error"] for r in records[:2]] == [None, None]
        assert records[2]["error"] == (f"{root / 'in' / '2.png'}: leads outside the job roots "
                                       f"(taken under {root}; refused)")
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(120)
        proc.kill()
        proc.wait(30)


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _wait(condition, what: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_worker_job_roots_are_parsed_as_serves(cli):
    """``--job-roots`` / MLTK_JOB_ROOTS: DIR[,DIR] of absolute folders, else a usage error
    before the broker is tried."""
    r = cli("worker", "--broker", "redis://127.0.0.1:1/0", "--job-roots", "/srv/jobs,relative")
    assert r.exit_code == 2 and "--job-roots[1] must be an absolute folder" in r.output
    r = cli("worker", "--broker", "redis://127.0.0.1:1/0", env={"MLTK_JOB_ROOTS": "jobs"})
    assert r.exit_code == 2 and "--job-roots[0] must be an absolute folder" in r.output
    from mltk.serving.settings import ServeSettings

    assert ServeSettings(models=("colors",), job_roots="/a,/b").job_roots == ("/a", "/b")
