"""One MLflow run per mltk run, that never stops the mltk run.

    tracker = Tracker(TrackingSettings(enabled=True, experiment="churn"))
    with tracker.start(params=flatten(settings), tags={...}):
        tracker.log_metrics({"cv_auc": 0.91}, step=1)
        ...
        tracker.log_artifacts("analysis/", "model")
        tracker.register("churn")          # a new version of the registered model

Every MLflow call goes through :meth:`Tracker._call`: the first one that fails (server down,
credentials refused, a bad URI) logs one warning naming the tracking URI, and tracking stops
for the rest of the run, which goes on. Leaving the ``with`` block by an exception marks the
MLflow run FAILED (KILLED for Ctrl-C), so no run is left RUNNING; a run whose tracking broke
midway is also closed as FAILED (its record is incomplete) with the reason in a tag.

MLflow is imported only when a run starts; a disabled tracker (the default) does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mltk import __version__

log = logging.getLogger(__name__)

#: MLflow retries a failed HTTP call 7 times with growing pauses (minutes in all); an mltk run
#: whose server is down waits for it once, briefly. Either can be set in the environment.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_BATCH = 100  # MLflow's limit on params per log_batch call
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    """``enabled``: track at all; ``tracking_uri``: None for ``MLFLOW_TRACKING_URI`` (else
    MLflow's default, ``sqlite:///mlflow.db`` here); ``experiment``: None for
    ``MLFLOW_EXPERIMENT_NAME``, else ``default_experiment``; ``register``: the registered
    model the run's model folder becomes a version of (None: not registered)."""

    enabled: bool = False
    tracking_uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    register: str | None = None
    default_experiment: str = "mltk"


def redact(uri: str) -> str:
    """A tracking URI without a password (``https://user:***@host``)."""
    parts = urlsplit(uri)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def metric_key(name: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_-. /``; anything else becomes ``_``)."""
    return _BAD_KEY.sub("_", name)


class Tracker:
    """One MLflow run (see the module docstring); every method is a no-op when disabled or
    after tracking failed."""

    def __init__(self, settings: TrackingSettings | None = None) -> None:
        self.settings = settings or TrackingSettings()
        self.run_id: str | None = None
        self.artifact_uri: str | None = None
        self.error: str | None = None
        self.registered_version: str | None = None
        self._client: Any = None
        self._finished = False

    @property
    def active(self) -> bool:
        """Whether calls go to MLflow: enabled, started and not failed."""
        return self.run_id is not None and self.error is None and not self._finished

    @property
    def tracking_uri(self) -> str:
        uri = self.settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return uri
        if self._client is not None:
            return str(self._client.tracking_uri)
        return "MLflow's default tracking URI"

    # -- the run ------------------------------------------------------------------------------
    def start(self, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None) -> Tracker:
        """Create the MLflow run with ``params`` and ``tags`` (plus ``mltk.version``); returns
        self, a context manager that finishes the run."""
        if not self.settings.enabled or self.run_id is not None:
            return self
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self._call("connect", self._create_run, dict(tags or {}))
        if params:
            self.log_params(params)
        return self

    def _create_run(self, tags: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        name = (self.settings.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
                or self.settings.default_experiment)
        experiment_id = self._experiment_id(name)
        run = self._client.create_run(
            experiment_id, run_name=self.settings.run_name,
            tags={"mltk.version": __version__, **{k: str(v) for k, v in tags.items()}})
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        log.info(f"MLflow run {self.run_id} in experiment {name!r} at "
                 f"{redact(self.tracking_uri)}")

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(name)
        except MlflowException:  # made meanwhile by another run
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mltk.tracking.params import flatten

        flat = flatten(params)
        if not self.active or not flat:
            return

        def send() -> None:
            from mlflow.entities import Param

            items = [Param(k, v) for k, v in flat.items()]
            for i in range(0, len(items), _BATCH):
                self._client.log_batch(self.run_id, params=items[i:i + _BATCH])

        self._call("log params", send)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active or not tags:
            return

        def send() -> None:
            from mlflow.entities import RunTag

            self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in
                                                      tags.items()])

        self._call("set tags", send)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numbers only (None, text and NaN-free checks are MLflow's: non-numbers are left out)."""
        if not self.active:
            return
        values = {metric_key(k): float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not values:
            return

        def send() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self._client.log_batch(self.run_id, metrics=[
                Metric(k, v, now, step or 0) for k, v in values.items()])

        self._call("log metrics", send)

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None
                      ) -> None:
        """Upload a folder's files (under ``artifact_path`` in the run's artifacts)."""
        if self.active:
            self._call("log artifacts", self._client.log_artifacts, self.run_id,
                       os.fspath(folder), artifact_path)

    def register(self, name: str | None = None, artifact_path: str = "model") -> str | None:
        """Register the run's ``artifact_path`` (a model folder logged with
        :meth:`log_artifacts`) as a new version of ``name`` (default: the settings'
        ``register``); returns the version, None when not registered."""
        name = name or self.settings.register
        if not name or not self.active:
            return None

        def send() -> str:
            from mlflow.exceptions import MlflowException

            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = self._client.create_model_version(
                name, f"{self.artifact_uri}/{artifact_path}", run_id=self.run_id,
                tags={"mltk.version": __version__})
            return str(mv.version)

        self.registered_version = self._call(f"register model {name!r}", send)
        if self.registered_version:
            log.info(f"registered models:/{name}/{self.registered_version}")
        return self.registered_version

    def log_model_folder(self, folder: str | os.PathLike,
                         metrics: Mapping[str, Any] | None = None) -> str | None:
        """The end of a command: its final ``metrics`` (prefixed ``test_``-style names as
        given), the folder (model, report, plots) as the ``model`` artifact, and a new
        registered version when the settings name one; returns that version."""
        if metrics:
            self.log_metrics(metrics)
        self.log_artifacts(folder, "model")
        return self.register()

    def finish(self, status: str = "FINISHED") -> None:
        """End the MLflow run: FINISHED, FAILED or KILLED (FAILED when tracking broke midway).
        Tried even after a failure, so the run is not left RUNNING where the server is back."""
        if self.run_id is None or self._finished:
            return
        self._finished = True
        if self.error is not None:
            status = "FAILED"
            self._quietly(lambda: self._client.set_tag(self.run_id, "mltk.tracking_error",
                                                       self.error[:5000]))
        self._quietly(lambda: self._client.set_terminated(self.run_id, status))

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        code = getattr(exc, "exit_code", None)  # typer.Exit: 0 done, 130/143 a signal
        if exc_type is None or code == 0:
            self.finish("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt) or code in (130, 143):
            self.finish("KILLED")
        else:
            self.finish("FAILED")

    # -- failures -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; on any error: one warning naming the tracking URI, tracking off."""
        if self.error is not None:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # tracking must never stop the run it records
            self.error = f"{what}: {_reason(exc)}"[:500]
            log.warning(f"MLflow tracking at {redact(self.tracking_uri)} failed ({self.error});"
                        " the run goes on without it")
            return None

    def _quietly(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # already warned once; the server may still be down
            log.debug(f"MLflow: {type(exc).__name__}: {exc}")


_OS_ERROR = re.compile(r"\[Errno -?\d+\][^\"')]*")


def _reason(exc: BaseException) -> str:
    """The gist of an MLflow error: the OS error under a failed connection ("[Errno 111]
    Connection refused"), else the exception's first line."""
    text = str(exc).strip()
    found = _OS_ERROR.search(text)
    if found:
        return found.group(0).strip()
    lines = text.splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"

