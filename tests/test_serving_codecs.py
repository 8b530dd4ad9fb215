"""Wire formats of mltk serve, without a server: request decoding, Accept, V2 tensors."""

from __future__ import annotations

import io
import json
import re
import struct

import numpy as np
import pytest

from mltk.predictors import TensorSpec
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
    with pytest.raises(CodecError, match="unknown input.*'x': the model takes image"):
        v2codec.to_items("image", values, req, ["image"])
    del values["x"]
    assert v2codec.to_items("image", values, req, ["image"]) == [b"img1", b"image-2"]
    declared = [TensorSpec("label", "BYTES", (-1,)), TensorSpec("p", "FP64", (-1,))]
    tensors, blobs = v2codec.outputs([{"label": "a", "p": 0.25}, {"label": "b", "p": 1.0}], req,
                                     declared)
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
        v2codec.outputs([{"p": 1.0}], {"outputs": [{"name": "q"}]}, [TensorSpec("p", "FP64",
                                                                                (-1,))])


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
        plane.load()
        assert plane.loaded and plane.load_error is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# -- issue 23: one number parser, bodies no reply can carry, V2 requests checked ------------
TRICKY_CELLS = ["1_000", "١٢", "１２", "True", "false", " 12 ", "\t12", "+5", ".5", "5.", "1e3",
                "1E+3", "0x10", "0b1", "1j", "inf", "-Infinity", "iNf", "1e400", "1e-400",
                "9" * 400, "9" * 20, "NaN", "+nan", "NA", " NA ", "null", "None", "", "12abc",
                "1 2", "1.0.0", "--5", "e5", ".", "\u00a012"]


def _column_b(df):
    from mltk.xgb.data import InvalidRowsError, apply_schema

    try:
        value = apply_schema(df, ["b"], {})["b"].iloc[0]
    except InvalidRowsError as exc:
        return f"refused: {exc.problems[0].reason}"
    return "missing" if value != value else value


@pytest.mark.parametrize("cell", TRICKY_CELLS)
def test_csv_cells_are_read_alike_by_the_server_and_xgb_predict(cell):
    """The same CSV cell in a number column: xgb-predict (pandas' reader, then the model's
    typing) and the server (its CSV codec, then the same typing) agree: the same number, a
    missing value, or refused for the same reason."""
    import pandas as pd

    text = f'a,b\n1,"{cell}"\n2,3\n'
    cli = _column_b(pd.read_csv(io.StringIO(text)))
    items = codecs.decode("row", "text/csv", text.encode(), ["a", "b"])
    assert _column_b(pd.DataFrame.from_records(items)) == cli


def test_number_cells():
    from mltk.xgb import parse_cell

    assert [parse_cell(c) for c in ["12", " -3 ", "1.5e3", "NA", "", "1_000", "١٢", "inf"]] == [
        12, -3, 1500.0, None, None, "1_000", "١٢", float("inf")]


def test_bodies_no_reply_can_carry_are_400():
    deep = b"[" * 100_000 + b"]" * 100_000
    for mt, body, words in [
        ("application/json", b'{"a": "\\ud800"}', "lone UTF-16 surrogate (\\ud800)"),
        ("application/json", deep, "nested too deeply"),
        ("application/json", b"[" + b"1" * 5000 + b"]", "4300 digits"),
        ("application/jsonlines", b'{"a": 1}\n{"a": "\\udc00x"}\n', "line 2: invalid JSON"),
        ("text/csv", b"1,2," + b"x" * 200_000 + b"\n", "field larger than field limit"),
        ("text/csv", b'1,2,"3\n4,5' + b"6" * 200_000 + b"\n", "invalid CSV at line"),
    ]:
        with pytest.raises(CodecError, match=re.escape(words)) as err:
            codecs.decode("row", mt, body, COLS)
        assert err.value.status == 400
    # a valid surrogate pair is one character, and NaN/Infinity are floats (refused by row)
    assert codecs.decode("row", "application/json", b'{"a": "\\ud83d\\ude00", "b": NaN}',
                         COLS)[0]["a"] == "\U0001F600"


def _v2(**tensor):
    t = {"name": "m", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3], **tensor}
    return {"inputs": [t]}


@pytest.mark.parametrize("req, words", [
    (_v2(datatype="NOPE"), "datatype 'NOPE'; expected one of BOOL"),
    ({"inputs": [{"name": "m", "shape": [1], "data": [1]}]}, "no 'datatype'"),
    (_v2(datatype=None), "no 'datatype'"),
    (_v2(shape=[True, 3]), "'shape' must be a list of non-negative integers"),
    (_v2(shape=[1, -3]), "'shape' must be a list of non-negative integers"),
    (_v2(shape="1,3"), "'shape' must be a list"),
    ({**_v2(), "id": 5}, "'id' must be text, got int"),
    ({**_v2(), "outputs": {"name": "p"}}, "'outputs' must be a list, got dict"),
    ({**_v2(), "outputs": [{"nom": "p"}]}, r"outputs\[0\]: an output needs a 'name'"),
    ({**_v2(), "outputs": [{"name": "p", "parameters": 1}]}, "'parameters' must be an object"),
    ({**_v2(), "outputs": [{"name": "p", "parameters": {"binary_data": "y"}}]},
     "'binary_data' must be true or false"),
    ({**_v2(), "parameters": "x"}, "the request: 'parameters' must be an object"),
    ({**_v2(), "parameters": {"binary_data_output": 1}}, "binary_data_output"),
    (_v2(parameters=[]), "input 'm': 'parameters' must be an object"),
    (_v2(parameters={"binary_data_size": True}), "binary_data_size True"),
    (_v2(data=[1, "2", 3]), r"input 'm': value 2 \(\"2\"\) is not a FP64 value"),
    (_v2(data=[1, True, 3]), "value 2 .* is not a FP64 value"),
    (_v2(datatype="INT64", data=[1, 2.5, 3]), "is not a INT64 value"),
    (_v2(datatype="BYTES", data=["a", 2, "c"]), "is not text"),
    (_v2(data=[1, [{"x": 1}], 3]), "is not a FP64 value"),
    ({"inputs": [_v2()["inputs"][0], _v2()["inputs"][0]]}, "input 'm' is given twice"),
    ({"inputs": [{"name": "", "shape": [1], "datatype": "FP64", "data": [1]}]},
     "needs a 'name'"),
])
def test_v2_requests_are_checked(req, words):
    with pytest.raises(CodecError, match=words) as err:
        v2codec.parse_request(json.dumps(req).encode(), None)
    assert err.value.status == 400


def test_v2_inputs_by_name_and_category_codes():
    req, values = v2codec.parse_request(json.dumps(_v2(data=[1.5, 2, 0])).encode(), None)
    cats = {"c": ["blue", "red"]}
    assert v2codec.to_items("row", values, req, COLS, cats) == [{"a": 1.5, "b": 2, "c": "blue"}]
    req, values = v2codec.parse_request(json.dumps(_v2(data=[1.5, 2, float("nan")])).encode(),
                                        None)
    assert v2codec.to_items("row", values, req, COLS, cats)[0]["c"] is None
    for code in (2, 0.5, -1):
        req, values = v2codec.parse_request(json.dumps(_v2(data=[1, 2, code])).encode(), None)
        with pytest.raises(CodecError, match="row 1, column 'c': .* is not a category code"):
            v2codec.to_items("row", values, req, COLS, cats)
    # text in a BYTES matrix is the category itself
    req, values = v2codec.parse_request(json.dumps(_v2(datatype="BYTES", data=["1", "2", "red"])
                                                   ).encode(), None)
    assert v2codec.to_items("row", values, req, COLS, cats) == [{"a": "1", "b": "2", "c": "red"}]
    req, values = v2codec.parse_request(json.dumps({"inputs": [
        {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
        {"name": "zzz", "shape": [1], "datatype": "FP64", "data": [1]}]}).encode(), None)
    with pytest.raises(CodecError, match="unknown input.*'zzz': the model takes a, b, c"):
        v2codec.to_items("row", values, req, COLS, cats)
    req, values = v2codec.parse_request(json.dumps({"inputs": [
        {"name": "q", "shape": [1], "datatype": "INT64", "data": [1]}]}).encode(), None)
    with pytest.raises(CodecError, match="unknown input"):
        v2codec.to_items("query", values, req, ["item_id", "user_id", "k"])
    with pytest.raises(CodecError, match="unknown input"):
        v2codec.to_items("image", values, req, ["image"])


def test_v2_outputs_follow_the_declaration():
    declared = [TensorSpec("label", "BYTES", (-1, 2), ("label", "label_2")),
                TensorSpec("probability", "FP32", (-1, 2), ("probability", "probability_2"))]
    records = [{"label": "a", "probability": 0.75, "label_2": "b", "probability_2": 0.25},
               {"label": "b", "probability": 0.5, "label_2": "a", "probability_2": 0.5}]
    tensors, blobs = v2codec.outputs(records, {}, declared)
    assert tensors == [
        {"name": "label", "datatype": "BYTES", "shape": [2, 2], "data": ["a", "b", "b", "a"]},
        {"name": "probability", "datatype": "FP32", "shape": [2, 2],
         "data": [0.75, 0.25, 0.5, 0.5]}] and blobs == []
    tensors, blobs = v2codec.outputs(records, {"outputs": [
        {"name": "probability", "parameters": {"binary_data": True}}]}, declared)
    assert [t["name"] for t in tensors] == ["probability"]
    assert np.frombuffer(blobs[0], "<f4").tolist() == [0.75, 0.25, 0.5, 0.5]
