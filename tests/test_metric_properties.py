"""Property tests (hypothesis): mltk's NDCG and MCC threshold sweep agree with scikit-learn.

Deterministic (``derandomize``, no example database) and bounded, so each test takes a few
seconds at most. Scores come from a small set of values too, so that ties are common: tie
handling is where hand-written ranking metrics usually differ.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import matthews_corrcoef, ndcg_score

from mltk.recommend.models import ndcg
from mltk.xgb.explain import threshold_metrics

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=80)

RELEVANCE = st.one_of(st.integers(0, 4).map(float), st.floats(0, 10))
SCORE = st.one_of(st.integers(-2, 2).map(float), st.floats(-1e6, 1e6))
K = st.one_of(st.none(), st.integers(1, 12))


@st.composite
def queries(draw, min_size: int = 1, max_size: int = 5) -> tuple[list, list]:
    """Queries of 2 to 12 documents each: (relevances, scores)."""
    rels, scores = [], []
    for _ in range(draw(st.integers(min_size, max_size))):
        n = draw(st.integers(2, 12))
        rels.append(draw(st.lists(RELEVANCE, min_size=n, max_size=n)))
        scores.append(draw(st.lists(SCORE, min_size=n, max_size=n)))
    return rels, scores


@PROPERTY
@given(queries(), K)
def test_linear_ndcg_is_sklearns(case, k):
    rels, scores = case
    expected = np.mean([ndcg_score([r], [s], k=k) for r, s in zip(rels, scores, strict=True)])
    assert ndcg(rels, scores, k, "linear") == pytest.approx(expected, rel=1e-9, abs=1e-12)


@PROPERTY
@given(queries(), K)
def test_exponential_ndcg_is_sklearns_on_exponential_gains(case, k):
    rels, scores = case
    gains = [[2.0**x - 1.0 for x in r] for r in rels]
    expected = np.mean([ndcg_score([g], [s], k=k) for g, s in zip(gains, scores, strict=True)])
    assert ndcg(rels, scores, k, "exponential") == pytest.approx(expected, rel=1e-9, abs=1e-12)


@PROPERTY
@given(queries(min_size=1, max_size=1), K)
def test_ndcg_is_between_0_and_1_and_1_for_the_ideal_order(case, k):
    (rel,), (score,) = case
    assert 0.0 <= ndcg([rel], [score], k) <= 1.0 + 1e-12
    if any(rel):
        assert ndcg([rel], [rel], k) == pytest.approx(1.0)


def test_ndcg_of_no_queries_is_0():
    assert ndcg([], []) == 0.0


THRESHOLDS = np.linspace(0.005, 0.995, 199)
# Probabilities: any in [0, 1], and the sweep's own thresholds (where >= matters).
PROBABILITY = st.one_of(st.floats(0, 1), st.sampled_from(THRESHOLDS.tolist()))


@st.composite
def binary_problems(draw) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(4, 60))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < n))
    p = draw(st.lists(PROBABILITY, min_size=n, max_size=n))
    return np.array(y), np.array(p)


@settings(PROPERTY, max_examples=60)
@given(binary_problems(), st.lists(st.integers(0, len(THRESHOLDS) - 1), min_size=1,
                                   max_size=8))
def test_mcc_sweep_is_sklearns(problem, picks):
    y, p = problem
    result = threshold_metrics(y, p)
    sweep = result["sweep"]
    assert sweep["thresholds"] == THRESHOLDS.round(4).tolist()
    for i in picks:
        assert sweep["mcc"][i] == pytest.approx(
            matthews_corrcoef(y, (p >= THRESHOLDS[i]).astype(int)), abs=1e-6)
    best = float(np.max(sweep["mcc"]))
    assert result["best_mcc"] == pytest.approx(best, abs=1e-6)
    assert result["best_threshold"] in THRESHOLDS.tolist()  # best_mcc is sklearn's there
    cm = result["confusion_matrix"]
    assert sum(cm.values()) == len(y) and cm["tp"] + cm["fn"] == int(y.sum())
