"""Items, transactions and users for ``mltk recommend``: loading, checks, the rank score."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mltk._tables import load_table
from mltk.errors import InputError

log = logging.getLogger(__name__)


# The item columns each step reads: `rules` only needs each item's category.
STEP_COLUMNS = {"rules": ("item_id", "category_id"), "fit": ("item_id", "category_id", "price")}


def load_items(path: str | os.PathLike, cfg: Mapping[str, Any], step: str = "fit") -> Any:
    """The items table with the columns ``step`` (``rules`` or ``fit``) uses checked; duplicate
    ids are an error. For ``fit``, absent signal and flag columns are reported (counted as 0)."""
    cols = cfg["columns"]
    items = load_table(path)
    for key in STEP_COLUMNS[step]:
        if cols[key] not in items.columns:
            raise InputError(f"{path}: items need a {cols[key]!r} column ({key})")
    dup = items[cols["item_id"]].duplicated()
    if dup.any():
        shown = ", ".join(map(str, items.loc[dup, cols["item_id"]].head(5)))
        raise InputError(f"{path}: duplicate item ids ({int(dup.sum())}: {shown})")
    if step == "fit":
        for what, names in (("signal", cfg["signals"]),
                            ("kind flag", cols.get("kind_flags") or []),
                            ("sex flag", cols.get("sex_flags") or [])):
            absent = [n for n in names if n not in items.columns]
            if absent:
                log.warning(f"{what} column(s) missing from the items, counted as 0: "
                            f"{', '.join(absent)}")
    return items.reset_index(drop=True)


def rank_score(items: Any, cfg: Mapping[str, Any]) -> Any:
    """sum(signal x weight) / signal_divisor (missing signals count as 0), or the label."""
    import numpy as np

    label = cfg["columns"].get("label")
    if label:
        if label not in items.columns:
            raise InputError(f"label column {label!r} not found in the items")
        return items[label].fillna(0).to_numpy(float)
    total = np.zeros(len(items))
    for name, weight in cfg["signals"].items():
        if name in items.columns:
            total += items[name].fillna(0).to_numpy(float) * float(weight)
    return total / float(cfg["signal_divisor"])


def load_transactions(path: str | os.PathLike, items: Any, cfg: Mapping[str, Any]) -> Any:
    """Transactions restricted to known items (unknown ones are counted and skipped), ordered by
    user and time."""
    tx = load_table(path)
    for col in ("user_id", "item_id"):
        if col not in tx.columns:
            raise InputError(f"{path}: transactions need a {col!r} column")
    known = tx["item_id"].isin(items[cfg["columns"]["item_id"]])
    if not known.all():
        log.warning(f"{path}: {int((~known).sum())} transactions name unknown items; skipped")
        tx = tx[known]
    if tx.empty:
        raise InputError(f"{path}: no transactions with known items")
    order = ["user_id", "timestamp"] if "timestamp" in tx.columns else ["user_id"]
    return tx.sort_values(order, kind="stable").reset_index(drop=True)
