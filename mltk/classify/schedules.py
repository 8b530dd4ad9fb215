"""A linear learning-rate warm-up in front of any Keras schedule (imports Keras: load lazily).

Registered with Keras' serialization, so an optimizer using it is saved and restored with the
checkpoint like the built-in schedules.
"""

from __future__ import annotations

from typing import Any

from mltk._keras import import_keras

keras = import_keras()


@keras.saving.register_keras_serializable(package="mltk")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr = peak x step / warmup_steps for the first steps, then ``after(step - warmup_steps)``."""

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
