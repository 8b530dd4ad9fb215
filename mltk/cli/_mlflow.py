"""The MLflow options of the commands that fit models (``--mlflow``, ``--experiment``,
``--run-name``, ``--register``) and the :class:`~mltk.tracking.Tracker` they describe.

Tracking is on with ``--mlflow``, ``--register`` or by itself when ``MLFLOW_TRACKING_URI`` is
set; ``--no-mlflow`` turns it off whatever the environment says.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mltk.tracking import Tracker

MlflowOption = Annotated[bool | None, typer.Option(
    "--mlflow/--no-mlflow", show_default=False,
    help="Track the run in MLflow: params, metrics, artifacts (default: on when "
    "MLFLOW_TRACKING_URI is set).")]
ExperimentOption = Annotated[str | None, typer.Option(
    "--experiment", help="MLflow experiment (env MLFLOW_EXPERIMENT_NAME; default "
    "mltk-COMMAND).", show_default=False)]
RunNameOption = Annotated[str | None, typer.Option(
    "--run-name", help="MLflow run name (default: one MLflow picks).", show_default=False)]
RegisterOption = Annotated[str | None, typer.Option(
    "--register", help="Register the model folder as a new version of this MLflow model "
    "(serve it with: mltk serve models:/NAME/VERSION).", show_default=False)]


def make_tracker(command: str, mlflow: bool | None, experiment: str | None = None,
                 run_name: str | None = None, register: str | None = None) -> Tracker:
    """The command's tracker (disabled unless asked for, see the module docstring)."""
    from mltk.tracking import Tracker, TrackingSettings

    if mlflow is False and register:
        raise typer.BadParameter("--register needs MLflow tracking (drop --no-mlflow)",
                                 param_hint="--register")
    enabled = mlflow if mlflow is not None else bool(
        register or os.environ.get("MLFLOW_TRACKING_URI"))
    return Tracker(TrackingSettings(enabled=enabled, experiment=experiment, run_name=run_name,
                                    register=register, default_experiment=f"mltk-{command}"))


def run_tags(command: str, **inputs: Any) -> dict[str, str]:
    """The command line and the inputs' identity: ``inputs`` maps a role to a path or to
    (path, record count)."""
    from mltk.tracking import command_tags, data_identity

    tags = command_tags(sys.argv[1:], command)
    for role, value in inputs.items():
        path, records = value if isinstance(value, tuple) else (value, None)
        tags.update(data_identity(role, path, records))
    return tags
