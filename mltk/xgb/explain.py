"""What separates the two groups: group profile, metrics with an MCC threshold sweep, feature
importances (XGBoost's own, SHAP, permutation) with a consensus, and a standardized logistic
regression with correlations and variance inflation factors.

Each explanation is its own function, so that the analysis can run them one by one and carry
on without the ones that fail (see ``mltk.xgb.analysis``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)
IMPORTANCE_TYPES = ("weight", "gain", "total_gain", "cover", "total_cover")
CONSENSUS = ("gain", "total_gain", "mean_abs_shap", "permutation_auc_drop")


def group_profile(X: Any, y: Any, categories: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per feature: mean, median, std per class and the standardized mean difference
    (positive minus negative over the pooled SD), sorted by |SMD|. Categorical levels appear as
    ``col=level`` with their share in each class."""
    import numpy as np

    rows = []
    cols = {}
    for col in X.columns:
        if col in categories:
            for level in categories[col]:
                cols[f"{col}={level}"] = (X[col] == level).astype(float).to_numpy()
        else:
            cols[col] = X[col].to_numpy(dtype=float)
    for name, v in cols.items():
        pos, neg = v[y == 1], v[y == 0]
        pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
        stats = {}
        for tag, arr in (("positive", pos), ("negative", neg)):
            stats[f"mean_{tag}"] = float(arr.mean()) if len(arr) else None
            stats[f"median_{tag}"] = float(np.median(arr)) if len(arr) else None
            stats[f"std_{tag}"] = float(arr.std(ddof=1)) if len(arr) > 1 else None
        pooled = np.sqrt(((len(pos) - 1) * (stats["std_positive"] or 0) ** 2
                          + (len(neg) - 1) * (stats["std_negative"] or 0) ** 2)
                         / max(1, len(pos) + len(neg) - 2))
        smd = ((stats["mean_positive"] - stats["mean_negative"]) / pooled
               if pooled > 0 and stats["mean_positive"] is not None
               and stats["mean_negative"] is not None else 0.0)
        rows.append({"feature": name, **stats, "smd": float(smd)})
    rows.sort(key=lambda r: -abs(r["smd"]))
    return rows


def threshold_metrics(y: Any, p: Any, steps: int = 199) -> dict[str, Any]:
    """ROC AUC, PR AUC, log loss; MCC over ``steps`` thresholds; F1/precision/recall/confusion
    at the best one (computed with scikit-learn)."""
    import numpy as np
    from sklearn import metrics as skm

    thresholds = np.linspace(0.005, 0.995, max(100, steps))
    # Counts at each threshold from the sorted probabilities of each class: O(n) memory, not
    # a (thresholds x rows) matrix (1.6 GB for 8M test rows).
    pos = y.astype(bool)
    p_pos, p_neg = np.sort(p[pos]), np.sort(p[~pos])
    fn = np.searchsorted(p_pos, thresholds, side="left").astype(float)  # p < t
    tn = np.searchsorted(p_neg, thresholds, side="left").astype(float)
    tp, fp = len(p_pos) - fn, len(p_neg) - tn
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1), 0.0)
    best = int(np.argmax(mcc))
    t = float(thresholds[best])
    label = (p >= t).astype(int)
    cm = skm.confusion_matrix(y, label, labels=[0, 1])
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "best_threshold": t,
        "best_mcc": float(skm.matthews_corrcoef(y, label)),
        "f1": float(skm.f1_score(y, label, zero_division=0)),
        "precision": float(skm.precision_score(y, label, zero_division=0)),
        "recall": float(skm.recall_score(y, label, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, label)),
        "confusion_matrix": {"tn": int(cm[0, 0]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]),
                             "tp": int(cm[1, 1])},
        "sweep": {"thresholds": thresholds.round(4).tolist(), "mcc": mcc.round(6).tolist()},
    }


class _BoosterModel:
    """The minimal estimator interface scikit-learn's permutation_importance needs."""

    def __init__(self, booster: Any, enable_categorical: bool) -> None:
        self.booster = booster
        self.enable_categorical = enable_categorical

    def fit(self, X: Any, y: Any) -> _BoosterModel:  # pragma: no cover - never refitted
        return self

    def predict_proba(self, X: Any) -> Any:
        import numpy as np
        import xgboost as xgb

        p = self.booster.predict(xgb.DMatrix(X, enable_categorical=self.enable_categorical))
        return np.stack([1 - p, p], 1)


def booster_importances(booster: Any, features: Sequence[str]) -> dict[str, list[float]]:
    """XGBoost's own measures (split counts, gain, cover) for every feature, zero ones too."""
    out = {}
    for kind in IMPORTANCE_TYPES:
        score = booster.get_score(importance_type=kind)
        out[kind] = [float(score.get(f, 0.0)) for f in features]
    return out


def shap_values(booster: Any, X: Any, enable_categorical: bool) -> tuple[Any, float]:
    """(SHAP contributions per row and feature, without the bias column; the largest gap
    between their sum and the margin). Raises when they do not add up."""
    import numpy as np
    import xgboost as xgb

    dm = xgb.DMatrix(X, enable_categorical=enable_categorical)
    contribs = booster.predict(dm, pred_contribs=True)
    margin = booster.predict(dm, output_margin=True)
    gap = float(np.abs(contribs.sum(1) - margin).max()) if len(margin) else 0.0
    if gap > 1e-3:
        raise RuntimeError(f"SHAP contributions do not add up to the margin (gap {gap})")
    return contribs[:, :-1], gap


def permutation_auc_drop(booster: Any, X: Any, y: Any, enable_categorical: bool, repeats: int,
                         seed: int) -> dict[str, list[float]]:
    """Mean and std of the test AUC drop when each feature is shuffled (scikit-learn)."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score

    perm = permutation_importance(
        _BoosterModel(booster, enable_categorical), X, y, n_repeats=repeats, random_state=seed,
        scoring=lambda est, Xp, yp: roc_auc_score(yp, est.predict_proba(Xp)[:, 1]))
    return {"permutation_auc_drop": [float(v) for v in perm.importances_mean],
            "permutation_std": [float(v) for v in perm.importances_std]}


def consensus(features: Sequence[str], measures: dict[str, list[float]]
              ) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Every feature with each measure (None where a measure was not computed), a consensus
    rank, and the Spearman rank correlation between the measures that were computed."""
    import pandas as pd

    names = [*IMPORTANCE_TYPES, "mean_abs_shap", "permutation_auc_drop"]
    table = pd.DataFrame({m: measures[m] for m in [*names, "permutation_std"] if m in measures},
                         index=list(features), dtype=float)
    present = [m for m in names if m in table]
    ranks = table[present].rank(ascending=False, method="average")
    # The consensus averages the measures of contribution; split counts (weight) and cover
    # favour continuous features with many split points, so they are reported, not voted.
    voters = [m for m in CONSENSUS if m in table]
    mean_rank = ranks[voters].mean(axis=1) if voters else pd.Series(1.0, index=table.index)
    table["consensus_rank"] = mean_rank.rank(method="min").astype(int)
    order = ["consensus_rank"] + (["mean_abs_shap"] if "mean_abs_shap" in table else [])
    table = table.sort_values(order, ascending=[True] + [False] * (len(order) - 1),
                              kind="stable")
    rows = [{"feature": f, "consensus_rank": int(r["consensus_rank"]),
             **{m: float(r[m]) if m in table else None for m in [*names, "permutation_std"]}}
            for f, r in table.iterrows()]
    corr = ranks.corr(method="spearman").round(4)
    return rows, {a: {b: float(corr.loc[a, b]) for b in present} for a in present}


def standardized_design(X: Any, categories: dict[str, list[str]]) -> Any:
    """The regression's inputs: missing values filled with the column median, categoricals
    one-hot encoded with the first level as the reference, constant columns dropped, every
    column standardized so coefficients compare."""
    import pandas as pd

    parts = [X.drop(columns=list(categories)).astype(float)]
    for col, cats in categories.items():
        for level in cats[1:]:
            parts.append(pd.Series((X[col] == level).astype(float).to_numpy(),
                                   index=X.index, name=f"{col}={level}"))
    Z = pd.concat(parts, axis=1)
    Z = Z.fillna(Z.median())
    Z = Z.loc[:, Z.std() > 0]
    return (Z - Z.mean()) / Z.std()


def logistic_regression(Z: Any, y: Any) -> dict[str, Any]:
    """Standardized logistic regression (statsmodels): coefficients per SD with standard
    errors and p-values; an L1-regularized fit, noted, when the maximum-likelihood fit fails
    (separable groups). Raises when both fail."""
    import numpy as np
    import statsmodels.api as sm

    design = sm.add_constant(Z, has_constant="add")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence is checked below instead
            fit = sm.Logit(np.asarray(y, float), design).fit(disp=0, maxiter=200)
        if not fit.mle_retvals.get("converged", True) or not np.all(np.isfinite(fit.bse)):
            raise ValueError("the maximum-likelihood fit did not converge (the groups are "
                             "(almost) perfectly separable)")
    except (np.linalg.LinAlgError, ValueError) as exc:
        return _l1_regression(Z, y, design, exc)
    coefs = [{"feature": name, "coef": float(fit.params[name]),
              "std_err": float(fit.bse[name]), "z": float(fit.tvalues[name]),
              "p_value": float(fit.pvalues[name]),
              "odds_ratio_per_sd": float(np.exp(fit.params[name]))} for name in Z.columns]
    coefs.sort(key=lambda r: -abs(r["coef"]))
    return {"coefficients": coefs, "pseudo_r2": float(fit.prsquared), "note": None}


def _l1_regression(Z: Any, y: Any, design: Any, why: Exception) -> dict[str, Any]:
    import numpy as np
    import statsmodels.api as sm

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(np.asarray(y, float), design).fit_regularized(disp=0, alpha=1.0)
    except (np.linalg.LinAlgError, ValueError) as exc:
        first = " ".join(str(exc).split()).split(". ")[0].rstrip(".")  # not the advice after
        raise RuntimeError(f"the maximum-likelihood fit failed ({why}) and so did the "
                           f"L1-regularized fit ({first})") from exc
    note = (f"logistic regression: {why}; coefficients are from an L1-regularized fit "
            "instead, without standard errors or p-values")
    log.warning(note)
    coefs = [{"feature": n, "coef": float(fit.params[n]), "std_err": None, "z": None,
              "p_value": None, "odds_ratio_per_sd": float(np.exp(fit.params[n]))}
             for n in Z.columns]
    coefs.sort(key=lambda r: -abs(r["coef"]))
    return {"coefficients": coefs, "pseudo_r2": None, "note": note}


def variance_inflation(Z: Any) -> list[dict[str, Any]]:
    """VIF per column of the standardized design (> 5 flagged as collinear; inf when a column
    is a linear combination of the others).

    The VIFs are the diagonal of the inverse of the columns' correlation matrix (one pass
    over the rows, then a p x p inverse: 0.1 s at 800k rows, where a regression of each
    column on the others took 9 s); a singular or ill-conditioned matrix falls back to those
    regressions, which say which columns are collinear."""
    import numpy as np

    vif = None
    if Z.shape[1] > 1:
        corr = np.corrcoef(Z.to_numpy(dtype=float), rowvar=False)
        if np.all(np.isfinite(corr)) and np.linalg.cond(corr) < 1e8:
            diag = np.diag(np.linalg.inv(corr))
            vif = [float(v) for v in diag] if np.all(diag >= 1 - 1e-6) else None
    values = vif if vif is not None else _vif_by_regression(Z)
    rows = [{"feature": name, "vif": value, "collinear": bool(value > 5)}
            for name, value in zip(Z.columns, values, strict=True)]
    rows.sort(key=lambda r: -r["vif"])
    return rows


def _vif_by_regression(Z: Any) -> list[float]:
    """VIF of each column from its regression on the others (statsmodels)."""
    import numpy as np
    import statsmodels.api as sm
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    design = sm.add_constant(Z, has_constant="add").to_numpy()
    out = []
    for i in range(Z.shape[1]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # rank-deficient designs: the VIF says so
                out.append(float(variance_inflation_factor(design, i + 1)))
        except (np.linalg.LinAlgError, ZeroDivisionError):
            out.append(float("inf"))
    return out


def correlation(Z: Any) -> dict[str, dict[str, float]]:
    """Pearson correlation between the columns of the standardized design."""
    corr = Z.corr().round(4)
    return {a: {b: float(corr.loc[a, b]) for b in corr.columns} for a in corr.columns}
