"""mltk._atomic: artefacts written to a temporary name and renamed when complete."""

from __future__ import annotations

import pytest

from mltk import _atomic


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    _atomic.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with _atomic.atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
