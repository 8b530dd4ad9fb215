"""Loading and checking a two-group table: target, id columns, categoricals, useless columns."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError

log = logging.getLogger(__name__)


def load_table(path: str | os.PathLike) -> Any:
    """CSV or Parquet (by extension); ``-`` reads CSV from stdin."""
    import pandas as pd

    if os.fspath(path) == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise InputError("stdin: no data")
        return pd.read_csv(io.StringIO(text))
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"{p}: cannot read table ({str(exc).splitlines()[0]})") from None


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


def prepare(df: Any, target: str, id_cols: Sequence[str] = (), positive: Any = None) -> Prepared:
    """Check the target (exactly two values), drop ids and useless columns, type categoricals."""
    import numpy as np
    import pandas as pd

    if df is None or len(df) == 0:
        raise InputError("the data has no rows")
    if target not in df.columns:
        raise InputError(f"target column {target!r} not found (columns: "
                         f"{', '.join(map(str, df.columns[:20]))})")
    missing_ids = [c for c in id_cols if c not in df.columns]
    if missing_ids:
        raise InputError(f"id column(s) not found: {', '.join(missing_ids)}")
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
            raise InputError(f"--positive {positive!r} is not a value of {target!r} "
                             f"(values: {', '.join(repr(v) for v in values)})")
        positive = matches[0]
    negative = next(v for v in values if v != positive)
    y = (t == positive).to_numpy().astype(np.int64)
    X = df.drop(columns=[target, *id_cols])
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
    categorical = []
    categories: dict[str, list[str]] = {}
    for col in X.columns:
        s = X[col]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or \
                pd.api.types.is_string_dtype(s) or pd.api.types.is_bool_dtype(s):
            cats = sorted(str(v) for v in s.dropna().unique())
            X[col] = pd.Categorical(s.astype("string").astype(object).where(s.notna()),
                                    categories=cats)
            categorical.append(col)
            categories[col] = cats
        else:
            X[col] = pd.to_numeric(s, errors="coerce").astype(float)
    return Prepared(X, y, positive, negative, [str(c) for c in X.columns], categorical,
                    categories, dropped)


def apply_schema(df: Any, features: Sequence[str], categories: dict[str, list[str]]) -> Any:
    """Features of new rows typed as at training time (unknown categories become missing)."""
    import pandas as pd

    missing = [c for c in features if c not in df.columns]
    if missing:
        raise InputError(f"column(s) missing from the data: {', '.join(missing)}")
    X = df[list(features)].copy()
    for col in features:
        if col in categories:
            s = X[col]
            X[col] = pd.Categorical(s.astype("string").astype(object).where(s.notna()),
                                    categories=categories[col])
        else:
            X[col] = pd.to_numeric(X[col], errors="coerce").astype(float)
    return X


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
