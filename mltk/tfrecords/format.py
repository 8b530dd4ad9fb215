"""The TFRecord container and the ``tf.train.Example`` message, without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

Counting needs only the 12-byte headers (seek past the payload); verifying checks both CRCs.
The writer and the tiny protobuf encoder/decoder below produce and read exactly what
``tf.io.TFRecordWriter`` and ``tf.train.Example`` do (the tests check both directions), so
worker processes never import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Iterator, Mapping
from typing import IO, Any

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One framed record."""
    length = _U64.pack(len(data))
    return b"".join((length, _U32.pack(masked_crc(length)), data, _U32.pack(masked_crc(data))))


def write_record(fh: IO[bytes], data: bytes) -> int:
    """Append one record; returns the number of bytes written."""
    framed = frame(data)
    fh.write(framed)
    return len(framed)


@dataclasses.dataclass
class ScanResult:
    path: str
    records: int
    bytes: int
    ok: bool = True
    error: str | None = None
    offset: int | None = None  # byte offset of the first bad record


def scan(path: str | os.PathLike[str], verify: bool = False) -> ScanResult:
    """Count records by reading each 12-byte header and seeking past the payload.

    With ``verify`` every payload is read and both CRCs are checked. A truncated file or a
    corrupt header gives ``ok=False`` with the offset of the first bad record.
    """
    size = os.path.getsize(path)
    n = 0
    offset = 0
    with open(path, "rb", buffering=0 if not verify else -1) as fh:
        head = fh.read(2)
        if head == b"\x1f\x8b":
            return ScanResult(os.fspath(path), 0, size, False,
                              "GZIP-compressed TFRecord files are not supported", 0)
        fh.seek(0)
        while offset < size:
            header = fh.read(12)
            if len(header) < 12:
                return ScanResult(os.fspath(path), n, size, False,
                                  f"truncated record header at byte {offset}", offset)
            length = _U64.unpack_from(header)[0]
            if _U32.unpack_from(header, 8)[0] != masked_crc(header[:8]):
                return ScanResult(os.fspath(path), n, size, False,
                                  f"corrupt record header (length CRC mismatch) at byte {offset}",
                                  offset)
            end = offset + 12 + length + 4
            if end > size:
                return ScanResult(os.fspath(path), n, size, False,
                                  f"truncated record at byte {offset} (needs {end - size} more "
                                  "bytes)", offset)
            if verify:
                payload = fh.read(length)
                crc = _U32.unpack(fh.read(4))[0]
                if crc != masked_crc(payload):
                    return ScanResult(os.fspath(path), n, size, False,
                                      f"data CRC mismatch in record {n} at byte {offset}", offset)
            else:
                fh.seek(end)
            offset = end
            n += 1
    return ScanResult(os.fspath(path), n, size)


def iter_records(path: str | os.PathLike[str], verify: bool = True) -> Iterator[bytes]:
    """Payloads of the records in a file (CRCs checked unless ``verify=False``)."""
    from mltk.errors import InputError

    with open(path, "rb") as fh:
        offset = n = 0
        while True:
            header = fh.read(12)
            if not header:
                return
            where = f"record {n} at byte {offset}"  # as `tfrecord count --verify` says it
            if len(header) < 12:
                raise InputError(f"{path}: truncated record header ({where})")
            length = _U64.unpack_from(header)[0]
            if verify and _U32.unpack_from(header, 8)[0] != masked_crc(header[:8]):
                raise InputError(f"{path}: corrupt record header ({where})")
            payload = fh.read(length)
            tail = fh.read(4)
            if len(payload) < length or len(tail) < 4:
                raise InputError(f"{path}: truncated {where}")
            if verify and _U32.unpack(tail)[0] != masked_crc(payload):
                raise InputError(f"{path}: data CRC mismatch in {where}")
            offset += 16 + length
            n += 1
            yield payload


# -- tf.train.Example ---------------------------------------------------------------------------
# Example { Features features = 1; }   Features { map<string, Feature> feature = 1; }
# Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
#                        Int64List int64_list = 3; } }
# BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
# Int64List { repeated int64 value = 1 [packed]; }


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature(value: Any) -> bytes:
    values = value if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, (bytes, str)) for v in values):
        body = b"".join(_field(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _field(1, body)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return _field(3, _field(1, b"".join(_varint(v) for v in values)))
    if all(isinstance(v, (int, float)) for v in values):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))
    raise TypeError(f"unsupported feature value {value!r}")


def encode_example(features: Mapping[str, Any]) -> bytes:
    """Serialize ``{key: bytes | str | int | float | list of one kind}`` as tf.train.Example."""
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, _feature(value)))
        for key, value in features.items())
    return _field(1, entries)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
            continue
        if wire == 2:
            size, pos = _read_varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos + size > end:
            raise ValueError(f"field {number} runs past the end of its message")
        yield number, wire, buf[pos:pos + size]
        pos += size


def _submessages(buf: bytes, wanted: int) -> Iterator[bytes]:
    """The length-delimited fields numbered ``wanted`` (others are skipped, as protobuf does
    with unknown fields)."""
    for number, wire, value in _fields(buf):
        if number == wanted:
            if wire != 2:
                raise ValueError(f"field {number} has wire type {wire}, expected 2")
            yield value


def decode_example(data: bytes) -> dict[str, tuple[str, list]]:
    """Parse a serialized tf.train.Example into ``{key: (kind, values)}``, kind being
    ``bytes``, ``float`` or ``int64``. Raises ValueError on malformed data."""
    out: dict[str, tuple[str, list]] = {}
    try:
        for features in _submessages(data, 1):
            for entry in _submessages(features, 1):
                key, feature = "", b""
                for enum, wire, value in _fields(entry):
                    if enum in (1, 2) and wire != 2:
                        raise ValueError(f"map entry field {enum} has wire type {wire}")
                    if enum == 1:
                        key = bytes(value).decode("utf-8")
                    elif enum == 2:
                        feature = value
                out[key] = _decode_feature(feature)
    except (IndexError, ValueError, struct.error) as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"malformed tf.train.Example ({exc})") from None
    return out


def _decode_feature(feature: bytes) -> tuple[str, list]:
    for kind_num, wire, body in _fields(feature):
        if kind_num in (1, 2, 3) and wire != 2:
            raise ValueError(f"feature kind {kind_num} has wire type {wire}")
        if kind_num == 1:
            return "bytes", [bytes(v) for v in _submessages(body, 1)]
        if kind_num == 2:
            return "float", _decode_floats(body)
        if kind_num == 3:
            return "int64", _decode_int64s(body)
    return "bytes", []


def _decode_floats(body: bytes) -> list[float]:
    """FloatList values, packed (the usual) or not."""
    vals: list[float] = []
    for n, wire, v in _fields(body):
        if n == 1 and wire == 2:
            vals.extend(struct.unpack(f"<{len(v) // 4}f", v))
        elif n == 1 and wire == 5:
            vals.append(struct.unpack("<f", v)[0])
    return vals


def _decode_int64s(body: bytes) -> list[int]:
    """Int64List values, packed (the usual) or not; negatives are two's complement."""
    vals: list[int] = []
    for n, wire, v in _fields(body):
        if n == 1 and wire == 2:
            pos = 0
            while pos < len(v):
                x, pos = _read_varint(v, pos)
                vals.append(x - (1 << 64) if x >= 1 << 63 else x)
        elif n == 1 and wire == 0:
            vals.append(v - (1 << 64) if v >= 1 << 63 else v)
    return vals
