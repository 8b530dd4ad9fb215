"""JSON encoding that understands numpy scalars and arrays, paths and non-finite floats."""

from __future__ import annotations

import json
import math
import os
from typing import Any


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, without importing numpy here
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def clean(obj: Any) -> Any:
    """Replace NaN/inf by None so the output is strict JSON that every parser accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return clean(obj.tolist())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    try:  # the usual case, no NaN or inf anywhere: no walk of the object in Python first
        return json.dumps(obj, default=_default, allow_nan=False, **kwargs)
    except ValueError:  # "Out of range float values": the same text as with NaN/inf as null
        return json.dumps(clean(obj), default=_default, allow_nan=False, **kwargs)


def read_or_none(path: str | os.PathLike[str]) -> Any:
    """The JSON in a file, or None when it is missing, unreadable or not JSON (for optional
    files whose absence a caller handles)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
