"""The :class:`Trainer`: a training run's devices, data and step counts, its model and fit.

``Trainer.prepare(settings, data=...)`` resolves the settings (the recipe's values filled in,
the seed chosen, class weights read), sets up the devices (:mod:`~mltk.classify.runtime`) and
opens the data, its records checked (:mod:`~mltk.classify.training_data`). The global batch
is ``batch_per_replica x replicas`` and an epoch ``records // global_batch`` steps. Then
:meth:`Trainer.compile` builds the model, :meth:`Trainer.datasets` makes the input, and
:meth:`Trainer.fit` trains into a run folder, returning a
:class:`~mltk.classify.summary.TrainingSummary`.

``fit`` runs epoch by epoch through ``Model.fit`` (one call per epoch, so that a resumed run
can finish a partial epoch); the training set is an endless shuffled stream. What happens
around the loop is done by the callbacks of :mod:`mltk.classify.callbacks` (steps, throughput,
history, best model and early stopping, checkpoints, progress and safe points). SIGINT and
SIGTERM stop the run at the next safe point with a checkpoint. A read error that still surfaces
inside TensorFlow (a file damaged during the run) stops the run with a checkpoint first and an
error naming the file, record and offset.

Messages name settings and arguments in backquotes (```overwrite```), which the command line
spells as its options.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._keras import import_keras, import_tf
from mltk.classify import class_weights, interrupts, recipes, run_folder, runtime
from mltk.classify import data as data_mod
from mltk.classify.settings import TrainSettings, as_settings
from mltk.classify.summary import TrainingSummary
from mltk.classify.training_data import TrainingData, open_data
from mltk.errors import ConfigError, InputError, MltkError

log = logging.getLogger("mltk.classify")

TOP_K = 3


def resolve_settings(settings: TrainSettings | Mapping[str, Any]) -> TrainSettings:
    """The run's settings: the recipe's values filled in and the seed chosen (a new object)."""
    settings = recipes.apply(as_settings(settings))
    if settings.seed is None:
        settings = settings.replace(seed=int.from_bytes(os.urandom(3)))
    return settings


@dataclasses.dataclass
class _Callbacks:
    """The callbacks of one fit, in the order Keras calls them."""

    counter: Any
    throughput: Any
    history: Any
    best: Any
    early: Any
    checkpointer: Any
    progress: Any
    safe_point: Any

    def keras(self) -> list[Any]:
        return [self.counter, self.throughput, self.history, self.best, self.early,
                self.checkpointer, self.progress, self.safe_point]


class Trainer:
    """A prepared training run: ``settings`` (resolved), ``runtime``, ``data``,
    ``global_batch``, ``steps_per_epoch``, ``total_steps`` and ``best_metric``.

    Made by :meth:`prepare`; a Trainer holds no model: :meth:`compile` makes a new one each
    time (the learning-rate finder compiles its own before the run's).
    """

    def __init__(self, settings: TrainSettings, rt: runtime.Runtime, data: TrainingData
                 ) -> None:
        self.settings = settings
        self.runtime = rt
        self.data = data
        self.global_batch = settings.batch_per_replica * rt.replicas
        if data.synthetic:
            self.steps_per_epoch = settings.steps or 100
        else:
            self.steps_per_epoch = data.train.records // self.global_batch
            if self.steps_per_epoch < 1:
                raise InputError(f"{data.train.files[0]}: {data.train.records} training records "
                                 f"are fewer than one global batch ({self.global_batch}); lower "
                                 "`batch_per_replica`")
        self.total_steps = settings.epochs * self.steps_per_epoch
        if settings.steps:
            self.total_steps = (settings.steps if data.synthetic
                                else min(self.total_steps, settings.steps))
        self.best_metric = "val_accuracy" if data.validation is not None else "accuracy"
        if settings.early_stopping and data.validation is None:
            raise ConfigError("early_stopping needs validation data (a validation split beside "
                              "the training data, or `val`)")

    @classmethod
    def prepare(cls, settings: TrainSettings | Mapping[str, Any],
                data: Sequence[str] | None = None, val: Sequence[str] | None = None,
                split: str | None = None, synthetic: bool = False,
                strict_data: bool = False) -> Trainer:
        """Resolve the settings, set up the devices, open (and check) the data, read the class
        weights. ``data``: TFRecord folders, files or globs; ``synthetic``: random tensors."""
        settings = resolve_settings(settings)
        if not synthetic and not data:
            raise InputError("no training data: give `data` (TFRecord folders, files or globs) "
                             "or `synthetic`")
        if settings.tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise MltkError("`tensorboard` needs TensorBoard: pip install tensorboard")
        need_tf = not synthetic or settings.backend == "tensorflow"
        rt = runtime.setup(settings.backend, settings.gpus, settings.strategy,
                           settings.cpu_replicas, settings.precision, need_tf=need_tf)
        if settings.deterministic and rt.backend == "tensorflow":
            import_tf().config.experimental.enable_op_determinism()
        training_data = open_data(settings, data, val, split, synthetic, strict_data)
        if not synthetic:
            # class_weight as the {class: weight} mapping config.yaml records (or none)
            weights = class_weights.resolve(settings.class_weight, training_data.train.files,
                                            training_data.classes)
            settings = settings.replace(class_weight=weights if weights is not None else "none")
        return cls(settings, rt, training_data)

    def with_learning_rate(self, learning_rate: float) -> Trainer:
        """The same run with ``learning_rate`` (at the reference batch) instead."""
        return Trainer(self.settings.replace(learning_rate=float(learning_rate)), self.runtime,
                       self.data)

    @property
    def lr_scale(self) -> float:
        """The factor from ``learning_rate`` (at ``lr_reference_batch``) to this global batch."""
        return recipes.lr_scale(self.settings, self.global_batch)

    @property
    def learning_rate(self) -> float:
        """The peak learning rate at this global batch."""
        return float(self.settings.learning_rate) * self.lr_scale

    def schedule(self) -> Any:
        """The run's learning-rate schedule (warm-up, then the decay)."""
        from mltk.classify import optimization

        s = self.settings
        return optimization.lr_schedule(s.lr_schedule, self.learning_rate, self.steps_per_epoch,
                                        self.total_steps, s.warmup_epochs or 0.0,
                                        s.lr_decay_epochs, s.lr_decay_factor)

    def compile(self, schedule: Any = None) -> Any:
        """A new model, built (seeded) and compiled with its optimizer in the runtime's scope,
        on ``schedule`` (default: the run's own, :meth:`schedule`)."""
        from mltk.classify import models, optimization

        keras = import_keras()
        s, rt = self.settings, self.runtime
        schedule = self.schedule() if schedule is None else schedule
        keras.utils.set_random_seed(s.seed)
        with rt.scope():
            model = models.build_model(s.model, len(self.data.classes), s.image_size,
                                       s.weights, s.dropout, s.freeze_base, s.trainable_layers)
            optimizer = optimization.make_optimizer(s, schedule)
            if rt.precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimization.compile_model(model, optimizer, s.label_smoothing or 0.0, TOP_K,
                                       "auto" if s.jit in (None, "auto") else bool(s.jit))
        if rt.workers > 1:  # keras-team/keras#20585
            from mltk.classify.keras_patches import prebuild_for_multi_worker

            prebuild_for_multi_worker(model, rt.scope(), s.image_size, len(self.data.classes),
                                      bool(s.label_smoothing))
        return model

    def datasets(self, validation: bool = True) -> tuple[Any, Any]:
        """The training stream (endless, shuffled, augmented, batched to the global batch) and
        the validation set (None without validation data, or when ``validation`` is false).
        Class weights become per-image sample weights; label smoothing needs one-hot labels."""
        s, d = self.settings, self.data
        smoothing, n = s.label_smoothing or 0.0, len(d.classes)
        if d.synthetic:
            return _synthetic(self.global_batch, s.image_size, n, s.seed, bool(smoothing),
                              self.runtime.backend), None
        tf = import_tf()
        train_ds = data_mod.train_dataset(
            d.train, s.image_size, self.global_batch, data_mod.Augment.from_settings(s), s.seed,
            s.shuffle_buffer, s.interleave, s.deterministic)
        val_ds = None
        if validation and d.validation is not None:
            val_ds = data_mod.eval_dataset(d.validation, s.image_size, self.global_batch)
        weight_of = None
        if isinstance(s.class_weight, Mapping):
            weight_of = tf.constant(class_weights.as_list(s.class_weight, d.classes), tf.float32)

        def targets(x, y):
            # Class weights become per-image sample weights, looked up before one-hot encoding.
            target = tf.one_hot(y, n) if smoothing else y
            return (x, target) if weight_of is None else (x, target, tf.gather(weight_of, y))

        if smoothing or weight_of is not None:
            train_ds = train_ds.map(targets)
        if smoothing and val_ds is not None:
            val_ds = val_ds.map(lambda x, y: (x, tf.one_hot(y, n)))
        return train_ds, val_ds

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, out: str | os.PathLike, *, resume: bool = False,
            on_step: Callable[[int, int], None] | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None,
            callbacks: Sequence[Any] = (),
            stops: interrupts.StopRequests | None = None) -> TrainingSummary:
        """Train into the run folder ``out`` (checked by the caller: see :func:`train`);
        ``resume``: from its checkpoint. ``on_step(step, total)`` after each step,
        ``on_epoch(row)`` after each epoch's files are written; ``callbacks``: more Keras
        callbacks, called before mltk's own (they see the epoch's logs first). ``stops``: the
        :class:`~mltk.classify.interrupts.StopRequests` in force (default: one for this fit)."""
        if stops is None:
            with interrupts.StopRequests() as own:
                return self.fit(out, resume=resume, on_step=on_step, on_epoch=on_epoch,
                                callbacks=callbacks, stops=own)
        out = Path(out)
        model = self.compile()
        run = self._callbacks(out, on_step, stops)
        run.checkpointer.set_model(model)
        resumed_from = run.checkpointer.restore() if resume else 0
        run.counter.step = resumed_from
        out.mkdir(parents=True, exist_ok=True)
        if self.runtime.is_chief:  # other workers of a multi-worker run share the chief's folder
            run_folder.write_start(out, self.settings, self.data.classes)
        train_ds, val_ds = self.datasets()
        self._log_start()
        t0 = time.perf_counter()
        keras_callbacks = [*callbacks, *run.keras(), *self._tensorboard(out)]
        stop_reason, signal = self._loop(model, run, (train_ds, val_ds), on_epoch,
                                         keras_callbacks, stops)
        seconds = time.perf_counter() - t0
        if stop_reason != "interrupted" and self.runtime.is_chief:
            run_folder.finish(out, keep_best=not self.data.synthetic)
        summary = self._summary(out, run, stop_reason, signal, resumed_from, seconds)
        if self.runtime.is_chief:
            run_folder.write_summary(out, summary.to_dict())
        return summary

    def _callbacks(self, out: Path, on_step: Callable[[int, int], None] | None,
                   stops: interrupts.StopRequests) -> _Callbacks:
        from mltk.classify.callbacks import best, checkpoint, history, progress, steps, throughput

        chief, s = self.runtime.is_chief, self.settings
        counter = steps.StepCounter(0, stops)
        rows = history.History(out if chief else None, self.global_batch)
        best_model = best.BestModel(self.best_metric, None if self.data.synthetic or not chief
                                    else out / "best.keras")
        return _Callbacks(
            counter, throughput.Throughput(self.global_batch), rows, best_model,
            best.EarlyStopping(best_model, s.early_stopping),
            checkpoint.Checkpointer(out, s.checkpoint_every, self.steps_per_epoch,
                                    self.global_batch, rows, best_model, chief),
            progress.Progress(counter, self.total_steps, on_step), progress.SafePoint(stops))

    def _tensorboard(self, out: Path) -> list[Any]:
        if not self.settings.tensorboard:
            return []
        keras = import_keras()
        return [keras.callbacks.TensorBoard(log_dir=os.fspath(out / "tensorboard"),
                                            update_freq="epoch")]

    def _log_start(self) -> None:
        s, rt = self.settings, self.runtime
        log.info("training %s on %d %s device(s) (%s, %s): %d classes, global batch %d, "
                 "recipe %s (%s, lr %.4g, %s), %d steps of %d per epoch", s.model,
                 rt.replicas, rt.accelerator, rt.backend, rt.precision, len(self.data.classes),
                 self.global_batch, s.recipe, s.optimizer, self.learning_rate, s.lr_schedule,
                 self.total_steps, self.steps_per_epoch)

    def _loop(self, model: Any, run: _Callbacks, datasets: tuple[Any, Any],
              on_epoch: Callable[[dict[str, Any]], None] | None, keras_callbacks: list[Any],
              stops: interrupts.StopRequests) -> tuple[str, str | None]:
        """Epochs until the steps are done, early stopping, or a signal (saved as a
        checkpoint); returns the stop reason and the signal."""
        from mltk.classify.callbacks.steps import optimizer_step

        train_ds, val_ds = datasets
        spe, total = self.steps_per_epoch, self.total_steps
        try:
            while run.counter.step < total:
                epoch = run.counter.step // spe
                model.fit(train_ds, initial_epoch=epoch, epochs=epoch + 1,
                          steps_per_epoch=min(spe * (epoch + 1), total) - run.counter.step,
                          validation_data=val_ds,
                          validation_steps=self.settings.validation_steps or None,
                          callbacks=keras_callbacks, verbose=0, shuffle=False)
                run.counter.step = optimizer_step(model)
                if on_epoch:
                    on_epoch(run.history.rows[-1])
                stops.check()
                if run.early.stopped:
                    log.info("early stopping: no better %s for %d epochs (best %.4f at epoch "
                             "%s)", run.best.metric, run.early.patience, run.best.best,
                             run.best.best_epoch)
                    return "early_stopping", None
        except KeyboardInterrupt as exc:  # Interrupted, or a SIGINT from outside the handler
            return "interrupted", _save_interrupted(model, run, exc, stops)
        except Exception as exc:
            if not _is_read_error(exc):
                raise
            _stop_on_read_error(model, run, exc, stops, self.data.files)
        return "completed", None

    def _summary(self, out: Path, run: _Callbacks, stop_reason: str, signal: str | None,
                 resumed_from: int, seconds: float) -> TrainingSummary:
        s, d, step = self.settings, self.data, run.counter.step
        rows = run.history.rows
        return TrainingSummary(
            run_dir=os.fspath(out), model=s.model, classes=len(d.classes),
            **self.runtime.describe(), global_batch=self.global_batch, recipe=s.recipe,
            optimizer=s.optimizer, learning_rate=self.learning_rate,
            train_records=d.train.records if d.train else None,
            val_records=d.validation.records if d.validation else None,
            steps=step, steps_per_epoch=self.steps_per_epoch,
            epochs=round(step / self.steps_per_epoch, 3), resumed_from_step=resumed_from,
            interrupted=stop_reason == "interrupted", signal=signal, stop_reason=stop_reason,
            checkpoint=stop_reason == "interrupted" and step > 0, seconds=round(seconds, 2),
            images_per_second=_round(run.throughput.images_per_second),
            best_metric=run.best.metric, best=_round(run.best.best, 6),
            best_epoch=run.best.best_epoch, early_stopping=s.early_stopping,
            final=rows[-1] if rows else None, synthetic=d.synthetic, seed=s.seed)


def _round(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(float(v), nd)


def _synthetic(global_batch: int, image_size: int, num_classes: int, seed: int,
               one_hot: bool, backend: str) -> Any:
    """The same random batch, again and again (the model's own throughput)."""
    gen = data_mod.synthetic_batches(global_batch, image_size, num_classes, seed)
    if one_hot:
        import numpy as np

        eye = np.eye(num_classes, dtype=np.float32)
        gen = ((x, eye[y]) for x, y in gen)
    if backend != "tensorflow":
        return gen
    tf = import_tf()
    return tf.data.Dataset.from_tensors(next(gen)).repeat()


def _save_work(run: _Callbacks) -> int:
    """Checkpoint, last.keras and history of a run stopped early; returns its step."""
    if run.counter.step:
        run.checkpointer.save()
        run.checkpointer.save_last()
        run.history.write()
    return run.counter.step


def _save_interrupted(model: Any, run: _Callbacks, exc: KeyboardInterrupt,
                      stops: interrupts.StopRequests) -> str:
    """The signal's name, once the work done is saved."""
    from mltk.classify.callbacks.steps import optimizer_step

    stops.finish()  # further signals must not cut the checkpoint short
    signal = exc.name if isinstance(exc, interrupts.Interrupted) else "SIGINT"
    try:
        run.counter.step = optimizer_step(model)
    except Exception:  # stopped while the first step built the optimizer (JAX): nothing ran
        if run.counter.local_steps:
            raise
        log.debug("%s before the first step: nothing to save", signal)
        return signal
    log.debug("%s at step %d: saving a checkpoint", signal, run.counter.step)
    _save_work(run)
    return signal


def _is_read_error(exc: BaseException) -> bool:
    """An error of TensorFlow's data reading (tf.data feeds both backends)."""
    import sys

    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None) if tf is not None else None
    return errors is not None and isinstance(exc, errors.OpError)


def _stop_on_read_error(model: Any, run: _Callbacks, exc: BaseException,
                        stops: interrupts.StopRequests, files: list[Path]) -> None:
    """A file that went bad during the run (checked clean at the start): keep the work done
    (checkpoint, last.keras, history), then stop with the file, record and offset."""
    from mltk.classify.callbacks.steps import optimizer_step

    stops.finish()
    try:
        run.counter.step = optimizer_step(model)
    except Exception:  # nothing was built: nothing to save
        run.counter.step = 0
    saved = ""
    if _save_work(run):
        saved = (f"; training stopped at step {run.counter.step} with a checkpoint (continue "
                 "with `resume` once the file is repaired or removed)")
    damage = data_mod.find_damage(files) if files else None
    what = (damage.describe() if damage else
            f"reading the data failed ({data_mod.op_error_line(exc)})")
    raise InputError(f"{what}{saved}; check the files with mltk tfrecord count --verify"
                     ) from None
