"""Association rules over per-user category baskets, and meta-categories from them.

Baskets are a sparse users x categories boolean matrix (never a dense table), handed to
mlxtend as a sparse DataFrame. Meta-categories are the Louvain communities (networkx, seeded)
of the graph whose edges are the strong rules (lift >= min_lift, confidence >=
min_confidence), weighted by lift; a community larger than ``max_group_size`` is split again
with a higher resolution; a category without a strong rule is a group of its own.

:func:`mine_rules` is the whole of ``mltk recommend rules`` on tables in memory;
:func:`write_rules` saves its result as ``rules.csv`` and ``meta_categories.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mltk.recommend.settings import RecommendSettings, RuleSettings


def mine_rules(tx: Any, items: Any, settings: RecommendSettings
               ) -> tuple[Any, Any, dict[str, Any]]:
    """(rules, meta-categories, summary) of checked transactions and items (as
    :func:`mltk.recommend.data.check_transactions` and ``check_items`` return them)."""
    cols = settings.columns
    basket_df, cats = baskets(tx, items, cols.item_id, cols.category_id)
    rules = rules_from_baskets(basket_df, settings.rules)
    pop = items.set_index(cols.item_id)[cols.category_id].reindex(
        tx["item_id"]).value_counts().to_dict()
    all_cats = sorted(set(items[cols.category_id].dropna().tolist()) | set(cats))
    meta = meta_categories(rules, all_cats, settings.rules, settings.seed, pop)
    summary = {"users": int(basket_df.shape[0]), "categories": len(all_cats),
               "rules": int(len(rules)), "meta_categories": int(meta["meta_id"].nunique()),
               "singleton_groups": int((meta.groupby("meta_id").size() == 1).sum())}
    return rules, meta, summary


def write_rules(out: str | os.PathLike, rules: Any, meta: Any) -> None:
    """``rules.csv`` (item sets as space-separated ids) and ``meta_categories.csv`` in ``out``,
    each written atomically; ``rules`` None writes the meta-categories only."""
    from mltk._atomic import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if rules is not None:
        r = rules.copy()
        for col in ("antecedents", "consequents"):
            r[col] = r[col].map(lambda s: " ".join(sorted(map(str, s))))
        with atomic_path(out / "rules.csv") as tmp:
            r.to_csv(tmp, index=False)
    with atomic_path(out / "meta_categories.csv") as tmp:
        meta.to_csv(tmp, index=False)


def baskets(tx: Any, items: Any, item_col: str, cat_col: str) -> tuple[Any, list]:
    """(sparse boolean DataFrame users x categories, category ids)."""
    import numpy as np
    import pandas as pd
    from scipy import sparse

    cat_of = pd.Series(items[cat_col].to_numpy(), index=items[item_col].to_numpy())
    cats = cat_of.reindex(tx["item_id"].to_numpy()).to_numpy()
    users, u_idx = np.unique(tx["user_id"].to_numpy(), return_inverse=True)
    categories, c_idx = np.unique(cats, return_inverse=True)
    m = sparse.csr_matrix((np.ones(len(u_idx), bool), (u_idx, c_idx)),
                          shape=(len(users), len(categories)), dtype=bool)
    m.data[:] = True  # duplicates summed to True
    df = pd.DataFrame.sparse.from_spmatrix(m, columns=[str(c) for c in categories])
    return df, list(categories)


def rules_from_baskets(basket_df: Any, settings: RuleSettings) -> Any:
    """Frequent itemsets and rules (support, confidence, lift, leverage, conviction)."""
    import pandas as pd
    from mlxtend.frequent_patterns import apriori, association_rules, fpgrowth

    algo = {"apriori": apriori, "fpgrowth": fpgrowth}[settings.algorithm]
    kwargs = {"low_memory": True} if algo is apriori else {}  # else it holds every candidate
    freq = algo(basket_df, min_support=settings.min_support, use_colnames=True,
                max_len=settings.max_len, **kwargs)
    columns = ["antecedents", "consequents", "support", "confidence", "lift", "leverage",
               "conviction"]
    if freq.empty or (freq["itemsets"].map(len) > 1).sum() == 0:
        return pd.DataFrame(columns=columns)
    rules = association_rules(freq, metric="confidence",
                              min_threshold=settings.min_confidence)
    rules = rules[rules["lift"] >= settings.min_lift]
    # Ties broken by the rule's text: mlxtend lists rules in frozenset order, which follows
    # Python's per-process string hashing, and the order feeds the meta-category graph.
    def text(sets: Any) -> Any:
        return sets.map(lambda s: " ".join(sorted(map(str, s))))

    keyed = rules[columns].assign(_a=text(rules["antecedents"]), _c=text(rules["consequents"]))
    return keyed.sort_values(["lift", "confidence", "_a", "_c"],
                             ascending=[False, False, True, True], kind="mergesort").drop(
        columns=["_a", "_c"]).reset_index(drop=True)


def meta_categories(rules: Any, categories: list, settings: RuleSettings, seed: int,
                    popularity: Mapping[Any, int] | None = None) -> Any:
    """category_id -> meta_id (0-based, largest groups first) with each group's top
    categories."""
    import networkx as nx
    import pandas as pd

    g = nx.Graph()
    g.add_nodes_from(str(c) for c in categories)
    for _, r in rules.iterrows():
        for a in r["antecedents"]:
            for b in r["consequents"]:
                w = float(r["lift"])
                if g.has_edge(a, b):
                    w = max(w, g[a][b]["weight"])
                g.add_edge(a, b, weight=w)
    cap = settings.max_group_size
    res = float(settings.resolution)

    def split(nodes: set, resolution: float, depth: int = 0) -> list[set]:
        sub = g.subgraph(nodes)
        if sub.number_of_edges() == 0:
            return [{n} for n in nodes]
        parts = []
        for comp in nx.community.louvain_communities(sub, weight="weight",
                                                     resolution=resolution, seed=seed):
            if len(comp) > cap and depth < 5:
                parts.extend(split(comp, resolution * 2, depth + 1))
            else:
                parts.append(comp)
        return parts

    groups = split(set(g.nodes), res)
    popularity = popularity or {}
    groups.sort(key=lambda s: (-len(s), min(s)))
    by_str = {str(c): c for c in categories}
    rows = []
    for meta, members in enumerate(groups):
        ranked = sorted(members, key=lambda c: (-popularity.get(by_str[c], 0), c))
        top = " ".join(ranked[:5])
        rows.extend({"category_id": by_str[c], "meta_id": meta, "group_size": len(members),
                     "group_top_categories": top} for c in ranked)
    return pd.DataFrame(rows)
