"""Two-group tabular analysis with tuned XGBoost (``mltk xgb-analyze``, ``mltk xgb-predict``).

    from mltk.tabular import analyze, predict, load_table, TwoGroupModel
    report = analyze(df, "group", settings, "out/")   # settings: configs/xgb.yaml resolved
    model = TwoGroupModel("out/")                      # load once, then score many batches
    scored = model.score(new_rows)                     # id columns, probability, label
"""

from mltk.tabular.analyze import analyze, predict
from mltk.tabular.data import InvalidRowsError, load_table, prepare
from mltk.tabular.explain import group_profile, threshold_metrics
from mltk.tabular.model import TwoGroupModel

__all__ = ["InvalidRowsError", "TwoGroupModel", "analyze", "group_profile", "load_table",
           "predict", "prepare", "threshold_metrics"]
