"""The typed settings of the two-group analysis (``mltk xgb-analyze``; configs/xgb.yaml).

    from mltk import settings
    s = settings.load("xgb", max_evals=5, booster="gbtree")   # -> XgbSettings
    s.folds, s.tune_rows                                       # 5, 'auto'

Every field is checked when the object is made: a bad value raises
:class:`mltk.settings.SettingError` naming the setting (``folds must be an integer of at least
2, got 1``), and, through :func:`mltk.settings.load`, where the value came from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from mltk._settings import (
    SettingError,
    Settings,
    as_number,
    check_int,
    choice,
    either,
    fail,
    integer,
    is_number,
    mapping,
    number,
    optional,
    setting,
)

#: hyperopt distributions a search-space entry may name, with the keys each one needs.
SPACE_TYPES = {"uniform": ("low", "high"), "loguniform": ("low", "high"),
               "quniform": ("low", "high"), "choice": ("values",)}

DEFAULT_SPACE = {
    "max_depth": {"type": "quniform", "low": 2, "high": 10, "q": 1},
    "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.3},
    "min_child_weight": {"type": "loguniform", "low": 0.5, "high": 30},
    "subsample": {"type": "uniform", "low": 0.5, "high": 1.0},
    "colsample_bytree": {"type": "uniform", "low": 0.5, "high": 1.0},
    "gamma": {"type": "uniform", "low": 0.0, "high": 5.0},
    "reg_alpha": {"type": "loguniform", "low": 0.001, "high": 10},
    "reg_lambda": {"type": "loguniform", "low": 0.01, "high": 30},
}
DEFAULT_DART_SPACE = {
    "learning_rate": {"type": "loguniform", "low": 0.08, "high": 0.3},
    "rate_drop": {"type": "uniform", "low": 0.0, "high": 0.3},
    "skip_drop": {"type": "uniform", "low": 0.0, "high": 0.7},
}


def _tune_rows(key: str, value: Any) -> str | int:
    """auto, all or a row count; the spellings earlier versions took too (null: auto; 0 and
    none: all)."""
    if value is None:
        return "auto"
    if value == 0 or (isinstance(value, str) and value.strip().lower() in ("none", "0")):
        return "all"
    return either(choice("auto", "all"), _tune_rows_count)(key, value)


def _tune_rows_count(key: str, value: Any) -> int:
    """A positive number of rows; a numeric string too (``--tune-rows 50000``)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    try:
        return check_int(key, value, 1)
    except SettingError:
        raise fail(key, "auto, all or a positive integer", value) from None


def check_space_entry(key: str, spec: Any) -> dict[str, Any]:
    """One hyperopt distribution: a known ``type`` and the numbers it needs (returned as given).

    ``key`` is the entry's dotted name (``space.max_depth``), which an error names.
    """
    if not isinstance(spec, Mapping):
        raise fail(key, "a mapping with a type (" + ", ".join(SPACE_TYPES) + ")", spec)
    kind = spec.get("type")
    if kind not in SPACE_TYPES:
        raise fail(f"{key}.type", " | ".join(SPACE_TYPES), kind)
    absent = [k for k in SPACE_TYPES[kind] if k not in spec]
    if absent:
        raise SettingError(key.split(".")[0], f"{key} ({kind}) needs {' and '.join(absent)}")
    known = {"type", *SPACE_TYPES[kind], *(("q",) if kind == "quniform" else ())}
    unknown = sorted(str(k) for k in set(spec) - known)
    if unknown:
        raise SettingError(key.split(".")[0], f"{key} ({kind}) has unknown key(s) "
                           f"{', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if kind == "choice":
        values = spec["values"]
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or \
                not len(values):
            raise fail(f"{key}.values", "a non-empty list", values)
        return dict(spec)
    spec = {k: (as_number(v) if k in ("low", "high", "q") else v) for k, v in spec.items()}
    _check_bounds(key, kind, spec)
    return spec


def _check_bounds(key: str, kind: str, spec: Mapping[str, Any]) -> None:
    for bound in ("low", "high", *(("q",) if "q" in spec else ())):
        value = spec[bound]
        if not is_number(value) or not math.isfinite(value):
            raise fail(f"{key}.{bound}", "a number", value)
    if kind == "loguniform" and spec["low"] <= 0:
        raise fail(f"{key}.low", "a number above 0 (loguniform)", spec["low"])
    if "q" in spec and spec["q"] <= 0:
        raise fail(f"{key}.q", "a number above 0", spec["q"])
    if not spec["low"] < spec["high"]:
        raise fail(f"{key}.high", f"above low ({spec['low']!r})", spec["high"])


def space_check() -> Any:
    """A mapping of parameter name -> hyperopt distribution (see configs/xgb.yaml)."""
    return mapping(check_space_entry)


@dataclasses.dataclass(frozen=True)
class XgbSettings(Settings):
    """What ``mltk xgb-analyze`` does (configs/xgb.yaml); checked when made, frozen.

    Build one with :func:`mltk.settings.load` (``load("xgb", folds=3)``), or directly
    (``XgbSettings(folds=3)``: the other fields take the defaults of configs/xgb.yaml).
    """

    SECTION = "xgb"

    booster: str = setting("dart", choice("dart", "gbtree"),
                           "dart (as in the original analysis) | gbtree")
    device: str = setting("cpu", choice("cpu", "cuda"), "cpu | cuda")
    test_size: float = setting(0.2, number(0.0, 1.0, low_open=True, high_open=True),
                               "stratified hold-out share (rows chosen by position and "
                               "seed: the same wherever it runs)")
    folds: int = setting(5, integer(2), "stratified CV folds for tuning")
    max_evals: int = setting(20, integer(1), "hyperopt TPE trials")
    timeout: float | None = setting(None, optional(number(0.0, low_open=True)),
                                    "seconds for the whole search (null: no limit)")
    max_rounds: int = setting(1000, integer(1),
                              "boosting rounds cap; early stopping picks the number")
    dart_max_rounds: int = setting(200, integer(1), "DART's rounds cap (its cost grows with "
                                   "the square of the rounds)")
    early_stopping: int = setting(30, integer(1),
                                  "rounds without a better CV AUC before a trial stops")
    tune_rows: str | int = setting("auto", _tune_rows,
                                   "auto: tune on tune_sample rows when train > 200k rows; "
                                   "all; or N")
    tune_sample: int = setting(12000, integer(2), "stratified sample size for tune_rows: auto")
    tune_on: str = setting("sample", choice("sample", "cluster"),
                           "with a Dask cluster: sample (tune on the tune_rows sample, pulled "
                           "to the mltk process) | cluster (every trial trained by the workers)")
    categorical: str = setting("native", choice("native", "onehot"),
                               "native (enable_categorical) | onehot")
    scale_pos_weight: float | None = setting(
        None, optional(number(0.0, low_open=True)),
        "null: negatives / positives of the training rows")
    threshold_steps: int = setting(199, integer(1),
                                   "MCC sweep: thresholds between 0.005 and 0.995")
    explain_rows: int = setting(20000, integer(1), "test rows used for SHAP and permutation "
                                "importance (a stratified sample)")
    permutation_repeats: int = setting(5, integer(1), "shuffles per feature for permutation "
                                       "importance")
    seed: int = setting(0, integer(0, 2**32 - 1), "random seed: the same seed gives the same "
                        "result")
    batch_mb: int = setting(64, integer(1), "--external-memory: MB of one batch of rows as "
                            "pandas (Parquet row groups split or joined to that size)")
    space: dict[str, dict[str, Any]] = setting(
        DEFAULT_SPACE, space_check(), "the hyperopt search space: name -> {type: uniform | "
        "loguniform | quniform (with q) | choice (values), low, high}")
    dart_space: dict[str, dict[str, Any]] | None = setting(
        DEFAULT_DART_SPACE, optional(space_check()),
        "added to (and overriding) space when booster is dart")

    def tuned_space(self) -> dict[str, dict[str, Any]]:
        """The space tuned: ``space``, with ``dart_space`` over it when the booster is DART."""
        space = dict(self.space)
        if self.booster == "dart":
            space.update(self.dart_space or {})
        return space

    def rounds_cap(self) -> int:
        """The boosting rounds cap of a trial: ``dart_max_rounds`` for DART, else
        ``max_rounds``."""
        return self.dart_max_rounds if self.booster == "dart" else self.max_rounds

    @classmethod
    def of(cls, value: XgbSettings | Mapping[str, Any] | None) -> XgbSettings:
        """``value`` itself, settings from a plain mapping (see :meth:`from_config`), or the
        defaults for None."""
        if isinstance(value, cls):
            return value
        return cls.from_config(value or {})
