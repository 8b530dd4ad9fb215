"""Reading a table (CSV or Parquet, or CSV on stdin) for every capability that takes one."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from mltk.errors import InputError

log = logging.getLogger(__name__)


def load_table(path: str | os.PathLike) -> Any:
    """CSV or Parquet (by extension); ``-`` reads CSV from stdin. Warns about duplicate column
    names in a CSV header (pandas reads the copies as ``name.1``, ``name.2``, ...)."""
    import pandas as pd

    if os.fspath(path) == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise InputError("stdin: no data")
        df = pd.read_csv(io.StringIO(text))
        _warn_duplicate_header(io.StringIO(text), df.columns)
        return df
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"{p}: cannot read table ({str(exc).splitlines()[0]})") from None
    _warn_duplicate_header(p, df.columns)
    return df


def _warn_duplicate_header(source: Any, columns: Any) -> None:
    """Compare the header as written with pandas' column names, which rename duplicates."""
    import pandas as pd

    try:  # the first line only, parsed as data so that nothing is renamed
        first = pd.read_csv(source, header=None, nrows=1, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError,
            OSError):
        return
    header = [str(v) for v in first.iloc[0]]
    if len(header) != len(columns):
        return
    counts = Counter(header)
    renamed: dict[str, list[str]] = {}
    for name, col in zip(header, columns, strict=True):
        if counts[name] > 1 and name.strip() and str(col) != name:
            renamed.setdefault(name, []).append(str(col))
    if renamed:
        log.warning("duplicate column names in the header: " + "; ".join(
            f"{name!r} appears {counts[name]} times (the later ones are read as "
            f"{', '.join(map(repr, cols))})" for name, cols in renamed.items()))
