"""The optimizer, its learning-rate schedule and the loss and metrics a model is compiled with.

Imports Keras when loaded (the warm-up schedule is a Keras class): import it only once the
backend is chosen (:func:`mltk.classify.runtime.setup`). The settings given here are already
resolved, the recipe's values filled in (:func:`mltk.classify.recipes.apply`): nothing here
knows about recipes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mltk._keras import import_keras
from mltk.classify.settings import TrainSettings
from mltk.errors import InputError

keras = import_keras()


@keras.saving.register_keras_serializable(package="mltk")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr = peak x step / warmup_steps for the first steps, then ``after(step - warmup_steps)``.

    Registered with Keras' serialization (as ``mltk>Warmup``), so an optimizer using it is saved
    and restored with the checkpoint like the built-in schedules.
    """

    def __init__(self, after: Any, warmup_steps: int, peak: float) -> None:
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.peak = float(peak)

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        step = ops.cast(step, "float32")
        warm = self.peak * step / max(1, self.warmup_steps)
        rest = self.after(ops.maximum(step - self.warmup_steps, 0.0))
        return ops.where(step < self.warmup_steps, warm, rest)

    def get_config(self) -> dict[str, Any]:
        return {"after": keras.saving.serialize_keras_object(self.after),
                "warmup_steps": self.warmup_steps, "peak": self.peak}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Warmup:
        config = dict(config)
        config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def lr_schedule(kind: str, peak: float, steps_per_epoch: int, total_steps: int,
                warmup_epochs: float = 0.0, decay_epochs: float = 8,
                decay_factor: float = 0.5) -> Callable[[int], float] | Any:
    """A Keras learning-rate schedule on the optimizer's step count (saved with its state).

    step: peak x decay_factor ** floor(step / (decay_epochs x steps_per_epoch)); cosine: from
    peak to 0 over the run; constant. A linear warm-up from 0 over ``warmup_epochs`` comes first.
    """
    sched = keras.optimizers.schedules
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if kind == "cosine":
        return sched.CosineDecay(0.0 if warmup else peak, max(1, total_steps - warmup),
                                 warmup_target=peak if warmup else None,
                                 warmup_steps=warmup)
    if kind == "step":
        decay = sched.ExponentialDecay(peak, max(1, int(round(decay_epochs * steps_per_epoch))),
                                       decay_factor, staircase=True)
    elif kind == "constant":
        decay = sched.ExponentialDecay(peak, 1, 1.0)
    else:
        raise InputError(f"unknown lr_schedule {kind!r} (step, cosine or constant)")
    return Warmup(decay, warmup, peak) if warmup else decay


def make_optimizer(settings: TrainSettings, schedule: Any) -> Any:
    """The optimizer of ``settings`` (resolved: the recipe applied) on the rate ``schedule``.

    ``sgd``: SGD with momentum (Nesterov if set); ``adamw``: AdamW; ``adam``: Adam. Weight
    decay is decoupled for all three (Keras 3 applies ``weight_decay`` to the variables
    directly, scaled by the learning rate, not through the gradients), so ``adam`` with a
    weight decay trains as ``adamw`` does.
    """
    wd = float(settings.weight_decay or 0.0) or None
    name = settings.optimizer
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=float(settings.momentum),
                                    nesterov=bool(settings.nesterov), weight_decay=wd)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=wd or 0.0)
    if name == "adam":
        return keras.optimizers.Adam(schedule, weight_decay=wd)
    if name is None:
        raise ValueError("make_optimizer needs resolved settings (recipes.apply fills in "
                         "`optimizer`)")
    raise InputError(f"unknown optimizer {name!r} (sgd, adamw or adam)")


def compile_model(model: Any, optimizer: Any, label_smoothing: float, top_k: int,
                  jit: Any) -> None:
    """Sparse (or, with label smoothing, one-hot) cross-entropy, accuracy and top-k."""
    if label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.TopKCategoricalAccuracy(top_k, name=f"top{top_k}")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                   keras.metrics.SparseTopKCategoricalAccuracy(top_k, name=f"top{top_k}")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit)
