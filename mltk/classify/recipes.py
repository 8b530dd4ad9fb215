"""Training recipes: named, complete sets of optimisation settings from ``configs/train.yaml``.

A recipe fixes the optimizer, learning rate (at a reference global batch, with its scaling
rule), schedule, warm-up, weight decay, label smoothing and batch. The settings it covers are
``null`` in the defaults; a value given any other way (command line, ``MLTK_TRAIN_*``,
``--config``) overrides the recipe, one setting at a time. ``recipe: default`` picks a recipe
by the model and by whether the weights are pretrained, following the ``default_recipe`` rules.
No Keras here: this is plain dictionaries, testable without a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mltk.errors import ConfigError

RECIPE_KEYS = ("optimizer", "learning_rate", "lr_reference_batch", "lr_scaling", "momentum",
               "nesterov", "lr_schedule", "lr_decay_epochs", "lr_decay_factor", "warmup_epochs",
               "weight_decay", "label_smoothing", "batch_per_replica")
LR_SCALINGS = ("linear", "sqrt", "none")
# Settings of the recipe machinery itself: not part of a run's saved config.yaml.
TABLE_KEYS = ("recipes", "default_recipe")


def is_pretrained(weights: Any) -> bool:
    """``imagenet`` or a weights file: the model starts from trained weights."""
    return str(weights or "none").lower() != "none"


def choose(name: str, model: str, weights: Any, rules: Any) -> str:
    """The concrete recipe ``name`` stands for (``default``: the first matching rule)."""
    if name != "default":
        return name
    pretrained = is_pretrained(weights)
    for rule in rules or ():
        if not isinstance(rule, Mapping) or "recipe" not in rule:
            raise ConfigError(f"default_recipe: each rule needs a recipe, got {rule!r}")
        if "model" in rule and rule["model"] != model:
            continue
        if "pretrained" in rule and bool(rule["pretrained"]) != pretrained:
            continue
        return str(rule["recipe"])
    raise ConfigError(f"default_recipe: no rule matches model {model} with weights {weights}")


def apply(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with the chosen recipe filling the settings left unset (None).

    The returned settings name the concrete recipe in ``recipe`` and leave out the recipe
    table, so they are what ``config.yaml`` records and what ``--config`` can take back.
    """
    out = {k: v for k, v in cfg.items() if k not in TABLE_KEYS}
    recipes = cfg.get("recipes") or {}
    unset = [k for k in RECIPE_KEYS if out.get(k) is None]
    if not recipes and not unset:  # every setting given (a saved config.yaml): nothing to fill
        _check_scaling(out)
        return out
    name = choose(str(cfg.get("recipe") or "default"), str(cfg.get("model")),
                  cfg.get("weights"), cfg.get("default_recipe"))
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r} (choose from default, "
                          f"{', '.join(sorted(recipes))})")
    recipe = recipes[name]
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise ConfigError(f"recipe {name} does not set {', '.join(missing)}")
    for key in unset:
        out[key] = recipe[key]
    out["recipe"] = name
    _check_scaling(out)
    return out


def _check_scaling(cfg: Mapping[str, Any]) -> None:
    if cfg["lr_scaling"] not in LR_SCALINGS:
        raise ConfigError(f"unknown lr_scaling {cfg['lr_scaling']!r} (choose from "
                          f"{', '.join(LR_SCALINGS)})")


def lr_scale(cfg: Mapping[str, Any], global_batch: int) -> float:
    """The factor from ``learning_rate`` (at ``lr_reference_batch``) to this global batch."""
    ratio = global_batch / float(cfg["lr_reference_batch"])
    rule = cfg.get("lr_scaling", "linear")
    if rule == "linear":
        return ratio
    if rule == "sqrt":
        return math.sqrt(ratio)
    return 1.0
