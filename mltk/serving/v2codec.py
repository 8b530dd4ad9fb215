"""Open Inference Protocol (KServe V2) tensors <-> predictor inputs and records.

Handles the JSON tensor form (``name``, ``shape``, ``datatype``, ``data``) and the binary tensor
data extension: a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw
tensors (``parameters.binary_data_size`` each; BYTES elements as a 4-byte little-endian length
and the bytes), which is what ``tritonclient.http`` sends and asks for by default.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from mltk.serving.codecs import CodecError

_NUMPY = {"BOOL": "bool", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
          "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2",
          "FP32": "<f4", "FP64": "<f8"}


def parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any],
                                                                   dict[str, list[Any]]]:
    """(request JSON, {input name: flat list of values}) from an infer request body."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise CodecError(400, "Inference-Header-Content-Length is not a number") from None
        if not 0 <= n <= len(body):
            raise CodecError(400, f"Inference-Header-Content-Length {n} is outside the body "
                             f"({len(body)} bytes)")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    try:
        req = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodecError(400, f"invalid JSON in the inference request ({exc})") from None
    if not isinstance(req, Mapping) or not isinstance(req.get("inputs"), list) \
            or not req["inputs"]:
        raise CodecError(400, "the inference request needs a non-empty 'inputs' list")
    values: dict[str, list[Any]] = {}
    offset = 0
    for i, t in enumerate(req["inputs"]):
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
            raise CodecError(400, f"inputs[{i}]: a tensor needs a 'name'")
        name, dtype = t["name"], str(t.get("datatype", "")).upper()
        shape = _shape(t, name)
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(rest):
                raise CodecError(400, f"input {name!r}: binary_data_size {size!r} runs past the "
                                 "end of the body")
            flat = _from_binary(rest[offset:offset + size], dtype, name)
            offset += size
        else:
            flat = _flatten(t.get("data"), name)
        expected = _count(shape)
        if expected != len(flat):
            raise CodecError(400, f"input {name!r}: shape {shape} holds {expected} values but "
                             f"{len(flat)} were sent")
        values[name] = flat
    return dict(req), values


def _shape(t: Mapping[str, Any], name: str) -> list[int]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CodecError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    return shape


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _flatten(data: Any, name: str) -> list[Any]:
    if data is None:
        raise CodecError(400, f"input {name!r}: no 'data' and no binary_data_size")
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _from_binary(raw: bytes, dtype: str, name: str) -> list[Any]:
    if dtype == "BYTES":
        out, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise CodecError(400, f"input {name!r}: truncated BYTES element length")
            (n,) = struct.unpack_from("<I", raw, i)
            i += 4
            if i + n > len(raw):
                raise CodecError(400, f"input {name!r}: truncated BYTES element")
            out.append(raw[i:i + n])
            i += n
        return out
    if dtype not in _NUMPY:
        raise CodecError(400, f"input {name!r}: unsupported datatype {dtype!r}")
    import numpy as np

    item = np.dtype(_NUMPY[dtype]).itemsize
    if len(raw) % item:
        raise CodecError(400, f"input {name!r}: {len(raw)} bytes is not a whole number of "
                         f"{dtype} values")
    return np.frombuffer(raw, dtype=_NUMPY[dtype]).tolist()


# -- tensors -> predictor inputs --------------------------------------------------------------
def to_items(input_kind: str, values: Mapping[str, list[Any]], req: Mapping[str, Any],
             columns: Sequence[str]) -> list[Any]:
    """Predictor inputs from the decoded input tensors."""
    if input_kind == "image":
        name = "image" if "image" in values else next(iter(values))
        return [_image_bytes(v, i) for i, v in enumerate(values[name])]
    if input_kind == "query":
        if "item_id" not in values:
            raise CodecError(400, "the request needs an 'item_id' input")
        n = len(values["item_id"])
        return [{k: _text(_pick(values[k], i, n, k)) if k != "k" else _pick(values[k], i, n, k)
                 for k in ("item_id", "user_id", "k") if k in values} for i in range(n)]
    return _rows(values, req, columns)


def _pick(vals: list[Any], i: int, n: int, name: str) -> Any:
    if len(vals) == n:
        return vals[i]
    if len(vals) == 1:
        return vals[0]
    raise CodecError(400, f"input {name!r}: {len(vals)} values for {n} queries")


def _text(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _image_bytes(v: Any, i: int) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):  # the JSON form carries bytes as base64 text
        try:
            return base64.b64decode(v, validate=True)
        except ValueError:
            raise CodecError(400, f"image {i + 1}: not base64 (send binary data, or base64 "
                             "text in JSON)") from None
    raise CodecError(400, f"image {i + 1}: expected bytes")


def _rows(values: Mapping[str, list[Any]], req: Mapping[str, Any],
          columns: Sequence[str]) -> list[dict[str, Any]]:
    named = [k for k in values if k in set(columns)]
    if named:
        n = len(values[named[0]])
        if any(len(v) != n for v in values.values()):
            raise CodecError(400, "column inputs of different lengths")
        return [{k: _text(values[k][i]) for k in values} for i in range(n)]
    if len(values) != 1:
        raise CodecError(400, f"send one input per column ({', '.join(columns)}) or one 2-D "
                         "input with the columns in this order")
    t = next(x for x in req["inputs"])
    flat = next(iter(values.values()))
    shape = t["shape"]
    width = shape[-1] if len(shape) >= 2 else len(flat)
    if width != len(columns):
        raise CodecError(400, f"input {t['name']!r}: {width} columns but the model takes "
                         f"{len(columns)} ({', '.join(columns)})")
    return [dict(zip(columns, (_text(v) for v in flat[i:i + width]), strict=True))
            for i in range(0, len(flat), width)]


# -- records -> output tensors ----------------------------------------------------------------
def outputs(records: Sequence[Mapping[str, Any]], req: Mapping[str, Any],
            ) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Output tensors (one per record key) and, for those asked in binary, their raw bytes."""
    wanted = {o["name"]: o for o in req.get("outputs") or [] if isinstance(o, Mapping)
              and "name" in o}
    binary_all = bool((req.get("parameters") or {}).get("binary_data_output"))
    keys = list(records[0].keys()) if records else []
    if wanted:
        unknown = [k for k in wanted if k not in keys]
        if unknown:
            raise CodecError(400, f"unknown output(s): {', '.join(unknown)} (offered: "
                             f"{', '.join(keys)})")
        keys = [k for k in keys if k in wanted]
    tensors, blobs = [], []
    for k in keys:
        column = [r.get(k) for r in records]
        dtype, data = _column(column)
        t: dict[str, Any] = {"name": k, "datatype": dtype, "shape": [len(column)]}
        binary = (wanted.get(k, {}).get("parameters") or {}).get("binary_data", binary_all)
        if binary:
            raw = _to_binary(data, dtype)
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = data
        tensors.append(t)
    return tensors, blobs


def _column(values: list[Any]) -> tuple[str, list[Any]]:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOL", values
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if len(present) == len(values) and all(isinstance(v, int) for v in present):
            return "INT64", values
        return "FP64", [float("nan") if v is None else float(v) for v in values]
    return "BYTES", [_as_text(v) for v in values]


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list, tuple)):
        from mltk._json import dumps

        return dumps(v, separators=(",", ":"))
    return str(v)


def _to_binary(data: list[Any], dtype: str) -> bytes:
    if dtype == "BYTES":
        parts = []
        for v in data:
            b = v.encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    import numpy as np

    return np.asarray(data, dtype=_NUMPY[dtype]).tobytes()
