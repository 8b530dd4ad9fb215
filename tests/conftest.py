"""Shared fixtures: the CLI through Typer's CliRunner, and the installed ``mltk`` as a process."""

from __future__ import annotations

import os
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
