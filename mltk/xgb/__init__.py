"""Two-group tabular analysis with tuned XGBoost (``mltk xgb-analyze``, ``mltk xgb-predict``).

The package, the commands and the settings share one name: ``mltk.xgb``, ``mltk xgb-*``,
``configs/xgb.yaml`` and ``MLTK_XGB_*``.

    import mltk.settings
    from mltk.xgb import TwoGroupModel, analyze, load_table

    settings = mltk.settings.load("xgb", max_evals=5)   # -> XgbSettings, checked
    df = load_table("users.csv")
    analysis = analyze(df, "group", settings)           # in memory: nothing written yet
    analysis.metrics["roc_auc"], analysis.importance, analysis.trials, analysis.predictions
    analysis.save("out/")                               # report, plots, model.ubj, config.yaml
    scored = TwoGroupModel("out/").score(rows)          # load once; id columns, probability, label
"""

from mltk._numbers import parse_cell  # how xgb-predict (and the server) read a CSV cell
from mltk.xgb.analysis import analyze, predict
from mltk.xgb.data import InvalidRowsError, load_table, prepare
from mltk.xgb.explain import group_profile, threshold_metrics
from mltk.xgb.model import TwoGroupModel
from mltk.xgb.results import Analysis
from mltk.xgb.settings import XgbSettings

__all__ = ["Analysis", "InvalidRowsError", "TwoGroupModel", "XgbSettings", "analyze",
           "group_profile", "load_table", "parse_cell", "predict", "prepare",
           "threshold_metrics"]
