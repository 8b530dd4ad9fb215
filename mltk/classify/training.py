"""Training an image classifier from TFRecords (or synthetic tensors) into a run folder.

The run folder holds ``best.keras`` and ``last.keras``, ``labels.txt``, ``config.yaml``,
``history.csv``, ``curves.png``, ``summary.json`` and, while training, ``checkpoint/``. The
checkpoint is the model's and optimizer's state (written to a temporary name and renamed) every
``checkpoint_every`` steps and at each epoch's end; the position in the run is the optimizer's
step count, so ``resume=True`` continues mid-epoch with the learning-rate schedule where it was,
losing at most one checkpoint interval. SIGINT (Ctrl-C) and SIGTERM stop the run at the next
safe point with a checkpoint (see :mod:`mltk.classify.interrupts`); ``summary["signal"]`` names
the signal. The optimisation settings come from a recipe (:mod:`mltk.classify.recipes`);
``early_stopping`` ends a run that stopped improving, and ``summary["stop_reason"]`` says why a
run ended.

Damaged shards: before the first step every training and validation record's CRCs are checked
(:func:`mltk.classify.data.check_records`, ``count --verify``'s check); a damaged file is read
up to its first bad record, with a warning naming the file and how many of its records are
skipped (``strict_data``: an error instead). A read error that still surfaces inside TensorFlow
(a file damaged during the run) stops the run with a checkpoint first and an error naming the
file, record and offset. ``resume`` needs a checkpoint: a run folder without one is refused
unless ``overwrite`` is given too, which then starts over.

Training runs epoch by epoch through ``Model.fit`` (one call per epoch, so that a resumed run
can finish a partial epoch); the training set is an endless shuffled stream, an epoch is
``records // global_batch`` steps, and the global batch is ``batch_per_replica x replicas``.

The settings are a :class:`~mltk.classify.settings.TrainSettings` (``mltk.settings.load("train",
...)``); a plain mapping is checked into one. Messages name settings and arguments in
backquotes (```overwrite```), which the command line spells as its options.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltk._atomic import atomic_path, write_csv, write_json, write_text
from mltk._keras import import_keras, import_tf
from mltk.classify import class_weights, interrupts, recipes, runtime
from mltk.classify import data as data_mod
from mltk.classify.settings import TrainSettings, as_settings
from mltk.errors import ConfigError, InputError, MltkError

log = logging.getLogger("mltk.classify")

CHECKPOINT_DIR = "checkpoint"
# Settings that must not change between a run and its resume.
RESUME_KEYS = ("model", "image_size", "batch_per_replica", "optimizer", "learning_rate",
               "lr_reference_batch", "lr_scaling", "lr_schedule", "lr_decay_epochs",
               "lr_decay_factor", "warmup_epochs", "label_smoothing", "dropout", "freeze_base",
               "trainable_layers", "epochs", "steps")
TOP_K = 3
SKIP_STEPS = 2  # steps left out of the throughput figure (tracing and compilation)


def _step_callback(run: _Run) -> Any:
    keras = import_keras()

    class StepCallback(keras.callbacks.Callback):
        """Step bookkeeping at each batch's start, so that steps stay queued on the device.

        An ``on_train_batch_end`` hook would make Keras turn every step's logs into Python
        numbers, a wait for the device after each step that leaves it idle while the host
        dispatches the next one. Batch ``b`` starting means ``b`` steps of this ``fit`` were
        dispatched; the last one is counted where the training part of the ``fit`` ends
        (validation's start or the epoch's end, whichever comes first).
        """

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if batch:
                run.on_step()
            run.stops.check()  # a safe point: raises for a SIGINT or SIGTERM received

        def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
            run.stops.check()

        def on_test_begin(self, logs: Any = None) -> None:
            run.end_fit()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            run.end_fit()

    return StepCallback()


class _Run:
    """The state of one training run (not part of the public API)."""

    def __init__(self, settings: TrainSettings, out: Path,
                 on_step: Callable[[int, int], None] | None,
                 stops: interrupts.StopRequests | None = None) -> None:
        self.settings = settings
        self.stops = stops or interrupts.StopRequests()
        self.stop_reason = "completed"
        self.synthetic = False
        self.signal: str | None = None
        self.out = out
        self.ckpt = out / CHECKPOINT_DIR
        self.data_files: list[Path] = []  # where to look for damage after a read error
        self.on_step_cb = on_step
        self.model: Any = None
        self.rt: runtime.Runtime | None = None
        self.global_batch = 0
        self.steps_per_epoch = 0
        self.total_steps = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.best_metric = "val_accuracy"
        self.since_checkpoint = 0
        self.checkpoint_every = int(settings.checkpoint_every or 0)
        # Throughput: steps and seconds between synchronised marks, compilation left out.
        self.local_steps = 0
        self.fit_steps = 0
        self.fit_done = 0
        self.mark: tuple[int, float] | None = None
        self.fit_open = False
        self.timed_steps = 0
        self.timed_seconds = 0.0

    # -- checkpoints --------------------------------------------------------------------------
    def optimizer_step(self) -> int:
        """The optimizer's step count; reading it waits until the dispatched steps have run
        (JAX and TensorFlow run asynchronously)."""
        import numpy as np

        return int(np.asarray(self.synced_model().optimizer.iterations))

    def synced_model(self) -> Any:
        """The model holding the latest weights (JAX's trainer keeps them apart during fit)."""
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        return self.model

    def begin_fit(self, steps: int) -> None:
        self.fit_steps, self.fit_done, self.mark, self.fit_open = steps, 0, None, True

    def end_fit(self) -> None:
        """The training steps of this fit are all dispatched: count the last, stop the clock."""
        if not self.fit_open:
            return
        self.fit_open = False
        if self.fit_done < self.fit_steps:
            self.on_step()
        if self.mark is not None:
            self.optimizer_step()
            self.timed_steps += self.fit_done - self.mark[0]
            self.timed_seconds += time.perf_counter() - self.mark[1]

    def on_step(self) -> None:
        """One more step of this fit was dispatched."""
        self.stops.defer()  # a step has run: a signal now waits for a checkpoint
        self.step += 1
        self.local_steps += 1
        self.fit_done += 1
        self.since_checkpoint += 1
        if self.mark is None and self.local_steps > SKIP_STEPS and self.fit_done < self.fit_steps:
            self.optimizer_step()
            self.mark = (self.fit_done, time.perf_counter())
        if self.checkpoint_every and self.since_checkpoint >= self.checkpoint_every:
            self.save_checkpoint()
        if self.on_step_cb:
            self.on_step_cb(self.step, self.total_steps)

    def save_checkpoint(self) -> None:
        self.since_checkpoint = 0
        if not self.rt.is_chief:
            return
        self.ckpt.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt / f".latest-{os.getpid()}.weights.h5"  # Keras wants this suffix
        self.synced_model().save_weights(tmp)
        os.replace(tmp, self.ckpt / "latest.weights.h5")
        step = self.optimizer_step()
        write_json(self.ckpt / "state.json", {
            "step": step, "epoch": step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch, "global_batch": self.global_batch,
            "best": self.best, "best_metric": self.best_metric, "history": self.history,
            "time": time.time()})
        log.debug("checkpoint at step %d", step)

    def restore(self) -> int:
        """Load the checkpoint (there must be one: see :func:`_resume_problem`); returns its
        step. A damaged checkpoint is an :class:`InputError` naming its file."""
        state_file = self.ckpt / "state.json"
        weights = self.ckpt / "latest.weights.h5"
        problem = _resume_problem(self.out)
        if problem:
            raise InputError(problem)
        state = _read_state(state_file)
        if state.get("global_batch") != self.global_batch:
            raise ConfigError(f"`resume`: the checkpoint was trained with a global batch of "
                              f"{state.get('global_batch')}, this run has {self.global_batch} "
                              "(the same `gpus` and `batch_per_replica` are needed)")
        opt = self.model.optimizer
        if not opt.built:
            opt.build(self.model.trainable_variables)
        from mltk.classify.models import check_weights_file

        try:
            check_weights_file(weights)
            self.model.load_weights(weights)
        except InputError as exc:
            raise InputError(f"{exc}; `overwrite` starts the run over") from None
        except Exception as exc:  # h5py's OSError for a damaged file, ValueError, KeyError...
            raise InputError(f"{weights}: damaged checkpoint weights ({_first_line(exc)}); "
                             f"`overwrite` starts the run over") from None
        self.history = list(state.get("history") or [])
        self.best = state.get("best")
        step = self.optimizer_step()
        self.step = step
        return step

    # -- per-epoch artefacts ------------------------------------------------------------------
    def save_model(self, name: str) -> None:
        if not self.rt.is_chief:
            return
        with atomic_path(self.out / name) as tmp:
            self.model.save(tmp)

    def throughput(self) -> float | None:
        """Training images per second, compilation and validation left out."""
        if not self.timed_steps or self.timed_seconds <= 0:
            return None
        return self.timed_steps * self.global_batch / self.timed_seconds

    def write_history(self) -> None:
        if not self.rt.is_chief or not self.history:
            return
        write_csv(self.out / "history.csv", self.history)
        try:
            from mltk.classify.plots import training_curves

            training_curves(self.out / "curves.png", self.history)
        except ImportError:  # matplotlib is optional on GPU hosts
            log.warning("matplotlib is not installed: no curves.png")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _read_state(state_file: Path) -> dict[str, Any]:
    """checkpoint/state.json, checked: a mapping with the fields a resume uses."""
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{state_file}: damaged checkpoint state ({_first_line(exc)}); "
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


def _resume_problem(out: Path) -> str | None:
    """Why ``out`` cannot be resumed (None: it can), in words that name what is missing."""
    if not out.exists():
        return (f"{out}: no such run folder to resume (without `resume` a new run starts "
                "there)")
    if not out.is_dir():
        return f"{out}: exists and is not a folder"
    state = out / CHECKPOINT_DIR / "state.json"
    weights = out / CHECKPOINT_DIR / "latest.weights.h5"
    if not state.is_file():
        done = _completed_steps(out)
        if done is not None:
            return (f"{out}: this run is already complete ({done} steps) and has no checkpoint "
                    "to resume; use a new `out`, or `overwrite` to start over")
        return (f"{out}: no checkpoint to resume ({state} is missing); `overwrite` starts the "
                "run over")
    if not weights.is_file():
        return (f"{out}: the checkpoint is incomplete ({weights} is missing); `overwrite` "
                "starts the run over")
    return None


def _completed_steps(out: Path) -> int | None:
    """The steps of a finished run in ``out`` (None: no summary, or an interrupted run)."""
    summary = out / "summary.json"
    if not summary.is_file():
        return None
    try:
        done = json.loads(summary.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{summary}: damaged run summary ({_first_line(exc)})") from None
    if not isinstance(done, dict) or done.get("interrupted"):
        return None
    return done.get("steps")


def _decide_resume(out: Path, resume: bool, overwrite: bool) -> bool:
    """Whether the run continues a checkpoint. ``resume`` without one is an error naming what
    is missing, or, with ``overwrite`` too, a new run (with a warning)."""
    if not resume:
        return False
    problem = _resume_problem(out)
    if problem is None:
        return True
    if not overwrite or (out.exists() and not out.is_dir()):
        raise MltkError(problem)
    if out.exists():
        log.warning("%s: nothing to resume, starting over (`overwrite`)", out)
    return False


RUN_FILES = ("config.yaml", "best.keras", "last.keras", "history.csv", "curves.png",
             "summary.json", "labels.txt", "lr_find.csv", "lr_find.png")


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
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


def _saved_config(out: Path) -> dict[str, Any] | None:
    from mltk import _config

    saved_file = out / "config.yaml"
    return _config.load_yaml(saved_file) if saved_file.is_file() else None


def _check_resume_config(out: Path, settings: TrainSettings) -> None:
    """The settings that shape the run must be those it was started with (config.yaml)."""
    saved = _saved_config(out)
    if saved is None:
        return
    current = settings.run_config()
    for key in RESUME_KEYS:
        if key in saved and saved[key] != current.get(key):
            raise ConfigError(f"`resume`: {key} is {current.get(key)!r} but the run in {out} "
                              f"used {saved[key]!r}")


def resolve_settings(settings: TrainSettings | Mapping[str, Any]) -> TrainSettings:
    """The run's settings: the recipe's values filled in and the seed chosen (a new object)."""
    settings = recipes.apply(as_settings(settings))
    if settings.seed is None:
        settings = settings.replace(seed=int.from_bytes(os.urandom(3)))
    return settings


@dataclass
class _Setup:
    """Devices and data of a run (shared by training and the learning-rate finder)."""

    rt: runtime.Runtime
    src: data_mod.DataSource | None
    val_src: data_mod.DataSource | None
    classes: list[str]
    synthetic: bool


def _prepare(settings: TrainSettings, data: Sequence[str] | None, val: Sequence[str] | None,
             split: str | None, synthetic: bool, strict_data: bool = False) -> _Setup:
    if not synthetic and not data:
        raise InputError("no training data: give `data` (TFRecord folders, files or globs) or "
                         "`synthetic`")
    if settings.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise MltkError("`tensorboard` needs TensorBoard: pip install tensorboard")
    need_tf = not synthetic or settings.backend == "tensorflow"
    rt = runtime.setup(settings.backend, settings.gpus, settings.strategy,
                       settings.cpu_replicas, settings.precision, need_tf=need_tf)
    if settings.deterministic and rt.backend == "tensorflow":
        import_tf().config.experimental.enable_op_determinism()
    if synthetic:
        classes = [str(i) for i in range(settings.num_classes or 200)]
        return _Setup(rt, None, None, classes, True)
    src = data_mod.resolve_source(data, split, prefer=data_mod.PREFERRED_TRAIN,
                                  num_classes=settings.num_classes, tolerate_damage=True)
    if val:
        val_src = data_mod.resolve_source(val, prefer=data_mod.PREFERRED_VAL,
                                          num_classes=len(src.classes), tolerate_damage=True)
    elif split is None:
        val_src = data_mod.resolve_source(data, prefer=data_mod.PREFERRED_VAL,
                                          required=False, num_classes=len(src.classes),
                                          tolerate_damage=True)
    else:
        val_src = None
    if val_src is not None and val_src.files == src.files:
        val_src = None
    src, val_src = _skip_damaged_records(src, val_src, strict_data)
    return _Setup(rt, src, val_src, src.classes, False)


def _skip_damaged_records(src: data_mod.DataSource, val_src: data_mod.DataSource | None,
                          strict: bool) -> tuple[data_mod.DataSource, data_mod.DataSource | None]:
    """Every record's CRCs checked before the first step; a damaged file is read up to its
    first bad record, with a warning per file (``strict``: an error)."""
    files = list(dict.fromkeys([*src.files, *(val_src.files if val_src else [])]))
    damage = data_mod.check_records(files)
    if damage and strict:
        more = f" (and {len(damage) - 1} more damaged file(s))" if len(damage) > 1 else ""
        raise InputError(f"{damage[0].describe()}{more}; `strict_data` refuses damaged data "
                         "(without it the records before the damage are used, with a warning)")
    for d in damage:
        log.warning("%s", d.skipped())
    src = data_mod.skip_damage(src, [d for d in damage if d.file in src.files])
    if val_src is not None:
        val_src = data_mod.skip_damage(val_src, [d for d in damage if d.file in val_src.files])
        if val_src.records == 0:
            raise InputError(f"{val_src.files[0]}: no readable validation records")
    return src, val_src


def _new_run(settings: TrainSettings, out: Path, setup: _Setup,
             on_step: Callable[[int, int], None] | None = None,
             stops: interrupts.StopRequests | None = None) -> _Run:
    run = _Run(settings, out, on_step, stops)
    run.rt = setup.rt
    run.synthetic = setup.synthetic
    run.global_batch = settings.batch_per_replica * setup.rt.replicas
    if setup.synthetic:
        run.steps_per_epoch = settings.steps or 100
    else:
        run.steps_per_epoch = setup.src.records // run.global_batch
        if run.steps_per_epoch < 1:
            raise InputError(f"{setup.src.files[0]}: {setup.src.records} training records are "
                             f"fewer than one global batch ({run.global_batch}); lower "
                             "`batch_per_replica`")
    run.total_steps = settings.epochs * run.steps_per_epoch
    if settings.steps:
        run.total_steps = (settings.steps if setup.synthetic
                           else min(run.total_steps, settings.steps))
    run.best_metric = "val_accuracy" if setup.val_src is not None else "accuracy"
    if settings.early_stopping and setup.val_src is None:
        raise ConfigError("early_stopping needs validation data (a validation split beside "
                          "the training data, or `val`)")
    return run


def _compiled_model(settings: TrainSettings, setup: _Setup, schedule: Any) -> tuple[Any, Any]:
    """The model and its optimizer, built (seeded) and compiled in the runtime's scope."""
    from mltk.classify import models

    keras = import_keras()
    keras.utils.set_random_seed(settings.seed)
    with setup.rt.scope():
        model = models.build_model(settings.model, len(setup.classes), settings.image_size,
                                   settings.weights, settings.dropout, settings.freeze_base,
                                   settings.trainable_layers)
        optimizer = models.make_optimizer(settings, schedule)
        if setup.rt.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        jit = settings.jit
        models.compile_model(model, optimizer, settings.label_smoothing or 0.0, TOP_K,
                             "auto" if jit in (None, "auto") else bool(jit))
    if setup.rt.workers > 1:  # keras-team/keras#20585
        from mltk.classify.keras_patches import prebuild_for_multi_worker

        prebuild_for_multi_worker(model, setup.rt.scope(), settings.image_size,
                                  len(setup.classes), bool(settings.label_smoothing))
    return model, optimizer


def _resolve_class_weight(settings: TrainSettings, setup: _Setup) -> TrainSettings:
    """``class_weight`` as the ``{class: weight}`` mapping config.yaml records (or none)."""
    if setup.synthetic:
        return settings
    weights = class_weights.resolve(settings.class_weight, setup.src.files, setup.classes)
    return settings.replace(class_weight=weights if weights is not None else "none")


def _auto_lr(settings: TrainSettings, setup: _Setup, out: Path,
             resume: bool) -> TrainSettings:
    """learning_rate: auto. A resumed run keeps the rate it was given; a new one runs the
    finder and takes its suggestion (recorded at the reference batch, as configured)."""
    saved = _saved_config(out) if resume else None
    if saved is not None and isinstance(saved.get("learning_rate"), (int, float)):
        return settings.replace(learning_rate=float(saved["learning_rate"]))
    from mltk.classify.lr_finder import sweep

    result = sweep(settings, setup, out)
    scale = recipes.lr_scale(settings, settings.batch_per_replica * setup.rt.replicas)
    settings = settings.replace(learning_rate=float(f"{result['suggested_lr'] / scale:.6g}"))
    log.info("learning rate from the finder: %.3g (learning_rate %.6g at the reference batch "
             "of %s)", result["suggested_lr"], settings.learning_rate,
             settings.lr_reference_batch)
    return settings


def train(settings: TrainSettings | Mapping[str, Any], out: str | os.PathLike,
          data: Sequence[str] | None = None, val: Sequence[str] | None = None,
          split: str | None = None, synthetic: bool = False, resume: bool = False,
          overwrite: bool = False, on_step: Callable[[int, int], None] | None = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          strict_data: bool = False) -> dict[str, Any]:
    """Train per ``settings`` (a :class:`TrainSettings`, or a mapping of the ``train``
    settings, checked into one); returns the run summary.

    SIGINT and SIGTERM are handled while it runs: once training has begun, the run stops at the
    next safe point and returns with ``interrupted`` and ``signal`` set in the summary (and a
    checkpoint when a step has run); during the set-up before it (devices, data, the model, the
    learning-rate finder), :class:`~mltk.classify.interrupts.Interrupted` is raised.

    ``resume`` needs a checkpoint in ``out`` (an error names what is missing; with
    ``overwrite`` a run without one starts over). ``strict_data``: a damaged record is an error
    instead of a warning and the rest of its file skipped.
    """
    settings = as_settings(settings)
    with interrupts.StopRequests() as stops:
        return _train(settings, Path(out), data, val, split, synthetic, resume, overwrite,
                      on_step, on_epoch, stops, strict_data)


def _train(settings: TrainSettings, out: Path, data: Sequence[str] | None,
           val: Sequence[str] | None, split: str | None, synthetic: bool, resume: bool,
           overwrite: bool, on_step: Callable[[int, int], None] | None,
           on_epoch: Callable[[dict[str, Any]], None] | None,
           stops: interrupts.StopRequests, strict_data: bool = False) -> dict[str, Any]:
    settings = resolve_settings(settings)
    resume = _decide_resume(out, resume, overwrite)
    setup = _prepare(settings, data, val, split, synthetic, strict_data)
    if setup.rt.is_chief:  # other workers of a multi-worker run share the chief's folder
        _check_out(out, resume, overwrite)
    settings = _resolve_class_weight(settings, setup)
    if settings.learning_rate == "auto":
        settings = _auto_lr(settings, setup, out, resume)
    if resume:
        _check_resume_config(out, settings)
    run = _new_run(settings, out, setup, on_step, stops)
    peak_lr = settings.learning_rate * recipes.lr_scale(settings, run.global_batch)
    from mltk.classify import models

    schedule = models.lr_schedule(settings.lr_schedule, peak_lr, run.steps_per_epoch,
                                  run.total_steps, settings.warmup_epochs or 0.0,
                                  settings.lr_decay_epochs, settings.lr_decay_factor)
    run.model, optimizer = _compiled_model(settings, setup, schedule)
    run.data_files = [] if synthetic else list(dict.fromkeys(
        [*setup.src.files, *(setup.val_src.files if setup.val_src else [])]))
    resumed_from = run.restore() if resume else 0
    _write_run_start(run, setup)
    train_ds, val_ds = _datasets(settings, setup.src, setup.val_src, run, len(setup.classes),
                                 synthetic, settings.seed)
    log.info("training %s on %d %s device(s) (%s, %s): %d classes, global batch %d, "
             "recipe %s (%s, lr %.4g, %s), %d steps of %d per epoch", settings.model,
             run.rt.replicas, run.rt.accelerator, run.rt.backend, run.rt.precision,
             len(setup.classes), run.global_batch, settings.recipe, settings.optimizer,
             peak_lr, settings.lr_schedule, run.total_steps, run.steps_per_epoch)
    t0 = time.perf_counter()
    run.step = resumed_from
    _loop(run, train_ds, val_ds, optimizer, on_epoch)
    seconds = time.perf_counter() - t0
    if run.stop_reason != "interrupted" and run.rt.is_chief:
        if (not synthetic and not (out / "best.keras").exists()
                and (out / "last.keras").exists()):
            shutil.copyfile(out / "last.keras", out / "best.keras")
        shutil.rmtree(run.ckpt, ignore_errors=True)
    summary = _summary(run, setup, peak_lr, resumed_from, seconds)
    if run.rt.is_chief:
        write_json(out / "summary.json", summary)
    return summary


def _write_run_start(run: _Run, setup: _Setup) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    if run.rt.is_chief:
        from mltk import _config

        _config.save(run.out / "config.yaml", run.settings.run_config())
        write_text(run.out / "labels.txt", "".join(f"{c}\n" for c in setup.classes))


def _callbacks(run: _Run) -> list[Any]:
    callbacks = [_step_callback(run)]
    if run.settings.tensorboard:
        keras = import_keras()
        callbacks.append(keras.callbacks.TensorBoard(
            log_dir=os.fspath(run.out / "tensorboard"), update_freq="epoch"))
    return callbacks


def _loop(run: _Run, train_ds: Any, val_ds: Any, optimizer: Any,
          on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    """Epochs until the steps are done, early stopping, or a signal (saved as a checkpoint)."""
    callbacks = _callbacks(run)
    val_steps = run.settings.validation_steps or None
    patience = run.settings.early_stopping or 0
    try:
        while run.step < run.total_steps:
            epoch = run.step // run.steps_per_epoch
            steps = min(run.steps_per_epoch * (epoch + 1), run.total_steps) - run.step
            t_epoch = time.perf_counter()
            run.begin_fit(steps)
            fit = run.model.fit(train_ds, initial_epoch=epoch, epochs=epoch + 1,
                                steps_per_epoch=steps, validation_data=val_ds,
                                validation_steps=val_steps, callbacks=callbacks, verbose=0,
                                shuffle=False)
            run.step = run.optimizer_step()
            row = _epoch_row(fit.history, epoch, run, steps, time.perf_counter() - t_epoch,
                             optimizer)
            _end_epoch(run, row)
            if on_epoch:
                on_epoch(row)
            run.stops.check()
            if patience and _epochs_since_best(run) >= patience:
                run.stop_reason = "early_stopping"
                log.info("early stopping: no better %s for %d epochs (best %.4f at epoch %s)",
                         run.best_metric, patience, run.best, _best_epoch(run))
                break
    except KeyboardInterrupt as exc:  # Interrupted, or a SIGINT from outside the handler
        _save_interrupted(run, exc)
    except Exception as exc:
        if not _is_read_error(exc):
            raise
        _stop_on_read_error(run, exc)


def _is_read_error(exc: BaseException) -> bool:
    """An error of TensorFlow's data reading (tf.data feeds both backends)."""
    import sys

    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None) if tf is not None else None
    return errors is not None and isinstance(exc, errors.OpError)


def _stop_on_read_error(run: _Run, exc: BaseException) -> None:
    """A file that went bad during the run (checked clean at the start): keep the work done
    (checkpoint, last.keras, history), then stop with the file, record and offset."""
    run.stops.finish()
    run.stop_reason = "interrupted"
    saved = ""
    try:
        run.step = run.optimizer_step()
    except Exception:  # nothing was built: nothing to save
        run.step = 0
    if run.step:
        run.save_checkpoint()
        run.save_model("last.keras")
        run.write_history()
        saved = (f"; training stopped at step {run.step} with a checkpoint (continue with "
                 "`resume` once the file is repaired or removed)")
    damage = data_mod.find_damage(run.data_files) if run.data_files else None
    what = (damage.describe() if damage else
            f"reading the data failed ({data_mod.op_error_line(exc)})")
    raise InputError(f"{what}{saved}; check the files with mltk tfrecord count --verify"
                     ) from None


def _end_epoch(run: _Run, row: dict[str, Any]) -> None:
    run.history.append(row)
    improved = _improved(run, row) and not run.synthetic
    run.save_checkpoint()
    run.save_model("last.keras")
    if improved:
        run.save_model("best.keras")
    run.write_history()


def _save_interrupted(run: _Run, exc: KeyboardInterrupt) -> None:
    run.stops.finish()  # further signals must not cut the checkpoint short
    run.stop_reason = "interrupted"
    run.signal = exc.name if isinstance(exc, interrupts.Interrupted) else "SIGINT"
    try:
        run.step = run.optimizer_step()
    except Exception:  # stopped while the first step built the optimizer (JAX): nothing ran
        if run.local_steps:
            raise
        log.debug("%s before the first step: nothing to save", run.signal)
        return
    log.debug("%s at step %d: saving a checkpoint", run.signal, run.step)
    if run.step:
        run.save_checkpoint()
        run.save_model("last.keras")
        run.write_history()


def _epochs_since_best(run: _Run) -> int:
    best = _best_index(run)
    return 0 if best is None else len(run.history) - 1 - best


def _best_epoch(run: _Run) -> int | None:
    best = _best_index(run)
    return None if best is None else run.history[best].get("epoch")


def _best_index(run: _Run) -> int | None:
    """Where in the history the metric first reached its best value."""
    best_i, best_v = None, None
    for i, row in enumerate(run.history):
        v = row.get(run.best_metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if best_v is None or v > best_v:
            best_i, best_v = i, v
    return best_i


def _summary(run: _Run, setup: _Setup, peak_lr: float, resumed_from: int, seconds: float
             ) -> dict[str, Any]:
    settings, src, val_src = run.settings, setup.src, setup.val_src
    return {
        "run_dir": os.fspath(run.out), "model": settings.model, "classes": len(setup.classes),
        **run.rt.describe(), "global_batch": run.global_batch, "recipe": settings.recipe,
        "optimizer": settings.optimizer, "learning_rate": peak_lr,
        "train_records": src.records if src else None,
        "val_records": val_src.records if val_src else None,
        "steps": run.step, "steps_per_epoch": run.steps_per_epoch,
        "epochs": round(run.step / run.steps_per_epoch, 3),
        "resumed_from_step": resumed_from, "interrupted": run.stop_reason == "interrupted",
        "signal": run.signal, "stop_reason": run.stop_reason,
        "checkpoint": run.stop_reason == "interrupted" and run.step > 0,
        "seconds": round(seconds, 2),
        "images_per_second": _round(run.throughput()),
        "best_metric": run.best_metric, "best": _round(run.best, 6),
        "best_epoch": _best_epoch(run), "early_stopping": settings.early_stopping,
        "final": run.history[-1] if run.history else None,
        "synthetic": setup.synthetic, "seed": settings.seed,
    }


def _round(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(float(v), nd)


def _improved(run: _Run, row: Mapping[str, Any]) -> bool:
    value = row.get(run.best_metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return run.best is None
    if run.best is None or value > run.best:
        run.best = float(value)
        return True
    return False


def _epoch_row(history: Mapping[str, list], epoch: int, run: _Run, steps: int, seconds: float,
               optimizer: Any) -> dict[str, Any]:
    import numpy as np

    row: dict[str, Any] = {"epoch": epoch + 1, "step": run.step}
    for key, values in history.items():
        if values:
            row[key] = round(float(values[-1]), 6)
    lr = optimizer.learning_rate
    row["lr"] = float(f"{float(np.asarray(lr)):.6g}")
    row["seconds"] = round(seconds, 2)
    row["images_per_second"] = round(steps * run.global_batch / seconds, 1) if seconds else None
    return row


def _datasets(settings: TrainSettings, src: data_mod.DataSource | None,
              val_src: data_mod.DataSource | None, run: _Run, num_classes: int,
              synthetic: bool, seed: int) -> tuple[Any, Any]:
    smoothing = settings.label_smoothing or 0.0
    size = settings.image_size
    if synthetic:
        gen = data_mod.synthetic_batches(run.global_batch, size, num_classes, seed)
        if smoothing:
            import numpy as np

            eye = np.eye(num_classes, dtype=np.float32)
            gen = ((x, eye[y]) for x, y in gen)
        if run.rt.backend != "tensorflow":
            return gen, None
        tf = import_tf()
        return tf.data.Dataset.from_tensors(next(gen)).repeat(), None
    tf = import_tf()
    train_ds = data_mod.train_dataset(
        src, size, run.global_batch, data_mod.Augment.from_settings(settings), seed,
        settings.shuffle_buffer, settings.interleave, settings.deterministic)
    val_ds = None
    if val_src is not None:
        val_ds = data_mod.eval_dataset(val_src, size, run.global_batch)
    weights = settings.class_weight
    weight_of = None
    if isinstance(weights, Mapping):
        weight_of = tf.constant(class_weights.as_list(weights, src.classes), tf.float32)

    def targets(x, y):
        # Class weights become per-image sample weights, looked up before one-hot encoding.
        target = tf.one_hot(y, num_classes) if smoothing else y
        return (x, target) if weight_of is None else (x, target, tf.gather(weight_of, y))

    if smoothing or weight_of is not None:
        train_ds = train_ds.map(targets)
    if smoothing and val_ds is not None:
        val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    return train_ds, val_ds
