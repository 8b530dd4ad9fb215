"""Shared fixtures: the CLI through Typer's CliRunner, and the installed ``mltk`` as a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mltk.cli import app

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def cli():
    """Invoke the app in-process: ``cli("colors", "x.jpg", input=...)`` -> Result."""

    def invoke(*args: str, input: str | None = None, env: dict | None = None):
        runner = CliRunner()
        return runner.invoke(app, [str(a) for a in args], input=input, env=env)

    return invoke


def mltk_executable() -> list[str]:
    exe = Path(sys.executable).with_name("mltk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mltk"]


@pytest.fixture
def mltk_proc():
    """Run the installed ``mltk`` console script as a subprocess."""

    def run(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 600,
            cwd: str | os.PathLike | None = None):
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(mltk_executable() + [str(a) for a in args], input=input,
                              capture_output=True, text=True, env=full_env, timeout=timeout,
                              cwd=cwd)

    return run


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """300 real digit scans as class folders of JPEGs (built once per session)."""
    from mltk.datasets import make

    out = tmp_path_factory.mktemp("digits")
    make("labelled-images", out, n=300, seed=0)
    return out


def wait_until_queued(url: str, model: str, depth: int) -> None:
    """Wait until the server at ``url`` reports ``depth`` inputs queued for ``model`` on
    /metrics (the condition; 120 s at most)."""
    import time

    import httpx

    end = time.monotonic() + 120
    while time.monotonic() < end:
        if f'mltk_queue_depth{{model="{model}"}} {float(depth)}' in httpx.get(
                url + "/metrics").text:
            return
        time.sleep(0.05)
    raise AssertionError(f"{depth} inputs of {model!r} never queued")


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def cancer_model(tmp_path_factory):
    """A quick xgb-analyze model of the breast-cancer data (id column ``patient``) in
    ``ROOT/model``, and 50 of its rows without the target in ``ROOT/rows.csv``."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from mltk import settings
    from mltk.xgb import analyze

    root = tmp_path_factory.mktemp("cancer")
    df = load_breast_cancer(as_frame=True).frame
    df["diagnosis"] = np.where(df.pop("target") == 1, "benign", "malignant")
    df.insert(0, "patient", [f"p{i}" for i in range(len(df))])
    analyze(df, "diagnosis", settings.load("xgb", max_evals=2, max_rounds=40, folds=3,
                                           booster="gbtree"), id_cols=["patient"]
            ).save(root / "model")
    df.drop(columns=["diagnosis"]).head(50).to_csv(root / "rows.csv", index=False)
    return root


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, digits_dir):
    """A small_cnn run folder (3 training steps, 32 px) from the installed ``mltk train``."""
    from mltk.tfrecords import BuildOptions, build

    root = tmp_path_factory.mktemp("digits-run")
    build(digits_dir, root / "shards", BuildOptions(split={"train": 1.0}, shards=2, seed=0))
    proc = subprocess.run(mltk_executable() + [
        "train", "--data", str(root / "shards"), "--out", str(root / "run"), "--model",
        "small_cnn", "--image-size", "32", "--gpus", "0", "--seed", "1", "--steps", "3"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


@pytest.fixture(scope="session")
def digit_shards(tmp_path_factory):
    """1000 real digit scans as mltk shards: train 700 (21 steps of 32), validation and test
    about 150 each, 7 shards. Shared read-only by the training tests."""
    from mltk.datasets import make
    from mltk.tfrecords import BuildOptions, build

    root = tmp_path_factory.mktemp("digit-shards")
    make("labelled-images", root / "img", n=1000, seed=0)
    build(root / "img", root / "shards",
          BuildOptions(split={"train": 0.7, "validation": 0.15, "test": 0.15}, shards=7,
                       seed=0))
    return root / "shards"
