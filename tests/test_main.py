"""``python -m mltk`` (mltk/__main__.py), run in this process as Python runs it: the same
commands and exit codes as the ``mltk`` console script."""

from __future__ import annotations

import runpy
import sys

import pytest


def run_module(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["python -m mltk", *args])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_module("mltk", run_name="__main__")
    return stopped.value.code


def test_python_dash_m_mltk_is_the_cli(monkeypatch, capsys):
    assert run_module(monkeypatch, "--help") == 0
    out = capsys.readouterr().out
    assert "Usage:" in out and all(c in out for c in ("colors", "serve", "train", "jobs"))
    assert run_module(monkeypatch, "no-such-command") == 2
    assert "No such command 'no-such-command'" in capsys.readouterr().err
