"""MLflow's ``python_function`` flavour for mltk model folders, scoring with mltk's predictors.

Every model folder mltk writes carries an ``MLmodel`` file (:mod:`mltk.tracking.mlmodel`;
plain YAML, written without MLflow) whose ``loader_module`` is this module. So, with mltk
installed::

    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model("analysis/")        # or models:/churn@prod
    model.predict(df)                                     # the rows of `mltk xgb-predict`

and ``mlflow models serve -m models:/churn@prod --env-manager local`` serves it. Scoring goes
through :func:`mltk.predictors.open_predictor`, the predictors ``mltk serve`` and the
``predict`` commands use, so the answers are theirs.
"""

from __future__ import annotations

from typing import Any


class MltkPyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps: a DataFrame (or records) in, a DataFrame out.

    A two-group model scores the frame as ``mltk xgb-predict`` does (id columns echoed,
    probability, label); other kinds score each row (a record of the predictor's inputs) with
    the predictor and return one row per answer.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        score_frame = getattr(self.predictor, "score_frame", None)
        if score_frame is not None:
            unknown = (params or {}).get("unknown_categories", "error")
            return score_frame(frame, unknown).reset_index(drop=True)
        if getattr(self.predictor, "input_kind", None) == "image":
            return self._images(frame)
        answers = self.predictor.predict(frame.to_dict("records"))
        failed = next((a for a in answers if isinstance(a, Exception)), None)
        if failed is not None:
            raise failed
        return pd.DataFrame([a if isinstance(a, dict) else {"prediction": a}
                             for a in answers])


    def _images(self, frame: Any) -> Any:
        """A ``path`` column: the rows of ``mltk predict`` (path, labels, probabilities,
        error); an ``image`` column of encoded bytes: the labels and probabilities."""
        import pandas as pd

        if "path" in frame.columns:
            from pathlib import Path

            return pd.DataFrame(list(self.predictor.predict_paths(
                [Path(p) for p in frame["path"]])))
        if "image" not in frame.columns:
            raise ValueError("an image model takes a 'path' column (files) or an 'image' "
                             "column (encoded bytes)")
        answers = self.predictor.predict([bytes(b) for b in frame["image"]])
        failed = next((a for a in answers if isinstance(a, Exception)), None)
        if failed is not None:
            raise failed
        return pd.DataFrame(answers)


def _load_pyfunc(data_path: str) -> MltkPyfuncModel:
    """MLflow's loader entry point (the name MLflow calls): the folder's predictor."""
    from mltk.predictors import open_predictor

    return MltkPyfuncModel(open_predictor(data_path))
