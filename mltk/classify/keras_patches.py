"""A workaround for Keras 3 under MultiWorkerMirroredStrategy (keras-team/keras#20585).

Two bugs make ``Model.fit`` fail when several workers train together: ``fit`` builds the
compiled metrics from its first batch by reducing that batch across workers eagerly, which
fails; and each step's scalar logs are reduced along axis 0, which scalars do not have.
:func:`prebuild_for_multi_worker` builds the metrics from a local dummy batch instead, and
patches ``keras.src.backend.tensorflow.trainer.reduce_per_replica`` to average scalars over
replicas. Both reach into private Keras code, so :func:`check_keras` first makes sure that the
installed Keras is a version the patch was checked against and that the functions it replaces
still have the shape it expects: anything else is a clear :class:`MltkError`, not a silent
misbehaviour deep inside a multi-worker run.
"""

from __future__ import annotations

import inspect
from typing import Any

from mltk._keras import import_keras, import_tf
from mltk.errors import MltkError

#: Keras versions (major.minor) the patch was checked against.
CHECKED_VERSIONS = ("3.15",)
PATCHED = "keras.src.backend.tensorflow.trainer.reduce_per_replica"
#: The private functions the patch uses or replaces -> the parameters it expects them to have.
EXPECTED_SHAPES = {
    "reduce_per_replica": ("values", "strategy", "reduction"),
    "_collective_all_reduce_multi_worker": ("strategy",),
    "TensorFlowTrainer._symbolic_build": ("self", "iterator", "data_batch"),
    "TensorFlowTrainer._maybe_symbolic_build": ("self", "iterator", "data_batch"),
}


def check_keras(version: str | None = None, trainer_module: Any = None) -> None:
    """Raise :class:`MltkError` unless the patch fits this Keras (the installed one, or
    ``version`` and ``trainer_module`` given, for tests)."""
    if version is None:
        version = import_keras().__version__
    if trainer_module is None:
        from keras.src.backend.tensorflow import trainer as trainer_module
    if ".".join(version.split(".")[:2]) not in CHECKED_VERSIONS:
        raise MltkError(
            f"the multi-worker patch of {PATCHED} (keras-team/keras#20585) was checked "
            f"against Keras {', '.join(CHECKED_VERSIONS)}, not the installed Keras {version}; "
            "check whether the bug is fixed or the patch still fits, then update "
            "mltk/classify/keras_patches.py (or install one of those versions)")
    for name, expected in EXPECTED_SHAPES.items():
        found = _parameters(trainer_module, name)
        if found != expected:
            shown = "missing" if found is None else f"({', '.join(found)})"
            raise MltkError(
                f"the multi-worker patch of {PATCHED} (keras-team/keras#20585) does not fit "
                f"Keras {version}: it expects {name}({', '.join(expected)}), found {shown}; "
                "update mltk/classify/keras_patches.py")


def _parameters(module: Any, dotted: str) -> tuple[str, ...] | None:
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    original = getattr(obj, "_mltk_original", obj)  # already patched: the function it wraps
    try:
        return tuple(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return None


def patch_reduce_per_replica(trainer_module: Any = None) -> None:
    """Average scalar logs over replicas in multi-worker runs (once per process)."""
    if trainer_module is None:
        from keras.src.backend.tensorflow import trainer as trainer_module
    if getattr(trainer_module.reduce_per_replica, "_mltk_patched", False):
        return
    original = trainer_module.reduce_per_replica
    tf = import_tf()

    def reduce_per_replica(values: Any, strategy: Any, reduction: Any) -> Any:
        if reduction in ("auto", "mean") and trainer_module._collective_all_reduce_multi_worker(
                strategy):
            def mean(v: Any) -> Any:
                first = v.values[0] if hasattr(v, "values") else v
                scalar = tf.TensorShape(first.shape).rank == 0
                return strategy.reduce("MEAN", v, axis=None if scalar else 0)

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica._mltk_patched = True  # type: ignore[attr-defined]
    reduce_per_replica._mltk_original = original  # type: ignore[attr-defined]
    trainer_module.reduce_per_replica = reduce_per_replica


def prebuild_for_multi_worker(model: Any, scope: Any, size: int, n_classes: int,
                              one_hot: bool) -> None:
    """Make ``model`` (compiled) trainable by several workers: checks this Keras, patches the
    log reduction, and builds the metrics from a local dummy batch inside ``scope``."""
    import numpy as np

    check_keras()
    patch_reduce_per_replica()
    x = np.zeros((1, size, size, 3), np.float32)
    y = np.zeros((1, n_classes), np.float32) if one_hot else np.zeros((1,), np.int64)
    with scope:
        model._symbolic_build(data_batch=(x, y))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
