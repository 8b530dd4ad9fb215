"""Data profiles: a table summarised in a few kilobytes, enough to measure drift against.

Numeric features keep the interior edges of their quantile bins (deciles by default, ties
merged, so a feature with a few values gets one bin per value) and the share of non-missing
rows in each bin; categorical features keep the share of each level. Both keep the rows
counted and the missing-value rate. Saved as JSON (``data_profile.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from mltk.errors import InputError

PROFILE_FILE = "data_profile.json"
FORMAT_VERSION = 1
DEFAULT_BINS = 10
# Missing-value spellings in text columns (pandas' read_csv defaults, the common ones).
NA_TEXT = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "<NA>",
                     "#N/A"})


@dataclasses.dataclass
class DataProfile:
    """Per-feature bins or level shares, and missing rates, of ``rows`` rows.

    ``features`` maps each feature to a dict: ``kind`` (``numeric`` or ``categorical``),
    ``missing_rate``, and ``edges`` + ``shares`` (numeric: ``len(edges) + 1`` shares of the
    non-missing rows, bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``) or ``levels``
    (categorical: level -> share of the non-missing rows).
    """

    rows: int
    features: dict[str, dict[str, Any]]

    @classmethod
    def from_frame(cls, df: Any, categorical: Collection[str] | None = None,
                   bins: int = DEFAULT_BINS) -> DataProfile:
        """The profile of ``df``'s columns. ``categorical`` names the categorical ones
        (default: every column that is not numeric)."""
        import pandas as pd

        if len(df) == 0:
            raise InputError("cannot profile a table with no rows")
        features = {}
        for col in df.columns:
            s = df[col]
            is_cat = (str(col) in categorical if categorical is not None else
                      not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)))
            features[str(col)] = (_categorical(s) if is_cat else _numeric(s, bins))
        return cls(int(len(df)), features)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "kind": "mltk data profile", "rows": self.rows,
                "features": self.features}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "profile") -> DataProfile:
        try:
            if d.get("kind") != "mltk data profile":
                raise KeyError("kind")
            return cls(int(d["rows"]), {str(k): dict(v) for k, v in d["features"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: not an mltk data profile (missing or malformed {exc})"
                             ) from None

    def save(self, path: str | os.PathLike) -> Path:
        from mltk._atomic import write_json

        return write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> DataProfile:
        import json

        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")), os.fspath(p))
        except (OSError, ValueError) as exc:
            raise InputError(f"{p}: cannot read the data profile ({exc})") from None


def _numeric(s: Any, bins: int) -> dict[str, Any]:
    import numpy as np

    values = numbers(s)
    present = values[~np.isnan(values)]
    missing = 1.0 - len(present) / len(values)
    if not len(present):
        return {"kind": "numeric", "missing_rate": missing, "edges": [], "shares": [1.0]}
    qs = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(qs)
    # Every distinct value at most once; the top bin (e_last, inf) holds what lies above.
    edges = edges[edges < present.max()] if len(edges) else edges
    counts = np.bincount(np.searchsorted(edges, present, side="left"),
                         minlength=len(edges) + 1)
    return {"kind": "numeric", "missing_rate": round(float(missing), 6),
            "edges": [float(e) for e in edges],
            "shares": [round(float(c) / len(present), 6) for c in counts]}


def _categorical(s: Any) -> dict[str, Any]:
    keys, missing = level_keys(s)
    present = [k for k, m in zip(keys, missing, strict=True) if not m]
    from collections import Counter

    counts = Counter(present)
    n = len(present)
    return {"kind": "categorical", "missing_rate": round(1.0 - n / len(keys), 6),
            "levels": {k: round(c / n, 6) for k, c in counts.most_common()}}


def numbers(s: Any) -> Any:
    """A column as floats; text that is not a number counts as missing."""
    import pandas as pd

    return pd.to_numeric(s, errors="coerce").astype(float).to_numpy()


def level_keys(s: Any) -> tuple[list[str], list[bool]]:
    """Each value's text as a level (3, 3.0 and '3' all read '3'), and whether it is
    missing."""
    import pandas as pd

    keys, missing = [], []
    for v in s.astype(object).tolist():
        gone = v is None or (isinstance(v, float) and v != v) or v is pd.NA or \
            (isinstance(v, str) and v.strip() in NA_TEXT)
        missing.append(gone)
        keys.append("" if gone else level_text(v))
    return keys, missing


def level_text(v: Any) -> str:
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def load_reference(path: str | os.PathLike) -> DataProfile:
    """The profile to compare with: an ``xgb-analyze`` model folder (its
    ``data_profile.json``), a profile JSON file, or a reference table (CSV or Parquet) that is
    profiled now."""
    p = Path(path)
    if p.is_dir():
        if (p / PROFILE_FILE).is_file():
            return DataProfile.load(p / PROFILE_FILE)
        if (p / "config.yaml").is_file():
            raise InputError(f"{p}: this model folder has no {PROFILE_FILE} (it was written "
                             "before mltk saved a profile of the training data): re-run "
                             "xgb-analyze to check drift against it")
        raise InputError(f"{p}: neither a model folder with {PROFILE_FILE} nor a table")
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() == ".json":
        return DataProfile.load(p)
    from mltk._tables import load_table

    return DataProfile.from_frame(load_table(p))
