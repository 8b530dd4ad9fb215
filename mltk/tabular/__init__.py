"""Two-group tabular analysis with tuned XGBoost (``mltk xgb-analyze``, ``mltk xgb-predict``).

    from mltk.tabular import analyze, predict, load_table
    report = analyze(df, "group", settings, "out/")   # settings: configs/xgb.yaml resolved
"""

from mltk.tabular.analyze import analyze, predict
from mltk.tabular.data import load_table, prepare
from mltk.tabular.explain import group_profile, threshold_metrics

__all__ = ["analyze", "group_profile", "load_table", "predict", "prepare", "threshold_metrics"]
