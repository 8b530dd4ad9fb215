"""Typed settings for every capability, built by one function.

    from mltk import settings
    cfg = settings.load("train", epochs=5, model="small_cnn")  # -> TrainSettings
    cfg.epochs, cfg.recipe                                     # 5, 'default'

:func:`load` merges, lowest first: the shipped defaults (``configs/SECTION.yaml``), a config file
(``config=``), ``MLTK_SECTION_KEY`` environment variables, and the keyword values (``None``
means "not given"). The result is the capability's frozen settings class, checked when made; a
bad value raises :class:`SettingError` naming the setting and where it came from.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from mltk._settings import SettingError, Settings

#: Section (configs/SECTION.yaml, MLTK_SECTION_*) -> "module:Class" of its typed settings.
SECTIONS = {
    "colors": "mltk.colors.settings:ColorSettings",
    "train": "mltk.classify.settings:TrainSettings",
    "xgb": "mltk.xgb.settings:XgbSettings",
    "recommend": "mltk.recommend.settings:RecommendSettings",
    "tfrecord": "mltk.tfrecords.building:BuildOptions",
    "serve": "mltk.serving.settings:ServeSettings",
    "storage": "mltk.storage.settings:StorageSettings",
    "similar": "mltk.similar.settings:SimilarSettings",
}

__all__ = ["SECTIONS", "Settings", "SettingError", "defaults", "load", "merged", "read_config",
           "settings_class", "write_config"]


def settings_class(section: str) -> type[Any]:
    """The typed settings class of ``section`` (imported on first use)."""
    try:
        module, name = SECTIONS[section].split(":")
    except KeyError:
        raise SettingError("section", f"no settings named {section!r} (known: "
                           f"{', '.join(SECTIONS)})") from None
    return getattr(importlib.import_module(module), name)


def load(section: str, config: str | os.PathLike[str] | None = None, *,
         environ: Mapping[str, str] | None = None, **values: Any) -> Any:
    """The settings of ``section``: defaults < ``config`` file < environment < ``values``."""
    from mltk import _config

    cls = settings_class(section)
    cfg, origins = _config.resolve_with_origins(section, values, config, environ)
    return cls.from_config(cfg, origins=origins)


def defaults(section: str) -> dict[str, Any]:
    """The shipped defaults of ``section`` (``configs/SECTION.yaml``) as a plain mapping."""
    from mltk import _config

    return _config.load_default(section)


def merged(section: str, values: Mapping[str, Any] | None = None,
           config: str | os.PathLike[str] | None = None,
           environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The layers of :func:`load` merged into a plain mapping, unchecked (``None`` values mean
    "not given"); a key unknown to the defaults in ``config`` is a ConfigError."""
    from mltk import _config

    return _config.resolve(section, values, config, environ)


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML settings file (a ``--config`` file, a run folder's ``config.yaml``), safely
    loaded; a ConfigError naming the file when it is missing, malformed or not a mapping."""
    from mltk import _config

    return _config.load_yaml(path)


def write_config(path: str | os.PathLike[str], values: Mapping[str, Any]) -> Any:
    """Write ``values`` as YAML, atomically, as mltk writes the ``config.yaml`` beside a model."""
    from mltk import _config

    return _config.save(path, values)

