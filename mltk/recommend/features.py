"""The numbers the learned parts see: item features for the RankNet, the purchase context for
the classifier, user features, and the kind/sex codes the candidate index filters on.

Each ``*_matrix`` returns (matrix, stats): fitted on the training items when ``stats`` is None,
applied with the saved ``stats`` at query time, so both see the same scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mltk.recommend.settings import RecommendSettings


def _flag_matrix(items: Any, flags: Sequence[str]) -> Any:
    """The flag columns as floats: an absent column counts as 0, a missing value stays NaN."""
    import numpy as np

    columns = [items[f].to_numpy(float) if f in items.columns else np.zeros(len(items))
               for f in flags]
    return np.stack(columns, 1) if columns else np.zeros((len(items), 0))


def kind_codes(items: Any, flags: Sequence[str]) -> Any:
    """Index of the set kind flag per item, ``len(flags)`` when none is set, -1 when a flag is
    missing (unknown: such an item never passes the kind filter, nor can it be a query)."""
    import numpy as np

    if not flags:
        return np.zeros(len(items), np.int64)  # no kind flags configured: one kind for all
    m = _flag_matrix(items, flags)
    filled = np.nan_to_num(m)
    code = np.where(filled.sum(1) > 0, filled.argmax(1), len(flags))
    code[np.isnan(m).any(1)] = -1
    return code


def sex_codes(items: Any, flags: Sequence[str]) -> Any:
    """The sex flags as bits (first flag highest), -1 when a flag is missing (unknown)."""
    import numpy as np

    m = _flag_matrix(items, flags)
    code = (np.nan_to_num(m) * (2 ** np.arange(len(flags))[::-1])).sum(1).astype(np.int64)
    code[np.isnan(m).any(1)] = -1
    return code


def item_matrix(items: Any, settings: RecommendSettings, stats: dict | None = None
                ) -> tuple[Any, dict]:
    """Numeric item features for the RankNet (signals with missing indicators, price, flags)."""
    import numpy as np

    cols = settings.columns
    parts, names = [], []
    price = np.log1p(items[cols.price].to_numpy(float))
    parts += [np.nan_to_num(price, nan=np.nanmedian(price)), np.isnan(price).astype(float)]
    names += ["log_price", "price_missing"]
    for f in [*cols.kind_flags, *cols.sex_flags, *settings.signals]:
        v = items[f].to_numpy(float) if f in items.columns else np.full(len(items), np.nan)
        parts += [np.nan_to_num(v), np.isnan(v).astype(float)]
        names += [f, f"{f}_missing"]
    X = np.stack(parts, 1)
    if stats is None:
        stats = {"mean": X.mean(0).tolist(), "std": (X.std(0) + 1e-9).tolist(), "names": names}
    X = (X - np.array(stats["mean"])) / np.array(stats["std"])
    return X.astype("float32"), stats


def context_matrix(metas: Any, n_meta: int, items: Any, settings: RecommendSettings,
                   user_feats: Any = None, stats: dict | None = None) -> tuple[Any, dict]:
    """Purchase context for the classifier: the item's meta one-hot, price, flags (+ user)."""
    import numpy as np

    cols = settings.columns
    onehot = np.zeros((len(items), n_meta), "float32")
    onehot[np.arange(len(items)), metas] = 1
    price = np.log1p(items[cols.price].to_numpy(float))
    flags = [items[f].to_numpy(float) if f in items.columns else np.zeros(len(items))
             for f in [*cols.kind_flags, *cols.sex_flags]]
    dense = np.stack([price, *flags], 1)
    if user_feats is not None:
        dense = np.concatenate([dense, user_feats], 1)
    if stats is None:
        stats = {"median": np.nanmedian(dense, 0).tolist()}
        filled = np.where(np.isnan(dense), np.array(stats["median"]), dense)
        stats.update(mean=filled.mean(0).tolist(), std=(filled.std(0) + 1e-9).tolist())
    dense = np.where(np.isnan(dense), np.array(stats["median"]), dense)
    dense = (dense - np.array(stats["mean"])) / np.array(stats["std"])
    return np.concatenate([onehot, dense.astype("float32")], 1), stats


def user_features(users: Any, user_ids: Any, stats: dict | None = None) -> tuple[Any, dict]:
    """The numeric user columns for ``user_ids`` (NaN for an unknown user), and the columns
    used (``stats["columns"]``, chosen at fit time)."""
    import numpy as np

    num = [c for c in users.columns if c != "user_id" and users[c].dtype.kind in "biuf"]
    if stats is None:
        stats = {"columns": num}
    table = users.set_index("user_id")[stats["columns"]].astype(float)
    return table.reindex(user_ids).to_numpy(float).reshape(len(user_ids), -1) if len(
        stats["columns"]) else np.zeros((len(user_ids), 0)), stats
