"""The typed settings of ``mltk train`` (and of the image size and batch that evaluate reuses).

:class:`TrainSettings` has one field per key of ``configs/train.yaml``, each checked when the
object is made, so a bad value fails at once with a :class:`~mltk._settings.SettingError` naming
the setting (and, through :func:`mltk.settings.load`, where the value came from)::

    from mltk import settings
    cfg = settings.load("train", model="small_cnn", epochs=5)   # -> TrainSettings
    cfg.epochs, cfg.recipe                                      # 5, 'default'

The optimisation settings a recipe covers (:data:`RECIPE_KEYS`) may be ``None``: the chosen
recipe fills them in (:func:`mltk.classify.recipes.apply` returns a new object). No Keras here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from mltk._settings import (
    Check,
    SettingError,
    Settings,
    boolean,
    check_number,
    choice,
    fail,
    integer,
    number,
    off_when_null,
    optional,
    sequence,
    setting,
    text,
)
from mltk.classify.models import MODELS
from mltk.classify.runtime import BACKENDS, PRECISIONS, STRATEGIES

OPTIMIZERS = ("sgd", "adamw", "adam")
LR_SCALINGS = ("linear", "sqrt", "none")
LR_SCHEDULES = ("step", "cosine", "constant")

#: The settings a recipe sets (None in the defaults: the chosen recipe fills them in).
RECIPE_CHECKS: dict[str, Check] = {
    "optimizer": choice(*OPTIMIZERS),
    "learning_rate": lambda key, value: _learning_rate(key, value),
    "lr_reference_batch": integer(1),
    "lr_scaling": choice(*LR_SCALINGS),
    "momentum": number(0.0, 1.0),
    "nesterov": boolean(),
    "lr_schedule": choice(*LR_SCHEDULES),
    "lr_decay_epochs": number(0.0, low_open=True),
    "lr_decay_factor": number(0.0, 1.0, low_open=True),
    "warmup_epochs": number(0.0),
    "weight_decay": number(0.0),
    "label_smoothing": number(0.0, 1.0, high_open=True),
    "batch_per_replica": integer(1),
}
RECIPE_KEYS = tuple(RECIPE_CHECKS)
#: Settings of the recipe machinery itself: not part of a run's saved config.yaml.
TABLE_KEYS = ("recipes", "default_recipe")
_RULE_KEYS = ("model", "pretrained", "recipe")


def _learning_rate(key: str, value: Any) -> float | str:
    """A positive number (a numeric string too: YAML reads ``1e-3`` as one) or ``auto``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return check_number(key, value, 0.0, math.inf, high_open=True, low_open=True)
    except SettingError:
        raise fail(key, "a positive number or auto", value) from None


def _weights(key: str, value: Any) -> str:
    """none, imagenet or a path (null means none)."""
    if value is None:
        return "none"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return text()(key, value)


def _class_weight(key: str, value: Any) -> Any:
    """none, balanced, a file, or a {class: weight} mapping of non-negative numbers."""
    if value is None:
        return "none"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, Mapping):
        return {str(k): number(0.0)(f"{key}.{k}", v) for k, v in value.items()}
    raise fail(key, "none, balanced, a YAML/JSON file or a {class: weight} mapping", value)


def _contrast(key: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = sequence(number(0.0), 2, 2)(key, value)
    if low > high:
        raise fail(key, "a range [low, high] with low <= high", list(value))
    return low, high


def _recipes(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """name -> a complete set of the recipe settings, each value checked as the setting is."""
    if not isinstance(value, Mapping) or not value:
        raise fail(key, "a mapping of recipe name -> settings", value)
    out = {}
    for name, recipe in value.items():
        where = f"{key}.{name}"
        if not isinstance(recipe, Mapping):
            raise fail(where, f"a mapping of {', '.join(RECIPE_KEYS)}", recipe)
        unknown = sorted(str(k) for k in set(recipe) - set(RECIPE_KEYS))
        missing = [k for k in RECIPE_KEYS if recipe.get(k) is None]
        if unknown or missing:
            problem = (f"has unknown key(s) {', '.join(unknown)}" if unknown
                       else f"does not set {', '.join(missing)}")
            raise SettingError(key, f"{where} {problem} (a recipe sets each of "
                               f"{', '.join(RECIPE_KEYS)})")
        out[str(name)] = {k: RECIPE_CHECKS[k](f"{where}.{k}", recipe[k]) for k in RECIPE_KEYS}
    return out


def _rules(key: str, value: Any) -> tuple[dict[str, Any], ...]:
    """The default_recipe rules: mappings of model / pretrained (optional) and recipe."""
    def rule(where: str, item: Any) -> dict[str, Any]:
        if not isinstance(item, Mapping) or "recipe" not in item or set(item) - set(_RULE_KEYS):
            raise fail(where, "a rule {model: NAME, pretrained: true|false, recipe: NAME} "
                       "(model and pretrained optional)", item)
        out = {"recipe": text()(f"{where}.recipe", item["recipe"])}
        if "model" in item:
            out["model"] = text()(f"{where}.model", item["model"])
        if "pretrained" in item:
            out["pretrained"] = boolean()(f"{where}.pretrained", item["pretrained"])
        return {k: out[k] for k in item}  # in the order written
    return sequence(rule)(key, value)


def _default_tables() -> dict[str, Any]:
    """The recipe tables of the shipped configs/train.yaml (one source for the numbers)."""
    from mltk import _config

    defaults = _config.load_default("train")
    return {k: defaults[k] for k in TABLE_KEYS}


def _table(name: str, check: Check, doc: str) -> Any:
    return setting(None, check, doc, factory=lambda: _default_tables()[name])


def _recipe_setting(key: str, doc: str) -> Any:
    return setting(None, optional(RECIPE_CHECKS[key]), f"recipe; {doc}" if doc else "recipe")


@dataclasses.dataclass(frozen=True)
class TrainSettings(Settings):
    """The settings of a training run (configs/train.yaml); checked when made, frozen."""

    SECTION: ClassVar[str] = "train"

    backend: str = setting("tensorflow", choice(*BACKENDS), "tensorflow | jax (Keras 3 backend)")
    model: str = setting("inception_resnet_v2", choice(*MODELS), " | ".join(MODELS))
    weights: str = setting("none", _weights,
                           "none | imagenet (needs network once) | PATH (.keras or .weights.h5)")
    image_size: int = setting(150, integer(8), "input side in pixels")
    freeze_base: bool = setting(False, boolean(), "train only the new head")
    trainable_layers: int | None = setting(
        None, optional(integer(0)),
        "with freeze_base: unfreeze the last N layers of the base (BN stays frozen)")
    dropout: float = setting(0.2, off_when_null(number(0.0, 1.0, high_open=True), 0.0),
                             "before the classification head")
    epochs: int = setting(30, integer(1), "epochs to train")
    steps: int | None = setting(None, optional(integer(1)),
                                "stop after this many steps in all (null: epochs x steps per "
                                "epoch)")
    recipe: str = setting("default", text(),
                          "default (picked by model and weights, see default_recipe) | scratch "
                          "| small_cnn | finetune | original")
    early_stopping: int | None = setting(
        None, optional(integer(1)),
        "stop after N epochs without a better validation accuracy (null: off)")
    class_weight: Any = setting(
        "none", _class_weight,
        "none | balanced (n / (classes x count)) | FILE (YAML/JSON class: weight) | "
        "{class: weight}")
    batch_per_replica: int | None = _recipe_setting(
        "batch_per_replica", "global batch = batch_per_replica x replicas (GPUs or workers)")
    optimizer: str | None = _recipe_setting(
        "optimizer", "sgd | adamw | adam (Adam; weight decay decoupled as in AdamW)")
    learning_rate: float | str | None = _recipe_setting(
        "learning_rate", "at the reference global batch below; auto: run the LR finder first")
    lr_reference_batch: int | None = _recipe_setting(
        "lr_reference_batch", "the global batch learning_rate is given for")
    lr_scaling: str | None = _recipe_setting(
        "lr_scaling", "linear (lr x batch / reference) | sqrt | none")
    momentum: float | None = _recipe_setting("momentum", "sgd")
    nesterov: bool | None = _recipe_setting("nesterov", "sgd")
    lr_schedule: str | None = _recipe_setting("lr_schedule", "step | cosine | constant")
    lr_decay_epochs: float | None = _recipe_setting(
        "lr_decay_epochs", "step: multiply by lr_decay_factor every this many epochs")
    lr_decay_factor: float | None = _recipe_setting("lr_decay_factor", "")
    warmup_epochs: float | None = _recipe_setting("warmup_epochs", "linear warm-up from 0")
    label_smoothing: float | None = _recipe_setting("label_smoothing", "")
    weight_decay: float | None = _recipe_setting(
        "weight_decay", "decoupled weight decay (AdamW/SGDW style, x lr), 0 = off")
    augment: bool = setting(True, off_when_null(boolean(), False),
                            "augment training images (validation and test images never are)")
    flip: bool = setting(True, off_when_null(boolean(), False), "random left-right flip")
    brightness: float = setting(0.125, off_when_null(number(0.0, 1.0), 0.0),
                                "random brightness delta, as a fraction of the value range")
    contrast: tuple[float, float] | None = setting(
        (0.2, 1.8), _contrast, "random contrast factor range (the original's 0.2-1.8)")
    shuffle_buffer: int = setting(10000, integer(0),
                                  "serialized records held for shuffling (bounded memory)")
    interleave: int = setting(16, integer(1), "shards read at once")
    deterministic: bool = setting(
        False, off_when_null(boolean(), False),
        "true (with seed): same order and augmentation every run, slower")
    gpus: int | None = setting(None, optional(integer(0)), "null: all visible; 0: CPU")
    strategy: str = setting("auto", choice(*STRATEGIES),
                            "auto (mirrored over >1 device) | mirrored | multi-worker | single")
    cpu_replicas: int = setting(
        1, off_when_null(integer(1), 1),
        ">1 splits the CPU into logical devices (tests distributed code on CPU)")
    precision: str = setting(
        "auto", choice(*PRECISIONS),
        "auto (bf16 on GPUs that support it, else float32) | float32 | mixed_bfloat16 | "
        "mixed_float16")
    jit: Any = setting("auto", optional(choice("auto", True, False)),
                       "auto | true | false (XLA; JAX always compiles)")
    checkpoint_every: int | None = setting(
        500, optional(integer(0)), "steps between checkpoints (also one at each epoch's end)")
    validation_steps: int | None = setting(
        None, optional(integer(1)), "null: the whole validation set each epoch")
    num_classes: int | None = setting(
        None, optional(integer(2)), "only for synthetic data (or raw shards without labels.txt)")
    tensorboard: bool = setting(False, off_when_null(boolean(), False),
                                "TensorBoard logs in RUN/tensorboard")
    seed: int | None = setting(None, optional(integer(0, 2**32 - 1)),
                               "random seed (null: a new one per run, recorded in config.yaml)")
    lr_find_steps: int = setting(100, integer(3),
                                 "learning-rate finder: steps of the exponential sweep")
    lr_find_min: float = setting(1.0e-7, number(0.0, low_open=True),
                                 "learning-rate finder: the first rate")
    lr_find_max: float = setting(10.0, number(0.0, low_open=True),
                                 "learning-rate finder: the last rate")
    recipes: dict[str, dict[str, Any]] = _table(
        "recipes", _recipes, "name -> a complete set of the settings marked recipe")
    default_recipe: tuple[dict[str, Any], ...] = _table(
        "default_recipe", _rules, "what recipe: default picks: the first rule that matches")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_find_min >= self.lr_find_max:
            raise SettingError("lr_find_max", f"lr_find_max must be above lr_find_min "
                               f"({self.lr_find_min:g}), got {self.lr_find_max:g}")
        known = ("default", *sorted(self.recipes))
        for i, rule in enumerate(self.default_recipe):
            if rule["recipe"] not in self.recipes:
                raise SettingError("default_recipe", f"default_recipe[{i}] names the unknown "
                                   f"recipe {rule['recipe']!r} (known: {', '.join(known[1:])})")
        complete = all(getattr(self, k) is not None for k in RECIPE_KEYS)
        if self.recipe not in known and not complete:
            raise SettingError("recipe", f"unknown recipe {self.recipe!r} (choose from "
                               f"{', '.join(known)})")

    def run_config(self) -> dict[str, Any]:
        """What a run's ``config.yaml`` records: every setting but the recipe tables (the
        values they filled in are recorded), which ``--config`` takes back as it is."""
        return {k: v for k, v in self.to_dict().items() if k not in TABLE_KEYS}


def as_settings(settings: TrainSettings | Mapping[str, Any]) -> TrainSettings:
    """``settings`` as a :class:`TrainSettings` (a plain mapping is checked into one)."""
    if isinstance(settings, TrainSettings):
        return settings
    return TrainSettings.from_config(settings)
