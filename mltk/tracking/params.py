"""What an MLflow run records about an mltk run, without MLflow: params and data identity.

:func:`flatten` turns resolved settings (nested mappings and lists) into MLflow params, one per
leaf, every key kept (``tuning.space.eta`` -> ``"[0.01, 0.3]"``). :func:`data_identity` names a
data set by its path, its record count and a content hash that is cheap to take: the whole file
up to :data:`FULL_HASH_BYTES`, else its size and its first and last megabytes (said so in the
tag), and for a folder the names and sizes of its files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: MLflow's limit on a param value (longer values are cut, ending in "...").
MAX_PARAM_CHARS = 6000
#: Files up to this size are hashed whole; larger ones by their size, head and tail.
FULL_HASH_BYTES = 64 * 2**20
_BLOCK = 2**20


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": "1", "c": "[1, 2]"}``: every leaf a param.

    Lists stay one value (JSON); None becomes ``"None"`` so a key left unset still shows.
    """
    out: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = _text(value)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, int, float)):
        text = str(value)
    elif isinstance(value, os.PathLike):
        text = os.fspath(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS - 3] + "..."


def content_hash(path: str | os.PathLike) -> str:
    """``sha256:HEX`` of a file up to :data:`FULL_HASH_BYTES`; ``sha256-sampled:HEX`` (size,
    first and last MB) of a larger one; ``sha256-listing:HEX`` (names and sizes) of a folder."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{f.stat().st_size}\n".encode())
        return f"sha256-listing:{h.hexdigest()}"
    size = p.stat().st_size
    with open(p, "rb") as fh:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
            return f"sha256:{h.hexdigest()}"
        h.update(str(size).encode())
        h.update(fh.read(_BLOCK))
        fh.seek(size - _BLOCK)
        h.update(fh.read(_BLOCK))
    return f"sha256-sampled:{h.hexdigest()}"


def data_identity(role: str, path: str | os.PathLike | None, records: int | None = None
                  ) -> dict[str, str]:
    """Tags naming one input: ``mltk.data.ROLE.path``, ``.records``, ``.hash`` (when the path is
    a local file or folder; stdin (``-``) and URLs get no hash)."""
    tags: dict[str, str] = {}
    if path is not None:
        text = os.fspath(path)
        tags[f"mltk.data.{role}.path"] = text if text == "-" or "://" in text else \
            str(Path(text).resolve())
        if text != "-" and "://" not in text and Path(text).exists():
            tags[f"mltk.data.{role}.hash"] = content_hash(text)
    if records is not None:
        tags[f"mltk.data.{role}.records"] = str(int(records))
    return tags


def command_tags(argv: list[str] | tuple[str, ...], command: str) -> dict[str, str]:
    """The command line as tags: ``mltk.command`` (the whole line, shell-quoted) and MLflow's
    own source tags, so the UI shows ``mltk COMMAND`` as the run's source."""
    import shlex

    return {"mltk.command": shlex.join(["mltk", *argv])[:5000],
            "mltk.subcommand": command, "mlflow.source.name": f"mltk {command}",
            "mlflow.source.type": "LOCAL"}
