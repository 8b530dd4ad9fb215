"""The ``embed`` job kind: per-image vectors on the jobs machinery, merged into the vectors
folder ``mltk embed`` writes (same ids, same vectors, same PCA), and ``index build`` reads it.

The merge step runs in-process on real vectors (fast); the whole job runs as the installed
``mltk jobs submit`` against ``mltk embed`` on a real trained run (slow).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from mltk.similar import read_vectors
from tests.conftest import mltk_executable


def mltk(*args, timeout=600):
    return subprocess.run(mltk_executable() + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout)


def record(path: str, vector: np.ndarray | None, error: str | None = None) -> dict:
    if vector is None:
        return {"path": path, "dim": None, "vector": None, "error": error}
    v = np.asarray(vector, "<f4")
    return {"path": path, "dim": len(v), "vector": base64.b64encode(v.tobytes()).decode(),
            "error": None}


def test_the_final_step_merges_parts_in_order_with_one_pca(tmp_path):
    from mltk.jobs import kinds
    from mltk.similar import l2_normalize
    from mltk.similar.embed import from_rows

    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(40, 12)))
    records = [record(f"img/{i:02d}.jpg", x[i]) for i in range(40)]
    records.insert(7, record("img/broken.jpg", None, "not an image (unrecognised format)"))
    out = tmp_path / "vectors"
    job = {"id": "j1", "kind": "embed", "inputs": {"run_dir": str(tmp_path / "run"),
                                                   "out": str(out)},
           "settings": {"batch_size": 64, "dim": 5, "whiten": False, "seed": 3},
           "model": {"identity": "abc123"}}
    summary = kinds.finalize(job, records, 1.5)
    assert {k: summary[k] for k in ("embedded", "failed", "dim", "input_dim")} == {
        "embedded": 40, "failed": 1, "dim": 5, "input_dim": 12}
    vs = read_vectors(out)
    assert vs.ids.tolist() == [f"img/{i:02d}.jpg" for i in range(40)]
    want = from_rows(x, [f"img/{i:02d}.jpg" for i in range(40)], [], model="m",
                     identity="abc123", dim=5, seed=3)
    np.testing.assert_array_equal(vs.vectors, want.vectors)  # one PCA over all, same seed
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["identity"] == "abc123" and config["job"] == "j1"
    assert config["pca"]["dim"] == 5 and (out / "pca.npz").exists()
    stamp = (out / "config.yaml").stat().st_mtime_ns
    assert kinds.finalize(job, records, 2.0)["embedded"] == 40  # again: nothing rewritten
    assert (out / "config.yaml").stat().st_mtime_ns == stamp


def test_embed_options_are_checked_before_anything_runs(tmp_path):
    from mltk.errors import InputError
    from mltk.jobs import kinds

    with pytest.raises(InputError, match="vectors must be text"):
        kinds.check_options("embed", {"vectors": 3})
    with pytest.raises(InputError, match="not an option of embed: top_k"):
        kinds.check_options("embed", {"top_k": 3})
    with pytest.raises(InputError, match="embed: give RUN_DIR and image files"):
        kinds.plan("embed", [str(tmp_path)], {"vectors": str(tmp_path / "v")})


@pytest.mark.slow
def test_embed_job_equals_mltk_embed(digits_run, digits_dir, tmp_path):
    images = sorted(digits_dir.rglob("*.jpg"))[:40]
    (tmp_path / "imgs").mkdir()
    for i, f in enumerate(images):
        shutil.copy(f, tmp_path / "imgs" / f"{i:03d}.jpg")
    (tmp_path / "imgs" / "020b.jpg").write_bytes(b"not an image")
    one = mltk("embed", digits_run, tmp_path / "imgs", "--dim", "8", "--seed", "2",
               "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    job = tmp_path / "job"
    submit = ("jobs", "submit", "embed", digits_run, tmp_path / "imgs", "--vectors",
              tmp_path / "two", "--dim", "8", "--seed", "2", "--out", job, "--chunk-size", "9")
    r = mltk(*submit, "-j", "2")
    assert r.returncode == 0, r.stderr
    assert "41 items in 5 chunks" in r.stderr
    assert "wrote 40 vectors (8 dims)" in r.stderr and "(1 images failed)" in r.stderr
    a, b = read_vectors(tmp_path / "one"), read_vectors(tmp_path / "two")
    assert b.ids.tolist() == a.ids.tolist() and len(a) == 40
    np.testing.assert_allclose(b.vectors, a.vectors, atol=1e-4)
    ca = yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())
    cb = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())
    assert cb.pop("job") and cb == ca  # model, identity, pca, input_dim: the same
    records = [json.loads(ln) for ln in mltk("jobs", "results", job).stdout.splitlines()]
    assert [rec["path"] for rec in records][21] == str(tmp_path / "imgs" / "020b.jpg")
    assert records[21]["error"] == "not an image (unrecognised format)"
    stamp = (tmp_path / "two" / "config.yaml").stat().st_mtime_ns
    again = mltk(*submit)
    assert again.returncode == 0 and "5 done already" in again.stderr
    assert (tmp_path / "two" / "config.yaml").stat().st_mtime_ns == stamp
    built = mltk("index", "build", tmp_path / "two", "--out", tmp_path / "idx", "-f", "json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)[0]["count"] == 40
    ids = pd.read_parquet(tmp_path / "two" / "ids.parquet")["id"].tolist()
    assert ids[0] == str(tmp_path / "imgs" / "000.jpg")


def test_post_jobs_embed_takes_a_served_model_and_writes_only_under_job_roots(tmp_path):
    from mltk.serving import job_requests
    from mltk.serving.codecs import CodecError

    root = str(tmp_path)
    body = {"kind": "embed", "args": ["digits", f"{root}/photos"], "out": f"{root}/job",
            "options": {"vectors": "/elsewhere/vectors", "dim": 8}}
    with pytest.raises(CodecError, match="options.vectors: '/elsewhere/vectors' is not under"):
        job_requests.parse(body, ["digits=/models/run"], [root])
    req = job_requests.parse({**body, "options": {"vectors": f"{root}/v", "dim": 8}},
                             ["digits=/models/run"], [root])
    assert req.args == ["/models/run", f"{root}/photos"] and req.options["dim"] == 8
    with pytest.raises(CodecError, match="by the name this server serves it under"):
        job_requests.parse({**body, "args": ["/models/run", f"{root}/photos"]},
                           ["digits=/models/run"], [root])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None
                    and os.environ.get("MLTK_REQUIRE_REDIS") != "1",
                    reason="redis-server is not installed; MLTK_REQUIRE_REDIS=1 makes this a "
                    "failure")
def test_embed_job_on_workers_is_merged_by_the_last_chunk(digits_run, digits_dir, tmp_path):
    from tests.test_jobs import Redis, Worker, wait_for

    redis = Redis()
    workers = [Worker(redis.url, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        r = mltk("jobs", "submit", "embed", digits_run, sorted(digits_dir.iterdir())[0],
                 "--vectors", tmp_path / "v", "--out", tmp_path / "job", "--chunk-size", "10",
                 "--broker", redis.url)
        assert r.returncode == 0, r.stderr
        # nobody waits: the worker of the last chunk writes the vectors folder
        wait_for(lambda: (tmp_path / "v" / "config.yaml").exists(), "the vectors", every=0.2)
        vs = read_vectors(tmp_path / "v")
        assert vs.ids.tolist() == [str(p) for p in sorted(sorted(digits_dir.iterdir())[0]
                                                          .glob("*.jpg"))]
        np.testing.assert_allclose(np.linalg.norm(vs.vectors, axis=1), 1.0, atol=1e-5)
    finally:
        for w in workers:
            assert w.stop() == 0, w.log.read_text()[-2000:]
        redis.stop()
