"""``mltk recommend``: rules -> meta-categories -> classifier -> filters -> RankNet, driven by
``configs/recommend.yaml``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mltk._atomic import atomic_path, write_json
from mltk.errors import InputError
from mltk.recommend.data import load_items, load_transactions, rank_score
from mltk.recommend.index import CandidateIndex, Recommendation, check_k
from mltk.recommend.queries import QueryRow
from mltk.recommend.rules import baskets, meta_categories, mine_rules

log = logging.getLogger(__name__)


# -- stage 1 ------------------------------------------------------------------------------------
def run_rules(tx: Any, items: Any, cfg: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    cols = cfg["columns"]
    basket_df, cats = baskets(tx, items, cols["item_id"], cols["category_id"])
    rules = mine_rules(basket_df, cfg["rules"])
    pop = items.set_index(cols["item_id"])[cols["category_id"]].reindex(
        tx["item_id"]).value_counts().to_dict()
    all_cats = sorted(set(items[cols["category_id"]].dropna().tolist()) | set(cats))
    meta = meta_categories(rules, all_cats, cfg["rules"], int(cfg["seed"]), pop)
    summary = {"users": int(basket_df.shape[0]), "categories": len(all_cats),
               "rules": int(len(rules)), "meta_categories": int(meta["meta_id"].nunique()),
               "singleton_groups": int((meta.groupby("meta_id").size() == 1).sum())}
    return rules, meta, summary


def write_rules(out: Path, rules: Any, meta: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    r = rules.copy()
    for col in ("antecedents", "consequents"):
        r[col] = r[col].map(lambda s: " ".join(sorted(map(str, s))))
    with atomic_path(out / "rules.csv") as tmp:
        r.to_csv(tmp, index=False)
    with atomic_path(out / "meta_categories.csv") as tmp:
        meta.to_csv(tmp, index=False)


# -- features -----------------------------------------------------------------------------------
def _flag_matrix(items: Any, flags: list[str]) -> Any:
    """The flag columns as floats: an absent column counts as 0, a missing value stays NaN."""
    import numpy as np

    columns = [items[f].to_numpy(float) if f in items.columns else np.zeros(len(items))
               for f in flags]
    return np.stack(columns, 1) if columns else np.zeros((len(items), 0))


def _codes(items: Any, flags: list[str]) -> Any:
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


def _sex_code(items: Any, flags: list[str]) -> Any:
    """The sex flags as bits (first flag highest), -1 when a flag is missing (unknown)."""
    import numpy as np

    m = _flag_matrix(items, flags)
    code = (np.nan_to_num(m) * (2 ** np.arange(len(flags))[::-1])).sum(1).astype(np.int64)
    code[np.isnan(m).any(1)] = -1
    return code


def item_matrix(items: Any, cfg: Mapping[str, Any], stats: dict | None = None) -> tuple[Any, dict]:
    """Numeric item features for the RankNet (signals with missing indicators, price, flags)."""
    import numpy as np

    cols = cfg["columns"]
    parts, names = [], []
    price = np.log1p(items[cols["price"]].to_numpy(float))
    parts += [np.nan_to_num(price, nan=np.nanmedian(price)), np.isnan(price).astype(float)]
    names += ["log_price", "price_missing"]
    for f in [*cols["kind_flags"], *cols["sex_flags"], *cfg["signals"]]:
        v = items[f].to_numpy(float) if f in items.columns else np.full(len(items), np.nan)
        parts += [np.nan_to_num(v), np.isnan(v).astype(float)]
        names += [f, f"{f}_missing"]
    X = np.stack(parts, 1)
    if stats is None:
        stats = {"mean": X.mean(0).tolist(), "std": (X.std(0) + 1e-9).tolist(), "names": names}
    X = (X - np.array(stats["mean"])) / np.array(stats["std"])
    return X.astype("float32"), stats


def context_matrix(metas: Any, n_meta: int, items: Any, cfg: Mapping[str, Any],
                   user_feats: Any = None, stats: dict | None = None) -> tuple[Any, dict]:
    """Purchase context for the classifier: the item's meta one-hot, price, flags (+ user)."""
    import numpy as np

    cols = cfg["columns"]
    onehot = np.zeros((len(items), n_meta), "float32")
    onehot[np.arange(len(items)), metas] = 1
    price = np.log1p(items[cols["price"]].to_numpy(float))
    flags = [items[f].to_numpy(float) if f in items.columns else np.zeros(len(items))
             for f in [*cols["kind_flags"], *cols["sex_flags"]]]
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


# -- fit ------------------------------------------------------------------------------------------
def fit(items_path: str | os.PathLike, tx_path: str | os.PathLike, out: str | os.PathLike,
        cfg: Mapping[str, Any], users_path: str | os.PathLike | None = None,
        meta_path: str | os.PathLike | None = None) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from mltk import _config
    from mltk.recommend.models import build_classifier, ndcg, train_ranknet

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"])
    cols = cfg["columns"]
    items = load_items(items_path, cfg)
    tx = load_transactions(tx_path, items, cfg)
    report: dict[str, Any] = {}
    if meta_path is None:
        rules, meta, report["rules"] = run_rules(tx, items, cfg)
        write_rules(out_dir, rules, meta)
    else:
        meta = pd.read_csv(meta_path)
        if not {"category_id", "meta_id"} <= set(meta.columns):
            raise InputError(f"{meta_path}: expected columns category_id, meta_id")
        with atomic_path(out_dir / "meta_categories.csv") as tmp:
            meta.to_csv(tmp, index=False)
    meta_of = dict(zip(meta["category_id"].tolist(), meta["meta_id"].tolist(), strict=True))
    n_meta = int(meta["meta_id"].max()) + 1
    unknown_cat = ~items[cols["category_id"]].isin(meta_of)
    next_meta = n_meta
    for c in sorted(items.loc[unknown_cat, cols["category_id"]].dropna().unique().tolist()):
        meta_of[c] = next_meta  # categories never bought: a group of their own
        next_meta += 1
    n_meta = next_meta
    item_meta = items[cols["category_id"]].map(meta_of).fillna(n_meta - 1).astype(int).to_numpy()

    users = None
    user_stats = None
    if users_path is not None:
        users = load_users(users_path)
    # (b) classifier: previous purchase -> meta of the next purchase
    row_of = {v: i for i, v in enumerate(items[cols["item_id"]].tolist())}
    rows = tx["item_id"].map(row_of).to_numpy()
    same_user = tx["user_id"].to_numpy()[1:] == tx["user_id"].to_numpy()[:-1]
    prev, nxt = rows[:-1][same_user], rows[1:][same_user]
    pair_users = tx["user_id"].to_numpy()[1:][same_user]
    if len(prev) < 10:
        raise InputError("too few users with two or more purchases to train the classifier")
    ufeat = None
    if users is not None:
        ufeat, user_stats = _user_features(users, pair_users)
    ctx_items = items.iloc[prev]
    X, ctx_stats = context_matrix(item_meta[prev], n_meta, ctx_items, cfg, ufeat)
    y = item_meta[nxt]
    rng = np.random.default_rng(seed)
    uniq = np.unique(pair_users)
    val_users = set(rng.choice(uniq, max(1, int(len(uniq) * cfg["classifier"]["val_fraction"])),
                               replace=False).tolist())
    is_val = np.array([u in val_users for u in pair_users])
    c = cfg["classifier"]
    clf = build_classifier(X.shape[1], n_meta, c["layers"], float(c["dropout"]),
                           float(c["learning_rate"]), seed)
    clf.fit(X[~is_val], y[~is_val], epochs=int(c["epochs"]), batch_size=int(c["batch_size"]),
            verbose=0, shuffle=True)
    proba = clf.predict(X[is_val], verbose=0, batch_size=4096)
    top5 = np.argsort(-proba, 1)[:, :5]
    popular = np.bincount(y[~is_val], minlength=n_meta).argsort()[::-1][:5]
    report["classifier"] = {
        "train_pairs": int((~is_val).sum()), "val_pairs": int(is_val.sum()),
        "meta_categories": n_meta,
        "top1_accuracy": float((top5[:, 0] == y[is_val]).mean()),
        "top5_accuracy": float((top5 == y[is_val][:, None]).any(1).mean()),
        "popularity_top5_accuracy": float(np.isin(y[is_val], popular).mean())}
    # every item's own top metas (the no-user context), precomputed for fast queries; in
    # chunks, so that items x meta-categories probabilities never sit in memory at once
    top_meta = _top_metas(clf, item_meta, n_meta, items, cfg, ctx_stats,
                          0 if users is None else len(user_stats["columns"]))
    # (c) RankNet on item features to reproduce the rank score ordering
    r = cfg["ranknet"]
    labels = rank_score(items, cfg)
    Xi, item_stats = item_matrix(items, cfg)
    val_items = np.zeros(len(items), bool)
    for m in np.unique(item_meta):
        idx = np.flatnonzero(item_meta == m)
        val_items[rng.choice(idx, int(len(idx) * float(r["val_fraction"])), replace=False)] = True
    scorer = train_ranknet(Xi[~val_items], labels[~val_items], item_meta[~val_items], r, seed)
    net = scorer.predict(Xi, verbose=0, batch_size=8192).ravel()
    k = int(r["ndcg_k"])
    queries = [np.flatnonzero(val_items & (item_meta == m)) for m in np.unique(item_meta)]
    queries = [q for q in queries if len(q) >= 2]
    rel = [labels[q] for q in queries]
    report["ranknet"] = {
        "val_queries": len(queries), "k": k,
        "ndcg_linear": ndcg(rel, [net[q] for q in queries], k, "linear"),
        "ndcg_exponential": ndcg(rel, [net[q] for q in queries], k, "exponential"),
        "ndcg_linear_random": ndcg(rel, [rng.random(len(q)) for q in queries], k, "linear")}
    # the index, the models, the settings
    product = (items[cols["product_id"]] if cols.get("product_id") in items.columns
               else pd.Series(np.arange(len(items))))
    table = pd.DataFrame({
        "item_id": items[cols["item_id"]].to_numpy(),
        "category_id": items[cols["category_id"]].to_numpy(), "meta_id": item_meta,
        "kind_code": _codes(items, cols["kind_flags"]),
        "sex_code": _sex_code(items, cols["sex_flags"]),
        "price": items[cols["price"]].to_numpy(float),
        "product_code": pd.factorize(product)[0], "net_score": net, "rank_score": labels})
    CandidateIndex(table, top_meta).save(out_dir)
    for name, model in (("classifier.keras", clf), ("ranknet.keras", scorer)):
        with atomic_path(out_dir / name) as tmp:
            model.save(tmp)
    if users is not None:
        with atomic_path(out_dir / "users.parquet") as tmp:
            users.to_parquet(tmp, index=False)
    _config.save(out_dir / "config.yaml", {**cfg, "n_meta": n_meta, "context_stats": ctx_stats,
                                           "user_stats": user_stats, "item_stats": item_stats})
    write_json(out_dir / "metrics.json", report)
    return report


def _top_metas(clf: Any, item_meta: Any, n_meta: int, items: Any, cfg: Mapping[str, Any],
               ctx_stats: dict, n_user_cols: int, chunk: int = 32768) -> Any:
    import numpy as np

    top = int(cfg["top_meta"])
    out = np.zeros((len(items), min(top, n_meta)), np.int64)
    for start in range(0, len(items), chunk):
        part = items.iloc[start:start + chunk]
        X, _ = context_matrix(item_meta[start:start + chunk], n_meta, part, cfg,
                              np.zeros((len(part), n_user_cols)) if n_user_cols else None,
                              ctx_stats)
        proba = clf.predict(X, verbose=0, batch_size=8192)
        best = np.argpartition(-proba, min(top, n_meta) - 1, axis=1)[:, :top]
        order = np.argsort(-np.take_along_axis(proba, best, 1), axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(best, order, 1)
    return out


def load_users(path: str | os.PathLike) -> Any:
    from mltk._tables import load_table

    users = load_table(path)
    if "user_id" not in users.columns:
        raise InputError(f"{path}: users need a 'user_id' column")
    return users


def _user_features(users: Any, user_ids: Any, stats: dict | None = None) -> tuple[Any, dict]:
    import numpy as np

    num = [c for c in users.columns if c != "user_id" and users[c].dtype.kind in "biuf"]
    if stats is None:
        stats = {"columns": num}
    table = users.set_index("user_id")[stats["columns"]].astype(float)
    return table.reindex(user_ids).to_numpy(float).reshape(len(user_ids), -1) if len(
        stats["columns"]) else np.zeros((len(user_ids), 0)), stats


# -- query ----------------------------------------------------------------------------------------
class Recommender:
    """A fitted model folder, loaded for queries. Keras is only loaded for per-user queries."""

    def __init__(self, folder: str | os.PathLike) -> None:
        from mltk import _config

        self.folder = Path(folder)
        if not (self.folder / "config.yaml").exists():
            raise InputError(f"{self.folder}: not a recommend model folder (no config.yaml)")
        self.cfg = _config.load_yaml(self.folder / "config.yaml")
        self.index = CandidateIndex.load(self.folder, _field_names(self.cfg["columns"]))
        self._clf = None
        self._users = None

    def _user_metas(self, item_row: int, user_id: Any) -> Any:
        import numpy as np
        import pandas as pd

        if self.cfg.get("user_stats") is None:
            raise InputError("this model was fitted without --users; --user is not available")
        if self._users is None:
            from mltk.recommend.models import import_keras

            keras = import_keras()

            self._users = pd.read_parquet(self.folder / "users.parquet")
            self._clf = keras.models.load_model(self.folder / "classifier.keras")
        if user_id not in set(self._users["user_id"].tolist()):
            raise InputError(f"unknown user id {user_id!r}")
        ufeat, _ = _user_features(self._users, np.array([user_id]), self.cfg["user_stats"])
        t = self.index.table.iloc[[item_row]]
        cols = self.cfg["columns"]
        fake = pd.DataFrame({cols["price"]: t["price"].to_numpy()})
        for j, f in enumerate(cols["kind_flags"]):
            fake[f] = float(t["kind_code"].iloc[0] == j)
        sex = int(t["sex_code"].iloc[0])
        for j, f in enumerate(cols["sex_flags"]):
            fake[f] = float((sex >> (len(cols["sex_flags"]) - 1 - j)) & 1) if sex >= 0 else \
                np.nan
        X, _ = context_matrix(t["meta_id"].to_numpy(), int(self.cfg["n_meta"]), fake, self.cfg,
                              ufeat, self.cfg["context_stats"])
        proba = self._clf.predict(X, verbose=0)[0]
        return np.argsort(-proba)[: int(self.cfg["top_meta"])]

    def _k(self, k: int | None) -> int:
        return check_k(self.cfg["k"] if k is None else k)

    def query(self, item_id: Any, k: int | None = None, user_id: Any = None,
              explain: bool = False) -> Recommendation:
        """The k most similar items (``k``: a positive integer, default the model's ``k``). A
        query item without a price or a kind/sex flag is an InputError naming both."""
        k = self._k(k)
        metas = None
        if user_id is not None:
            row = self.index.row(item_id)
            self.index.require_filter_fields(row)  # before the classifier is loaded
            metas = self._user_metas(row, user_id)
        return self.index.query(item_id, k, float(self.cfg["price_band"]), metas, explain,
                                bool(self.cfg.get("relax_price_band")))

    def batch(self, rows: Iterable[Mapping[str, Any] | QueryRow], k: int | None = None,
              explain: bool = False) -> Iterator[dict[str, Any]]:
        """One record per input row (a mapping with item_id[, user_id], or a QueryRow from
        ``read_queries``); a bad row gives an error record and the rest go on. Records: row,
        item_id, user_id, recommendations, note, [explain], error, line (the row's line in its
        file, else None); errors of rows read from a file start with ``line N:``. ``k`` is
        checked at once, before the first row."""
        return self._batch(rows, self._k(k), explain)

    def _batch(self, rows: Iterable[Any], k: int, explain: bool) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            line, fields, error = _unpack(row)
            record = {"row": i, "item_id": fields.get("item_id"),
                      "user_id": fields.get("user_id"), "recommendations": [], "note": None,
                      **({"explain": None} if explain else {}), "error": None, "line": line}
            if error is None and record["item_id"] is None:
                error = "no item_id"
            if error is None:
                try:
                    rec = self.query(record["item_id"], k, record["user_id"], explain)
                    record.update(item_id=rec.item_id, recommendations=rec.items, note=rec.note,
                                  **({"explain": rec.explain} if explain else {}))
                except InputError as exc:
                    error = str(exc)
            if error is not None:
                record["error"] = error if line is None else f"line {line}: {error}"
            yield record


# -- evaluate -------------------------------------------------------------------------------------
def evaluate(folder: str | os.PathLike, tx_path: str | os.PathLike, k: int | None = None,
             seed: int = 0) -> list[dict[str, Any]]:
    """Leave-last-purchase-out hit rate@k, NDCG@k and coverage, with two baselines."""
    import numpy as np

    from mltk._tables import load_table

    rec = Recommender(folder)
    k = rec._k(k)
    idx = rec.index
    tx = load_table(tx_path)
    known = tx["item_id"].isin(idx.row_of)
    if not known.all():
        log.warning(f"{tx_path}: {int((~known).sum())} transactions name unknown items; skipped")
    tx = tx[known]
    order = ["user_id", "timestamp"] if "timestamp" in tx.columns else ["user_id"]
    tx = tx.sort_values(order, kind="stable")
    last_two = tx.groupby("user_id").tail(2)
    counts = last_two.groupby("user_id").size()
    last_two = last_two[last_two["user_id"].isin(counts[counts == 2].index)]
    pairs = last_two["item_id"].to_numpy().reshape(-1, 2)
    if not len(pairs):
        raise InputError(f"{tx_path}: no user with two or more purchases of known items")
    pop = np.bincount([idx.row_of[i] for i in tx["item_id"]], minlength=len(idx.item_id))
    items_cat = _category_rows(rec)
    rng = np.random.default_rng(seed)
    methods = {"mltk": [], "popular_in_category": [], "random_in_meta": []}
    unqueryable = 0
    for q, target in pairs:
        qrow, trow = idx.row_of[q], idx.row_of[target]
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
        log.warning(f"{tx_path}: {unqueryable} query items lack a price or a kind/sex flag; "
                    f"counted as misses for mltk")
    out = []
    for name, recs in methods.items():
        hits, gains = [], []
        for (_, target), r in zip(pairs, recs, strict=True):
            trow = idx.row_of[target]
            pos = [j for j, x in enumerate(r) if x == trow or idx.product[x] == idx.product[trow]]
            hits.append(bool(pos))
            gains.append(1.0 / np.log2(pos[0] + 2) if pos else 0.0)
        covered = len({x for r in recs for x in r})
        out.append({"method": name, "users": len(pairs), "k": k,
                    "hit_rate": round(float(np.mean(hits)), 4),
                    "ndcg": round(float(np.mean(gains)), 4),
                    "coverage": round(covered / len(idx.item_id), 4)})
    return out


def _unpack(row: Any) -> tuple[int | None, Mapping[str, Any], str | None]:
    """(line, fields, error) of a batch row."""
    if isinstance(row, QueryRow):
        return row.line, row.fields, row.error
    if isinstance(row, Mapping):
        return None, row, None
    return None, {}, f"expected a mapping with an item_id, got {type(row).__name__}"


def _field_names(cols: Mapping[str, Any]) -> dict[str, str]:
    """How query errors name the fields the filters compare: the configured columns."""
    return {"price": f"column {cols['price']!r}",
            "kind": "columns " + ", ".join(cols.get("kind_flags") or []),
            "sex": "columns " + ", ".join(cols.get("sex_flags") or [])}


def _category_rows(rec: Recommender) -> list[Any]:
    """For each index row, the rows of items in the same category_id."""
    import numpy as np
    import pandas as pd

    codes, _ = pd.factorize(pd.Series(rec.index.category))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    members = [order[bounds[c]:bounds[c + 1]] for c in range(codes.max() + 1)]
    return [members[c] for c in codes]
