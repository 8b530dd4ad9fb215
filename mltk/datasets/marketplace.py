"""``marketplace``: items, users and transactions whose baskets follow planted groups of
related categories, for ``mltk recommend``. ``truth.json`` records the groups."""

from __future__ import annotations

import json
from pathlib import Path

from mltk._atomic import atomic_path, write_text
from mltk.datasets import DatasetInfo

KINDS = ["model", "line", "series", "kigata"]
SIGNALS = ["rating", "popularity_boost", "minyuka_tag", "teikei_cd", "ps", "add_fav",
           "view_detail", "buyer_rating_good"]


def generate(n_items: int = 3000, n_users: int = 1500, n_groups: int = 8,
             cats_per_group: int = 6, seed: int = 0, duplicate_share: float = 0.02):
    """(items, users, transactions, groups) DataFrames/dict."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_cats = n_groups * cats_per_group
    cat_ids = rng.permutation(np.arange(100, 100 + n_cats * 7, 7))[:n_cats]
    group_of = {int(c): i // cats_per_group for i, c in enumerate(cat_ids)}
    base_price = rng.uniform(3000, 20000, n_groups)
    cat = rng.choice(cat_ids, n_items)
    grp = np.array([group_of[int(c)] for c in cat])
    kind = rng.integers(0, 4, n_items)
    sex = rng.choice(3, n_items, p=[0.4, 0.4, 0.2])  # man, women, unisex
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items + 1) * 10 + 1,
        "category_id": cat,
        "price": np.round(base_price[grp] * rng.lognormal(0, 0.25, n_items), -1),
        **{k: (kind == i).astype(int) for i, k in enumerate(KINDS)},
        "man": ((sex == 0) | (sex == 2)).astype(int),
        "women": ((sex == 1) | (sex == 2)).astype(int),
        "rating": rng.integers(0, 501, n_items),
        "popularity_boost": (rng.random(n_items) < 0.2).astype(int),
        "minyuka_tag": (rng.random(n_items) < 0.1).astype(int),
        "teikei_cd": (rng.random(n_items) < 0.15).astype(int),
        "ps": (rng.random(n_items) < 0.3).astype(int),
        "add_fav": (rng.random(n_items) < 0.25).astype(int),
        "view_detail": (rng.random(n_items) < 0.4).astype(int),
        "buyer_rating_good": (rng.random(n_items) < 0.6).astype(int),
    })
    items["product_id"] = np.arange(n_items)
    dup = rng.choice(n_items, int(n_items * duplicate_share), replace=False)
    for a, b in zip(dup[::2], dup[1::2], strict=False):  # a few products listed twice
        items.loc[b, ["product_id", "category_id", "price", *KINDS, "man", "women"]] = \
            items.loc[a, ["product_id", "category_id", "price", *KINDS, "man", "women"]].values
    grp = np.array([group_of[int(c)] for c in items["category_id"]])
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1),
                          "age": rng.integers(18, 70, n_users),
                          "is_member": (rng.random(n_users) < 0.4).astype(int)})
    # Shoppers stay in a favourite group of categories, in their kind and sex, near their
    # price, and favour well-rated items: the premise of "similar items".
    quality = np.exp(0.8 * (items[SIGNALS[1:]].to_numpy(float).sum(1)
                            + items["rating"].to_numpy(float) / 250))
    kind_of = items[KINDS].to_numpy().argmax(1)
    sex_of = items["man"].to_numpy() * 2 + items["women"].to_numpy()
    buckets: dict[tuple, np.ndarray] = {}
    for key in set(zip(grp.tolist(), kind_of.tolist(), sex_of.tolist(), strict=True)):
        buckets[key] = np.flatnonzero((grp == key[0]) & (kind_of == key[1]) & (sex_of == key[2]))
    by_group = [np.flatnonzero(grp == g) for g in range(n_groups)]
    favourite = rng.integers(0, n_groups, n_users)
    n_buys = rng.integers(2, 7, n_users)
    rows = []
    t = 0
    prices = items["price"].to_numpy(float)
    for u in range(n_users):
        prev = None
        for _ in range(int(n_buys[u])):
            g = favourite[u] if rng.random() < 0.85 else int(rng.integers(0, n_groups))
            pool = by_group[g]
            if prev is not None and rng.random() < 0.7:
                similar = buckets.get((g, int(kind_of[prev]), int(sex_of[prev])), pool)
                near = similar[np.abs(prices[similar] - prices[prev]) <= 2000]
                pool = near if len(near) else similar
            w = quality[pool] / quality[pool].sum()
            prev = int(rng.choice(pool, p=w))
            t += int(rng.integers(1, 100))
            rows.append((int(users["user_id"][u]), int(items["item_id"][prev]), t))
    tx = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return items, users, tx, group_of


def make_marketplace(out: Path, n: int = 3000, seed: int = 0) -> DatasetInfo:
    items, users, tx, group_of = generate(n_items=n, n_users=max(200, n // 2), seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, df in (("items", items), ("users", users), ("transactions", tx)):
        files[name] = out / f"{name}.csv"
        with atomic_path(files[name]) as tmp:
            df.to_csv(tmp, index=False)
    truth = out / "truth.json"
    write_text(truth, json.dumps({"category_group": {str(k): v for k, v in group_of.items()},
                                  "groups": len(set(group_of.values()))}, indent=2) + "\n")
    return DatasetInfo("marketplace", out, n, truth, files=files)
