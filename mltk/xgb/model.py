"""A saved ``xgb-analyze`` model, loaded once and used to score new rows.

``mltk xgb-predict`` and a server share it: the folder's ``config.yaml`` and ``model.ubj`` are
read in the constructor, and :meth:`TwoGroupModel.score` types each batch of rows as at
training time before scoring it. Values the model cannot score (text in a number column, a
category not seen in training) raise :class:`mltk.xgb.data.InvalidRowsError`, an
:class:`mltk.errors.InputError` naming the rows and columns, instead of being scored as missing.

    model = TwoGroupModel("analysis/")
    scored = model.score(pd.DataFrame.from_records(rows))   # id columns, probability, label
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._numbers import number_value
from mltk.errors import InputError
from mltk.xgb.data import apply_schema, match_category, onehot, show_value


class TwoGroupModel:
    """The model and feature schema of one ``xgb-analyze --out`` folder (``Analysis.save``).

    Attributes: ``features`` (the raw feature columns, in training order), ``id_cols``,
    ``positive`` and ``negative`` (the two target values), ``threshold`` (probabilities at or
    above it are labelled ``positive``), ``categories`` (training levels per categorical
    column), ``config`` (the whole saved ``config.yaml``), ``booster`` and ``model_dir``.
    :meth:`score` keeps no state between calls.
    """

    def __init__(self, model_dir: str | os.PathLike) -> None:
        import xgboost as xgb

        from mltk import _config

        d = Path(model_dir)
        if not (d / "model.ubj").exists() or not (d / "config.yaml").exists():
            raise InputError(f"{d}: not an xgb-analyze output folder (model.ubj and "
                             "config.yaml expected)")
        cfg = _config.load_yaml(d / "config.yaml")
        try:
            self.features: list[str] = [str(c) for c in cfg["raw_features"]]
            self._model_features: list[str] = [str(c) for c in cfg["features"]]
            self.threshold = float(cfg["threshold"])
            self.positive: Any = cfg["positive"]
            self.negative: Any = cfg["negative"]
            self.categories: dict[str, list[str]] = {
                str(col): [str(v) for v in levels]
                for col, levels in (cfg.get("categories") or {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{d / 'config.yaml'}: missing or malformed entry {exc} (not "
                             "written by xgb-analyze?)") from None
        self.id_cols: list[str] = [str(c) for c in cfg.get("id_cols") or []]
        # column -> ({level: code}, boolean column?) for score_records
        self._levels = {c: ({level: i for i, level in enumerate(levels)},
                            bool(levels) and set(levels) <= {"True", "False"})
                        for c, levels in self.categories.items()}
        self._numeric = [c for c in self.features if c not in self.categories]
        self.config = cfg
        self.model_dir = d
        self._native = cfg.get("categorical_mode", "native") == "native"
        self._one_thread: Any = None  # a one-thread DensePredictor, for score_records
        try:
            self.booster = xgb.Booster(model_file=os.fspath(d / "model.ubj"))
        except xgb.core.XGBoostError as exc:
            raise InputError(f"{d / 'model.ubj'}: cannot load the model "
                             f"({str(exc).splitlines()[0]})") from None

    def __repr__(self) -> str:
        return (f"TwoGroupModel({os.fspath(self.model_dir)!r}: {len(self.features)} features, "
                f"positive={self.positive!r})")

    def score(self, df: Any, unknown_categories: str = "error") -> Any:
        """Probability of the positive group and the label at the tuned threshold.

        ``df`` is a DataFrame (from a CSV, or ``pd.DataFrame.from_records`` of JSON objects:
        numbers may be int, float or text, booleans bool). Columns are matched by name, extra
        ones ignored. Returns the id columns present in ``df``, ``probability`` and ``label``,
        row for row. ``unknown_categories="missing"`` scores categories not seen in training
        as missing values (with one warning) instead of raising.
        """
        import numpy as np
        import pandas as pd
        import xgboost as xgb

        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"score() takes a pandas DataFrame, got {type(df).__name__}")
        X = apply_schema(df, self.features, self.categories, unknown_categories)
        if not self._native:
            X = onehot(X, self.categories)
        if len(X):
            p = self.booster.predict(xgb.DMatrix(X[self._model_features],
                                                 enable_categorical=self._native))
        else:
            p = np.zeros(0, dtype=np.float32)
        out = df[[c for c in self.id_cols if c in df.columns]].copy()
        out["probability"] = p
        out["label"] = np.where(p >= self.threshold, self.positive, self.negative)
        return out

    def score_records(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        """:meth:`score` for JSON-like rows without pandas, or None when a row needs pandas.

        A server's rows are a few dozen dicts: building a DataFrame, typing it and handing it
        to XGBoost costs ~5 ms whatever the row count, this path well under one. It takes only
        what it can type exactly as :meth:`score` would (numbers, None, pandas' missing-value
        strings, known categories, id columns of one type each); anything else (text in a
        number column, an unseen category, a one-hot model) returns None, and :meth:`score`
        then gives the same numbers, or the error naming the row and column.
        """
        import numpy as np

        if not self._native or not rows:
            return None
        matrix = np.empty((len(rows), len(self.features)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, col in enumerate(self.features):
                value = self._code(col, row.get(col, _ABSENT))
                if value is _ABSENT:
                    return None
                matrix[i, j] = value
        ids = self._echoed_ids(rows)
        if ids is None:
            return None
        p = self._predict_matrix(matrix)
        labels = np.where(p >= self.threshold, self.positive, self.negative)
        return [{**{c: row[c] for c in ids}, "probability": float(prob), "label": _plain(label)}
                for row, prob, label in zip(rows, p, labels, strict=True)]

    def _code(self, col: str, value: Any) -> Any:
        """A value as the float XGBoost is given: the number, NaN, or a category's code."""
        if value is None or (isinstance(value, float) and value != value):  # None, NaN
            return float("nan")
        if col in self.categories:
            known, boolean = self._levels[col]
            level = match_category(value, known.keys(), boolean)
            return float("nan") if level is None else known.get(level, _ABSENT)
        if type(value) is float:  # the usual JSON number: no more to check
            return value if value - value == 0.0 else _ABSENT  # inf - inf is NaN
        number = number_value(value)  # as apply_schema types it (numbers, number text, NA)
        return _ABSENT if number is None or number in (_INF, -_INF) else number

    def check_finite(self, row: Mapping[str, Any]) -> None:
        """Refuse a row holding an infinite number (``inf``, ``1e400``, a 400-digit integer) in
        a number column: InputError naming the column, as :meth:`score` names it (XGBoost
        would fail the whole batch the row is in)."""
        for col in self._numeric:
            value = row.get(col)
            if type(value) is float and value - value == 0.0 or type(value) is int \
                    and -_BIG < value < _BIG:  # finite: the usual case, checked fast
                continue
            number = number_value(value)
            if number is not None and number in (_INF, -_INF):
                raise InputError(f"column {col!r}: {show_value(value)} is not a finite number")

    def _echoed_ids(self, rows: Sequence[Mapping[str, Any]]) -> list[str] | None:
        """The id columns to echo; None when pandas would retype them (mixed or absent)."""
        ids = [c for c in self.id_cols if any(c in row for row in rows)]
        for c in ids:
            kinds = {type(row.get(c, _ABSENT)) for row in rows}
            if len(kinds) != 1 or not kinds <= {int, str}:
                return None
        return ids

    def _predict_matrix(self, matrix: Any) -> Any:
        """Probabilities of a float matrix of the features in training order (categories as
        their codes), as a DMatrix typed "c" there gives them, through XGBoost's C functions
        directly (:mod:`mltk.xgb.dense`: the Python wrappers cost more than the trees for a
        few rows). One thread, on a copy of the booster: a few rows gain nothing from OpenMP,
        whose idle threads spin on the cores a server's requests need (ms per call on a busy
        machine)."""
        if self._one_thread is None:  # a race here only makes a copy twice
            from mltk.xgb.dense import DensePredictor

            booster = self.booster.copy()
            booster.set_param({"nthread": 1})
            types = ["c" if c in self.categories else "q" for c in self.features]
            self._one_thread = DensePredictor(booster, self._model_features, types)
        return self._one_thread(matrix)


_ABSENT = object()
_INF = float("inf")
_BIG = 1e300


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
