"""``mltk recommend evaluate``: leave-last-purchase-out hit rate@k, NDCG@k and coverage of a
recommender, beside two baselines (the most bought items of the query's category, and random
items of its meta-category)."""

from __future__ import annotations

import logging
import os
from typing import Any

from mltk.errors import InputError
from mltk.recommend.data import require_columns
from mltk.recommend.index import CandidateIndex
from mltk.recommend.recommender import Recommender

log = logging.getLogger(__name__)

METHODS = ("mltk", "popular_in_category", "random_in_meta")


def evaluate(recommender: Recommender | str | os.PathLike, transactions: Any,
             k: int | None = None, seed: int = 0, *,
             source: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per method (``mltk`` and the two baselines): users, k, hit_rate, ndcg, coverage.

    ``recommender``: a :class:`Recommender` or a model folder; ``transactions``: a DataFrame of
    user_id, item_id[, timestamp]; each user's last purchase is the target of a query with the
    one before. ``k`` defaults to the ``k`` setting; ``seed`` seeds the random baseline;
    ``source`` (a file name) is put in front of the warnings and errors.
    """
    import numpy as np

    rec = recommender if isinstance(recommender, Recommender) else Recommender.load(recommender)
    k = rec.check_k(k)
    idx = rec.index
    where = f"{os.fspath(source)}: " if source is not None else ""
    pairs, pop = _last_pairs(transactions, idx, source)
    items_cat = _category_rows(idx)
    rng = np.random.default_rng(seed)
    methods: dict[str, list[list[int]]] = {name: [] for name in METHODS}
    unqueryable = 0
    for q, _ in pairs:
        qrow = idx.row_of[q]
        try:
            found = rec.query(q, k).items
        except InputError:  # no price or a missing flag: nothing to recommend, a miss
            found, unqueryable = [], unqueryable + 1
        methods["mltk"].append([idx.row_of[r["item_id"]] for r in found])
        same_cat = items_cat[qrow]
        same_cat = same_cat[(same_cat != qrow) & (idx.product[same_cat] != idx.product[qrow])]
        methods["popular_in_category"].append(
            same_cat[np.argsort(-pop[same_cat], kind="stable")[:k]].tolist())
        s, e = idx.meta_span[int(idx.meta[qrow])]
        pool = np.arange(s, e)
        pool = pool[(pool != qrow) & (idx.product[pool] != idx.product[qrow])]
        methods["random_in_meta"].append(rng.choice(pool, min(k, len(pool)),
                                                    replace=False).tolist())
    if unqueryable:
        log.warning(f"{where}{unqueryable} query items lack a price or a kind/sex flag; "
                    f"counted as misses for mltk")
    return [_score(name, recs, pairs, idx, k) for name, recs in methods.items()]


def _last_pairs(tx: Any, idx: CandidateIndex, source: str | os.PathLike | None
                ) -> tuple[Any, Any]:
    """(each user's last two purchases of known items as (query, target) pairs, purchases per
    index row)."""
    import numpy as np

    require_columns(tx, ("user_id", "item_id"), "transactions", source)
    where = f"{os.fspath(source)}: " if source is not None else ""
    known = tx["item_id"].isin(idx.row_of)
    if not known.all():
        log.warning(f"{where}{int((~known).sum())} transactions name unknown items; skipped")
    tx = tx[known]
    order = ["user_id", "timestamp"] if "timestamp" in tx.columns else ["user_id"]
    tx = tx.sort_values(order, kind="stable")
    last_two = tx.groupby("user_id").tail(2)
    counts = last_two.groupby("user_id").size()
    last_two = last_two[last_two["user_id"].isin(counts[counts == 2].index)]
    pairs = last_two["item_id"].to_numpy().reshape(-1, 2)
    if not len(pairs):
        raise InputError(f"{where}no user with two or more purchases of known items")
    pop = np.bincount([idx.row_of[i] for i in tx["item_id"]], minlength=len(idx.item_id))
    return pairs, pop


def _score(name: str, recs: list[list[int]], pairs: Any, idx: CandidateIndex, k: int
           ) -> dict[str, Any]:
    """Hit rate, NDCG (one relevant item: the target, or another listing of its product) and
    coverage of one method's recommendations."""
    import numpy as np

    hits, gains = [], []
    for (_, target), r in zip(pairs, recs, strict=True):
        trow = idx.row_of[target]
        pos = [j for j, x in enumerate(r) if x == trow or idx.product[x] == idx.product[trow]]
        hits.append(bool(pos))
        gains.append(1.0 / np.log2(pos[0] + 2) if pos else 0.0)
    covered = len({x for r in recs for x in r})
    return {"method": name, "users": len(pairs), "k": k,
            "hit_rate": round(float(np.mean(hits)), 4), "ndcg": round(float(np.mean(gains)), 4),
            "coverage": round(covered / len(idx.item_id), 4)}


def _category_rows(idx: CandidateIndex) -> list[Any]:
    """For each index row, the rows of items in the same category_id."""
    import numpy as np
    import pandas as pd

    codes, _ = pd.factorize(pd.Series(idx.category))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    members = [order[bounds[c]:bounds[c + 1]] for c in range(codes.max() + 1)]
    return [members[c] for c in codes]
