"""Wire formats of mltk serve, without a server: request decoding, Accept, V2 tensors."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from mltk.serving import codecs, v2codec
from mltk.serving.codecs import CodecError

COLS = ["a", "b", "c"]


def test_negotiate_accept():
    assert codecs.negotiate(None) == codecs.JSON
    assert codecs.negotiate("*/*") == codecs.JSON
    assert codecs.negotiate("text/csv") == codecs.CSV
    assert codecs.negotiate("application/x-ndjson") == codecs.JSONLINES
    assert codecs.negotiate("text/html;q=0.9, text/csv;q=0.5") == codecs.CSV
    assert codecs.negotiate("application/json;q=0, text/csv") == codecs.CSV
    with pytest.raises(CodecError) as err:
        codecs.negotiate("text/html")
    assert err.value.status == 406


def test_csv_rows_with_and_without_header():
    with_header = codecs.decode("row", "text/csv", b"c,a,b\n3,1,x\n,2,y\n", COLS)
    assert with_header == [{"c": 3, "a": 1, "b": "x"}, {"c": None, "a": 2, "b": "y"}]
    bare = codecs.decode("row", "text/csv; charset=utf-8", b"1,2.5,x\n", COLS)
    assert bare == [{"a": 1, "b": 2.5, "c": "x"}]
    with pytest.raises(CodecError, match="line 2: 2 fields, expected 3"):
        codecs.decode("row", "text/csv", b"1,2,3\n4,5\n", COLS)
    with pytest.raises(CodecError, match="no rows"):
        codecs.decode("row", "text/csv", b"\n\n", COLS)


def test_json_shapes_and_lines():
    assert codecs.decode("row", "application/json", b'{"a": 1}', COLS) == [{"a": 1}]
    assert codecs.decode("row", "application/json", b'[{"a": 1}, {"a": 2}]', COLS) == [
        {"a": 1}, {"a": 2}]
    assert codecs.decode("row", "application/json", b'{"instances": [[1, 2, 3]]}', COLS) == [
        {"a": 1, "b": 2, "c": 3}]
    with pytest.raises(CodecError, match="instance 1: 2 values but the model takes 3"):
        codecs.decode("row", "application/json", b'{"instances": [[1, 2]]}', COLS)
    with pytest.raises(CodecError, match="line 1, column 2"):
        codecs.decode("row", "application/json", b"{x", COLS)
    lines = b'{"a": 1}\n\n{"a": 2\n'
    with pytest.raises(CodecError, match="line 3: invalid JSON"):
        codecs.decode("row", "application/jsonlines", lines, COLS)
    assert codecs.decode("query", "application/json", b'[5, "x"]') == [{"item_id": 5},
                                                                          {"item_id": "x"}]
    with pytest.raises(CodecError) as err:
        codecs.decode("row", "text/plain", b"1", COLS)
    assert err.value.status == 415


def test_npy_rows_never_unpickle():
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float64).reshape(2, 3))
    assert codecs.decode("row", "application/x-npy", buf.getvalue(), COLS)[1] == {
        "a": 3.0, "b": 4.0, "c": 5.0}
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CodecError, match="not a .npy array"):
        codecs.decode("row", "application/x-npy", buf.getvalue(), COLS)


def test_images_raw_and_base64():
    assert codecs.decode("image", "image/jpeg", b"\xff\xd8data") == [b"\xff\xd8data"]
    doc = json.dumps({"instances": [{"b64": "AAE="}]}).encode()
    assert codecs.decode("image", "application/json", doc) == [b"\x00\x01"]
    with pytest.raises(CodecError, match="instance 1: invalid base64"):
        codecs.decode("image", "application/json", b'["***"]')
    with pytest.raises(CodecError, match="empty body"):
        codecs.decode("image", "image/png", b"")


def test_encode_one_line_per_record():
    records = [{"id": "x", "p": 0.5, "tags": ["a", "b"]}, {"id": "y", "p": None, "tags": []}]
    body, ctype = codecs.encode(records, codecs.CSV)
    assert body.decode().splitlines() == ['x,0.5,"[""a"",""b""]"', "y,,[]"]
    body, ctype = codecs.encode(records, codecs.JSONLINES)
    assert [json.loads(ln) for ln in body.decode().splitlines()] == records
    body, _ = codecs.encode([{"p": float("nan")}], codecs.JSON)
    assert json.loads(body) == {"predictions": [{"p": None}]}


def _bytes_tensor(values):
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_v2_binary_request_and_response():
    raw_img = _bytes_tensor([b"img1", b"image-2"])
    raw_num = np.array([[1.5, 2.0], [3.0, 4.0]], dtype="<f4").tobytes()
    head = json.dumps({"id": "r1", "inputs": [
        {"name": "image", "shape": [2], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(raw_img)}},
        {"name": "x", "shape": [2, 2], "datatype": "FP32",
         "parameters": {"binary_data_size": len(raw_num)}}],
        "parameters": {"binary_data_output": True}}).encode()
    req, values = v2codec.parse_request(head + raw_img + raw_num, str(len(head)))
    assert values["image"] == [b"img1", b"image-2"]
    assert values["x"] == [1.5, 2.0, 3.0, 4.0]
    assert v2codec.to_items("image", values, req, []) == [b"img1", b"image-2"]
    tensors, blobs = v2codec.outputs([{"label": "a", "p": 0.25}, {"label": "b", "p": 1.0}], req)
    assert [t["datatype"] for t in tensors] == ["BYTES", "FP64"]
    assert blobs[0] == _bytes_tensor([b"a", b"b"])
    assert np.frombuffer(blobs[1], "<f8").tolist() == [0.25, 1.0]


def test_v2_json_rows_and_errors():
    req, values = v2codec.parse_request(json.dumps({"inputs": [
        {"name": "m", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [4, 5, 6]]}]})
        .encode(), None)
    assert v2codec.to_items("row", values, req, COLS) == [{"a": 1, "b": 2, "c": 3},
                                                          {"a": 4, "b": 5, "c": 6}]
    req, values = v2codec.parse_request(json.dumps({"inputs": [
        {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
        {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}).encode(), None)
    assert v2codec.to_items("row", values, req, COLS) == [{"a": 1, "b": "x"}]
    for body, header, words in [
        (b"{", None, "invalid JSON"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (b'{"inputs": [{"name": "a", "shape": [3], "datatype": "FP64", "data": [1]}]}', None,
         "holds 3 values but 1"),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", '
         b'"parameters": {"binary_data_size": 9}}]}', "101", "binary_data_size"),
        (b"{}", "91", "outside the body"),
        (b"{}", "x", "not a number"),
    ]:
        with pytest.raises(CodecError, match=words) as err:
            v2codec.parse_request(body, header)
        assert err.value.status == 400
    with pytest.raises(CodecError, match="unknown output"):
        v2codec.outputs([{"p": 1.0}], {"outputs": [{"name": "q"}]})


def test_loading_freezes_what_it_leaves_alive(tmp_path, monkeypatch):
    """Once the models are loaded, the objects alive are out of the collector's reach, so a
    full collection under load does not walk the libraries' objects (a ~100 ms pause)."""
    import gc

    from mltk.serving.dataplane import DataPlane
    from mltk.serving.settings import ServeSettings

    monkeypatch.setenv("MLTK_SERVE_STATE_DIR", str(tmp_path))
    gc.unfreeze()
    plane = DataPlane(ServeSettings(models=("colors",)))
    try:
        plane._load_all()
        assert plane.loaded and plane.load_error is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
