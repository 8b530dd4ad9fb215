"""Settings for every command, resolved in one order: command line > ``MLTK_*`` environment
variable > ``--config FILE.yaml`` > the default YAML in ``configs/``.

The defaults live in ``configs/NAME.yaml`` at the repository root, which the wheel ships as the
package ``mltk.configs``, so an installed ``mltk`` reads the same files. Values from the
environment are parsed with ``yaml.safe_load`` (``MLTK_COLORS_K=7`` gives the integer 7).
"""

from __future__ import annotations

import copy
import enum
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from mltk._settings import check_known
from mltk.errors import ConfigError


def _yaml() -> Any:
    import yaml

    return yaml


def default_path(name: str) -> Path:
    """Path of the shipped default config ``configs/NAME.yaml``.

    Installed, the files are the package ``mltk.configs``; run from a checkout that is not
    installed (``PYTHONPATH=.``, as on a GPU host), they are read from its ``configs/``.
    """
    try:
        folder = Path(str(resources.files("mltk.configs")))
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parent.parent / "configs"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no default config named {name!r} (looked for {path})")
    return path


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a YAML mapping; a clear error naming the file when it is missing or malformed."""
    yaml = _yaml()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def load_default(name: str) -> dict[str, Any]:
    return load_yaml(default_path(name))


def env_var(section: str, key: str) -> str:
    return f"MLTK_{section}_{key}".upper().replace("-", "_")


def resolve(
    section: str,
    cli: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the four layers for ``section`` (the name of ``configs/SECTION.yaml``).

    ``cli`` holds the command-line values; ``None`` means "not given". A ``--config`` file may
    hold the settings flat or under a top-level ``SECTION:`` key (so one file can configure
    several commands). Keys unknown to the defaults are an error naming them.
    """
    return resolve_with_origins(section, cli, config_file, environ, defaults)[0]


def resolve_with_origins(
    section: str,
    cli: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`resolve`, plus where each value came from, for errors about a value's type.

    The origin of a key is the environment variable's name (``MLTK_COLORS_CROP``), the
    ``--config`` file's path, ``command line``, or the default file (``configs/SECTION.yaml``).
    """
    environ = os.environ if environ is None else environ
    settings = copy.deepcopy(dict(defaults if defaults is not None else load_default(section)))
    origins = dict.fromkeys(settings, f"configs/{section}.yaml")
    if config_file is not None:
        user = _config_file_settings(section, config_file, settings)
        settings.update(user)
        origins.update(dict.fromkeys(user, str(config_file)))
    for key in settings:
        name = env_var(section, key)
        if name in environ:
            settings[key] = parse_env(name, environ[name])
            origins[key] = name
    for key, value in (cli or {}).items():
        if value is not None:
            settings[key] = value
            origins[key] = "command line"
    return settings, origins


def _config_file_settings(section: str, config_file: str | os.PathLike[str],
                          known: Mapping[str, Any]) -> dict[str, Any]:
    user = load_yaml(config_file)
    if isinstance(user.get(section), dict):
        user = user[section]
    check_known(section, user, sorted(known), where=str(config_file))
    return user


def parse_env(name: str, text: str) -> Any:
    """An environment variable's value as YAML (``7`` -> 7, ``[1, 2]`` -> a list)."""
    yaml = _yaml()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{name}: cannot parse value {text!r} as YAML") from None


def dump(settings: Mapping[str, Any]) -> str:
    """YAML text of resolved settings, stable key order, plain Python types only."""
    from mltk._json import clean

    return _yaml().safe_dump(clean(_plain(settings)), sort_keys=False, allow_unicode=True)


def save(path: str | os.PathLike[str], settings: Mapping[str, Any]) -> Path:
    """Write the resolved settings as ``config.yaml`` (atomically)."""
    from mltk._atomic import write_text

    return write_text(path, dump(settings))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj
