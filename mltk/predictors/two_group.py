"""The two-group model of an ``xgb-analyze`` folder: rows -> probability and label.

The same scoring as ``mltk xgb-predict`` (:class:`mltk.xgb.TwoGroupModel`): columns by name
in any order, id columns echoed, extra columns ignored, and a missing column, text in a numeric
column or an unseen category is an error naming the row and column, never a silent NaN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError
from mltk.predictors.base import Outcome, Predictor, TensorSpec


class TwoGroupPredictor(Predictor):
    kind = "two-group"
    input_kind = "row"
    batchable = True  # one model call for many rows costs about what one row does
    inline_inputs = 16  # XGBoost scores a few rows in ~0.1 ms, thread-safely

    def __init__(self, name: str, source: str, model: Any,
                 unknown_categories: str = "error") -> None:
        super().__init__(name, source)
        self.model = model
        self.unknown_categories = unknown_categories

    @classmethod
    def open(cls, folder: str | os.PathLike, name: str | None = None) -> TwoGroupPredictor:
        from mltk.xgb import TwoGroupModel

        return cls(name or Path(folder).name, os.fspath(folder), TwoGroupModel(folder))

    @property
    def features(self) -> list[str]:
        return list(self.model.features)

    @property
    def id_cols(self) -> list[str]:
        return list(self.model.id_cols)

    def inputs(self) -> list[TensorSpec]:
        cats = self.model.categories or {}
        return [TensorSpec(c, "BYTES" if c in cats else "FP64", (-1,)) for c in self.features]

    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("probability", "FP64", (-1,)),
                TensorSpec("label", _datatype_of(self.model.positive, self.model.negative),
                           (-1,))]

    @property
    def categories(self) -> dict[str, list[str]]:
        """The training levels of each categorical column, in the order of their codes."""
        return {c: list(levels) for c, levels in (self.model.categories or {}).items()}

    def metadata(self) -> dict[str, Any]:
        """With the levels of the categorical columns: in a numeric ``[rows, columns]`` V2
        tensor a categorical column holds the code of its category (its position here)."""
        meta = super().metadata()
        meta["parameters"]["categories"] = self.categories
        return meta

    def prepare(self, item: Any) -> Any:
        if not isinstance(item, Mapping):
            raise InputError(f"expected an object of column values, got {type(item).__name__}")
        # An absent key is a missing column, not a missing value (send null for that).
        absent = [c for c in self.features if c not in item]
        if absent:
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise InputError(f"column(s) missing: {', '.join(map(repr, absent[:5]))}{more}")
        self.model.check_finite(item)  # here, per row: XGBoost would fail the whole batch
        return item

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Outcome]:
        """Rows scored together; when one is bad, each row alone, so only it gets the error."""
        import pandas as pd

        fast = self.model.score_records(prepared)  # the same numbers, without pandas
        if fast is not None:
            return fast
        try:
            scored = self.score_frame(pd.DataFrame.from_records(list(prepared)),
                                      self.unknown_categories)
            return [_plain_record(r) for r in scored.to_dict("records")]
        except InputError as exc:
            if len(prepared) == 1:  # scoring it alone would give this same error again
                return [_row_error(exc)]
            return [self._alone(row) for row in prepared]

    def _alone(self, row: Mapping[str, Any]) -> Outcome:
        import pandas as pd

        try:
            scored = self.score_frame(pd.DataFrame.from_records([row]), self.unknown_categories)
        except InputError as exc:
            return _row_error(exc)
        return _plain_record(scored.to_dict("records")[0])

    def limit_threads(self, n: int) -> None:
        self.model.booster.set_param({"nthread": n})

    def score_frame(self, df: Any, unknown_categories: str = "error") -> Any:
        """Score a whole DataFrame (``mltk xgb-predict``): id columns, probability, label."""
        return self.model.score(df, unknown_categories=unknown_categories)

    def example(self) -> dict[str, Any]:
        cats = self.model.categories or {}
        return {c: (cats[c][0] if cats.get(c) else None) if c in cats else 0.0
                for c in self.features}


def _datatype_of(*labels: Any) -> str:
    """The V2 datatype of the label: the two target values' common kind."""
    if all(isinstance(v, bool) for v in labels):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return "FP64"
    return "BYTES"


def _row_error(exc: InputError) -> InputError:
    """The error of a one-row batch, for that row: "row 1, column 'x': ..." -> "column 'x': ..."."""
    return InputError(str(exc).removeprefix("row 1, "))


def _plain_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """Numpy scalars to Python ones, so every codec can write the record."""
    from mltk._json import clean

    return {str(k): clean(v) for k, v in row.items()}
