"""Association rules over per-user category baskets, and meta-categories from them.

Baskets are a sparse users x categories boolean matrix (never a dense table), handed to
mlxtend as a sparse DataFrame. Meta-categories are the Louvain communities (networkx, seeded)
of the graph whose edges are the strong rules (lift >= min_lift, confidence >=
min_confidence), weighted by lift; a community larger than ``max_group_size`` is split again
with a higher resolution; a category without a strong rule is a group of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mltk.errors import MltkError


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


def mine_rules(basket_df: Any, settings: Mapping[str, Any]) -> Any:
    """Frequent itemsets and rules (support, confidence, lift, leverage, conviction)."""
    import pandas as pd
    from mlxtend.frequent_patterns import apriori, association_rules, fpgrowth

    algo = {"apriori": apriori, "fpgrowth": fpgrowth}.get(settings["algorithm"])
    if algo is None:
        raise MltkError(f"algorithm must be apriori or fpgrowth, got {settings['algorithm']!r}")
    kwargs = {"low_memory": True} if algo is apriori else {}  # else it holds every candidate
    freq = algo(basket_df, min_support=float(settings["min_support"]), use_colnames=True,
                max_len=int(settings["max_len"]), **kwargs)
    columns = ["antecedents", "consequents", "support", "confidence", "lift", "leverage",
               "conviction"]
    if freq.empty or (freq["itemsets"].map(len) > 1).sum() == 0:
        return pd.DataFrame(columns=columns)
    rules = association_rules(freq, metric="confidence",
                              min_threshold=float(settings["min_confidence"]))
    rules = rules[rules["lift"] >= float(settings["min_lift"])]
    return rules[columns].sort_values(["lift", "confidence"], ascending=False).reset_index(
        drop=True)


def meta_categories(rules: Any, categories: list, settings: Mapping[str, Any], seed: int,
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
    cap = int(settings["max_group_size"])
    res = float(settings["resolution"])

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
