"""MLflow tracking and registry for mltk runs; MLflow itself is imported only when used.

Modules:

- :mod:`~mltk.tracking.params` -- settings flattened into params, data identity and the
  command line as tags (no MLflow needed).
- :mod:`~mltk.tracking.tracker` -- :class:`Tracker`: one MLflow run per mltk run, which never
  stops the mltk run (a warning naming the tracking URI instead) and never stays RUNNING.
- ``models:/NAME/VERSION`` and ``models:/NAME@alias`` are made local folders by
  :mod:`mltk.storage.registry` (through :func:`mltk.storage.localize`: ``mltk serve`` takes
  them).
- :mod:`~mltk.tracking.mlmodel` -- the ``MLmodel`` file of a model folder (no MLflow needed).
- :mod:`~mltk.tracking.pyfunc` -- the ``python_function`` loader behind it
  (``mlflow.pyfunc.load_model(folder)`` scores with mltk's predictors).

Example::

    from mltk.tracking import Tracker, TrackingSettings, flatten
    with Tracker(TrackingSettings(enabled=True)).start(flatten(cfg)) as tracker:
        tracker.log_metrics({"auc": 0.93}, step=0)
"""

from __future__ import annotations

from mltk.tracking.params import command_tags, content_hash, data_identity, flatten
from mltk.tracking.tracker import Tracker, TrackingSettings, metric_key, redact

__all__ = ["Tracker", "TrackingSettings", "command_tags", "content_hash", "data_identity",
           "flatten", "metric_key", "redact"]
