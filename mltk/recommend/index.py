"""The candidate index built at fit time: items sorted by (meta-category, kind, sex, price),
with each item's precomputed top meta-categories and RankNet score, so that a query is a few
lookups, binary searches and a partial sort, never a scan of the catalogue. The results and
``explain`` come from the same pass, so they cannot disagree.

A missing value is never a match: an unknown kind or sex (code -1) is a run of its own and a
missing price sorts after every price, so no filter's slice holds them; a query item that
lacks a value a filter compares is an error naming the item and the field."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mltk.errors import InputError

# How errors name the fields the filters compare (Recommender passes the configured columns).
FIELD_NAMES = {"price": "price", "kind": "kind flags", "sex": "sex flags"}


def check_k(k: Any) -> int:
    """``k`` (results per query) as an int, or an error naming the setting."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


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

    def __init__(self, table: Any, top_meta: Any, fields: Mapping[str, str] | None = None
                 ) -> None:
        import numpy as np

        self.fields = {**FIELD_NAMES, **(fields or {})}
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
        # the rows of each meta, (meta, kind) and (meta, kind, sex): a filter is a lookup
        self.meta_span = {m: span for (m,), span in _spans(self.meta).items()}
        self.kind_span = _spans(self.meta, self.kind)
        self.groups = _spans(self.meta, self.kind, self.sex)
        # priced rows before each row: NaN prices sort last in a group, so this gives its end
        self._priced_before = np.concatenate([[0], np.cumsum(~np.isnan(self.price))])

    def save(self, folder: Path) -> None:
        from mltk._atomic import atomic_path

        t = self.table.copy()
        for i in range(self.top_meta.shape[1]):
            t[f"top_meta_{i + 1}"] = self.top_meta[:, i]
        with atomic_path(folder / "index.parquet") as tmp:
            t.to_parquet(tmp, index=False)

    @classmethod
    def load(cls, folder: Path, fields: Mapping[str, str] | None = None) -> CandidateIndex:
        import pandas as pd

        path = folder / "index.parquet"
        if not path.exists():
            raise InputError(f"{folder}: not a recommend model folder (no index.parquet)")
        t = pd.read_parquet(path)
        tops = sorted(c for c in t.columns if c.startswith("top_meta_"))
        return cls(t[list(cls.COLUMNS)], t[tops].to_numpy(), fields)

    def row(self, item_id: Any) -> int:
        """The index row of an item id (a command-line string is matched to the ids' dtype)."""
        row = self.row_of.get(item_id)
        if row is None:
            row = self.row_of.get(_coerce(item_id, self.item_id))
        if row is None:
            raise InputError(f"unknown item id {item_id!r}")
        return row

    def require_filter_fields(self, row: int) -> None:
        """The query item at ``row`` must have every value a filter compares; the error names
        the item and the field it lacks."""
        import numpy as np

        item = _plain(self.item_id[row])
        if np.isnan(self.price[row]):
            raise InputError(f"item {item!r} has no price ({self.fields['price']}): the "
                             f"price-band filter needs one")
        for key in ("kind", "sex"):
            if getattr(self, key)[row] < 0:
                raise InputError(f"item {item!r} has a missing {key} flag "
                                 f"({self.fields[key]}): the {key} filter needs them")

    def query(self, item_id: Any, k: int, band: float, metas: Any = None, explain: bool = False,
              relax: bool = False) -> Recommendation:
        """The k best candidates by RankNet score; ``explain`` adds the survivors of each filter,
        counted by the same pass that picked the candidates."""
        import numpy as np

        k = check_k(k)
        row = self.row(item_id)
        self.require_filter_fields(row)
        metas = self.top_meta[row] if metas is None else metas
        widen = 0
        cand, stages = self._filter(row, metas, band)
        while relax and len(cand) < k and widen < 3:
            widen += 1
            cand, stages = self._filter(row, metas, band * 2 ** widen)
        top = cand[np.argsort(-self.score[cand], kind="stable")[:k]]
        items = [{"rank": r + 1, "item_id": _plain(self.item_id[i]),
                  "meta_id": int(self.meta[i]), "price": _plain(self.price[i]),
                  "score": round(float(self.score[i]), 6),
                  "rank_score": round(float(self.rank_score[i]), 6)}
                 for r, i in enumerate(top)]
        info = None
        if explain:
            info = {"query": {"meta_id": int(self.meta[row]), "kind_code": int(self.kind[row]),
                              "sex_code": int(self.sex[row]), "price": _plain(self.price[row])},
                    "top_meta": [int(m) for m in metas], "price_band": band * 2 ** widen,
                    "filters": stages, "survivors": int(len(cand)), "returned": len(items)}
        return Recommendation(_plain(self.item_id[row]), items, info,
                              _note(len(items), k, band, widen))

    def _filter(self, row: int, metas: Any, band: float) -> tuple[Any, list[dict[str, Any]]]:
        """(candidate rows, per meta-category the survivors of each filter): the one pass that
        both the results and --explain come from, so the two can never disagree."""
        import numpy as np

        parts, stages = [], []
        for m in metas:
            idx, stage = self._filter_meta(row, int(m), band)
            parts.append(idx)
            stages.append(stage)
        return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), stages

    def _filter_meta(self, row: int, meta: int, band: float) -> tuple[Any, dict[str, Any]]:
        """Each filter narrows a slice of the (meta, kind, sex, price) order: lookups, then a
        binary search for the price band. ``missing_*`` count the items a filter drops for
        lacking its value (an unknown kind or sex is a run of its own; NaN prices sort last)."""
        import numpy as np

        kind, sex, price = int(self.kind[row]), int(self.sex[row]), self.price[row]
        own = int(self.meta[row] == meta)  # the query item lies in each slice of its own meta
        s, e = self.meta_span.get(meta, (0, 0))
        ks, ke = self.kind_span.get((meta, kind), (s, s))
        gs, ge = self.groups.get((meta, kind, sex), (s, s))
        priced = int(self._priced_before[ge] - self._priced_before[gs])
        prices = self.price[gs:gs + priced]
        lo = gs + int(prices.searchsorted(price - band, "left"))
        hi = max(lo, gs + int(prices.searchsorted(price + band, "right")))
        idx = np.arange(lo, hi)
        product = self.product[row]
        idx = idx[(idx != row) & ((self.product[idx] != product) | (product < 0))]
        unknown_kind = self.kind_span.get((meta, -1), (0, 0))
        unknown_sex = self.groups.get((meta, kind, -1), (0, 0))
        return idx, {"meta_id": meta, "in_meta": e - s - own, "same_kind": ke - ks - own,
                     "same_sex": ge - gs - own, "in_price_band": hi - lo - int(lo <= row < hi),
                     "not_same_product": int(len(idx)),
                     "missing_kind": unknown_kind[1] - unknown_kind[0],
                     "missing_sex": unknown_sex[1] - unknown_sex[0],
                     "missing_price": ge - gs - priced}


def _spans(*keys: Any) -> dict[tuple, tuple[int, int]]:
    """{key tuple: (start, end)} of the runs of equal keys in rows sorted by them."""
    import numpy as np

    if not len(keys[0]):
        return {}
    stacked = np.stack(keys, 1)
    change = np.flatnonzero(np.any(np.diff(stacked, axis=0) != 0, axis=1)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(stacked)]])
    return {tuple(stacked[s].tolist()): (int(s), int(e))
            for s, e in zip(starts, ends, strict=True)}


def _note(n: int, k: int, band: float, widen: int) -> str | None:
    widened = f"price band widened to ±{band * 2 ** widen:g}" if widen else None
    if n >= k:
        return widened
    short = f"only {n} of {k} candidates survive the filters"
    return f"{short} ({widened})" if widened else short


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _coerce(value: Any, reference: Any) -> Any:
    """Match a command-line string id to the ids' dtype."""
    try:
        return reference.dtype.type(value)
    except (TypeError, ValueError):
        return value


