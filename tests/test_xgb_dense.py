"""mltk.xgb.dense: XGBoost's C functions called directly give exactly the numbers of the
library's own wrappers (gbtree and dart, categorical splits, missing values)."""

from __future__ import annotations

import numpy as np
import pytest

from mltk.xgb.dense import DensePredictor

xgb = pytest.importorskip("xgboost")
NAMES = ["a", "b", "c", "shop"]


def trained(booster: str) -> tuple:
    """A small model on 3 numbers and a 4-level categorical column (codes 0-3)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(400, 3)), rng.integers(0, 4, 400)]).astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + (X[:, 3] == 2)) > 0.5).astype(int)
    types = ["q", "q", "q", "c"]
    data = xgb.DMatrix(X, label=y, feature_names=NAMES, feature_types=types,
                       enable_categorical=True)
    b = xgb.train({"booster": booster, "max_depth": 3, "objective": "binary:logistic",
                   "nthread": 1, "max_cat_to_onehot": 1, "rate_drop": 0.1}, data, 12)
    return b, X, types


@pytest.mark.parametrize("booster", ["gbtree", "dart"])
def test_direct_call_gives_the_wrappers_numbers(booster):
    b, X, types = trained(booster)
    predict = DensePredictor(b, NAMES, types)
    for rows in (X[:1], X[5:12], X[:400]):
        rows = np.ascontiguousarray(rows)
        got = predict(rows)
        assert got.dtype == np.float32 and got.shape == (len(rows),)
        typed = xgb.DMatrix(rows, feature_names=NAMES, feature_types=types,
                            enable_categorical=True)
        np.testing.assert_array_equal(got, b.predict(typed))
    assert predict.direct  # the C functions were called, not the wrappers
    first = predict(np.ascontiguousarray(X[:1]))
    predict(np.ascontiguousarray(X[1:3]))
    assert first.tolist() == predict(np.ascontiguousarray(X[:1])).tolist()  # a copy, kept


def test_other_arrays_go_through_the_wrappers():
    b, X, types = trained("dart")
    predict = DensePredictor(b, NAMES, types)
    for odd in (X[:5].astype(np.float32), np.asfortranarray(X[:5]), X[:10:2]):
        typed = xgb.DMatrix(odd, feature_names=NAMES, feature_types=types,
                            enable_categorical=True)
        np.testing.assert_array_equal(predict(odd), b.predict(typed))
