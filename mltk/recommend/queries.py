"""Query files for ``Recommender.batch``: CSV (with a header) or NDJSON, one query per line
with ``item_id[,user_id]``, read a line at a time. A line that cannot be read (bad JSON, not a
JSON object, the wrong number of CSV fields) becomes a :class:`QueryRow` carrying its error and
line number, so that the batch reports it and goes on; only an empty file, or a CSV header
without ``item_id``, stops the run (at once, before any result)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mltk.errors import InputError

JSON_SUFFIXES = (".ndjson", ".jsonl", ".json")


@dataclasses.dataclass(frozen=True)
class QueryRow:
    """One line of a query file: its fields, or why it could not be read."""

    line: int
    fields: Mapping[str, Any]
    error: str | None = None


def read_queries(lines: Iterable[str], source: str) -> Iterator[QueryRow]:
    """QueryRows from the lines of the query file named ``source``. NDJSON when the name ends in
    .ndjson/.jsonl/.json or the first non-blank line starts with ``{`` or ``[``, else CSV.

    Reads up to the first non-blank line (and the CSV header) now, so that an empty file or a
    header without ``item_id`` raises InputError here; the rows stream as they are read.
    """
    lines = iter(lines)
    start = 1
    for first in lines:
        first = first.lstrip("\ufeff") if start == 1 else first  # a byte-order mark
        if first.strip():
            break
        start += 1
    else:
        raise InputError(f"{source}: no queries (the file is empty)")
    rest = itertools.chain([first], lines)
    if source.lower().endswith(JSON_SUFFIXES) or first.lstrip()[:1] in ("{", "["):
        return _json_rows(rest, start)
    return _csv_rows(rest, start, source)


def _json_rows(lines: Iterable[str], start: int) -> Iterator[QueryRow]:
    for n, line in enumerate(lines, start):
        if not line.strip():
            continue
        try:
            value = json.loads(line.rstrip("\r\n"))  # columns counted on the line as is
        except json.JSONDecodeError as exc:
            yield QueryRow(n, {}, f"invalid JSON ({exc.msg}, column {exc.colno})")
            continue
        if isinstance(value, dict):
            yield QueryRow(n, value)
        else:
            yield QueryRow(n, {}, f"expected a JSON object, got {_json_type(value)}")


def _csv_rows(lines: Iterator[str], start: int, source: str) -> Iterator[QueryRow]:
    try:
        header = [h.strip() for h in _csv_cells(next(lines))]
    except csv.Error as exc:
        raise InputError(f"{source}: line {start}: unreadable CSV header ({exc})") from None
    if "item_id" not in header:
        raise InputError(f"{source}: line {start}: expected a CSV header with an item_id "
                         f"column (or NDJSON objects)")
    return _csv_records(lines, header, start + 1)


def _csv_records(lines: Iterable[str], header: list[str], start: int) -> Iterator[QueryRow]:
    # Each line is parsed on its own: a stray quote spoils its line, never the lines after it.
    for n, line in enumerate(lines, start):
        if not line.strip():
            continue
        try:
            cells = _csv_cells(line)
        except csv.Error as exc:
            yield QueryRow(n, {}, f"unreadable CSV ({exc})")
            continue
        if len(cells) != len(header):
            yield QueryRow(n, {}, f"expected {len(header)} fields ({','.join(header)}), "
                                  f"got {len(cells)}")
            continue
        yield QueryRow(n, {h: _cell(c) for h, c in zip(header, cells, strict=True)})


def _csv_cells(line: str) -> list[str]:
    try:
        return next(csv.reader([line.rstrip("\r\n")], strict=True))
    except StopIteration:
        return []


def _cell(text: str) -> Any:
    """A CSV cell as an id: None when empty, an int when it is one (``11``, ``11.0``)."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    if value != value:  # nan
        return None
    return int(value) if value.is_integer() else value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return "a number"
