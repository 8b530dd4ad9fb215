"""Which catalogue items show the same product, by their photos: :class:`DuplicateItems`.

The catalogue names each item's photo (a column of paths); the photos' duplicates come from
``mltk dedup`` (its result file, CSV, JSON or NDJSON: photos of one ``group`` are duplicates)
or from a similarity index whose ids are the photo paths (``mltk index build --model`` or
``mltk embed``: two photos whose vectors have a cosine of at least ``min_score`` are
duplicates). Paths are compared as given and, failing that, made absolute against the
current folder. An item without a photo, or whose photo the source does not know, duplicates
nothing.

:meth:`DuplicateItems.split` keeps a ranked list's items in order and drops each one that
duplicates the query item or an item kept before it (``mltk recommend query --dedup``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mltk.errors import InputError

DEFAULT_MIN_SCORE = 0.95


def _key(path: Any) -> str:
    return os.path.normpath(os.path.abspath(str(path)))


class DuplicateItems:
    """``photos``: item id -> photo path. Either ``groups`` (photo path -> dedup group) or
    ``index`` (a :class:`~mltk.similar.SimilarityIndex` over photo paths) with ``min_score``."""

    def __init__(self, photos: Mapping[Any, str], groups: Mapping[str, Any] | None = None,
                 index: Any = None, min_score: float = DEFAULT_MIN_SCORE) -> None:
        if (groups is None) == (index is None):
            raise ValueError("give groups or an index")
        self.photos = {k: str(v) for k, v in photos.items() if isinstance(v, str) and v}
        self.index, self.min_score = index, float(min_score)
        self._groups: dict[str, Any] = {}
        for path, group in (groups or {}).items():
            self._groups[str(path)] = group
            self._groups.setdefault(_key(path), group)
        self._rows: dict[str, int] = {}
        if index is not None:
            for row, pid in enumerate(index.items["id"].tolist()):
                self._rows[str(pid)] = row
                self._rows.setdefault(_key(pid), row)

    @classmethod
    def load(cls, catalogue: str | os.PathLike[str], source: str | os.PathLike[str], *,
             id_column: str = "item_id", photo_column: str = "photo",
             min_score: float = DEFAULT_MIN_SCORE) -> DuplicateItems:
        """The catalogue's photo column and a dedup result file or an index folder."""
        from mltk._tables import load_table

        table = load_table(catalogue)
        for col in (id_column, photo_column):
            if col not in table.columns:
                raise InputError(f"{catalogue}: no {col!r} column (columns: "
                                 f"{', '.join(map(str, table.columns))})")
        photos = dict(zip(table[id_column].tolist(), table[photo_column].tolist(),
                          strict=True))
        src = Path(source)
        if src.is_dir():
            from mltk.similar.index import SimilarityIndex

            return cls(photos, index=SimilarityIndex.load(src), min_score=min_score)
        return cls(photos, groups=read_groups(src))

    def _photo_of(self, item: Any) -> str | None:
        photo = self.photos.get(item)
        if photo is None and isinstance(item, str) and item.lstrip("-").isdigit():
            photo = self.photos.get(int(item))
        return photo

    def _lookup(self, table: Mapping[str, Any], photo: str | None) -> Any:
        if photo is None:
            return None
        found = table.get(photo)
        return found if found is not None else table.get(_key(photo))

    def split(self, query: Any, items: Sequence[Mapping[str, Any]], id_key: str = "item_id",
              ) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]]]:
        """(items kept, in order; ``{item_id, duplicate_of}`` of each item dropped)."""
        ids = [query, *[it[id_key] for it in items]]
        same = self._same(ids)
        kept_rows: list[int] = [0]
        kept: list[Mapping[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for i, it in enumerate(items, 1):
            twin = next((j for j in kept_rows if same[i, j]), None)
            if twin is None:
                kept_rows.append(i)
                kept.append(it)
            else:
                dropped.append({id_key: it[id_key], "duplicate_of": ids[twin]})
        return kept, dropped

    def _same(self, ids: Sequence[Any]) -> np.ndarray:
        """n x n: whether items i and j show the same product (never an item and itself)."""
        photos = [self._photo_of(i) for i in ids]
        n = len(ids)
        if self.index is None:
            groups = [self._lookup(self._groups, p) for p in photos]
            same = np.array([[a is not None and a == b for b in groups] for a in groups],
                            dtype=bool).reshape(n, n)
        else:
            rows = [self._lookup(self._rows, p) for p in photos]
            have = [i for i, r in enumerate(rows) if r is not None]
            same = np.zeros((n, n), dtype=bool)
            if have:
                x = self.index.vectors_of(np.array([rows[i] for i in have], dtype=np.int64))
                sims = x @ x.T
                same[np.ix_(have, have)] = sims >= self.min_score
        np.fill_diagonal(same, False)
        return same


def read_groups(path: Path) -> dict[str, Any]:
    """photo path -> group from a ``mltk dedup`` result (CSV, Parquet, JSON or NDJSON);
    photos in no group are left out."""
    if not path.is_file():
        raise InputError(f"{path}: no such dedup result file or index folder")
    suffix = path.suffix.lower()
    if suffix in (".json", ".ndjson", ".jsonl"):
        text = path.read_text(encoding="utf-8")
        try:
            records = (json.loads(text) if suffix == ".json" else
                       [json.loads(ln) for ln in text.splitlines() if ln.strip()])
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not a dedup result ({exc})") from None
    else:
        from mltk._tables import load_table

        records = load_table(path).to_dict("records")
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and "path" in r and "group" in r for r in records):
        raise InputError(f"{path}: not a dedup result (records with path and group, as "
                         "`mltk dedup` writes)")
    return {str(r["path"]): r["group"] for r in records if _present(r["group"])}


def _present(value: Any) -> bool:
    return value is not None and value == value and value != ""
