"""The ``MLmodel`` file of an mltk model folder: MLflow's ``python_function`` flavour, whose
loader is :mod:`mltk.tracking.pyfunc` (mltk's own predictors). Plain YAML, written without
MLflow, by every command that writes a model folder.
"""

from __future__ import annotations

import datetime
import os
import platform
import uuid
from pathlib import Path

from mltk import __version__

LOADER_MODULE = "mltk.tracking.pyfunc"
MLMODEL = "MLmodel"


def mlmodel_text(kind: str) -> str:
    """The ``MLmodel`` YAML of a folder holding an mltk model of ``kind``."""
    import yaml

    doc = {
        "flavors": {"python_function": {
            "loader_module": LOADER_MODULE, "data": ".",
            "python_version": platform.python_version(),
            "env": {"virtualenv": "python_env.yaml"}}},
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.datetime.now(datetime.UTC).strftime(
            "%Y-%m-%d %H:%M:%S.%f"),
        "metadata": {"mltk_version": __version__, "mltk_kind": kind},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def python_env_text() -> str:
    """``python_env.yaml``: how ``mlflow models serve`` (virtualenv manager) rebuilds it."""
    return (f"python: {platform.python_version()}\nbuild_dependencies:\n- pip\n"
            f"dependencies:\n- mltk[mlflow]=={__version__}\n")


def write_mlmodel(folder: str | os.PathLike, kind: str) -> Path:
    """Write ``MLmodel`` and ``python_env.yaml`` into ``folder`` (atomically)."""
    from mltk._atomic import write_text

    folder = Path(folder)
    write_text(folder / "python_env.yaml", python_env_text())
    return write_text(folder / MLMODEL, mlmodel_text(kind))
