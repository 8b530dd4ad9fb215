"""Loading and checking a two-group table: target, id columns, categoricals, useless columns;
and typing new rows as at training time, refusing values the model cannot score."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from mltk._numbers import NA_STRINGS, is_infinite, number_value
from mltk._tables import load_table  # noqa: F401 (re-exported)
from mltk.errors import ConfigError, InputError

log = logging.getLogger(__name__)
UNKNOWN_CATEGORIES = ("error", "missing")
SHOWN_PROBLEMS = 3  # bad values named in the error message

KEPT_PROBLEMS = 100  # bad values kept on the exception for a caller (a server) to return


def _check_unique_columns(df: Any, wanted: Sequence[str] | None = None) -> None:
    names = df.columns[df.columns.duplicated()].unique()
    dups = [str(c) for c in names if wanted is None or c in wanted]
    if dups:
        raise InputError(f"column name(s) used more than once: {', '.join(map(repr, dups))} "
                         "(each column needs its own name)")


@dataclasses.dataclass
class Prepared:
    X: Any  # DataFrame of features (categoricals as pandas 'category')
    y: Any  # int array, 1 = positive class
    positive: Any
    negative: Any
    features: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]
    dropped: dict[str, str]


def check_columns(columns: Sequence[Any], target: str, id_cols: Sequence[str] = ()) -> None:
    """The target and id columns are among ``columns`` (a table's, a file's or a dask
    frame's), or an error naming what is missing."""
    columns = list(columns)
    if target not in columns:
        raise InputError(f"target column {target!r} not found (columns: "
                         f"{', '.join(map(str, columns[:20]))})")
    missing_ids = [c for c in id_cols if c not in columns]
    if missing_ids:
        raise InputError(f"id column(s) not found: {', '.join(missing_ids)}")


def prepare(df: Any, target: str, id_cols: Sequence[str] = (), positive: Any = None) -> Prepared:
    """Check the target (exactly two values), drop ids and useless columns, type categoricals."""
    if df is None or len(df) == 0:
        raise InputError("the data has no rows")
    _check_unique_columns(df)
    check_columns(df.columns, target, id_cols)
    df, y, positive, negative = _binary_target(df, target, positive)
    X, dropped = _drop_useless_columns(df.drop(columns=[target, *id_cols]))
    X, categorical, categories = _type_features(X)
    return Prepared(X, y, positive, negative, [str(c) for c in X.columns], categorical,
                    categories, dropped)


def _binary_target(df: Any, target: str, positive: Any) -> tuple[Any, Any, Any, Any]:
    """(rows with a target, y as 0/1, the positive value, the negative value); the target must
    have exactly two values, and ``positive`` (when given) must be one of them."""
    import numpy as np
    import pandas as pd

    t = df[target]
    if t.isna().any():
        n = int(t.isna().sum())
        log.warning(f"dropping {n} rows with a missing target")
        df = df[t.notna()]
        t = df[target]
    values = pd.unique(t)
    if len(values) < 2:
        raise InputError(f"target {target!r} has a single class ({values[0]!r} only): two "
                         "groups are needed" if len(values) else f"target {target!r} is empty")
    if len(values) > 2:
        shown = ", ".join(repr(v) for v in values[:5])
        raise InputError(f"target {target!r} has {len(values)} distinct values ({shown}"
                         f"{', ...' if len(values) > 5 else ''}); it must be binary")
    counts = t.value_counts()
    if positive is None:
        positive = counts.idxmin() if counts.iloc[0] != counts.iloc[-1] else sorted(values)[-1]
    else:
        matches = [v for v in values if str(v) == str(positive)]
        if not matches:
            raise InputError(f"`positive` {positive!r} is not a value of the target {target!r} "
                             f"(values: {', '.join(repr(v) for v in values)})")
        positive = matches[0]
    negative = next(v for v in values if v != positive)
    return df, (t == positive).to_numpy().astype(np.int64), positive, negative


def _drop_useless_columns(X: Any) -> tuple[Any, dict[str, str]]:
    """Without the columns that are all missing or constant (each warned about)."""
    dropped: dict[str, str] = {}
    for col in list(X.columns):
        s = X[col]
        if s.isna().all():
            dropped[col] = "all values missing"
        elif s.nunique(dropna=True) <= 1:
            dropped[col] = "constant"
    for col, why in dropped.items():
        log.warning(f"dropping column {col!r}: {why}")
    X = X.drop(columns=list(dropped))
    if X.shape[1] == 0:
        raise InputError("no usable feature columns left")
    return X, dropped


def _type_features(X: Any) -> tuple[Any, list[str], dict[str, list[str]]]:
    """Text, boolean and category columns become categoricals (levels as text); the rest
    numbers."""
    import pandas as pd

    categorical = []
    categories: dict[str, list[str]] = {}
    for col in X.columns:
        s = X[col]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or \
                pd.api.types.is_string_dtype(s) or pd.api.types.is_bool_dtype(s):
            if not isinstance(s.dtype, pd.CategoricalDtype) and not pd.api.types.is_bool_dtype(s):
                _warn_mixed(col, s)
            cats = sorted(str(v) for v in s.dropna().unique())
            X[col] = pd.Categorical(s.astype("string").astype(object).where(s.notna()),
                                    categories=cats)
            categorical.append(col)
            categories[col] = cats
        else:
            X[col] = pd.to_numeric(s, errors="coerce").astype(float)
    return X, categorical, categories


def _warn_mixed(col: Any, s: Any) -> None:
    """A text column in which some values are numbers: often a number column with a few stray
    texts ('?', 'unknown'). It is still used as a categorical, since that may be meant."""
    import numpy as np
    import pandas as pd

    try:
        counts = s.value_counts(dropna=True)
    except TypeError:  # unhashable values (lists from JSON): not a column of numbers anyway
        return
    levels = pd.Series(counts.index, dtype=object)
    is_bool = levels.map(lambda v: isinstance(v, (bool, np.bool_)))
    is_number = pd.to_numeric(levels, errors="coerce").notna().to_numpy() & ~is_bool.to_numpy()
    numbers = int(counts.to_numpy()[is_number].sum())
    if numbers == 0 or is_number.all():
        return
    text = counts[~is_number]
    examples = ", ".join(repr(v) for v in text.index[:3]) + (", ..." if len(text) > 3 else "")
    log.warning(f"column {col!r}: {numbers} numbers and {int(text.sum())} text values; "
                f"treated as categorical (text values: {examples})")


# -- typing new rows as at training time ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BadValue:
    """One value that cannot be scored: ``row`` counts the data rows from 1 (as a user counts
    the data lines of a CSV, or the records of a JSON list)."""

    row: int
    column: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {show_value(self.value)} {self.reason}"


class InvalidRowsError(InputError):
    """Rows with values the model cannot score (text in a number column, unseen categories).

    ``problems`` holds the first bad values in row order (up to 100), ``count`` all of them,
    ``rows`` the number of rows affected and ``columns`` the count per column, for a caller
    that returns them as data.
    """

    def __init__(self, problems: Sequence[BadValue], columns: Mapping[str, int],
                 rows: int) -> None:
        self.problems, self.columns, self.rows = list(problems), dict(columns), rows
        self.count = sum(self.columns.values())
        shown = "; ".join(str(p) for p in self.problems[:SHOWN_PROBLEMS])
        if self.count == 1:
            message = shown
        else:
            per_column = ", ".join(f"{c!r} {n}" for c, n in self.columns.items())
            more = "; ..." if self.count > SHOWN_PROBLEMS else ""
            message = (f"{self.count} values in {rows} row{'s' if rows != 1 else ''} cannot "
                       f"be scored (by column: {per_column}): {shown}{more}")
        super().__init__(message)


def apply_schema(df: Any, features: Sequence[str], categories: Mapping[str, Sequence[str]],
                 unknown_categories: str = "error") -> Any:
    """Features of new rows typed as at training time, matched by name (extra columns ignored).

    Missing values (empty, NaN, None, pandas' NA strings) stay missing, as at training time.
    Text in a number column raises :class:`InvalidRowsError` naming rows and columns; so does a
    category not seen in training unless ``unknown_categories="missing"``, which scores it as
    missing and counts it in one warning.
    """
    import pandas as pd

    if unknown_categories not in UNKNOWN_CATEGORIES:
        raise ConfigError(f"unknown_categories must be error or missing, got "
                          f"{unknown_categories!r}")
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise InputError(f"column(s) missing from the data: {', '.join(map(repr, missing))}")
    _check_unique_columns(df, features)
    X = pd.DataFrame(index=df.index)
    bad: dict[str, tuple[Any, Any]] = {}
    unseen: dict[str, int] = {}
    for col in features:
        if col in categories:
            X[col], mask = _to_category(df[col], list(categories[col]))
            if mask.any() and unknown_categories == "missing":
                unseen[col] = int(mask.sum())
            elif mask.any():
                bad[col] = (mask, lambda v, known=categories[col]: _unseen_reason(v, known))
        else:
            X[col], mask = _to_number(df[col])
            if mask.any():
                bad[col] = (mask, _number_reason)
    if bad:
        raise _invalid_rows(df, bad)
    if unseen:
        total = sum(unseen.values())
        log.warning(f"scored {total} value{'s' if total != 1 else ''} of categories not seen in "
                    "training as missing: " + ", ".join(f"column {c!r}: {n}"
                                                        for c, n in unseen.items()))
    return X


def _factorize(s: Any) -> tuple[Any, Any]:
    """(codes, distinct values) with code -1 for missing; unhashable values (lists or dicts
    from JSON) become their text."""
    import pandas as pd

    try:
        return pd.factorize(s)
    except TypeError:
        return pd.factorize(s.map(lambda v: v if isinstance(v, Hashable) else repr(v)))


def _to_number(s: Any) -> tuple[Any, Any]:
    """(floats, mask of values that are neither finite numbers nor missing). Text is read as a
    CSV cell is everywhere (:func:`mltk._numbers.parse_cell`); infinite values (``inf``,
    ``1e400``, a 400-digit integer) are refused, since no model can score them."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = pd.to_numeric(s, errors="coerce").astype(float)
        return values, np.isinf(values.to_numpy())
    codes, uniques = _factorize(s)
    numbers = np.array([number_value(v) for v in uniques], dtype=object)
    bad = np.array([v is None or np.isinf(v) for v in numbers], dtype=bool)
    floats = np.where(bad, np.nan, numbers).astype(float)
    values = np.append(floats, np.nan)[codes]  # code -1 (missing) takes the last entry
    return pd.Series(values, index=s.index), np.append(bad, False)[codes]


def _number_reason(value: Any) -> str:
    return "is not a finite number" if is_infinite(value) else "is not a number"


def _to_category(s: Any, known: list[str]) -> tuple[Any, Any]:
    """(pandas Categorical with the training levels, mask of values not seen in training)."""
    import numpy as np
    import pandas as pd

    codes, uniques = _factorize(s)
    lookup = set(known)
    boolean = bool(known) and lookup <= {"True", "False"}
    matched = [match_category(v, lookup, boolean) for v in uniques]
    levels = np.array([m if m is not _UNSEEN else None for m in matched] + [None], dtype=object)
    unseen = np.array([m is _UNSEEN for m in matched] + [False], dtype=bool)
    return pd.Categorical(levels[codes], categories=known), unseen[codes]


_UNSEEN = object()


def match_category(value: Any, known: AbstractSet[str], boolean: bool) -> Any:
    """The training level a value stands for, None when it is missing, else _UNSEEN.

    Levels were stored as text: a number matches in any of its spellings (3, 3.0, '3'), as
    a column's type can change between files; 'true'/'false' match a boolean column's levels.
    """
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalars as Python numbers
    if isinstance(value, bool):
        texts = [str(value)]
    elif isinstance(value, (int, float)):
        texts = [str(value)]
        if isinstance(value, int) and len(texts[0]) < 300:  # no float beyond 1.8e308
            texts.append(str(float(value)))
        if isinstance(value, float) and value.is_integer():
            texts.append(str(int(value)))
    else:
        texts = [str(value)]
        if boolean and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            texts.append(value.strip().capitalize())
    for text in texts:
        if text in known:
            return text
    if isinstance(value, str) and value.strip() in NA_STRINGS:
        return None
    return _UNSEEN


def _unseen_reason(value: Any, known: Sequence[str]) -> str:
    text = str(value).strip().casefold()
    close = [k for k in known if k.strip().casefold() == text]
    if close:
        return f"is not a category seen in training (did you mean {close[0]!r}?)"
    shown = ", ".join(show_value(k) for k in known[:3])
    more = f", ... {len(known)} in all" if len(known) > 3 else ""
    return f"is not a category seen in training (known: {shown}{more})"


def show_value(value: Any) -> str:
    """A value as an error message shows it (repr, cut at 40 characters)."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _invalid_rows(df: Any, bad: Mapping[str, tuple[Any, Any]]) -> InvalidRowsError:
    """The error for every bad cell: first ones in row order (then column order), the count,
    and how many rows they touch."""
    import numpy as np

    found = []
    positions = {}
    for order, (col, (mask, reason)) in enumerate(bad.items()):
        positions[str(col)] = where = np.flatnonzero(mask)
        found += [(int(i), order, col, reason) for i in where[:KEPT_PROBLEMS]]
    found.sort(key=lambda f: f[:2])
    problems = [BadValue(i + 1, str(col), df[col].iloc[i], reason(df[col].iloc[i]))
                for i, _, col, reason in found[:KEPT_PROBLEMS]]
    rows = len(np.unique(np.concatenate(list(positions.values()))))
    return InvalidRowsError(problems, {c: len(w) for c, w in positions.items()}, int(rows))


def onehot(X: Any, categories: dict[str, list[str]]) -> Any:
    """One-hot encode the categoricals (all levels; missing -> all zeros)."""
    import pandas as pd

    if not categories:
        return X
    parts = [X.drop(columns=list(categories))]
    for col, cats in categories.items():
        parts.append(pd.DataFrame({f"{col}={c}": (X[col] == c).astype(float).to_numpy()
                                   for c in cats}, index=X.index))
    return pd.concat(parts, axis=1)
