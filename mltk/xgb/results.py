"""The result of :func:`mltk.xgb.analyze`, held in memory, and the folder it saves.

    analysis = analyze(df, "group", settings)   # nothing written yet
    analysis.metrics["roc_auc"], analysis.trials, analysis.predictions
    analysis.save("out/")                       # the xgb-analyze folder

The folder holds ``model.ubj``, ``config.yaml`` (the settings and the feature schema that
:class:`mltk.xgb.TwoGroupModel` reads back), ``trials.csv``, ``test_predictions.csv``, the
plots, ``report.md``, ``report.html`` (one self-contained file, plots embedded),
``data_profile.json`` (the training rows' profile, for drift checks), ``report.json``, an
``MLmodel`` file (MLflow's pyfunc flavour: :mod:`mltk.tracking.pyfunc`) and, written last,
``config.yaml``; each file is written atomically.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from mltk.xgb.settings import XgbSettings
from mltk.xgb.stages import Stages

#: The plots drawn when an analysis is saved, in order.
PLOTS = ("roc.png", "mcc.png", "importance.png", "shap_summary.png", "correlation.png")


@dataclasses.dataclass(eq=False)
class Analysis:
    """One two-group analysis: the model, every number, and the tables behind them.

    ``model`` is the XGBoost booster refit on all training rows; ``report`` the dict written
    as report.json (``report["metrics"]``, ``["importance"]``, ``["not_computed"]``, ...);
    ``predictions`` the test rows scored (DataFrame: id columns, row, y_true, probability,
    predicted); ``trials`` one row per tuning trial (DataFrame); ``settings`` the
    :class:`XgbSettings` used; ``config`` what config.yaml holds (the settings, the feature
    schema, the threshold and the tuned parameters); ``shap_values`` and ``explained`` the
    SHAP values (None when not computed) of the test rows explained; ``data_profile`` the
    :class:`mltk.drift.DataProfile` of the training rows (what ``xgb-predict --drift``
    compares new rows with).
    """

    model: Any
    report: dict[str, Any]
    predictions: Any
    trials: Any
    settings: XgbSettings
    config: dict[str, Any]
    shap_values: Any = None
    explained: Any = None
    compute_seconds: float = dataclasses.field(default=0.0, repr=False)
    data_profile: Any = None

    @property
    def metrics(self) -> dict[str, Any]:
        """Test-set metrics: roc_auc, pr_auc, log_loss, best_threshold, best_mcc, ..."""
        return self.report["metrics"]

    @property
    def threshold(self) -> float:
        """Probabilities at or above it are labelled with the positive group."""
        return float(self.report["metrics"]["best_threshold"])

    @property
    def importance(self) -> Any:
        """Features by consensus rank with each importance measure (a DataFrame)."""
        import pandas as pd

        return pd.DataFrame(self.report["importance"])

    def __repr__(self) -> str:
        d, m = self.report["data"], self.report["metrics"]
        return (f"Analysis({d['target']!r}: {d['rows']} rows, {len(d['features'])} features, "
                f"test ROC AUC {m['roc_auc']:.4f})")

    def save(self, out: str | os.PathLike) -> Path:
        """Write the analysis folder ``out`` (made if need be); returns its path.

        The plots are drawn now: one that fails is logged and listed under ``not_computed``
        (in ``report`` too), and leaves no stale file of a former run. ``report["seconds"]``
        becomes the time of the analysis plus the writing.
        """
        from mltk import _config
        from mltk._atomic import atomic_path, write_json, write_text
        from mltk.tracking.mlmodel import write_mlmodel
        from mltk.xgb.report import render_markdown

        t0 = time.perf_counter()
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        # config.yaml marks a complete folder (what xgb-predict and serve open): gone while the
        # files change and written last, so an interrupted save over an older analysis leaves a
        # folder that does not load rather than a new model with the old threshold.
        (folder / "config.yaml").unlink(missing_ok=True)
        with atomic_path(folder / "model.ubj") as tmp:
            self.model.save_model(os.fspath(tmp))
        with atomic_path(folder / "trials.csv") as tmp:
            self.trials.to_csv(tmp, index=False)
        with atomic_path(folder / "test_predictions.csv") as tmp:
            self.predictions.to_csv(tmp, index=False)
        self._plots(folder)
        write_text(folder / "report.md", render_markdown(self.report))
        self._profile(folder)
        self._html(folder)
        self.report["seconds"] = round(self.compute_seconds + time.perf_counter() - t0, 2)
        write_json(folder / "report.json", self.report)
        write_mlmodel(folder, "two-group")  # mlflow.pyfunc.load_model(folder) scores it
        _config.save(folder / "config.yaml", self.config)
        return folder

    def _profile(self, out: Path) -> None:
        from mltk.drift import PROFILE_FILE

        if self.data_profile is None:  # not computed: no stale profile of a former run
            (out / PROFILE_FILE).unlink(missing_ok=True)
        else:
            self.data_profile.save(out / PROFILE_FILE)

    def _html(self, out: Path) -> None:
        """report.html (the plots embedded), an optional stage like the plots."""
        from mltk import _report
        from mltk.xgb.report import render_html

        stages = Stages(self.report["not_computed"])
        stages.not_computed.pop("report.html", None)
        html = stages.run("report.html", render_html, self.report, out, self.config)
        if html is None:
            (out / "report.html").unlink(missing_ok=True)
        else:
            _report.write(out / "report.html", html)

    def _plots(self, out: Path) -> None:
        """Each plot as an optional stage; a plot not drawn leaves no stale file from a former
        run in the folder."""
        from mltk.xgb import plots

        stages = Stages(self.report["not_computed"])
        for name in PLOTS:
            stages.not_computed.pop(name, None)  # from an earlier save
        y_te = self.predictions["y_true"].to_numpy()
        p_te = self.predictions["probability"].to_numpy()
        drawing = {"roc.png": (plots.roc, out, self.report, y_te, p_te),
                   "mcc.png": (plots.mcc, out, self.report),
                   "importance.png": (plots.importance, out, self.report),
                   "shap_summary.png": (plots.shap_summary, out, self.report, self.shap_values,
                                        self.explained),
                   "correlation.png": (plots.correlation, out, self.report)}
        for name, (func, *args) in drawing.items():
            if name == "shap_summary.png" and self.shap_values is None:
                stages.skip(name, "needs the SHAP values, which were not computed")
            else:
                stages.run(name, func, *args)
            if name in stages.not_computed:
                (out / name).unlink(missing_ok=True)
