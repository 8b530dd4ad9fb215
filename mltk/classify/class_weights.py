"""Per-class loss weights for unbalanced training sets: ``none``, ``balanced`` or a file.

``balanced`` gives class c the weight ``n / (classes x count_c)`` (scikit-learn's formula), so
that every class adds as much to the loss as it would with equal counts. The counts come from
the shards' ``manifest.json`` when it lists them, else from reading every training record's
label. A file (YAML or JSON, ``class: weight``) sets weights by class name; classes it leaves
out keep the weight 1. The resolved weights are a ``{class: weight}`` mapping, which
``config.yaml`` records and ``--config`` accepts back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk.errors import ConfigError, InputError

log = logging.getLogger("mltk.classify")


def resolve(setting: Any, files: Sequence[Path], classes: Sequence[str]
            ) -> dict[str, float] | None:
    """``{class: weight}`` for ``setting`` (none, balanced, a file or a mapping); None: off."""
    if setting is None or (isinstance(setting, str) and setting.lower() == "none"):
        return None
    if isinstance(setting, Mapping):
        return _from_mapping(setting, classes, "class_weight")
    if isinstance(setting, str) and setting.lower() == "balanced":
        return balanced(train_counts(files, classes))
    path = Path(str(setting))
    if not path.is_file():
        raise ConfigError(f"class_weight must be none, balanced or a YAML/JSON file of "
                          f"class: weight; {setting!r} is none of these")
    from mltk import _config

    return _from_mapping(_config.load_yaml(path), classes, str(path))


def balanced(counts: Mapping[str, int]) -> dict[str, float]:
    """``n / (classes x count)`` per class; a class without records gets the weight 0."""
    total = sum(counts.values())
    k = len(counts)
    return {c: round(total / (k * n), 6) if n else 0.0 for c, n in counts.items()}


def as_list(weights: Mapping[str, float], classes: Sequence[str]) -> list[float]:
    return [float(weights.get(c, 1.0)) for c in classes]


def _from_mapping(mapping: Mapping[Any, Any], classes: Sequence[str], where: str
                  ) -> dict[str, float]:
    known = set(classes)
    out = {c: 1.0 for c in classes}
    for key, value in mapping.items():
        name = str(key)
        if name not in known:
            raise ConfigError(f"{where}: no class named {name!r} in the training data")
        try:
            weight = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: the weight of {name!r} is not a number "
                              f"({value!r})") from None
        if weight < 0:
            raise ConfigError(f"{where}: the weight of {name!r} is negative")
        out[name] = weight
    return out


def train_counts(files: Sequence[Path], classes: Sequence[str]) -> dict[str, int]:
    """Records per class in ``files``: from the manifests beside them, else from the records."""
    counts = counts_from_manifests(files, classes)
    if counts is None:
        from mltk.tfrecords.read import count_by_label

        log.info("counting the training records of each class (no manifest lists them)")
        counts = {c: 0 for c in classes}
        for row in count_by_label(files):
            if not 0 <= row["label"] < len(classes):
                raise InputError(f"{files[0]}: label {row['label']} outside the "
                                 f"{len(classes)} classes")
            counts[classes[row["label"]]] += row["records"]
    return counts


def counts_from_manifests(files: Sequence[Path], classes: Sequence[str]
                           ) -> dict[str, int] | None:
    counts = {c: 0 for c in classes}
    manifests: dict[Path, dict[str, Any]] = {}
    for f in files:
        folder = f.parent
        if folder not in manifests:
            try:
                manifests[folder] = json.loads((folder / "manifest.json").read_text("utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
        shard = next((s for s in manifests[folder].get("shards", [])
                      if Path(str(s.get("file", ""))).name == f.name), None)
        if shard is None or not isinstance(shard.get("class_counts"), Mapping):
            return None
        for name, n in shard["class_counts"].items():
            name = str(name)
            if name not in counts:
                return None
            counts[name] += int(n)
    return counts
