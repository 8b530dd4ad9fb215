"""The recommender of a ``recommend fit`` folder: item id (user id, k) -> ranked items.

Each query gives the record ``mltk recommend query --queries`` prints for it; an unknown item
or user is that query's error, and the other queries go on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError
from mltk.predictors.base import Outcome, Predictor, TensorSpec


class RecommenderPredictor(Predictor):
    kind = "recommender"
    input_kind = "query"

    def __init__(self, name: str, source: str, recommender: Any) -> None:
        super().__init__(name, source)
        self.recommender = recommender

    @classmethod
    def open(cls, folder: str | os.PathLike, name: str | None = None) -> RecommenderPredictor:
        from mltk.recommend import Recommender

        return cls(name or Path(folder).name, os.fspath(folder), Recommender.load(folder))

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("item_id", "BYTES", (-1,)), TensorSpec("user_id", "BYTES", (-1,)),
                TensorSpec("k", "INT64", (-1,))]

    def outputs(self) -> list[TensorSpec]:
        # the record of recommend query; the ranked items as JSON text
        return [TensorSpec("item_id", "BYTES", (-1,)), TensorSpec("user_id", "BYTES", (-1,)),
                TensorSpec("recommendations", "BYTES", (-1,)), TensorSpec("note", "BYTES", (-1,))]

    def prepare(self, item: Any) -> Any:
        if not isinstance(item, Mapping):
            item = {"item_id": item}
        if item.get("item_id") is None:
            raise InputError("a query needs an item_id")
        k = item.get("k")
        if k is not None:
            try:
                k = int(k)
            except (TypeError, ValueError):
                raise InputError(f"k must be a positive integer, got {k!r}") from None
            if k < 1:
                raise InputError(f"k must be a positive integer, got {k!r}")
        return {"item_id": _id(item["item_id"]), "user_id": _id(item.get("user_id")), "k": k}

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Outcome]:
        out: list[Outcome] = []
        for q in prepared:
            try:
                rec = self.recommender.query(q["item_id"], q["k"], q["user_id"])
            except InputError as exc:
                out.append(exc)
                continue
            out.append({"item_id": rec.item_id, "user_id": q["user_id"],
                        "recommendations": rec.items, "note": rec.note})
        return out

    def query_records(self, rows: Any, k: int | None = None, explain: bool = False) -> Any:
        """``mltk recommend query --queries``: one record per row, a bad row an error record."""
        return self.recommender.batch(rows, k, explain)

    def example(self) -> dict[str, Any]:
        from mltk._json import clean

        return {"item_id": clean(self.recommender.index.item_id[0])}


def _id(value: Any) -> Any:
    """Ids as the CLI reads them: whole numbers as int, anything else as text."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return int(str(value))
    except ValueError:
        return value
