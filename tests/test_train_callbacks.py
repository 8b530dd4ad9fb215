"""The callbacks of a training run, each driven with fake logs as Keras would, no training."""

from __future__ import annotations

import json
import math
import signal
import types

import numpy as np
import pytest

from mltk.errors import ConfigError, InputError

pytest.importorskip("keras")


class FakeModel:
    """What the callbacks use of a Keras model: the optimizer's step and rate, saving."""

    def __init__(self) -> None:
        self.optimizer = types.SimpleNamespace(iterations=np.int64(0), learning_rate=0.00123456789,
                                               built=True)
        self.saved: list[str] = []
        self.stop_training = False

    def save(self, path) -> None:
        self.saved.append(str(path))
        open(path, "wb").write(b"model")

    def save_weights(self, path) -> None:
        open(path, "wb").write(b"weights")


def drive_fit(callbacks, steps: int, model: FakeModel, validation: bool = False,
              epoch: int = 0, logs: dict | None = None) -> None:
    """The hooks of one Model.fit epoch of ``steps`` steps, in Keras' order."""
    for cb in callbacks:
        cb.set_model(model)
        cb.set_params({"steps": steps, "epochs": epoch + 1})
        cb.on_train_begin()
        cb.on_epoch_begin(epoch)
    for b in range(steps):
        for cb in callbacks:
            cb.on_train_batch_begin(b)
        model.optimizer.iterations += 1
    if validation:
        for cb in callbacks:
            cb.on_test_begin()
            cb.on_test_batch_begin(0)
    for cb in callbacks:
        cb.on_epoch_end(epoch, dict(logs or {}))


def test_step_counter_counts_each_step_once_and_defers_signals():
    from mltk.classify.callbacks.steps import StepCounter
    from mltk.classify.interrupts import StopRequests

    stops = StopRequests()
    counter = StepCounter(start=10, stops=stops)
    model = FakeModel()
    drive_fit([counter], 4, model, validation=True)  # the last step counted at validation
    assert (counter.step, counter.local_steps) == (14, 4) and stops.deferring
    drive_fit([counter], 3, model)  # no validation: counted at the epoch's end
    assert (counter.step, counter.local_steps) == (17, 7)


def test_throughput_leaves_out_the_first_steps_of_the_process():
    from mltk.classify.callbacks.throughput import Throughput

    tp = Throughput(global_batch=8, skip=2)
    model = FakeModel()
    drive_fit([tp], 1, model)
    assert tp.images_per_second is None  # one step: nothing timed yet
    drive_fit([tp], 10, model)
    # Steps 1-2 of the process are compilation; the clock starts after the third of this fit.
    assert tp.timed_steps == 10 - 2 and tp.images_per_second > 0
    drive_fit([tp], 5, model, validation=True)
    assert tp.timed_steps == 8 + 4


def test_history_rows_and_files(tmp_path):
    from mltk.classify.callbacks.history import History

    hist = History(tmp_path, global_batch=4, rows=[{"epoch": 1, "step": 5, "loss": 1.0}])
    model = FakeModel()
    model.optimizer.iterations = np.int64(5)
    drive_fit([hist], 5, model, epoch=1, logs={"loss": 0.123456789, "val_accuracy": 0.5,
                                                "skipped": None})
    row = hist.rows[-1]
    assert list(row) == ["epoch", "step", "loss", "val_accuracy", "lr", "seconds",
                         "images_per_second"]
    assert (row["epoch"], row["step"], row["loss"], row["lr"]) == (2, 10, 0.123457, 0.00123457)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,step,loss")
    quiet = History(None, global_batch=4)  # a worker other than the chief writes nothing
    quiet.rows.append(row)
    quiet.write()


def test_best_model_saves_each_better_epoch_only(tmp_path):
    from mltk.classify.callbacks.best import BestModel

    best = BestModel("val_accuracy", tmp_path / "best.keras")
    model = FakeModel()
    saved_at = []
    for epoch, value in enumerate([0.5, 0.7, 0.6, 0.7, float("nan"), 0.8]):
        drive_fit([best], 2, model, epoch=epoch, logs={"val_accuracy": value})
        if best.improved:
            saved_at.append(epoch + 1)
    assert saved_at == [1, 2, 6] and len(model.saved) == 3
    assert (best.best, best.best_epoch) == (0.8, 6)
    # Without the metric (or NaN), an epoch counts as the best until there is one.
    first = BestModel("val_accuracy", None)
    assert first.update(1, None) and first.update(2, math.nan) and first.best is None
    assert first.update(3, 0.1) and not first.update(4, math.nan) and first.best_epoch == 3
    # A resumed run: the best epoch is the first row reaching the best value.
    first.restore([{"epoch": 1, "val_accuracy": 0.4}, {"epoch": 2, "val_accuracy": 0.6},
                   {"epoch": 3, "val_accuracy": 0.6}], 0.6)
    assert (first.best, first.best_epoch) == (0.6, 2)


def test_early_stopping_after_patience_epochs_without_a_better_one():
    from mltk.classify.callbacks.best import BestModel, EarlyStopping

    best = BestModel("val_accuracy")
    early = EarlyStopping(best, patience=2)
    model = FakeModel()
    stopped_after = None
    for epoch, value in enumerate([0.5, 0.7, 0.6, 0.65, 0.9]):
        drive_fit([best, early], 1, model, epoch=epoch, logs={"val_accuracy": value})
        if early.stopped:
            stopped_after = epoch + 1
            break
    assert stopped_after == 4 and model.stop_training and best.best_epoch == 2
    never = EarlyStopping(BestModel("val_accuracy"), patience=None)
    for epoch in range(5):
        drive_fit([never.best, never], 1, model, epoch=epoch, logs={"val_accuracy": 0.5})
    assert not never.stopped


def test_checkpointer_every_n_steps_and_at_the_epoch_end(tmp_path):
    from mltk.classify.callbacks.best import BestModel
    from mltk.classify.callbacks.checkpoint import Checkpointer
    from mltk.classify.callbacks.history import History

    hist, best = History(None, 4), BestModel("accuracy")
    ckpt = Checkpointer(tmp_path, every=3, steps_per_epoch=7, global_batch=4, history=hist,
                        best=best)
    model = FakeModel()
    states = []
    real_save = ckpt.save

    def save():
        real_save()
        states.append(json.loads((tmp_path / "checkpoint" / "state.json").read_text()))

    ckpt.save = save
    drive_fit([hist, best, ckpt], 7, model, logs={"accuracy": 0.25})
    # At steps 3 and 6, then at the epoch's end (step 7), with the epoch's row and best.
    assert [s["step"] for s in states] == [3, 6, 7]
    assert states[-1]["history"] == hist.rows and states[-1]["best"] == 0.25
    assert (states[-1]["epoch"], states[-1]["global_batch"]) == (1, 4)
    assert (tmp_path / "checkpoint" / "latest.weights.h5").read_bytes() == b"weights"
    assert (tmp_path / "last.keras").read_bytes() == b"model"
    quiet = Checkpointer(tmp_path / "w1", 1, 7, 4, hist, best, is_chief=False)
    drive_fit([quiet], 2, model)
    assert not (tmp_path / "w1").exists()


def test_checkpointer_restores_a_real_model_and_names_damage(tmp_path):
    import keras

    from mltk.classify.callbacks.best import BestModel
    from mltk.classify.callbacks.checkpoint import Checkpointer
    from mltk.classify.callbacks.history import History

    def model():
        keras.utils.set_random_seed(len(made))
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        m.optimizer.build(m.trainable_variables)
        made.append(m)
        return m

    made: list = []
    hist, best = History(None, 4, rows=[{"epoch": 1, "accuracy": 0.5}]), BestModel("accuracy")
    best.update(1, 0.5)
    ckpt = Checkpointer(tmp_path, 0, 10, 4, hist, best)
    ckpt.set_model(model())
    ckpt.model.optimizer.iterations.assign(12)
    ckpt.save()
    again = Checkpointer(tmp_path, 0, 10, 4, History(None, 4), BestModel("accuracy"))
    again.set_model(model())
    assert again.restore() == 12
    for a, b in zip(made[0].get_weights(), made[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.history.rows == hist.rows and (again.best.best, again.best.best_epoch) == (0.5, 1)
    other_batch = Checkpointer(tmp_path, 0, 10, 8, History(None, 8), BestModel("accuracy"))
    other_batch.set_model(model())
    with pytest.raises(ConfigError, match="global batch of 4, this run has 8"):
        other_batch.restore()
    (tmp_path / "checkpoint" / "state.json").write_text("[1]")
    with pytest.raises(InputError, match=r"state.json: damaged checkpoint state \(a JSON list"):
        again.restore()


def test_progress_reports_steps_and_the_safe_point_stops():
    from mltk.classify.callbacks.progress import Progress, SafePoint
    from mltk.classify.callbacks.steps import StepCounter
    from mltk.classify.interrupts import Interrupted, StopRequests

    stops = StopRequests()
    counter = StepCounter(0, stops)
    seen = []
    cbs = [counter, Progress(counter, 9, lambda step, total: seen.append((step, total))),
           SafePoint(stops)]
    drive_fit(cbs, 3, FakeModel(), validation=True)
    assert seen == [(1, 9), (2, 9), (3, 9)]
    stops.pending = signal.SIGTERM  # a signal received during a step
    with pytest.raises(Interrupted):
        drive_fit(cbs, 3, FakeModel())
    assert counter.step == 3  # stopped at the first safe point of the next fit
