"""Numbers in text, read one way everywhere: a CSV cell for ``mltk serve`` and ``xgb-predict``.

pandas' CSV reader decides what ``xgb-predict`` sees; the server reads the cells of a CSV body
itself. Both go through :func:`parse_cell`, so a cell is a number, a missing value or text for
both alike: ASCII digits only (no ``1_000``, no Arabic-Indic or full-width digits, which Python's
``int``/``float`` would take), surrounding spaces ignored, ``inf``/``infinity`` read as infinite
numbers (which scoring then refuses by row and column), pandas' missing-value strings missing.
"""

from __future__ import annotations

import math
import re
from typing import Any

# pandas.read_csv's default missing-value strings: the same text in a JSON payload or a mixed
# column is a missing value too, as it would have been in the training CSV.
NA_STRINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                        "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                        "nan", "null"})
_NUMBER = re.compile(r"(?P<int>[+-]?[0-9]+)|[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                     r"|[+-]?(?:inf|infinity)", re.IGNORECASE)
_SPACE = " \t"  # what pandas' reader skips around a number (not every Unicode space)
#: One CSV field is at most this many characters (Python's csv module's own limit).
MAX_FIELD = 128 * 1024


def parse_cell(text: str) -> Any:
    """A CSV cell as mltk reads it: None (missing), an int, a float (infinite included), or
    the text unchanged when it is not a number."""
    t = text.strip(_SPACE)
    number = _NUMBER.fullmatch(t)
    if number is None:
        return None if t in NA_STRINGS else text
    if number.lastgroup == "int" and len(t) < 300:  # longer: a float (infinite past 1.8e308)
        return int(t)
    return float(t)


def number_value(value: Any) -> float | None:
    """A value of a number column as the float a model is given: NaN when missing, ±inf when
    infinite or beyond a 64-bit float (a 400-digit integer), None when it is not a number (text,
    a boolean, a list)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars as Python numbers
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = parse_cell(value)
        if value is None:
            return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def is_infinite(value: Any) -> bool:
    """A number (or number text) whose float is infinite: refused for scoring."""
    v = number_value(value)
    return v is not None and math.isinf(v)
