"""The candidate index built at fit time: items sorted by (meta-category, kind, sex, price),
with each item's precomputed top meta-categories and RankNet score, so that a query is a few
binary searches and a partial sort, never a scan of the catalogue."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mltk.errors import InputError


@dataclasses.dataclass
class Recommendation:
    item_id: Any
    items: list[dict[str, Any]]
    explain: dict[str, Any] | None = None
    note: str | None = None


class CandidateIndex:
    """Arrays over the catalogue in (meta, kind, sex, price) order."""

    COLUMNS = ("item_id", "category_id", "meta_id", "kind_code", "sex_code", "price",
               "product_code", "net_score", "rank_score")

    def __init__(self, table: Any, top_meta: Any) -> None:
        import numpy as np

        order = np.lexsort((table["price"].to_numpy(), table["sex_code"].to_numpy(),
                            table["kind_code"].to_numpy(), table["meta_id"].to_numpy()))
        self.table = table.iloc[order].reset_index(drop=True)
        self.top_meta = np.asarray(top_meta)[order]
        t = self.table
        self.item_id = t["item_id"].to_numpy()
        self.category = t["category_id"].to_numpy()
        self.meta = t["meta_id"].to_numpy(np.int64)
        self.kind = t["kind_code"].to_numpy(np.int64)
        self.sex = t["sex_code"].to_numpy(np.int64)
        self.price = t["price"].to_numpy(float)
        self.product = t["product_code"].to_numpy(np.int64)
        self.score = t["net_score"].to_numpy(float)
        self.rank_score = t["rank_score"].to_numpy(float)
        self.row_of = {v: i for i, v in enumerate(self.item_id.tolist())}
        keys = np.stack([self.meta, self.kind, self.sex], 1)
        change = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(keys)]])
        self.groups = {tuple(keys[s].tolist()): (int(s), int(e))
                       for s, e in zip(starts, ends, strict=True)}
        mchange = np.flatnonzero(np.diff(self.meta) != 0) + 1
        mstarts = np.concatenate([[0], mchange])
        mends = np.concatenate([mchange, [len(self.meta)]])
        self.meta_span = {int(self.meta[s]): (int(s), int(e))
                          for s, e in zip(mstarts, mends, strict=True)}

    def save(self, folder: Path) -> None:
        from mltk._atomic import atomic_path

        t = self.table.copy()
        for i in range(self.top_meta.shape[1]):
            t[f"top_meta_{i + 1}"] = self.top_meta[:, i]
        with atomic_path(folder / "index.parquet") as tmp:
            t.to_parquet(tmp, index=False)

    @classmethod
    def load(cls, folder: Path) -> CandidateIndex:
        import pandas as pd

        path = folder / "index.parquet"
        if not path.exists():
            raise InputError(f"{folder}: not a recommend model folder (no index.parquet)")
        t = pd.read_parquet(path)
        tops = sorted(c for c in t.columns if c.startswith("top_meta_"))
        return cls(t[list(cls.COLUMNS)], t[tops].to_numpy())

    def row(self, item_id: Any) -> int:
        """The index row of an item id (a command-line string is matched to the ids' dtype)."""
        row = self.row_of.get(item_id)
        if row is None:
            row = self.row_of.get(_coerce(item_id, self.item_id))
        if row is None:
            raise InputError(f"unknown item id {item_id!r}")
        return row

    def query(self, item_id: Any, k: int, band: float, metas: Any = None, explain: bool = False,
              relax: bool = False) -> Recommendation:
        import numpy as np

        row = self.row(item_id)
        metas = self.top_meta[row] if metas is None else metas
        kind, sex, price, product = self.kind[row], self.sex[row], self.price[row], \
            self.product[row]
        widen = 0
        while True:
            cand = self._candidates(metas, kind, sex, price, band * (2 ** widen))
            cand = cand[(cand != row) & ((self.product[cand] != product) | (product < 0))]
            if len(cand) >= k or not relax or widen >= 3 or np.isnan(price):
                break
            widen += 1
        top = cand[np.argsort(-self.score[cand], kind="stable")[:k]] if len(cand) else cand
        items = [{"rank": r + 1, "item_id": _plain(self.item_id[i]),
                  "meta_id": int(self.meta[i]), "price": _plain(self.price[i]),
                  "score": round(float(self.score[i]), 6),
                  "rank_score": round(float(self.rank_score[i]), 6)}
                 for r, i in enumerate(top)]
        note = None
        if len(items) < k:
            note = f"only {len(items)} of {k} candidates survive the filters"
        if widen:
            note = (note or "") + f" (price band widened to ±{band * 2 ** widen:g})"
        info = self._explain(row, metas, band * (2 ** widen)) if explain else None
        return Recommendation(_plain(self.item_id[row]), items, info, note)

    def _candidates(self, metas: Any, kind: int, sex: int, price: float, band: float) -> Any:
        import numpy as np

        parts = []
        for m in metas:
            span = self.groups.get((int(m), int(kind), int(sex)))
            if span is None:
                continue
            s, e = span
            if np.isnan(price):
                parts.append(np.arange(s, e))
                continue
            prices = self.price[s:e]  # sorted; NaN prices sort last and never match
            lo = np.searchsorted(prices, price - band, "left")
            hi = np.searchsorted(prices, price + band, "right")
            parts.append(np.arange(s + lo, s + hi))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _explain(self, row: int, metas: Any, band: float) -> dict[str, Any]:
        import numpy as np

        stages = []
        for m in metas:
            s, e = self.meta_span.get(int(m), (0, 0))
            idx = np.arange(s, e)
            idx = idx[idx != row]
            kind_known = self.kind[idx] >= 0
            same_kind = kind_known & (self.kind[idx] == self.kind[row])
            sex_known = self.sex[idx] >= 0
            same_sex = same_kind & sex_known & (self.sex[idx] == self.sex[row])
            price_known = ~np.isnan(self.price[idx])
            in_band = same_sex & price_known & (np.abs(self.price[idx] - self.price[row]) <= band)
            not_same = in_band & (self.product[idx] != self.product[row])
            stages.append({"meta_id": int(m), "in_meta": int(len(idx)),
                           "same_kind": int(same_kind.sum()), "same_sex": int(same_sex.sum()),
                           "in_price_band": int(in_band.sum()),
                           "not_same_product": int(not_same.sum()),
                           "missing_kind": int((~kind_known).sum()),
                           "missing_sex": int((~sex_known).sum()),
                           "missing_price": int((~price_known).sum())})
        return {"query": {"meta_id": int(self.meta[row]), "kind_code": int(self.kind[row]),
                          "sex_code": int(self.sex[row]), "price": _plain(self.price[row])},
                "top_meta": [int(m) for m in metas], "price_band": band, "filters": stages}


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _coerce(value: Any, reference: Any) -> Any:
    """Match a command-line string id to the ids' dtype."""
    try:
        return reference.dtype.type(value)
    except (TypeError, ValueError):
        return value


