"""mltk._output: results to stdout in every format, progress only on a terminal."""

from __future__ import annotations

import io
import json
import math
import sys

from mltk._output import Output


def test_emit_json_is_strict_and_streams(monkeypatch):
    import numpy as np

    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    n = Output().emit(iter([{"a": np.float64(1.5), "b": math.nan, "c": [1, 2]}]), "json")
    assert n == 1
    assert json.loads(buf.getvalue()) == [{"a": 1.5, "b": None, "c": [1, 2]}]
    buf.truncate(0)
    buf.seek(0)
    Output().emit([], "json")
    assert json.loads(buf.getvalue()) == []


def test_emit_csv_flattens_nested(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    Output().emit([{"a": 1, "b": {"x": 1}}, {"a": 2, "b": None}], "csv")
    assert buf.getvalue().splitlines() == ["a,b", '1,"{""x"":1}"', "2,"]


def test_progress_is_silent_off_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with Output().progress(10, "working") as bar:
        bar.advance(5)
    assert err.getvalue() == ""
