"""Training recipes: named, complete sets of optimisation settings from ``configs/train.yaml``.

A recipe fixes the optimizer, learning rate (at a reference global batch, with its scaling
rule), schedule, warm-up, weight decay, label smoothing and batch. The settings it covers are
``null`` in the defaults; a value given any other way (command line, ``MLTK_TRAIN_*``,
``--config``) overrides the recipe, one setting at a time. ``recipe: default`` picks a recipe
by the model and by whether the weights are pretrained, following the ``default_recipe`` rules.
No Keras here: this works on :class:`~mltk.classify.settings.TrainSettings`, testable without a
model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mltk.classify.settings import RECIPE_KEYS, TrainSettings, as_settings
from mltk.errors import ConfigError


def is_pretrained(weights: Any) -> bool:
    """``imagenet`` or a weights file: the model starts from trained weights."""
    return str(weights or "none").lower() != "none"


def choose(name: str, model: str, weights: Any, rules: Sequence[Mapping[str, Any]]) -> str:
    """The concrete recipe ``name`` stands for (``default``: the first matching rule)."""
    if name != "default":
        return name
    pretrained = is_pretrained(weights)
    for rule in rules or ():
        if "model" in rule and rule["model"] != model:
            continue
        if "pretrained" in rule and bool(rule["pretrained"]) != pretrained:
            continue
        return str(rule["recipe"])
    raise ConfigError(f"default_recipe: no rule matches model {model} with weights {weights}")


def apply(settings: TrainSettings | Mapping[str, Any]) -> TrainSettings:
    """The settings with the chosen recipe filling those left unset (None), as a new object.

    ``recipe`` then names the concrete recipe; :meth:`TrainSettings.run_config` is what
    ``config.yaml`` records and what ``--config`` can take back (it needs no recipe then).
    """
    settings = as_settings(settings)
    name = choose(settings.recipe, settings.model, settings.weights, settings.default_recipe)
    unset = [k for k in RECIPE_KEYS if getattr(settings, k) is None]
    if not unset:  # every setting given (a saved config.yaml): nothing to fill
        return settings if name == settings.recipe else settings.replace(recipe=name)
    recipe = settings.recipes.get(name)
    if recipe is None:
        raise ConfigError(f"unknown recipe {name!r} (choose from default, "
                          f"{', '.join(sorted(settings.recipes))})")
    return settings.replace(recipe=name, **{k: recipe[k] for k in unset})


def lr_scale(settings: TrainSettings, global_batch: int) -> float:
    """The factor from ``learning_rate`` (at ``lr_reference_batch``) to this global batch."""
    ratio = global_batch / float(settings.lr_reference_batch)
    if settings.lr_scaling == "linear":
        return ratio
    if settings.lr_scaling == "sqrt":
        return math.sqrt(ratio)
    return 1.0
