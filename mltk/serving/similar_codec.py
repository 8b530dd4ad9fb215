"""Wire formats of a similarity index's queries (predictor kind ``similar``), no HTTP here.

SageMaker bodies, one query per input:

- an image (``image/jpeg``, ``image/png``, ... ): one image query;
- ``application/x-npy``: a vector, or a matrix of one vector a row;
- JSON (``{"instances": [...]}``, a list, or one instance) and JSON Lines: each instance an
  id (text or a number), a list of numbers (a vector), or an object with one of ``id``,
  ``vector``, ``b64`` (an image, base64) and optionally ``k`` and ``where`` (a bare list of
  numbers is one vector);
- CSV: a row of one cell is an id, a row of several numbers a vector.

V2: one of the inputs ``id`` (BYTES), ``image`` (BYTES) or ``vector`` (FP32, ``[n, dim]``),
with optional ``k`` (INT64) and ``where`` (BYTES), one value for all queries or one each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mltk.serving.codecs import (
    CSV,
    IMAGE_TYPES,
    JSON,
    JSONLINES,
    NPY,
    CodecError,
    b64_bytes,
    load_json,
)

OFFERED = ("image/jpeg, image/png, application/x-npy, application/json, "
           "application/jsonlines, text/csv")


def decode(mt: str, body: bytes) -> list[Any]:
    """Queries for the predictor, from a body of media type ``mt``."""
    if mt in IMAGE_TYPES:
        if not body:
            raise CodecError(400, "empty body: send the image bytes")
        return [body]
    readers = {NPY: _npy, JSON: _json, JSONLINES: _jsonlines, CSV: lambda b: _csv(_text(b))}
    if mt not in readers:
        raise CodecError(415, f"content type {mt or '(none)'!r} not accepted by this model; "
                         f"use {OFFERED}")
    return readers[mt](body)


def _json(body: bytes) -> list[Any]:
    doc = load_json(_text(body))
    if isinstance(doc, Mapping) and "instances" in doc:
        items = doc["instances"]
        if not isinstance(items, list):
            raise CodecError(400, "'instances' must be a list")
    else:  # a bare list of numbers is one vector
        items = doc if isinstance(doc, list) and not _is_vector(doc) else [doc]
    if not items:
        raise CodecError(400, "no instances in the request")
    return [_query(v, f"instance {i + 1}") for i, v in enumerate(items)]


def _jsonlines(body: bytes) -> list[Any]:
    lines = [(n, line) for n, line in enumerate(_text(body).splitlines(), 1) if line.strip()]
    if not lines:
        raise CodecError(400, "no lines in the request")
    return [_query(_line(line, n), f"line {n}") for n, line in lines]


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CodecError(400, f"the body is not UTF-8 text (byte {exc.start})") from None


def _line(line: str, n: int) -> Any:
    try:
        return load_json(line)
    except CodecError as exc:
        raise CodecError(400, f"line {n}: {exc}") from None


def _is_vector(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _query(value: Any, where: str) -> Any:
    if _is_vector(value):
        return {"vector": value}
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return {"id": value}
    if not isinstance(value, Mapping):
        raise CodecError(400, f"{where}: expected an id, a vector or an object with id, "
                         "vector or b64")
    query = {k: value[k] for k in ("id", "vector", "k", "where") if k in value}
    if "item_id" in value and "id" not in query:
        query["id"] = value["item_id"]
    image = value.get("b64", value.get("image"))
    if image is not None:
        query["image"] = _b64(image, where)
    return query


def _b64(value: Any, where: str) -> bytes:
    return b64_bytes(value, where, "an image is base64 text")


def _npy(body: bytes) -> list[dict[str, Any]]:
    import io

    import numpy as np

    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CodecError(400, f"not a .npy array ({exc})") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise CodecError(400, f"expected a matrix of numbers (one vector a row), got shape "
                         f"{tuple(arr.shape)} of {arr.dtype}")
    return [{"vector": row} for row in arr.astype(np.float32)]


def _csv(text: str) -> list[dict[str, Any]]:
    import csv
    import io

    from mltk._numbers import parse_cell

    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise CodecError(400, f"invalid CSV: {exc}") from None
    if rows and [c.strip() for c in rows[0]] in (["id"], ["item_id"]):
        rows = rows[1:]
    if not rows:
        raise CodecError(400, "no rows in the CSV body")
    out: list[dict[str, Any]] = []
    for n, row in enumerate(rows, 1):
        cells = [parse_cell(c) for c in row]
        if len(cells) == 1:
            out.append({"id": cells[0]})
        elif all(isinstance(c, (int, float)) for c in cells):
            out.append({"vector": cells})
        else:
            raise CodecError(400, f"line {n}: {len(cells)} fields: give one id, or a vector "
                             "of numbers")
    return out


# -- V2 tensors -------------------------------------------------------------------------------
def v2_items(values: Mapping[str, list[Any]], req: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Queries from decoded V2 input tensors (``values``: name -> flat list)."""
    unknown = [k for k in values if k not in ("id", "image", "vector", "k", "where")]
    if unknown:
        raise CodecError(400, f"unknown input(s) {', '.join(map(repr, unknown))}: the model "
                         "takes id, image or vector, and k and where")
    given = [k for k in ("id", "image", "vector") if k in values]
    if len(given) != 1:
        raise CodecError(400, "give one of the inputs id, image or vector")
    kind = given[0]
    if kind == "vector":
        firsts = _v2_vectors(values["vector"], req)
    elif kind == "image":
        firsts = [_image(v, i) for i, v in enumerate(values["image"])]
    else:
        firsts = [_id(v) for v in values["id"]]
    n = len(firsts)
    out = []
    for i, first in enumerate(firsts):
        q: dict[str, Any] = {kind: first}
        for key in ("k", "where"):
            if key in values:
                q[key] = _pick(values[key], i, n, key)
        out.append(q)
    return out


def _v2_vectors(flat: list[Any], req: Mapping[str, Any]) -> list[list[Any]]:
    """The rows of the ``vector`` tensor (its last dimension: the vector's)."""
    shape = next(t["shape"] for t in req["inputs"] if t["name"] == "vector")
    width = shape[-1] if len(shape) >= 2 else len(flat)
    return [flat[i:i + width] for i in range(0, len(flat), max(width, 1))]


def _pick(vals: list[Any], i: int, n: int, name: str) -> Any:
    if len(vals) not in (1, n):
        raise CodecError(400, f"input {name!r}: {len(vals)} values for {n} queries")
    v = vals[i] if len(vals) == n else vals[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _id(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _image(v: Any, i: int) -> bytes:
    if isinstance(v, bytes):
        return v
    return _b64(v, f"image {i + 1}")
