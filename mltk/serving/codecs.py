"""Wire formats <-> predictor inputs and records, with no HTTP in sight (testable alone).

Request bodies are decoded by content type into a list of inputs for a predictor (image bytes,
row mappings or query mappings); records are encoded by the negotiated Accept type. For CSV and
JSON Lines there is one output line per input line, in order (SageMaker batch transform's
MULTI_RECORD strategy). Every failure raises :class:`CodecError` with the HTTP status to send
and a message that names the line or field at fault.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mltk._numbers import parse_cell

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "application/x-image",
                         "application/octet-stream"})
JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
NPY = "application/x-npy"
ACCEPTED_OUTPUTS = (JSON, CSV, JSONLINES)
_JSONLINES_ALIASES = {"application/jsonlines", "application/x-jsonlines", "application/jsonl",
                      "application/x-ndjson", "application/ndjson"}


class CodecError(Exception):
    """A payload that cannot be decoded or encoded; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(header: str | None) -> str:
    """``"text/csv; charset=utf-8"`` -> ``"text/csv"`` (lower case; JSON Lines aliases unified)."""
    mt = (header or "").split(";", 1)[0].strip().lower()
    return JSONLINES if mt in _JSONLINES_ALIASES else mt


def negotiate(accept: str | None) -> str:
    """The response type for an Accept header: JSON for none or ``*/*``; 406 when nothing fits."""
    if not accept or not accept.strip():
        return JSON
    choices = []
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        mt = media_type(fields[0])
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            choices.append((-q, i, mt))
    for _, _, mt in sorted(choices):
        if mt in ("*/*", "application/*"):
            return JSON
        if mt == "text/*":
            return CSV
        if mt in ACCEPTED_OUTPUTS:
            return mt
    raise CodecError(406, f"cannot answer in {accept!r}; offered: {', '.join(ACCEPTED_OUTPUTS)}")


# -- requests ---------------------------------------------------------------------------------
def decode(input_kind: str, content_type: str | None, body: bytes,
           columns: Sequence[str] = ()) -> list[Any]:
    """Inputs for a predictor whose ``input_kind`` is image, row or query.

    ``columns``: the model's feature columns in order (rows given as bare lists or a headerless
    CSV are read in this order).
    """
    mt = media_type(content_type)
    if input_kind == "image":
        return _decode_images(mt, body)
    if mt == CSV:
        return _decode_csv(_text(body), columns if input_kind == "row" else
                           ("item_id", "user_id", "k"))
    if mt == JSON:
        return [_to_mapping(v, columns, input_kind, f"instance {i + 1}")
                for i, v in enumerate(_json_instances(_text(body)))]
    if mt == JSONLINES:
        return [_to_mapping(v, columns, input_kind, f"line {i}")
                for i, v in _json_lines(_text(body))]
    if mt == NPY and input_kind == "row":
        return _decode_npy(body, columns)
    offered = "text/csv, application/json, application/jsonlines" + (
        ", application/x-npy" if input_kind == "row" else "")
    raise CodecError(415, f"content type {content_type or '(none)'!r} not accepted by this "
                     f"model; use {offered}")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CodecError(400, f"the body is not UTF-8 text (byte {exc.start})") from None


def _decode_images(mt: str, body: bytes) -> list[bytes]:
    if mt in IMAGE_TYPES:
        if not body:
            raise CodecError(400, "empty body: send the image bytes")
        return [body]
    if mt in (JSON, JSONLINES):
        items = (_json_instances(_text(body)) if mt == JSON
                 else [v for _, v in _json_lines(_text(body))])
        return [_b64_image(v, i + 1) for i, v in enumerate(items)]
    raise CodecError(415, f"content type {mt or '(none)'!r} not accepted by this model; send "
                     "image/jpeg, image/png, image/webp or application/x-image (or JSON "
                     "{\"instances\": [{\"b64\": ...}]})")


def _b64_image(value: Any, n: int) -> bytes:
    if isinstance(value, Mapping):
        value = value.get("b64", value.get("image"))
    return b64_bytes(value, f"instance {n}", "expected a base64 string or {\"b64\": ...}")


def b64_bytes(value: Any, where: str, expected: str) -> bytes:
    """The bytes of base64 text; a 400 naming ``where`` otherwise (``expected``: what to send)."""
    if not isinstance(value, str):
        raise CodecError(400, f"{where}: {expected}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise CodecError(400, f"{where}: invalid base64") from None


def load_json(data: str | bytes) -> Any:
    """A request's JSON, or CodecError 400 for what Python's parser takes but a reply cannot
    carry: nesting past the recursion limit, integers of more than 4,300 digits, a lone UTF-16
    surrogate (``"\\ud800"``: no UTF-8 text holds it). ``NaN``/``Infinity`` are read as floats,
    as Python does: a missing value, and a number the model refuses by row and column."""
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise CodecError(400, f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}") from None
    except RecursionError:
        raise CodecError(400, "invalid JSON: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise CodecError(400, f"invalid JSON: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:  # Exceeds the limit (4300 digits) for integer string conversion
        raise CodecError(400, f"invalid JSON: {exc}") from None
    pattern = _SURROGATE if isinstance(data, str) else _SURROGATE_BYTES
    if pattern.search(data):  # only then walk the document
        _check_text(doc)
    return doc


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_text(doc: Any) -> None:
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise CodecError(400, "invalid JSON: a lone UTF-16 surrogate ("
                                 f"{v[_first_surrogate(v)].encode('unicode_escape').decode()}) "
                                 "in a string") from None


def _first_surrogate(text: str) -> int:
    return next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)


def _json_instances(text: str) -> list[Any]:
    doc = load_json(text)
    if isinstance(doc, Mapping) and "instances" in doc:
        doc = doc["instances"]
        if not isinstance(doc, list):
            raise CodecError(400, "'instances' must be a list")
    elif isinstance(doc, Mapping) and "inputs" in doc and isinstance(doc["inputs"], list):
        doc = doc["inputs"]
    if not isinstance(doc, list):
        doc = [doc]
    if not doc:
        raise CodecError(400, "no instances in the request")
    return doc


def _json_lines(text: str) -> list[tuple[int, Any]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, load_json(line)))
        except CodecError as exc:
            raise CodecError(400, f"line {n}: {exc}") from None
    if not out:
        raise CodecError(400, "no lines in the request")
    return out


def _to_mapping(value: Any, columns: Sequence[str], input_kind: str, where: str) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if input_kind == "query" and not isinstance(value, (list, dict)):
        return {"item_id": value}
    if isinstance(value, list) and columns:
        if len(value) != len(columns):
            raise CodecError(400, f"{where}: {len(value)} values but the model takes "
                             f"{len(columns)} ({', '.join(columns)})")
        return dict(zip(columns, value, strict=True))
    raise CodecError(400, f"{where}: expected an object of column values")


def _decode_csv(text: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:  # a field over 128 KB, a NUL byte, a quote left open
        raise CodecError(400, f"invalid CSV at line {reader.line_num}: {exc}") from None
    if not rows:
        raise CodecError(400, "no rows in the CSV body")
    header = [c.strip() for c in rows[0]]
    known = set(columns)
    has_header = bool(header) and any(h in known for h in header) and not _numeric_row(header)
    if has_header:
        names, data, first = header, rows[1:], 2
    else:
        names, data, first = list(columns), rows, 1
    if not data:
        raise CodecError(400, "the CSV body has a header but no rows")
    out = []
    for n, row in enumerate(data, first):
        if len(row) != len(names):
            raise CodecError(400, f"line {n}: {len(row)} fields, expected {len(names)}"
                             + ("" if has_header else f" ({', '.join(names)}, in this order)"))
        out.append({k: parse_cell(v) for k, v in zip(names, row, strict=False)})
    return out


def _numeric_row(cells: Sequence[str]) -> bool:
    return all(isinstance(parse_cell(c), (int, float)) for c in cells)


def _decode_npy(body: bytes, columns: Sequence[str]) -> list[dict[str, Any]]:
    import numpy as np

    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CodecError(400, f"not a .npy array ({exc})") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != len(columns):
        raise CodecError(400, f"expected an array of shape (rows, {len(columns)}), got "
                         f"{tuple(arr.shape)}")
    return [dict(zip(columns, row.tolist(), strict=True)) for row in arr]


# -- responses --------------------------------------------------------------------------------
def encode(records: Sequence[Mapping[str, Any]], accept: str) -> tuple[bytes, str]:
    """(body, content type) for records in the negotiated type."""
    if accept == JSON:
        return json_bytes({"predictions": list(records)}), JSON
    if accept == JSONLINES:
        return b"".join(json_bytes(r) + b"\n" for r in records), JSONLINES
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in records:
        writer.writerow([_csv_cell(v) for v in r.values()])
    return buf.getvalue().encode("utf-8"), CSV


def csv_header(records: Sequence[Mapping[str, Any]]) -> bytes:
    return (",".join(records[0].keys()) + "\n").encode("utf-8") if records else b""


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return "" if v is None else v


def json_bytes(obj: Any) -> bytes:
    """Compact strict JSON (numpy values, NaN and inf as null) as UTF-8 bytes."""
    from mltk._json import dumps

    return dumps(obj, separators=(",", ":")).encode("utf-8")
