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

from mltk.serving.codecs import CodecError, load_json

_NUMPY = {"BOOL": "bool", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
          "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2",
          "FP32": "<f4", "FP64": "<f8"}


DATATYPES = ("BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
             "FP16", "FP32", "FP64", "BYTES")


def parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any],
                                                                   dict[str, list[Any]]]:
    """(request JSON, {input name: flat list of values}) from an infer request body.

    Everything the protocol fixes is checked (CodecError 400 naming the field): the ``id``
    (text), ``parameters`` (objects), ``outputs`` (a list of named objects), each input's
    ``name`` (once), ``datatype`` (one of :data:`DATATYPES`), ``shape`` (non-negative integers,
    not booleans) and its data (as many values as the shape holds, of the datatype's kind).
    """
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
        req = load_json(head)
    except CodecError as exc:
        raise CodecError(400, f"{exc} (the inference request)") from None
    if not isinstance(req, Mapping) or not isinstance(req.get("inputs"), list) \
            or not req["inputs"]:
        raise CodecError(400, "the inference request needs a non-empty 'inputs' list")
    _check_request(req)
    values: dict[str, list[Any]] = {}
    offset = 0
    for i, t in enumerate(req["inputs"]):
        name, dtype, shape = _check_input(t, i)
        if name in values:
            raise CodecError(400, f"input {name!r} is given twice")
        size = _parameters(t, f"input {name!r}").get("binary_data_size") \
            if "parameters" in t else None
        if size is not None:
            if not _is_int(size) or size < 0 or offset + size > len(rest):
                raise CodecError(400, f"input {name!r}: binary_data_size {size!r} runs past the "
                                 "end of the body")
            flat = _from_binary(rest[offset:offset + size], dtype, name)
            offset += size
        else:
            flat = _flatten(t.get("data"), name)
            _check_kinds(flat, dtype, name)
        expected = _count(shape)
        if expected != len(flat):
            raise CodecError(400, f"input {name!r}: shape {shape} holds {expected} values but "
                             f"{len(flat)} were sent")
        values[name] = flat
    return dict(req), values


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parameters(obj: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise CodecError(400, f"{where}: 'parameters' must be an object, got "
                         f"{type(params).__name__}")
    return params


def _check_request(req: Mapping[str, Any]) -> None:
    if "id" in req and not isinstance(req["id"], str):
        raise CodecError(400, f"'id' must be text, got {type(req['id']).__name__}")
    params = _parameters(req, "the request")
    if not isinstance(params.get("binary_data_output", False), bool):
        raise CodecError(400, "'binary_data_output' must be true or false")
    outs = req.get("outputs")
    if outs is None:
        return
    if not isinstance(outs, list):
        raise CodecError(400, f"'outputs' must be a list, got {type(outs).__name__}")
    for i, o in enumerate(outs):
        if not isinstance(o, Mapping) or not isinstance(o.get("name"), str):
            raise CodecError(400, f"outputs[{i}]: an output needs a 'name'")
        if not isinstance(_parameters(o, f"output {o['name']!r}").get("binary_data", False),
                          bool):
            raise CodecError(400, f"output {o['name']!r}: 'binary_data' must be true or false")


def _check_input(t: Any, i: int) -> tuple[str, str, list[int]]:
    if not isinstance(t, Mapping) or not isinstance(t.get("name"), str) or not t["name"]:
        raise CodecError(400, f"inputs[{i}]: a tensor needs a 'name'")
    name, dtype = t["name"], t.get("datatype")
    if dtype not in DATATYPES:
        got = "no 'datatype'" if dtype is None else f"datatype {dtype!r}"
        raise CodecError(400, f"input {name!r}: {got}; expected one of {', '.join(DATATYPES)}")
    return name, dtype, _shape(t, name)


def _shape(t: Mapping[str, Any], name: str) -> list[int]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise CodecError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    return shape


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _check_kinds(flat: list[Any], dtype: str, name: str) -> None:
    """JSON data of the datatype's kind (null, a missing value, is taken in every kind)."""
    if dtype == "BYTES":
        ok: Any = str
    elif dtype == "BOOL":
        ok = bool
    elif dtype.startswith("FP"):
        ok = (int, float)
    else:
        ok = int
    for j, v in enumerate(flat):
        if v is not None and (not isinstance(v, ok) or isinstance(v, bool) and dtype != "BOOL"):
            raise CodecError(400, f"input {name!r}: value {j + 1} ({_short(v)}) is not "
                             f"{'text' if dtype == 'BYTES' else 'a ' + dtype + ' value'}")


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _flatten(data: Any, name: str) -> list[Any]:
    if data is None:
        raise CodecError(400, f"input {name!r}: no 'data' and no binary_data_size")
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):  # flat already: the usual case
        return list(data)
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
             names: Sequence[str], categories: Mapping[str, Sequence[str]] | None = None,
             ) -> list[Any]:
    """Predictor inputs from the decoded input tensors.

    ``names``: the model's declared inputs (for rows, its feature columns in order). An input
    of another name is refused, except that a row model also takes one ``[rows, columns]``
    tensor of any name; when that tensor is numeric, a categorical column holds the category's
    code: its position in ``categories[column]`` (the model's levels), from 0.
    """
    if input_kind == "similar":  # a similarity index: ids, vectors or images
        from mltk.serving import similar_codec

        return similar_codec.v2_items(values, req)
    if input_kind == "row" and len(values) == 1 and next(iter(values)) not in names:
        t = req["inputs"][0]
        return _matrix_rows(values[t["name"]], t, names,
                            None if t["datatype"] == "BYTES" else categories or {})
    unknown = [k for k in values if k not in names]
    if unknown:
        raise CodecError(400, f"unknown input(s) {', '.join(map(repr, unknown))}: the model "
                         f"takes {', '.join(names)}" + (" (or one [rows, columns] tensor)"
                                                       if input_kind == "row" else ""))
    if input_kind == "image":
        return [_image_bytes(v, i) for i, v in enumerate(values["image"])]
    if input_kind == "query":
        return _queries(values)
    n = len(next(iter(values.values())))
    if any(len(v) != n for v in values.values()):
        raise CodecError(400, "column inputs of different lengths")
    return [{k: _text(values[k][i]) for k in values} for i in range(n)]


def _queries(values: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    if "item_id" not in values:
        raise CodecError(400, "the request needs an 'item_id' input")
    n = len(values["item_id"])
    return [{k: _text(_pick(values[k], i, n, k)) if k != "k" else _pick(values[k], i, n, k)
             for k in ("item_id", "user_id", "k") if k in values} for i in range(n)]


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


def _matrix_rows(flat: list[Any], t: Mapping[str, Any], columns: Sequence[str],
                 codes: Mapping[str, Sequence[str]] | None) -> list[dict[str, Any]]:
    shape = t["shape"]
    width = shape[-1] if len(shape) >= 2 else len(flat)
    if width != len(columns):
        raise CodecError(400, f"input {t['name']!r}: {width} columns but the model takes "
                         f"{len(columns)} ({', '.join(columns)})")
    rows = [dict(zip(columns, (_text(v) for v in flat[i:i + width]), strict=True))
            for i in range(0, len(flat), width)]
    for col, levels in (codes or {}).items():
        if col in columns:
            for n, row in enumerate(rows, 1):
                row[col] = _level(row[col], levels, n, col)
    return rows


def _level(code: Any, levels: Sequence[str], row: int, col: str) -> Any:
    """The category a code stands for (NaN or null: missing)."""
    if code is None or code != code:
        return None
    if float(code).is_integer() and 0 <= code < len(levels):
        return levels[int(code)]
    raise CodecError(400, f"row {row}, column {col!r}: {code!r} is not a category code (0 to "
                     f"{len(levels) - 1}: the position of the category in the model's "
                     "'categories' parameter)")


# -- records -> output tensors ----------------------------------------------------------------
def outputs(records: Sequence[Mapping[str, Any]], req: Mapping[str, Any],
            declared: Sequence[Any]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The declared output tensors (:class:`mltk.predictors.TensorSpec`: name, datatype,
    shape, and the record fields that fill it), or those of them the request asks for; and,
    for those asked in binary, their raw bytes. The model metadata lists the same tensors."""
    wanted = {o["name"]: o for o in req.get("outputs") or []}
    binary_all = (req.get("parameters") or {}).get("binary_data_output", False)
    specs = list(declared)
    if wanted:
        offered = [t.name for t in specs]
        unknown = [k for k in wanted if k not in offered]
        if unknown:
            raise CodecError(400, f"unknown output(s): {', '.join(unknown)} (offered: "
                             f"{', '.join(offered)})")
        specs = [t for t in specs if t.name in wanted]
    tensors, blobs = [], []
    for spec in specs:
        fields = spec.fields or (spec.name,)
        data = _typed([r.get(f) for r in records for f in fields], spec.datatype)
        t: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype,
                             "shape": [len(records), *spec.shape[1:]]}
        binary = (wanted.get(spec.name, {}).get("parameters") or {}).get("binary_data",
                                                                          binary_all)
        if binary:
            raw = _to_binary(data, spec.datatype)
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = data
        tensors.append(t)
    return tensors, blobs


def _typed(values: list[Any], dtype: str) -> list[Any]:
    if dtype == "BYTES":
        return [_as_text(v) for v in values]
    if dtype.startswith("FP"):
        return [float("nan") if v is None else float(v) for v in values]
    if dtype == "BOOL":
        return [bool(v) for v in values]
    return [int(v) for v in values]


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
