"""mltk recommend at the original's scale.

1. Query latency over a catalogue of ~900k items (fit once; the classifier is kept small here,
   since queries use the top meta-categories precomputed at fit time): median and p99 per
   query, and batch throughput.
2. Rules on 1M users x 1,000 categories (sparse baskets), wall time and peak memory, beside
   mlxtend apriori on a dense boolean DataFrame of the same baskets (each in its own process).

Run: .venv/bin/python benchmarks/bench_recommend.py [--items 900000] [--users 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def catalogue(n_items: int, n_tx_users: int, seed: int = 0):
    """Items from the marketplace generator's item model; vectorized transactions."""
    import numpy as np
    import pandas as pd

    from mltk.datasets.marketplace import generate

    rng = np.random.default_rng(seed)
    small_items, _, _, group_of = generate(n_items=2000, n_users=10, n_groups=91,
                                           cats_per_group=11, seed=seed)
    cats = np.array(sorted(group_of))
    items = small_items.sample(n_items, replace=True, random_state=seed).reset_index(drop=True)
    items["category_id"] = rng.choice(cats, n_items)
    items["price"] = np.round(items["price"] * rng.lognormal(0, 0.3, n_items), -1)
    items["item_id"] = np.arange(1, n_items + 1)
    items["product_id"] = np.arange(n_items)
    items.loc[rng.choice(n_items, 2000, replace=False), "product_id"] = rng.integers(0, 1000, 2000)
    grp = np.array([group_of[int(c)] for c in items["category_id"]])
    by_group = [np.flatnonzero(grp == g) for g in range(91)]
    fav = rng.integers(0, 91, n_tx_users)
    n_buys = rng.integers(2, 6, n_tx_users)
    users = np.repeat(np.arange(1, n_tx_users + 1), n_buys)
    groups = np.where(rng.random(len(users)) < 0.85, np.repeat(fav, n_buys),
                      rng.integers(0, 91, len(users)))
    picks = np.array([by_group[g][rng.integers(0, len(by_group[g]))] for g in groups])
    tx = pd.DataFrame({"user_id": users, "item_id": items["item_id"].to_numpy()[picks],
                       "timestamp": np.arange(len(users))})
    return items, tx


def bench_queries(n_items: int) -> None:
    import numpy as np

    from mltk import settings
    from mltk.recommend import Recommender, fit

    with tempfile.TemporaryDirectory() as tmp:
        items, tx = catalogue(n_items, 100_000)
        base = settings.load("recommend")
        # ~1,000 categories and 100k users: pair supports are around 1e-4
        small = base.replace(rules=base.rules.replace(min_support=0.0001),
                             classifier=base.classifier.replace(layers=[256, 128], epochs=2),
                             ranknet=base.ranknet.replace(epochs=2))
        t0 = time.perf_counter()
        fitted = fit(items, tx, small)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        fitted.save(Path(tmp) / "m")
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = Recommender.load(Path(tmp) / "m")
        t_load = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        ids = rng.choice(items["item_id"].to_numpy(), 3000)
        for i in ids[:50]:
            rec.query(int(i), 10)
        lat = []
        for i in ids:
            t0 = time.perf_counter()
            rec.query(int(i), 10)
            lat.append(time.perf_counter() - t0)
        lat_ms = np.array(lat) * 1000
        rows = [{"item_id": int(i)} for i in rng.choice(items["item_id"].to_numpy(), 20000)]
        t0 = time.perf_counter()
        n = sum(1 for _ in rec.batch(rows, 10))
        t_batch = time.perf_counter() - t0
    print(f"catalogue {n_items:,} items, 100k users' transactions: fit {t_fit:.0f} s, "
          f"save {t_save:.1f} s, load {t_load:.2f} s")
    print(f"  single query: median {np.median(lat_ms):.3f} ms, p99 "
          f"{np.percentile(lat_ms, 99):.3f} ms")
    print(f"  batch: {n / t_batch:,.0f} queries/s")


def _baskets_worker(kind: str, n_users: int) -> None:
    # A MemoryError, not the kernel's OOM killer, when the dense baseline does not fit.
    limit = 16 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    import pandas as pd

    from mltk import settings
    from mltk.recommend.rules import baskets, meta_categories, rules_from_baskets

    rng = np.random.default_rng(0)
    n_cats, n_groups = 1000, 91
    group = rng.integers(0, n_groups, n_cats)
    members = [np.flatnonzero(group == g) for g in range(n_groups)]
    fav = rng.integers(0, n_groups, n_users)
    n_buys = rng.integers(1, 7, n_users)
    users = np.repeat(np.arange(n_users), n_buys)
    g = np.where(rng.random(len(users)) < 0.85, np.repeat(fav, n_buys),
                 rng.integers(0, n_groups, len(users)))
    cats = np.array([members[x][rng.integers(0, len(members[x]))] for x in g])
    items = pd.DataFrame({"item_id": np.arange(n_cats), "category_id": np.arange(n_cats)})
    tx = pd.DataFrame({"user_id": users, "item_id": cats})
    cfg = settings.load("recommend").rules.replace(min_support=0.0005)
    t0 = time.perf_counter()
    if kind == "mltk":
        df, cat_ids = baskets(tx, items, "item_id", "category_id")
        rules = rules_from_baskets(df, cfg)
        meta_categories(rules, cat_ids, cfg, 0)
    else:
        from mlxtend.frequent_patterns import apriori

        df, _ = baskets(tx, items, "item_id", "category_id")
        dense = df.sparse.to_dense().astype(bool)
        apriori(dense, min_support=cfg.min_support, use_colnames=True, max_len=2)
        kind = "dense"
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(json.dumps({"seconds": seconds, "peak_gib": peak}))


def bench_rules(n_users: int) -> None:
    out = {}
    for kind in ("mltk", "dense-apriori"):
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, str(n_users)],
                              capture_output=True, text=True)
        out[kind] = json.loads(proc.stdout) if proc.returncode == 0 else {
            "error": proc.stderr.strip().splitlines()[-1:] or ["killed"]}
    print(f"rules on {n_users:,} users x 1,000 categories:")
    for kind, r in out.items():
        if "error" in r:
            print(f"  {kind:14s} failed: {r['error']}")
        else:
            print(f"  {kind:14s} {r['seconds']:7.1f} s   peak {r['peak_gib']:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=900_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _baskets_worker(args.worker[0], int(args.worker[1]))
    bench_queries(args.items)
    bench_rules(args.users)


if __name__ == "__main__":
    main()
