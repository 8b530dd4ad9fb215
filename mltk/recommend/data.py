"""Items, transactions, users and meta-categories for ``mltk recommend``: the checks every table
gets (in memory or read from a file), the readers, and the rank score.

Each ``check_*`` takes a DataFrame and returns the checked one; ``source`` (a file name) is put
in front of its errors and warnings. Each ``load_*`` reads a file (CSV or Parquet) and checks it
naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from mltk._tables import load_table
from mltk.errors import InputError
from mltk.recommend.settings import RecommendSettings

log = logging.getLogger(__name__)


# The item columns each step reads: `rules` only needs each item's category.
STEP_COLUMNS = {"rules": ("item_id", "category_id"), "fit": ("item_id", "category_id", "price")}


def _at(source: str | os.PathLike | None) -> str:
    return f"{os.fspath(source)}: " if source is not None else ""


def require_columns(table: Any, columns: Iterable[str], what: str,
                    source: str | os.PathLike | None = None) -> None:
    """``what`` (items, transactions, ...) needs each of ``columns``; the error names the first
    one absent."""
    for col in columns:
        if col not in table.columns:
            raise InputError(f"{_at(source)}{what} need a {col!r} column")


def check_items(items: Any, settings: RecommendSettings, step: str = "fit",
                source: str | os.PathLike | None = None) -> Any:
    """The items with the columns ``step`` (``rules`` or ``fit``) uses checked; duplicate ids
    are an error. For ``fit``, absent signal and flag columns are reported (counted as 0)."""
    cols = settings.columns
    for key in STEP_COLUMNS[step]:
        if getattr(cols, key) not in items.columns:
            raise InputError(f"{_at(source)}items need a {getattr(cols, key)!r} column ({key})")
    dup = items[cols.item_id].duplicated()
    if dup.any():
        shown = ", ".join(map(str, items.loc[dup, cols.item_id].head(5)))
        raise InputError(f"{_at(source)}duplicate item ids ({int(dup.sum())}: {shown})")
    if step == "fit":
        for what, names in (("signal", settings.signals), ("kind flag", cols.kind_flags),
                            ("sex flag", cols.sex_flags)):
            absent = [n for n in names if n not in items.columns]
            if absent:
                log.warning(f"{what} column(s) missing from the items, counted as 0: "
                            f"{', '.join(absent)}")
    return items.reset_index(drop=True)


def load_items(path: str | os.PathLike, settings: RecommendSettings, step: str = "fit") -> Any:
    """:func:`check_items` of the table in ``path``, its errors naming the file."""
    return check_items(load_table(path), settings, step, path)


def check_transactions(tx: Any, items: Any, settings: RecommendSettings,
                       source: str | os.PathLike | None = None) -> Any:
    """Transactions restricted to known items (unknown ones are counted and skipped), ordered by
    user and time."""
    require_columns(tx, ("user_id", "item_id"), "transactions", source)
    known = tx["item_id"].isin(items[settings.columns.item_id])
    if not known.all():
        log.warning(f"{_at(source)}{int((~known).sum())} transactions name unknown items; "
                    f"skipped")
        tx = tx[known]
    if tx.empty:
        raise InputError(f"{_at(source)}no transactions with known items")
    order = ["user_id", "timestamp"] if "timestamp" in tx.columns else ["user_id"]
    return tx.sort_values(order, kind="stable").reset_index(drop=True)


def load_transactions(path: str | os.PathLike, items: Any, settings: RecommendSettings) -> Any:
    """:func:`check_transactions` of the table in ``path``, its errors naming the file."""
    return check_transactions(load_table(path), items, settings, path)


def check_users(users: Any, source: str | os.PathLike | None = None) -> Any:
    """User features: a ``user_id`` column and numeric columns (other columns are ignored)."""
    if "user_id" not in users.columns:
        raise InputError(f"{_at(source)}users need a 'user_id' column")
    return users


def load_users(path: str | os.PathLike) -> Any:
    return check_users(load_table(path), path)


def check_meta(meta: Any, source: str | os.PathLike | None = None) -> Any:
    """Meta-categories (``category_id`` -> ``meta_id``), as ``recommend rules`` writes them."""
    if not {"category_id", "meta_id"} <= set(meta.columns):
        raise InputError(f"{_at(source)}expected columns category_id, meta_id")
    return meta


def load_meta(path: str | os.PathLike) -> Any:
    return check_meta(load_table(path), path)


def rank_score(items: Any, settings: RecommendSettings) -> Any:
    """sum(signal x weight) / signal_divisor (missing signals count as 0), or the label."""
    import numpy as np

    label = settings.columns.label
    if label:
        if label not in items.columns:
            raise InputError(f"label column {label!r} (columns.label) not found in the items")
        return items[label].fillna(0).to_numpy(float)
    total = np.zeros(len(items))
    for name, weight in settings.signals.items():
        if name in items.columns:
            total += items[name].fillna(0).to_numpy(float) * float(weight)
    return total / float(settings.signal_divisor)
