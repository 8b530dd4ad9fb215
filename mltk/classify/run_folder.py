"""The run folder of ``mltk train``: what it holds, whether it can be used or resumed.

It holds ``best.keras`` and ``last.keras``, ``labels.txt``, ``config.yaml``, ``history.csv``,
``curves.png``, ``summary.json``, with the learning-rate finder ``lr_find.csv`` and
``lr_find.png``, and, while training, ``checkpoint/`` (see
:mod:`mltk.classify.callbacks.checkpoint`). ``resume`` needs a checkpoint: a folder without one
is refused unless ``overwrite`` is given too, which then starts over. No Keras here.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltk._atomic import write_json, write_text
from mltk.classify.settings import TrainSettings
from mltk.errors import ConfigError, InputError, MltkError, describe

log = logging.getLogger("mltk.classify")

CHECKPOINT_DIR = "checkpoint"
STATE = "state.json"
WEIGHTS = "latest.weights.h5"
RUN_FILES = ("config.yaml", "best.keras", "last.keras", "history.csv", "curves.png",
             "summary.json", "labels.txt", "lr_find.csv", "lr_find.png", "MLmodel",
             "python_env.yaml")
#: Settings that must not change between a run and its resume.
RESUME_KEYS = ("model", "image_size", "batch_per_replica", "optimizer", "learning_rate",
               "lr_reference_batch", "lr_scaling", "lr_schedule", "lr_decay_epochs",
               "lr_decay_factor", "warmup_epochs", "label_smoothing", "dropout", "freeze_base",
               "trainable_layers", "epochs", "steps")


def read_state(state_file: Path) -> dict[str, Any]:
    """checkpoint/state.json, checked: a mapping with the fields a resume uses."""
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{state_file}: damaged checkpoint state ({describe(exc)}); "
                         "`overwrite` starts the run over") from None
    problem = None
    if not isinstance(state, dict):
        problem = f"a JSON {type(state).__name__}, not an object"
    elif not isinstance(state.get("global_batch"), int):
        problem = "no global_batch"
    elif not isinstance(state.get("history") or [], list) or not all(
            isinstance(row, dict) for row in state.get("history") or []):
        problem = "history is not a list of epochs"
    elif state.get("best") is not None and not isinstance(state["best"], int | float):
        problem = "best is not a number"
    if problem:
        raise InputError(f"{state_file}: damaged checkpoint state ({problem}); `overwrite` "
                         "starts the run over")
    return state


def resume_problem(out: Path) -> str | None:
    """Why ``out`` cannot be resumed (None: it can), in words that name what is missing."""
    if not out.exists():
        return (f"{out}: no such run folder to resume (without `resume` a new run starts "
                "there)")
    if not out.is_dir():
        return f"{out}: exists and is not a folder"
    state = out / CHECKPOINT_DIR / STATE
    weights = out / CHECKPOINT_DIR / WEIGHTS
    if not state.is_file():
        done = completed_steps(out)
        if done is not None:
            return (f"{out}: this run is already complete ({done} steps) and has no checkpoint "
                    "to resume; use a new `out`, or `overwrite` to start over")
        return (f"{out}: no checkpoint to resume ({state} is missing); `overwrite` starts the "
                "run over")
    if not weights.is_file():
        return (f"{out}: the checkpoint is incomplete ({weights} is missing); `overwrite` "
                "starts the run over")
    return None


def completed_steps(out: Path) -> int | None:
    """The steps of a finished run in ``out`` (None: no summary, or an interrupted run)."""
    summary = out / "summary.json"
    if not summary.is_file():
        return None
    try:
        done = json.loads(summary.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{summary}: damaged run summary ({describe(exc)})") from None
    if not isinstance(done, dict) or done.get("interrupted"):
        return None
    return done.get("steps")


def decide_resume(out: Path, resume: bool, overwrite: bool) -> bool:
    """Whether the run continues a checkpoint. ``resume`` without one is an error naming what
    is missing, or, with ``overwrite`` too, a new run (with a warning)."""
    if not resume:
        return False
    problem = resume_problem(out)
    if problem is None:
        return True
    if not overwrite or (out.exists() and not out.is_dir()):
        raise MltkError(problem)
    if out.exists():
        log.warning("%s: nothing to resume, starting over (`overwrite`)", out)
    return False


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """``out`` can take a new run (with ``overwrite``: the old run's files are removed)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    used = out.is_dir() and any(
        (out / n).exists() for n in ("config.yaml", CHECKPOINT_DIR, "last.keras"))
    if used and not resume and not overwrite:
        raise MltkError(f"{out}: already holds a training run; `resume` continues it, "
                        "`overwrite` starts over")
    if used and overwrite and not resume:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        shutil.rmtree(out / "tensorboard", ignore_errors=True)


def saved_config(out: Path) -> dict[str, Any] | None:
    """The run's config.yaml (None: there is none)."""
    from mltk import _config

    saved_file = out / "config.yaml"
    return _config.load_yaml(saved_file) if saved_file.is_file() else None


def check_resume_config(out: Path, settings: TrainSettings) -> None:
    """The settings that shape the run must be those it was started with (config.yaml)."""
    saved = saved_config(out)
    if saved is None:
        return
    current = settings.run_config()
    for key in RESUME_KEYS:
        if key in saved and saved[key] != current.get(key):
            raise ConfigError(f"`resume`: {key} is {current.get(key)!r} but the run in {out} "
                              f"used {saved[key]!r}")


def write_start(out: Path, settings: TrainSettings, classes: Sequence[str]) -> None:
    """config.yaml, labels.txt and MLmodel (MLflow's pyfunc flavour), before the first step."""
    from mltk import _config
    from mltk.tracking.mlmodel import write_mlmodel

    out.mkdir(parents=True, exist_ok=True)
    _config.save(out / "config.yaml", settings.run_config())
    write_text(out / "labels.txt", "".join(f"{c}\n" for c in classes))
    write_mlmodel(out, "image-classifier")


def finish(out: Path, keep_best: bool) -> None:
    """A run that ended (not interrupted): the checkpoint goes; without a best.keras (no
    validation metric was ever reached) last.keras is copied to it when ``keep_best``."""
    if keep_best and not (out / "best.keras").exists() and (out / "last.keras").exists():
        shutil.copyfile(out / "last.keras", out / "best.keras")
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    write_json(out / "summary.json", summary)
