"""xgb-analyze on a Dask cluster: a real ``dask scheduler`` and two ``dask worker`` processes
on loopback, and ``--dask local:2``; the report against the one-process run's on the same data
and seed; bad input (an unreachable scheduler, parts that differ, a worker killed while the
model trains)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mltk.errors import InputError
from mltk.xgb.cluster import parse_cluster

# Small and quick: one tuning trial (the same first TPE draw in every run with this seed).
FAST = {"booster": "gbtree", "max_evals": 1, "folds": 2, "max_rounds": 200,
        "permutation_repeats": 1, "explain_rows": 2000, "seed": 0}
ROWS, PARTS = 20000, 4


def dask_cli() -> list[str]:
    """The ``dask`` command of this interpreter (not whatever ``dask`` script is on disk: its
    shebang may name another environment, whose workers would run another mltk)."""
    import importlib.util

    assert importlib.util.find_spec("distributed"), \
        "the dask extra is not installed (pip install -e '.[dask]')"
    return [sys.executable, "-m", "dask"]


def write_parts(df: pd.DataFrame, folder: Path, parts: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(df) // parts)
    for i in range(parts):
        df.iloc[i * size:(i + 1) * size].to_parquet(folder / f"part-{i:05d}.parquet",
                                                    index=False)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same 20k generated users as one CSV and as a folder of four Parquet parts; 30k
    fresh users (another seed) to score both models on the same rows; the settings."""
    from mltk.datasets.purchases import generate

    root = tmp_path_factory.mktemp("dask-data")
    df = generate(ROWS, seed=0)
    df.to_csv(root / "users.csv", index=False)
    write_parts(df, root / "parts", PARTS)
    generate(30000, seed=7).to_csv(root / "fresh.csv", index=False)
    (root / "fast.yaml").write_text(yaml.safe_dump({"xgb": FAST}))
    return root


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    import mltk.settings
    from mltk.xgb import analyze, load_table

    out = tmp_path_factory.mktemp("one-process")
    analyze(load_table(data / "users.csv"), "group", mltk.settings.load("xgb", **FAST),
            id_cols=["user_id"]).save(out)
    return out


class Cluster:
    """A scheduler and workers as separate processes, each logging to its own file."""

    def __init__(self, root: Path, workers: int) -> None:
        self.root, self.procs, self.logs = root, [], []
        self.file = root / "scheduler.json"
        self.scheduler = self._start("scheduler", ["scheduler", "--host", "127.0.0.1",
                                                   "--port", "0", "--no-dashboard",
                                                   "--scheduler-file", str(self.file)])
        from distributed import Client

        self.client = Client(scheduler_file=str(self.file), timeout=60)
        self.address = self.client.scheduler.address
        self.workers = [self._start(f"worker-{i}", [
            "worker", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
            "127.0.0.1", "--scheduler-file", str(self.file)]) for i in range(workers)]
        self.client.wait_for_workers(workers, timeout=120)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        self.logs.append(log)
        with open(log, "wb") as fh:
            proc = subprocess.Popen([*dask_cli(), *args], stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        if name == "scheduler":
            wait_for(lambda: self.file.exists() and self.file.stat().st_size > 0, proc, log)
        return proc

    def worker_log(self, i: int) -> str:
        return (self.root / f"worker-{i}.log").read_text(errors="replace")

    def close(self) -> None:
        self.client.close()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(condition, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Until ``condition()``; fails at once if ``proc`` ends first (its log shown)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"{log.name} ended ({proc.returncode}):\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting; {log.name}:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)  # polling a condition, not synchronising on time


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"), workers=2)
    yield c
    c.close()


def check_like_one_process(out: Path, one_process: Path, data: Path, top_n: int = 3,
                           split_auc: float = 0.005) -> dict:
    """The distributed report has the one-process report's structure; the same test rows
    and the same tuning sample (both keyed by row position and seed, whatever the
    partitioning), so the same tuning trials (parameters, rounds, CV scores); its model's
    AUC within 0.005 of the one-process model's on the same fresh rows and within
    ``split_auc`` on the shared test rows; the same ``top_n`` features; returns the
    distributed report."""
    from sklearn.metrics import roc_auc_score

    from mltk.xgb import TwoGroupModel

    ours = json.loads((out / "report.json").read_text())
    theirs = json.loads((one_process / "report.json").read_text())
    assert set(ours) - {"cluster"} == set(theirs)
    for key in ("data", "metrics", "tuning", "regression"):
        assert set(ours[key]) == set(theirs[key]), key
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in one_process.iterdir())
    assert ours["data"]["rows"] == ROWS and ours["data"]["features"] == theirs["data"][
        "features"]
    for key in ("train_rows", "test_rows", "tune_rows"):
        assert ours["data"][key] == theirs["data"][key], key
    scored = pd.read_csv(out / "test_predictions.csv")
    assert len(scored) == ours["data"]["test_rows"] and scored["row"].is_monotonic_increasing
    one_scored = pd.read_csv(one_process / "test_predictions.csv")
    assert scored["row"].tolist() == one_scored["row"].tolist()  # the same hold-out
    assert scored["y_true"].tolist() == one_scored["y_true"].tolist()
    assert ours["tuning"]["params"] == theirs["tuning"]["params"]
    assert ours["tuning"]["rounds"] == theirs["tuning"]["rounds"]
    trials = [pd.read_csv(d / "trials.csv").drop(columns=["seconds"]) for d in (out,
                                                                                one_process)]
    pd.testing.assert_frame_equal(*trials)  # the same sample, so the same trials
    top = [{f["feature"] for f in r["importance"][:top_n]} for r in (ours, theirs)]
    assert top[0] == top[1]
    fresh = pd.read_csv(data / "fresh.csv")
    y = fresh["group"] == "one_time"
    auc = [roc_auc_score(y, TwoGroupModel(d).score(fresh)["probability"])
           for d in (out, one_process)]
    assert abs(auc[0] - auc[1]) < 0.005, auc
    assert abs(ours["metrics"]["roc_auc"] - theirs["metrics"]["roc_auc"]) < split_auc
    return ours


@pytest.mark.slow
def test_analysis_on_a_running_scheduler(cluster, data, one_process, tmp_path, mltk_proc):
    result = mltk_proc("xgb-analyze", data / "parts", "--target", "group", "--id-cols",
                     "user_id", "--config", data / "fast.yaml", "--out", tmp_path / "out",
                     env={"MLTK_DASK_SCHEDULER": cluster.address})
    assert result.returncode == 0, result.stderr
    report = check_like_one_process(tmp_path / "out", one_process, data)
    where = report["cluster"]
    assert where["scheduler"] == cluster.address and where["workers"] == 2
    assert where["partitions"] == PARTS and where["rows_read"] == ROWS
    # The workers trained the model together: each one took a rank in XGBoost's collective.
    for i in range(2):
        assert "got rank" in cluster.worker_log(i), cluster.worker_log(i)[-2000:]
    assert "Dask cluster" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_analysis_on_a_local_cluster(data, one_process, tmp_path, mltk_proc):
    result = mltk_proc("xgb-analyze", data / "parts", "--target", "group", "--id-cols",
                     "user_id", "--config", data / "fast.yaml", "--out", tmp_path / "out",
                     "--dask", "local:2")
    assert result.returncode == 0, result.stderr
    report = check_like_one_process(tmp_path / "out", one_process, data)
    workers = report["cluster"]["worker_addresses"]
    assert len(workers) == 2 and report["cluster"]["scheduler"] not in workers
    # Each worker process of the LocalCluster logged its rank in the training collective.
    for address in workers:
        assert f"{address} got rank" in result.stderr, result.stderr[-3000:]


def rank_lines(cluster: Cluster) -> list[int]:
    """How many XGBoost collectives each worker has joined so far (one per training)."""
    return [cluster.worker_log(i).count("got rank") for i in range(2)]


@pytest.mark.slow
def test_tuning_trials_train_on_the_cluster_when_asked(cluster, data, tmp_path, mltk_proc):
    """--tune-on cluster: each of the two trials is an xgboost.dask training that both
    workers join (then the refit: three collectives each), validated on 1/folds of the
    whole table's training rows of each class, keyed by row like the hold-out (not a share
    of each partition); the report says so."""
    before = rank_lines(cluster)
    result = mltk_proc("xgb-analyze", data / "parts", "--target", "group", "--id-cols",
                       "user_id", "--config", data / "fast.yaml", "--max-evals", "2",
                       "--tune-on", "cluster", "--scheduler", cluster.address,
                       "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert [a - b for a, b in zip(rank_lines(cluster), before, strict=True)] == [3, 3]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    tuned = report["cluster"]["tuning"]
    assert tuned["on"] == "cluster" and tuned["trials"] == 2 == report["tuning"]["trials"]
    train = report["data"]["train_rows"]
    assert tuned["fit_rows"] + tuned["validation_rows"] == train
    from mltk.xgb.split import quotas

    groups = pd.read_csv(data / "users.csv")["group"].eq("one_time").value_counts()
    held = pd.read_csv(tmp_path / "out" / "test_predictions.csv")["y_true"].value_counts()
    n_train = {c: int(groups[bool(c)] - held.get(c, 0)) for c in (0, 1)}
    assert tuned["validation_rows"] == sum(quotas(n_train, 1 / FAST["folds"]).values())
    assert report["data"]["tune_rows"] == tuned["fit_rows"]
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 2 and (trials["cv_auc_mean"] > 0.8).all()
    assert report["metrics"]["roc_auc"] > 0.8
    assert "every tuning trial was trained by the workers" in (
        tmp_path / "out" / "report.md").read_text()
    config = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert config["tune_on"] == "cluster"


@pytest.mark.slow
def test_onehot_categoricals_on_the_cluster(cluster, data, tmp_path, mltk_proc):
    """--categorical onehot: each partition one-hot encoded with the whole table's levels;
    the same columns, tuned parameters and top features as the one-process onehot run, and
    the model scores new rows alike."""
    import mltk.settings
    from mltk.xgb import analyze, load_table

    one = tmp_path / "one"
    analyze(load_table(data / "users.csv"), "group",
            mltk.settings.load("xgb", **FAST, categorical="onehot"),
            id_cols=["user_id"]).save(one)
    result = mltk_proc("xgb-analyze", data / "parts", "--target", "group", "--id-cols",
                       "user_id", "--config", data / "fast.yaml", "--categorical", "onehot",
                       "--scheduler", cluster.address, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    # One-hot, the third feature is a close call between pages_viewed_30d and
    # days_since_signup: the top two.
    report = check_like_one_process(tmp_path / "out", one, data, top_n=2)
    assert "main_category=home" in report["data"]["features"]
    assert "main_category" not in report["data"]["features"]
    assert report["cluster"]["tuning"] == {"on": "sample", "rows": report["data"]["tune_rows"]}


def test_tuning_on_the_cluster_needs_one(tmp_path, cli):
    import mltk.settings
    from mltk.xgb import analyze

    never = tmp_path / "never-read.csv"
    result = cli("xgb-analyze", never, "--target", "g", "--tune-on", "cluster")
    assert result.exit_code == 2 and "tuning on the cluster needs one" in result.stderr
    result = cli("xgb-analyze", never, "--target", "g", "--tune-on", "everywhere")
    assert result.exit_code == 2 and "--tune-on" in result.stderr
    with pytest.raises(InputError, match="needs a Dask cluster"):
        analyze(pd.DataFrame({"g": [0, 1] * 10, "x": range(20)}), "g",
                mltk.settings.load("xgb", tune_on="cluster"))


@pytest.mark.slow
def test_predict_scores_each_part_on_the_cluster_and_a_rerun_skips_done_parts(
        cluster, data, one_process, tmp_path, mltk_proc):
    from mltk.xgb import TwoGroupModel

    out = tmp_path / "scores"
    args = ("xgb-predict", one_process, data / "parts", "--scheduler", cluster.address,
            "--out", out, "-f", "json")
    result = mltk_proc(*args)
    assert result.returncode == 0, result.stderr
    parts = json.loads(result.stdout)
    assert [p["status"] for p in parts] == ["scored"] * PARTS
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"part-{i:05d}.parquet" for i in range(PARTS)]  # no temporary left
    scored = pd.concat([pd.read_parquet(out / n) for n in names], ignore_index=True)
    expected = TwoGroupModel(one_process).score(pd.read_csv(data / "users.csv"))
    pd.testing.assert_frame_equal(scored, expected.reset_index(drop=True))
    before = {n: (out / n).stat().st_mtime_ns for n in names}
    (out / names[2]).unlink()
    result = mltk_proc(*args)
    assert result.returncode == 0, result.stderr
    assert [p["status"] for p in json.loads(result.stdout)] == ["skipped"] * 3 + ["scored"]
    assert "1 part(s) scored (5,000 rows), 3 already done" in result.stderr
    for n in names:
        assert ((out / n).stat().st_mtime_ns == before[n]) == (n != names[2])
    # A part the model cannot score is named, with the row and column, and leaves no output.
    bad = tmp_path / "bad"
    write_parts(pd.read_csv(data / "users.csv").head(200), bad, 2)
    pd.read_parquet(bad / "part-00001.parquet").assign(sessions_30d="many").to_parquet(
        bad / "part-00001.parquet")
    result = mltk_proc("xgb-predict", one_process, bad, "--scheduler", cluster.address,
                       "--out", tmp_path / "bad-out")
    assert result.returncode == 1
    assert "part-00001.parquet" in result.stderr and "'many' is not a number" in result.stderr
    assert not (tmp_path / "bad-out" / "part-00001.parquet").exists()


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_one_line_error(data, mltk_proc):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    result = mltk_proc("xgb-analyze", data / "parts", "--target", "group", "--scheduler",
                     address, "--out", data / "never", env={"MLTK_DASK_CONNECT_TIMEOUT": "2"},
                     timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and address in lines[0], lines
    assert not (data / "never").exists()


@pytest.mark.slow
def test_a_worker_killed_during_training_stops_the_run(tmp_path, mltk_proc):
    """DART on 240k rows trains for long enough to kill a worker once it holds its rank
    (tuning on 2,000 rows with a short rounds cap)."""
    from mltk.datasets.purchases import generate

    write_parts(generate(300_000, seed=1), tmp_path / "parts", PARTS)
    (tmp_path / "dart.yaml").write_text(yaml.safe_dump({"xgb": {
        "booster": "dart", "max_evals": 1, "folds": 2, "tune_rows": 2000,
        "dart_max_rounds": 60, "early_stopping": 60}}))
    c = Cluster(tmp_path, workers=2)
    try:
        env = {"MLTK_DASK_SCHEDULER": c.address}
        cmd = ["xgb-analyze", tmp_path / "parts", "--target", "group", "--config",
               tmp_path / "dart.yaml", "--out", tmp_path / "out"]
        from tests.conftest import mltk_executable

        with open(tmp_path / "mltk.log", "wb") as log:
            proc = subprocess.Popen(mltk_executable() + [str(a) for a in cmd], stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, **env})
        victim = c.workers[1]
        wait_for(lambda: "got rank" in c.worker_log(1), proc, tmp_path / "mltk.log",
                 timeout=600)
        os.killpg(victim.pid, signal.SIGKILL)
        assert proc.wait(timeout=300) == 1
        text = (tmp_path / "mltk.log").read_text()
        assert "Error: worker tcp://127.0.0.1:" in text and "left the Dask cluster during " \
            "training" in text, text[-2000:]
        assert not (tmp_path / "out" / "report.json").exists()
        assert not (tmp_path / "out" / "config.yaml").exists()
    finally:
        c.close()


def test_parts_with_other_columns_or_types_are_named(tmp_path, cli):
    """Checked from the parts' metadata before any cluster is reached (none is running)."""
    from mltk.datasets.purchases import generate

    df = generate(300, seed=0)
    parts = write_parts(df, tmp_path / "parts", 3)
    df.iloc[:100].drop(columns=["noise_a"]).to_parquet(parts / "part-00001.parquet")
    result = cli("xgb-analyze", parts, "--target", "group", "--scheduler",
                 "tcp://127.0.0.1:9", "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "part-00001.parquet" in result.stderr and "missing 'noise_a'" in result.stderr
    df.iloc[:100].assign(sessions_30d="many").to_parquet(parts / "part-00001.parquet")
    result = cli("xgb-analyze", parts, "--target", "group", "--dask", "local:2")
    assert result.exit_code == 1
    assert "part-00001.parquet" in result.stderr
    assert "'sessions_30d' is text, not number" in result.stderr


def test_cluster_arguments_are_checked_before_any_work(tmp_path, cli):
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster(" tcp://10.0.0.5:8786 ") == ("scheduler", "tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "http://x:1"):
        with pytest.raises(InputError):
            parse_cluster(bad)
    never = tmp_path / "never-read.csv"
    result = cli("xgb-analyze", never, "--target", "g", "--dask", "local:two")
    assert result.exit_code == 2 and "local:N" in result.stderr
    result = cli("xgb-analyze", never, "--target", "g", "--dask", "local:2", "--scheduler",
                 "tcp://127.0.0.1:8786")
    assert result.exit_code == 2 and "not both" in result.stderr
    result = cli("xgb-analyze", never, "--target", "g", "--dask", "local:2",
                 "--external-memory")
    assert result.exit_code == 2
    result = cli("xgb-analyze", tmp_path / "nothing-here", "--target", "g", "--dask", "local:2")
    assert result.exit_code == 1 and "no such file or folder" in result.stderr


def test_the_kubernetes_job_points_at_the_operators_scheduler_service():
    """configs/k8s/dask: the Job's MLTK_DASK_SCHEDULER is the Service the dask-kubernetes
    operator makes for the DaskCluster (<name>-scheduler, the tcp-comm port), and every pod
    mounts the volume the data is read from (the manifests' schemas: tests/test_deploy.py)."""
    root = Path(__file__).resolve().parent.parent / "configs" / "k8s" / "dask"
    docs = [d for f in sorted(root.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
            if d]
    by_kind = {d["kind"]: d for d in docs}
    cluster, job = by_kind["DaskCluster"], by_kind["Job"]
    port = next(p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]
                if p["name"] == "tcp-comm")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MLTK_DASK_SCHEDULER"] == f"tcp://{cluster['metadata']['name']}-scheduler:{port}"
    assert parse_cluster(env["MLTK_DASK_SCHEDULER"])[0] == "scheduler"
    claim = by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    for spec in (pod, cluster["spec"]["worker"]["spec"]):
        assert [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]] == [claim]
    assert pod["containers"][0]["command"] == ["mltk", "xgb-analyze"]


def test_each_partition_is_typed_and_split_as_the_whole_table_says():
    """The partition-wise stages in-process (no cluster): one schema from the summaries of
    every partition, categories typed with the table's levels, rows numbered across
    partitions, and the stratified hold-out of the whole table (keyed by row position and
    seed) marked per partition: the one-process split's rows."""
    import numpy as np

    import mltk.settings
    from mltk.xgb.distributed import (
        ROW,
        TEST,
        Y,
        build_schema,
        mark_part,
        model_part,
        summarize_part,
    )
    from mltk.xgb.split import TEST_STREAM, select, thresholds_over

    a = pd.DataFrame({"g": ["x"] * 30 + ["y"] * 10, "c": ["red"] * 40, "n": np.arange(40.0),
                      "k": ["p", "q"] * 20})
    b = pd.DataFrame({"g": ["x"] * 15 + ["y"] * 5 + [None], "c": ["red"] * 21,
                      "n": [1.0] * 21, "k": ["r"] * 21})
    schema = build_schema([summarize_part(p, "g") for p in (a, b)], "g", (), None)
    assert (schema.positive, schema.negative) == ("y", "x")  # the minority group
    assert schema.dropped == {"c": "constant"} and schema.features == ["n", "k"]
    assert schema.categories == {"k": ["p", "q", "r"]} and schema.rows == [40, 21]
    s = mltk.settings.load("xgb", test_size=0.2, seed=3)
    parts = [model_part(p, schema, "g", (), partition_info={"number": i})
             for i, p in enumerate((a, b))]
    assert list(parts[1][ROW]) == list(range(40, 60))  # the row without a target is dropped
    assert list(parts[1]["k"].cat.categories) == ["p", "q", "r"]
    split = thresholds_over(lambda: ((p[ROW], p[Y]) for p in parts), s.seed, TEST_STREAM,
                            s.test_size)[0]
    marked = pd.concat([mark_part(p, TEST, s.seed, TEST_STREAM, split) for p in parts])
    test = marked[marked[TEST]]
    assert (test[Y] == 0).sum() == round(45 * 0.2) and (test[Y] == 1).sum() == 15 * 0.2
    one = select(marked[ROW], marked[Y], s.seed, TEST_STREAM, s.test_size)
    assert test[ROW].tolist() == marked[ROW].to_numpy()[one].tolist()  # one process's rows
    with pytest.raises(InputError, match="must be binary"):
        build_schema([summarize_part(a.assign(g=["x", "y", "z", "x"] * 10), "g")], "g", (),
                     None)


def test_each_input_part_has_its_own_output_name(tmp_path):
    from mltk.xgb.scoring import output_names

    (tmp_path / "date=2026-01-01").mkdir()
    files = [tmp_path / "date=2026-01-01" / "part-0.parquet", tmp_path / "part-0.parquet"]
    assert output_names(files, tmp_path) == ["date=2026-01-01__part-0.parquet",
                                             "part-0.parquet"]
    assert output_names([tmp_path / "a.csv.gz"], tmp_path / "a.csv.gz") == ["a.parquet"]
    with pytest.raises(InputError, match="share an output name"):
        output_names([tmp_path / "x" / "p.parquet", tmp_path / "y" / "p.parquet"],
                     str(tmp_path / "*" / "p.parquet"))


def test_each_partition_one_hot_encodes_with_the_whole_tables_levels():
    """A partition without some level still gets that level's column (all zeros), in the
    order the model was trained with."""
    import numpy as np

    from mltk.xgb.distributed import ModelInputs, build_schema, summarize_part

    a = pd.DataFrame({"g": ["x", "y"] * 4, "k": ["p", "q", "r", "p"] * 2, "n": np.arange(8.0)})
    b = a.assign(k=["p"] * 7 + [None])
    schema = build_schema([summarize_part(p, "g") for p in (a, b)], "g", (), None)
    model = ModelInputs(schema, native=False)
    assert model.features == ["n", "k=p", "k=q", "k=r"]
    typed = b.assign(k=pd.Categorical(b["k"], categories=["p", "q", "r"]))
    X = model.of(typed)
    assert list(X.columns) == model.features
    assert X["k=p"].tolist() == [1.0] * 7 + [0.0] and X["k=r"].sum() == 0


def test_dart_trains_on_a_plain_matrix_and_gbtree_on_a_quantile_one(cluster):
    """DART predicts its training rows with every tree each round: on bins only (a quantile
    matrix) that is much slower, so DART gets a ``DaskDMatrix``; gbtree a
    ``DaskQuantileDMatrix`` made with the tuned ``max_bin``."""
    import dask.dataframe as dd
    import xgboost.dask as dxgb

    from mltk.xgb.cluster import training_matrix

    X = dd.from_pandas(pd.DataFrame({"a": [float(i % 7) for i in range(400)]}), npartitions=2)
    y = dd.from_pandas(pd.Series([i % 2 for i in range(400)]), npartitions=2)
    dart = training_matrix(cluster.client, X, y, {"booster": "dart", "max_bin": 64}, True)
    assert type(dart) is dxgb.DaskDMatrix
    gbtree = training_matrix(cluster.client, X, y, {"booster": "gbtree", "max_bin": 64}, True)
    assert isinstance(gbtree, dxgb.DaskQuantileDMatrix) and gbtree.max_bin == 64
    valid = training_matrix(cluster.client, X, y, {"booster": "gbtree", "max_bin": 64}, True,
                            ref=gbtree)
    assert isinstance(valid, dxgb.DaskQuantileDMatrix)
    booster = dxgb.train(cluster.client, {"booster": "dart", "max_depth": 2}, dart, 3)["booster"]
    assert booster.num_boosted_rounds() == 3
