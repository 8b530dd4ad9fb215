"""A saved ``xgb-analyze`` model, loaded once and used to score new rows.

``mltk xgb-predict`` and a server share it: the folder's ``config.yaml`` and ``model.ubj`` are
read in the constructor, and :meth:`TwoGroupModel.score` types each batch of rows as at
training time before scoring it. Values the model cannot score (text in a number column, a
category not seen in training) raise :class:`mltk.tabular.data.InvalidRowsError`, an
:class:`mltk.errors.InputError` naming the rows and columns, instead of being scored as missing.

    model = TwoGroupModel("analysis/")
    scored = model.score(pd.DataFrame.from_records(rows))   # id columns, probability, label
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mltk.errors import InputError
from mltk.tabular.data import apply_schema, onehot


class TwoGroupModel:
    """The model and feature schema of one ``xgb-analyze --out`` folder.

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
        self.config = cfg
        self.model_dir = d
        self._native = cfg.get("categorical_mode", "native") == "native"
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
