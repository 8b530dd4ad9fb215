"""Every model mltk writes, opened by one function and used through one interface.

``open_predictor("runs/first")`` reads the folder's ``config.yaml`` to tell what it holds (an
image classifier from ``mltk train``, a two-group model from ``xgb-analyze``, a recommender from
``recommend fit``) and returns a :class:`Predictor`; the word ``colors`` gives the colour namer.
A similarity index of ``mltk index build`` is told by its manifest.json (kind ``similar``).
The CLI commands (``predict``, ``xgb-predict``, ``recommend query``), the server and the batch
workers all score through these predictors, so they cannot disagree.

Example::

    from mltk.predictors import open_predictor
    p = open_predictor("analysis/")            # kind "two-group"
    p.predict([{"age": 31, "country": "DE"}])  # [{"probability": 0.81, "label": 1}]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mltk.errors import InputError
from mltk.predictors.base import Outcome, Predictor, TensorSpec

KINDS = ("image-classifier", "two-group", "recommender", "colors", "similar")

__all__ = ["KINDS", "Outcome", "Predictor", "TensorSpec", "detect_kind", "open_predictor",
           "parse_model_spec"]


def detect_kind(folder: str | os.PathLike) -> str:
    """What an mltk folder holds, from its config.yaml (an explicit ``kind`` key, else the
    settings only that command writes); raises InputError naming the folder otherwise."""
    from mltk import _config

    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d}: no such model folder")
    if (d / "manifest.json").is_file() and _is_index(d):
        return "similar"
    cfg_file = d / "config.yaml"
    if not cfg_file.is_file():
        raise InputError(f"{d}: not an mltk model folder (no config.yaml)")
    cfg = _config.load_yaml(cfg_file)
    kind = cfg.get("kind")
    if kind in KINDS:
        return kind
    if "raw_features" in cfg and "threshold" in cfg:
        return "two-group"
    if "n_meta" in cfg and "price_band" in cfg:
        return "recommender"
    if "image_size" in cfg and "model" in cfg:
        return "image-classifier"
    raise InputError(f"{cfg_file}: not written by mltk train, xgb-analyze or recommend fit "
                     "(cannot tell which model the folder holds)")


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``NAME=PATH``, ``PATH`` (named after its folder), ``colors`` or ``colors:FILE``
    -> (name, path). PATH may be a URL or an archive (:mod:`mltk.storage`): a URL's own ``=``
    (a query string) is not a name."""
    from mltk.storage import is_remote, model_name

    if "=" in spec and not is_remote(spec):
        name, _, path = spec.partition("=")
        if not name or not path:
            raise InputError(f"{spec!r}: expected NAME=PATH")
        return name, path
    if spec == "colors" or spec.startswith("colors:"):
        return "colors", spec
    return model_name(spec), spec


def open_predictor(spec: str | os.PathLike, name: str | None = None, **options: Any,
                   ) -> Predictor:
    """The predictor for a folder mltk wrote (or its URL or archive: :mod:`mltk.storage`), or
    for ``colors`` (``colors:FILE``: with the
    settings of a colors config file, which may hold a ``palette:``).

    ``options``: ``top_k`` (image classifier), ``config`` and ``palette`` (colors).
    """
    spec = os.fspath(spec)
    if spec == "colors" or spec.startswith("colors:"):
        from mltk.predictors.colors import ColorsPredictor

        config = spec.partition(":")[2] or options.get("config")
        if config and not Path(config).is_file():
            raise InputError(f"{config}: no such colors config file")
        return ColorsPredictor.open(name or "colors", config or None, options.get("palette"))
    from mltk.storage import localize, model_name

    name = name or model_name(spec)
    spec = localize(spec)  # a URL or an archive becomes a local folder (cached)
    kind = detect_kind(spec)
    if kind == "image-classifier":
        from mltk.predictors.image import ImageClassifier

        return ImageClassifier.open(spec, name, top_k=options.get("top_k", 3))
    if kind == "two-group":
        from mltk.predictors.two_group import TwoGroupPredictor

        return TwoGroupPredictor.open(spec, name)
    if kind == "colors":  # colors settings kept as a model folder (config.yaml, kind: colors)
        return _colors_folder(spec, name)
    if kind == "similar":
        from mltk.predictors.similar import SimilarPredictor

        return SimilarPredictor.open(spec, name)
    from mltk.predictors.recommender import RecommenderPredictor

    return RecommenderPredictor.open(spec, name)


def _colors_folder(folder: str, name: str) -> Predictor:
    """A folder whose config.yaml holds ``kind: colors`` and colors settings (a palette, ...):
    the colors model with those settings, so a model repository can hold palettes."""
    from mltk import _config
    from mltk.colors import ColorSettings
    from mltk.predictors.colors import ColorsPredictor

    cfg = _config.load_yaml(Path(folder) / "config.yaml") or {}
    given = {k: v for k, v in cfg.items() if k != "kind"}
    return ColorsPredictor(name, ColorSettings.from_config(_config.resolve("colors", given)),
                           folder)


def _is_index(folder: Path) -> bool:
    """An ``mltk index build`` folder (its manifest says so)."""
    from mltk._json import read_or_none

    manifest = read_or_none(folder / "manifest.json")
    return isinstance(manifest, dict) and manifest.get("format") == "mltk-index/1"
