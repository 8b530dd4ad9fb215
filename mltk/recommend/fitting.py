"""``mltk recommend fit`` on tables in memory: rules -> meta-categories -> classifier ->
candidate index -> RankNet, returning a :class:`Recommender` (nothing is written until its
``save``).

The stages, in order (one random generator, seeded by the ``seed`` setting, runs through them):

1. :func:`check_inputs`: the tables' checks (the same as for files);
2. :func:`mine_rules` (unless meta-categories are given) and :func:`item_metas`;
3. :func:`train_classifier`: previous purchase -> meta-category of the next one, then every
   item's own top meta-categories (:func:`top_metas`);
4. :func:`train_scorer`: a RankNet reproducing the rank score's order within meta-categories;
5. :func:`index_table`: what the candidate index sorts and filters.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from mltk.errors import InputError
from mltk.recommend.data import (
    check_items,
    check_meta,
    check_transactions,
    check_users,
    rank_score,
)
from mltk.recommend.features import (
    context_matrix,
    item_matrix,
    kind_codes,
    sex_codes,
    user_features,
)
from mltk.recommend.index import CandidateIndex
from mltk.recommend.recommender import Recommender, field_names
from mltk.recommend.rules import mine_rules
from mltk.recommend.settings import RecommendSettings


@dataclasses.dataclass
class Inputs:
    """The checked tables of a fit."""

    items: Any
    transactions: Any
    users: Any = None
    meta: Any = None


def fit(items: Any, transactions: Any, settings: RecommendSettings, users: Any = None,
        meta: Any = None, *, sources: Mapping[str, str | os.PathLike] | None = None
        ) -> Recommender:
    """A recommender fitted on DataFrames; nothing is written (see :meth:`Recommender.save`).

    ``items``: the catalogue (columns named by ``settings.columns``); ``transactions``:
    user_id, item_id[, timestamp]; ``users``: user_id and numeric user features (for per-user
    queries); ``meta``: category_id -> meta_id (as ``recommend rules`` writes; else the rules
    are mined first). ``sources`` names the tables in errors and warnings (``{"items":
    "items.csv", ...}``, as the CLI passes the files they came from). The fit metrics are the
    recommender's ``report``.
    """
    import numpy as np

    data = check_inputs(items, transactions, settings, users, meta, sources or {})
    report: dict[str, Any] = {}
    rules = None
    meta = data.meta
    if meta is None:
        rules, meta, report["rules"] = mine_rules(data.transactions, data.items, settings)
    item_meta, n_meta = item_metas(data.items, meta, settings)
    rng = np.random.default_rng(settings.seed)
    clf, fitted, report["classifier"] = train_classifier(data, item_meta, n_meta, settings, rng)
    top_meta = top_metas(clf, item_meta, data.items, settings, fitted)
    scorer, net, labels, fitted["item_stats"], report["ranknet"] = train_scorer(
        data.items, item_meta, settings, rng)
    index = CandidateIndex(index_table(data.items, item_meta, net, labels, settings), top_meta,
                           field_names(settings.columns))
    return Recommender(index, settings, fitted, classifier=clf, ranknet=scorer,
                       users=data.users, rules=rules, meta=meta, report=report)


def check_inputs(items: Any, transactions: Any, settings: RecommendSettings, users: Any,
                 meta: Any, sources: Mapping[str, str | os.PathLike]) -> Inputs:
    items = check_items(items, settings, "fit", sources.get("items"))
    return Inputs(
        items, check_transactions(transactions, items, settings, sources.get("transactions")),
        None if users is None else check_users(users, sources.get("users")),
        None if meta is None else check_meta(meta, sources.get("meta")))


def item_metas(items: Any, meta: Any, settings: RecommendSettings) -> tuple[Any, int]:
    """(each item's meta-category, how many there are): a category never bought is a group of
    its own."""
    cat = settings.columns.category_id
    meta_of = dict(zip(meta["category_id"].tolist(), meta["meta_id"].tolist(), strict=True))
    n_meta = int(meta["meta_id"].max()) + 1
    unknown_cat = ~items[cat].isin(meta_of)
    for c in sorted(items.loc[unknown_cat, cat].dropna().unique().tolist()):
        meta_of[c] = n_meta
        n_meta += 1
    return items[cat].map(meta_of).fillna(n_meta - 1).astype(int).to_numpy(), n_meta


def _purchase_pairs(data: Inputs, settings: RecommendSettings) -> tuple[Any, Any, Any]:
    """(row of the previous item, row of the next item, user) for consecutive purchases of a
    user."""
    row_of = {v: i for i, v in enumerate(data.items[settings.columns.item_id].tolist())}
    tx = data.transactions
    rows = tx["item_id"].map(row_of).to_numpy()
    users = tx["user_id"].to_numpy()
    same_user = users[1:] == users[:-1]
    prev, nxt = rows[:-1][same_user], rows[1:][same_user]
    if len(prev) < 10:
        raise InputError("too few users with two or more purchases to train the classifier")
    return prev, nxt, users[1:][same_user]


def train_classifier(data: Inputs, item_meta: Any, n_meta: int, settings: RecommendSettings,
                     rng: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(classifier, fitted numbers so far, report): previous purchase (its meta-category,
    price, flags, user features) -> meta-category of the next purchase, some users held out."""
    import numpy as np

    from mltk.recommend.models import build_classifier

    prev, nxt, pair_users = _purchase_pairs(data, settings)
    ufeat, user_stats = (None, None) if data.users is None else user_features(data.users,
                                                                              pair_users)
    X, ctx_stats = context_matrix(item_meta[prev], n_meta, data.items.iloc[prev], settings,
                                  ufeat)
    y = item_meta[nxt]
    c = settings.classifier
    uniq = np.unique(pair_users)
    val_users = set(rng.choice(uniq, max(1, int(len(uniq) * c.val_fraction)),
                               replace=False).tolist())
    is_val = np.array([u in val_users for u in pair_users])
    clf = build_classifier(X.shape[1], n_meta, c.layers, c.dropout, c.learning_rate,
                           settings.seed)
    clf.fit(X[~is_val], y[~is_val], epochs=c.epochs, batch_size=c.batch_size, verbose=0,
            shuffle=True)
    proba = clf.predict(X[is_val], verbose=0, batch_size=4096)
    top5 = np.argsort(-proba, 1)[:, :5]
    popular = np.bincount(y[~is_val], minlength=n_meta).argsort()[::-1][:5]
    report = {
        "train_pairs": int((~is_val).sum()), "val_pairs": int(is_val.sum()),
        "meta_categories": n_meta,
        "top1_accuracy": float((top5[:, 0] == y[is_val]).mean()),
        "top5_accuracy": float((top5 == y[is_val][:, None]).any(1).mean()),
        "popularity_top5_accuracy": float(np.isin(y[is_val], popular).mean())}
    fitted = {"n_meta": n_meta, "context_stats": ctx_stats, "user_stats": user_stats}
    return clf, fitted, report


def top_metas(clf: Any, item_meta: Any, items: Any, settings: RecommendSettings,
              fitted: Mapping[str, Any], chunk: int = 32768) -> Any:
    """Every item's own top meta-categories (the context without a user), precomputed for fast
    queries; in chunks, so that items x meta-categories probabilities never sit in memory at
    once."""
    import numpy as np

    n_meta, top = fitted["n_meta"], settings.top_meta
    n_user_cols = 0 if fitted["user_stats"] is None else len(fitted["user_stats"]["columns"])
    out = np.zeros((len(items), min(top, n_meta)), np.int64)
    for start in range(0, len(items), chunk):
        part = items.iloc[start:start + chunk]
        X, _ = context_matrix(item_meta[start:start + chunk], n_meta, part, settings,
                              np.zeros((len(part), n_user_cols)) if n_user_cols else None,
                              fitted["context_stats"])
        proba = clf.predict(X, verbose=0, batch_size=8192)
        best = np.argpartition(-proba, min(top, n_meta) - 1, axis=1)[:, :top]
        order = np.argsort(-np.take_along_axis(proba, best, 1), axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(best, order, 1)
    return out


def train_scorer(items: Any, item_meta: Any, settings: RecommendSettings, rng: Any
                 ) -> tuple[Any, Any, Any, dict[str, Any], dict[str, Any]]:
    """(RankNet scorer, every item's score, rank-score labels, item feature stats, report):
    the RankNet learns the rank score's order within meta-categories, some items held out."""
    import numpy as np

    from mltk.recommend.models import ndcg, train_ranknet

    r = settings.ranknet
    labels = rank_score(items, settings)
    Xi, item_stats = item_matrix(items, settings)
    val_items = np.zeros(len(items), bool)
    for m in np.unique(item_meta):
        idx = np.flatnonzero(item_meta == m)
        val_items[rng.choice(idx, int(len(idx) * r.val_fraction), replace=False)] = True
    scorer = train_ranknet(Xi[~val_items], labels[~val_items], item_meta[~val_items], r,
                           settings.seed)
    net = scorer.predict(Xi, verbose=0, batch_size=8192).ravel()
    queries = [np.flatnonzero(val_items & (item_meta == m)) for m in np.unique(item_meta)]
    queries = [q for q in queries if len(q) >= 2]
    rel = [labels[q] for q in queries]
    report = {
        "val_queries": len(queries), "k": r.ndcg_k,
        "ndcg_linear": ndcg(rel, [net[q] for q in queries], r.ndcg_k, "linear"),
        "ndcg_exponential": ndcg(rel, [net[q] for q in queries], r.ndcg_k, "exponential"),
        "ndcg_linear_random": ndcg(rel, [rng.random(len(q)) for q in queries], r.ndcg_k,
                                   "linear")}
    return scorer, net, labels, item_stats, report


def index_table(items: Any, item_meta: Any, net: Any, labels: Any,
                settings: RecommendSettings) -> Any:
    """The columns of :class:`CandidateIndex`: ids, meta-category, kind/sex codes, price,
    product code and the two scores."""
    import numpy as np
    import pandas as pd

    cols = settings.columns
    product = (items[cols.product_id] if cols.product_id in items.columns
               else pd.Series(np.arange(len(items))))
    return pd.DataFrame({
        "item_id": items[cols.item_id].to_numpy(),
        "category_id": items[cols.category_id].to_numpy(), "meta_id": item_meta,
        "kind_code": kind_codes(items, cols.kind_flags),
        "sex_code": sex_codes(items, cols.sex_flags),
        "price": items[cols.price].to_numpy(float),
        "product_code": pd.factorize(product)[0], "net_score": net, "rank_score": labels})
