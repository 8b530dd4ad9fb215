"""A table in parts: a CSV or Parquet file, a glob, or a folder of Parquet parts (a BigQuery or
Spark export), listed and checked on the client from file metadata and headers only, and read
by the Dask workers (never gathered on the client).

Every part must have the same columns with the same types: a part that differs is named in
the error, with what differs, before any worker reads a row.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError

PARQUET = (".parquet", ".pq")
CSV_TYPE_ROWS = 1000  # rows of each CSV part read to compare column types


def list_parts(data: str | os.PathLike) -> list[Path]:
    """The files of ``data`` in a stable order: one file, the files a glob matches, or the
    Parquet (else CSV) files of a folder and its subfolders (hive partitions)."""
    text = os.fspath(data)
    if text == "-":
        raise InputError("a distributed run reads files, not stdin")
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    elif Path(text).is_dir():
        files = _folder_files(Path(text))
    elif Path(text).is_file():
        files = [Path(text)]
    else:
        raise InputError(f"{text}: no such file or folder")
    if not files:
        raise InputError(f"{text}: no CSV or Parquet file found")
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise InputError(f"{text}: CSV and Parquet files mixed; give one kind")
    return files


def _folder_files(folder: Path) -> list[Path]:
    every = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(
        (".", "_")))
    parquet = [p for p in every if p.suffix.lower() in PARQUET]
    return parquet or [p for p in every if p.suffix.lower() in (".csv", ".gz")]


def _kind(path: Path) -> str:
    return "parquet" if path.suffix.lower() in PARQUET else "csv"


def is_parquet(files: Sequence[Path]) -> bool:
    return _kind(files[0]) == "parquet"


def check_schemas(files: Sequence[Path]) -> dict[str, str]:
    """Column -> type of the first part; raises InputError naming the first part whose
    columns or types differ from it."""
    read = _parquet_schema if is_parquet(files) else _csv_schema
    first = read(files[0])
    for path in files[1:]:
        schema = read(path)
        if schema != first:
            raise InputError(f"{path}: its columns differ from {files[0]}'s "
                             f"({_difference(first, schema)}); every part must have the "
                             "same columns and types")
    return first


def _parquet_schema(path: Path) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: cannot read Parquet ({str(exc).splitlines()[0]})") from None
    return {name: _arrow_kind(schema.field(name).type) for name in schema.names
            if not name.startswith("__index_level_")}


def _arrow_kind(t: Any) -> str:
    """The type as it matters to the analysis: number, text, bool or category (an int32
    and an int64 column are the same feature)."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return "category"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return str(t)


def _csv_schema(path: Path) -> dict[str, str]:
    import pandas as pd

    try:
        head = pd.read_csv(path, nrows=CSV_TYPE_ROWS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError,
            OSError) as exc:
        raise InputError(f"{path}: cannot read CSV ({str(exc).splitlines()[0]})") from None
    return {str(c): ("number" if pd.api.types.is_numeric_dtype(head[c])
                     and not pd.api.types.is_bool_dtype(head[c]) else "text")
            for c in head.columns}


def _difference(first: dict[str, str], other: dict[str, str]) -> str:
    parts = []
    missing = [c for c in first if c not in other]
    extra = [c for c in other if c not in first]
    if missing:
        parts.append("missing " + ", ".join(map(repr, missing)))
    if extra:
        parts.append("extra " + ", ".join(map(repr, extra)))
    for c in first:
        if c in other and other[c] != first[c]:
            parts.append(f"{c!r} is {other[c]}, not {first[c]}")
    return "; ".join(parts) or "column order"


def read_frame(files: Sequence[Path]) -> Any:
    """A dask DataFrame over the files, read by the workers (one partition per Parquet file
    or row-group split, per 64 MB block of CSV)."""
    import dask.dataframe as dd

    names = [os.fspath(f) for f in files]
    if is_parquet(files):
        return dd.read_parquet(names)
    return dd.read_csv(names, blocksize="64MB", assume_missing=True)
