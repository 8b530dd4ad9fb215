"""``purchases``: users who buy once vs users who buy again, with known effects.

About 10 features: informative ones with known effect sizes (on the log-odds of being a
one-time buyer), noise, one collinear pair, a categorical, some missing values; the target
``group`` is ``one_time`` for about 18% of the users (the original's minority share).
``truth.json`` names the informative, noise and collinear features.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mltk._atomic import atomic_path, write_text
from mltk.datasets import DatasetInfo

#: log-odds effect of one standard deviation (or of the flag) on being a one-time buyer.
EFFECTS = {"sessions_30d": -1.2, "days_since_signup": -0.6, "coupon_first_order": 0.9,
           "avg_basket_yen": 0.5, "reviews_written": -0.7}
CATEGORY_EFFECTS = {"fashion": 0.0, "electronics": 0.6, "home": -0.3, "beauty": -0.5}
NOISE = ["noise_a", "noise_b"]
COLLINEAR = ("sessions_30d", "pages_viewed_30d")


def generate(n: int, seed: int = 0, minority: float = 0.18):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    z = {k: rng.standard_normal(n) for k in EFFECTS}
    z["coupon_first_order"] = (rng.random(n) < 0.3).astype(float)
    category = rng.choice(list(CATEGORY_EFFECTS), n, p=[0.4, 0.2, 0.25, 0.15])
    logit = sum(EFFECTS[k] * (z[k] - z[k].mean()) / (z[k].std() or 1) for k in EFFECTS)
    logit = logit + np.vectorize(CATEGORY_EFFECTS.get)(category)
    lo, hi = -10.0, 10.0  # intercept for the wanted minority share
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 / (1 + np.exp(-(logit + mid)))).mean() < minority else (lo, mid)
    p = 1 / (1 + np.exp(-(logit + (lo + hi) / 2)))
    one_time = rng.random(n) < p
    sessions = np.round(np.exp(1.5 + 0.6 * z["sessions_30d"]), 0)
    df = pd.DataFrame({
        "user_id": np.arange(1, n + 1),
        "sessions_30d": sessions,
        "pages_viewed_30d": np.round(sessions * 6 + rng.normal(0, 2, n), 0),
        "days_since_signup": np.round(np.exp(5 + 0.8 * z["days_since_signup"]), 0),
        "coupon_first_order": z["coupon_first_order"].astype(int),
        "avg_basket_yen": np.round(np.exp(8 + 0.5 * z["avg_basket_yen"]), -1),
        "reviews_written": rng.poisson(np.exp(1.5 + 0.6 * z["reviews_written"])),
        "main_category": pd.Categorical(category),
        "noise_a": rng.standard_normal(n),
        "noise_b": rng.uniform(0, 100, n),
        "group": np.where(one_time, "one_time", "repeat"),
    })
    df.loc[rng.random(n) < 0.05, "avg_basket_yen"] = np.nan
    df.loc[rng.random(n) < 0.02, "days_since_signup"] = np.nan
    return df


def generate_wide(rows: int, extra: int, chunk: int = 100_000, first_seed: int = 0
                  ) -> Iterator[Any]:
    """The table in DataFrames of ``chunk`` rows (chunk i seeded ``first_seed`` + i, user ids
    running on), each with ``extra`` float64 noise columns ``extra_000...``: a wide table of
    any size, made a piece at a time (external-memory tests and benchmarks); another
    ``first_seed`` gives fresh rows of the same distribution."""
    import numpy as np
    import pandas as pd

    for i, start in enumerate(range(0, rows, chunk)):
        df = generate(min(chunk, rows - start), seed=first_seed + i)
        df["user_id"] += start
        noise = np.random.default_rng(first_seed + i).standard_normal((len(df), extra))
        yield pd.concat([df, pd.DataFrame(noise, columns=[f"extra_{j:03d}" for j in
                                                          range(extra)])], axis=1)


def make_purchases(out: Path, n: int = 5000, seed: int = 0) -> DatasetInfo:
    df = generate(n, seed)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "purchases.csv"
    with atomic_path(data) as tmp:
        df.to_csv(tmp, index=False)
    truth = out / "truth.json"
    write_text(truth, json.dumps({
        "target": "group", "positive": "one_time", "id_cols": ["user_id"],
        "informative": [*EFFECTS, "main_category"], "effects": EFFECTS,
        "category_effects": CATEGORY_EFFECTS, "noise": NOISE, "collinear": list(COLLINEAR),
        "one_time_share": float((df["group"] == "one_time").mean()),
    }, indent=2) + "\n")
    return DatasetInfo("purchases", out, n, truth, files={"data": data})
