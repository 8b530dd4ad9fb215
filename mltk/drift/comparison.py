"""Comparing rows with a :class:`~mltk.drift.profile.DataProfile`: PSI per feature.

The population stability index sums ``(actual - expected) * ln(actual / expected)`` over the
bins of a feature: the training quantile bins (numeric) or the levels (categorical), plus one
bin for missing values and, for a categorical feature, one for categories never seen in
training. So a feature whose values move, whose missing rate jumps or that fills with new
categories all show in its PSI. Empty bins count as a share of 0.0001 (the logarithm needs
one). Thresholds: below :data:`WATCH` (0.1) ``ok``, below :data:`DRIFT` (0.25) ``watch``,
from it ``drift``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from mltk.drift.profile import DataProfile, level_keys, numbers

WATCH = 0.1
DRIFT = 0.25
EPSILON = 1e-4
SHOWN_NEW = 20  # new categories named per feature
THRESHOLDS_NOTE = f"PSI below {WATCH} ok, {WATCH} to {DRIFT} watch, {DRIFT} or more drift"


def status_of(psi: float | None) -> str:
    if psi is None:
        return "missing_column"
    return "ok" if psi < WATCH else "watch" if psi < DRIFT else "drift"


@dataclasses.dataclass
class FeatureDrift:
    """One feature's drift: ``psi`` (None when the column is absent from the rows),
    ``missing_rate`` in the rows and in the reference, the ``new_categories`` seen (None
    for a numeric feature) and the rows holding one, and ``status``."""

    feature: str
    kind: str
    psi: float | None
    missing_rate: float | None
    reference_missing_rate: float
    new_categories: list[str] | None
    new_category_rows: int
    status: str

    def record(self) -> dict[str, Any]:
        """The stable record of every output format."""
        return {"feature": self.feature, "psi": self.psi, "missing_rate": self.missing_rate,
                "new_categories": self.new_categories, "status": self.status}


@dataclasses.dataclass
class DriftResult:
    rows: int
    reference_rows: int
    features: list[FeatureDrift]

    def records(self) -> list[dict[str, Any]]:
        return [f.record() for f in self.features]

    def by_status(self, status: str) -> list[str]:
        return [f.feature for f in self.features if f.status == status]

    def summary(self) -> str:
        """One line naming the thresholds and the features over them."""
        drift, watch, absent = (self.by_status(s) for s in ("drift", "watch", "missing_column"))
        parts = [f"{len(drift)} of {len(self.features)} features drift"
                 + (f" ({', '.join(drift[:5])}{', ...' if len(drift) > 5 else ''})"
                    if drift else ""),
                 f"{len(watch)} to watch" + (f" ({', '.join(watch[:5])})" if watch else "")]
        if absent:
            parts.append(f"{len(absent)} absent from the rows ({', '.join(absent[:5])})")
        return f"{'; '.join(parts)} [{THRESHOLDS_NOTE}]"


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def compare(profile: DataProfile, df: Any) -> DriftResult:
    """The drift of each profiled feature in ``df`` (a DataFrame; extra columns ignored)."""
    out = []
    for name, spec in profile.features.items():
        if name not in df.columns:
            out.append(FeatureDrift(name, spec["kind"], None, None, spec["missing_rate"], None,
                                    0, status_of(None)))
        elif spec["kind"] == "numeric":
            out.append(_numeric(name, spec, df[name]))
        else:
            out.append(_categorical(name, spec, df[name]))
    return DriftResult(int(len(df)), profile.rows, out)


def _expected(shares: Sequence[float], missing_rate: float) -> list[float]:
    return [s * (1.0 - missing_rate) for s in shares] + [missing_rate]


def _numeric(name: str, spec: dict[str, Any], s: Any) -> FeatureDrift:
    import numpy as np

    values = numbers(s)
    n = len(values)
    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(np.asarray(spec["edges"], float), values[~missing],
                                         side="left"), minlength=len(spec["shares"]))
    actual = [c / n for c in counts] + [missing.sum() / n] if n else []
    value = _round(psi(_expected(spec["shares"], spec["missing_rate"]), actual)) if n else 0.0
    rate = _round(float(missing.mean())) if n else 0.0
    return FeatureDrift(name, "numeric", value, rate, spec["missing_rate"], None, 0,
                        status_of(value))


def _categorical(name: str, spec: dict[str, Any], s: Any) -> FeatureDrift:
    from collections import Counter

    keys, missing = level_keys(s)
    n = len(keys)
    levels: dict[str, float] = spec["levels"]
    counts = Counter(k for k, m in zip(keys, missing, strict=True) if not m)
    new = {k: c for k, c in counts.items() if k not in levels}
    if n:
        actual = [counts.get(k, 0) / n for k in levels] + [sum(missing) / n,
                                                            sum(new.values()) / n]
        expected = _expected(list(levels.values()), spec["missing_rate"]) + [0.0]
        value, rate = _round(psi(expected, actual)), _round(sum(missing) / n)
    else:
        value, rate = 0.0, 0.0
    shown = sorted(new, key=lambda k: (-new[k], k))[:SHOWN_NEW]
    return FeatureDrift(name, "categorical", value, rate, spec["missing_rate"], shown,
                        int(sum(new.values())), status_of(value))


def _round(x: float) -> float:
    return round(float(x), 4)
