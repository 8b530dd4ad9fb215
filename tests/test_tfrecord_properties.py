"""Property tests (hypothesis) for the TFRecord container, the Example codec and size parsing.

Deterministic (``derandomize``, no example database) and bounded, so each test takes about a
second; tests/test_tfrecord.py checks the same code against TensorFlow on fixed inputs.
"""

from __future__ import annotations

import math
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mltk.errors import InputError, MltkError
from mltk.tfrecords.building import parse_size
from mltk.tfrecords.format import (
    decode_example,
    encode_example,
    frame,
    iter_records,
    scan,
    write_record,
)

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])
FILES = settings(PROPERTY, max_examples=60)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOAT32 = st.floats(width=32, allow_nan=False)
# One feature: a scalar or a list of one kind (ints, floats, bytes or text).
FEATURE = st.one_of(
    INT64, FLOAT32, st.binary(max_size=40), st.text(max_size=20),
    st.lists(INT64, max_size=8), st.lists(FLOAT32, min_size=1, max_size=8),
    st.lists(st.binary(max_size=20), min_size=1, max_size=5),
    st.lists(st.text(max_size=10), min_size=1, max_size=5),
)
EXAMPLE = st.dictionaries(st.text(max_size=12), FEATURE, max_size=6)


def _expected(value) -> tuple[str, list]:
    """What decode_example gives for one encoded feature value."""
    values = value if isinstance(value, list) else [value]
    if not values:
        return "bytes", []  # an empty list has no kind; it reads back as an empty BytesList
    if isinstance(values[0], (bytes, str)):
        return "bytes", [v.encode() if isinstance(v, str) else v for v in values]
    if isinstance(values[0], int):
        return "int64", values
    return "float", values


@PROPERTY
@given(EXAMPLE)
def test_example_round_trip(features):
    decoded = decode_example(encode_example(features))
    assert decoded == {key: _expected(value) for key, value in features.items()}
    assert list(decoded) == list(features)


@PROPERTY
@given(st.lists(INT64, min_size=1, max_size=8), st.lists(FLOAT32, min_size=1, max_size=8))
def test_mixed_ints_and_floats_are_floats(ints, floats):
    kind, values = decode_example(encode_example({"x": [*ints, *floats]}))["x"]
    assert kind == "float"
    assert values == [struct.unpack("<f", struct.pack("<f", v))[0] for v in [*ints, *floats]]


@PROPERTY
@given(st.binary(max_size=200))
def test_decoding_garbage_raises_value_error_or_decodes(data):
    try:
        decoded = decode_example(data)
    except ValueError:
        return
    assert isinstance(decoded, dict)


def _write(path: Path, payloads: list[bytes]) -> int:
    with open(path, "wb") as fh:
        return sum(write_record(fh, p) for p in payloads)


PAYLOADS = st.lists(st.binary(max_size=300), max_size=12)


@FILES
@given(PAYLOADS)
def test_records_round_trip(payloads):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.tfrecord"
        written = _write(path, payloads)
        assert written == path.stat().st_size == sum(16 + len(p) for p in payloads)
        assert list(iter_records(path)) == payloads
        for verify in (False, True):
            result = scan(path, verify=verify)
            assert (result.ok, result.records, result.bytes) == (True, len(payloads), written)


@FILES
@given(st.lists(st.binary(max_size=100), min_size=1, max_size=6), st.data())
def test_any_flipped_bit_is_detected(payloads, data):
    """CRC32C catches every single-bit error, in the header, the payload or the CRCs."""
    blob = bytearray(b"".join(frame(p) for p in payloads))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    blob[bit // 8] ^= 1 << (bit % 8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.tfrecord"
        path.write_bytes(bytes(blob))
        result = scan(path, verify=True)
        assert not result.ok and result.offset is not None
        with pytest.raises(InputError):
            list(iter_records(path))


@FILES
@given(st.lists(st.binary(max_size=100), min_size=1, max_size=6), st.data())
def test_truncation_is_detected_unless_at_a_record_boundary(payloads, data):
    blob = b"".join(frame(p) for p in payloads)
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    ends = [0]
    for p in payloads:
        ends.append(ends[-1] + 16 + len(p))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.tfrecord"
        path.write_bytes(blob[:cut])
        result = scan(path, verify=True)
        if cut in ends:
            kept = payloads[:ends.index(cut)]
            assert result.ok and result.records == len(kept)
            assert list(iter_records(path)) == kept
        else:
            assert not result.ok
            assert result.records == max(i for i, end in enumerate(ends) if end <= cut)
            with pytest.raises(InputError):
                list(iter_records(path))


# -- parse_size ----------------------------------------------------------------------------------
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
         "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


@st.composite
def sizes(draw) -> tuple[str, int]:
    """('1.005 KB', 1005): a size as a person writes it, and its exact value in bytes."""
    whole = draw(st.integers(0, 10**6))
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"[0-9]{1,6}", fullmatch=True)))
    unit = draw(st.sampled_from(sorted(UNITS)))
    number = f"{whole}.{fraction}" if fraction else str(whole)
    exact = Fraction(number) * UNITS[unit]
    assume(exact >= 1)  # less than a byte is an error (tested below)
    spelled = draw(st.sampled_from([unit, unit.upper(), unit.capitalize()]))
    space = draw(st.sampled_from(["", " "]))
    return f"{number}{space}{spelled}", math.floor(exact)


@PROPERTY
@given(sizes())
def test_parse_size_is_exact(case):
    text, expected = case
    assert parse_size(text) == expected


@PROPERTY
@given(st.integers(min_value=1))
def test_parse_size_passes_ints_through(n):
    assert parse_size(n) == n


@PROPERTY
@given(st.one_of(st.text(max_size=30), st.from_regex(r"[0-9]{300,400}(kb|gib)?", fullmatch=True),
                 st.from_regex(r"0*\.0*[0-9]{0,3}(b|k|kib)?", fullmatch=True)))
def test_parse_size_gives_bytes_or_a_one_line_error(text):
    """Any text: a positive number of bytes, or MltkError (never a crash or zero bytes)."""
    try:
        value = parse_size(text)
    except MltkError as exc:
        assert "cannot parse size" in str(exc)
        return
    assert isinstance(value, int) and value >= 1
