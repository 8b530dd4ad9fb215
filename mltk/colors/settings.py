"""The typed settings of `mltk colors`, checked once; errors say where a bad value came from.

:class:`ColorSettings` checks every field's type and range when it is made; a bad value raises
:class:`SettingError`, which knows the setting's key. :meth:`ColorSettings.from_config` takes the
origins that :func:`mltk._config.resolve_with_origins` records, so the one-line error names the
environment variable (``MLTK_COLORS_CROP: ...``) or the config file the value came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from mltk._imaging import default_max_pixels
from mltk._settings import (  # noqa: F401 (SettingError and the checks are re-exported)
    SettingError,
    check_int,
    check_number,
)
from mltk._settings import fail as _fail
from mltk.colors.core import DEFAULT_ACHROMATIC, DISTANCES
from mltk.colors.palette import Palette, default_palette, load_palette


def check_crop(value: Any, size: int) -> tuple[float, float, float, float]:
    """x0,y0,x1,y1 fractions (a list, or a string "x0,y0,x1,y1"), at least a working pixel."""
    crop = value.split(",") if isinstance(value, str) else value
    expected = "4 numbers x0,y0,x1,y1 (like [0.2, 0.2, 0.8, 0.8])"
    try:
        crop = tuple(float(v) for v in crop)
    except (TypeError, ValueError):
        raise _fail("crop", expected, value) from None
    if len(crop) != 4 or any(v != v for v in crop):  # v != v: NaN
        raise _fail("crop", expected, value)
    x0, y0, x1, y1 = crop
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise _fail("crop", "fractions with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1",
                    list(crop))
    if min(x1 - x0, y1 - y0) * size < 1 - 1e-9:  # (1e-9: 0.51 - 0.5 is not quite 0.01)
        raise _fail("crop", f"at least one pixel of the {size}x{size} working size across "
                    f"(x1 - x0 and y1 - y0 at least 1/{size} = {1 / size:.4g})", list(crop))
    return crop


def check_achromatic(value: Any) -> dict[str, Any]:
    """The achromatic rule's mapping, completed from :data:`DEFAULT_ACHROMATIC`."""
    if not isinstance(value, Mapping):
        raise _fail("achromatic", f"a mapping with keys {', '.join(DEFAULT_ACHROMATIC)}", value)
    unknown = sorted(str(k) for k in set(value) - set(DEFAULT_ACHROMATIC))
    if unknown:
        raise SettingError("achromatic", f"achromatic has unknown key(s) {', '.join(unknown)} "
                           f"(known: {', '.join(DEFAULT_ACHROMATIC)})")
    out = {**DEFAULT_ACHROMATIC, **value}
    for key in ("max_chroma", "black_below_l", "white_above_l"):
        check_number(f"achromatic.{key}", out[key], 0.0, 200.0 if key == "max_chroma" else 100.0)
    for key in ("black", "gray", "white"):
        if not isinstance(out[key], str) or not out[key].strip():
            raise _fail(f"achromatic.{key}", "a colour name", out[key])
    return out


def _check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def _check_distance(key: str, value: Any) -> str:
    if value not in DISTANCES:
        raise _fail(key, " or ".join(DISTANCES), value)
    return value


#: Field -> check (key, value) -> normalised value; crop and achromatic are checked apart.
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "k": lambda key, v: check_int(key, v, 1),
    "top": lambda key, v: check_int(key, v, 1),
    "size": lambda key, v: check_int(key, v, 8),
    "distance": _check_distance,
    "seed": lambda key, v: check_int(key, v, -(2**31), 2**31 - 1),  # OpenCV's C int
    "max_iter": lambda key, v: check_int(key, v, 1),
    "max_pixels": lambda key, v: check_int(key, v, 1),
    "min_alpha": lambda key, v: check_int(key, v, 0, 255),
    "min_share": lambda key, v: check_number(key, v, 0.0, 1.0, high_open=True),
    "reduced_decode": _check_bool,
}


@dataclasses.dataclass(frozen=True)
class ColorSettings:
    """What ``mltk colors`` does to each image (see configs/colors.yaml); checked when made."""

    k: int = 5
    top: int = 4
    size: int = 150
    crop: tuple[float, float, float, float] = (0.2, 0.2, 0.8, 0.8)
    distance: str = "ciede2000"
    seed: int = 0
    max_iter: int = 20
    max_pixels: int = dataclasses.field(default_factory=lambda: default_max_pixels())
    min_alpha: int = 128
    min_share: float = 0.05
    reduced_decode: bool = True
    achromatic: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_ACHROMATIC))
    palette: Palette | None = None

    def __post_init__(self) -> None:
        for key, check in _CHECKS.items():
            object.__setattr__(self, key, check(key, getattr(self, key)))
        object.__setattr__(self, "crop", check_crop(self.crop, self.size))
        object.__setattr__(self, "achromatic", check_achromatic(self.achromatic))
        if self.palette is not None and not isinstance(self.palette, Palette):
            raise _fail("palette", "a Palette", self.palette)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], palette_file: str | os.PathLike | None = None,
                    origins: Mapping[str, str] | None = None) -> ColorSettings:
        """Settings from a resolved config dict (see configs/colors.yaml).

        ``origins`` (key -> where its value came from, as :func:`mltk._config.resolve_with_origins`
        records) puts that place in front of an error: ``MLTK_COLORS_CROP: crop must be ...``.
        """
        origins = origins or {}
        fields = {f.name for f in dataclasses.fields(cls)} - {"palette"}
        kwargs = {k: v for k, v in cfg.items() if k in fields and v is not None}
        try:
            return cls(palette=_palette(cfg, palette_file, origins.get("palette")), **kwargs)
        except SettingError as exc:
            raise exc.at(origins.get(exc.key)) from None


def _palette(cfg: Mapping[str, Any], palette_file: str | os.PathLike | None,
             origin: str | None) -> Palette:
    if palette_file is not None:
        return load_palette(palette_file)
    value = cfg.get("palette")
    if value is None:
        return default_palette()
    if not isinstance(value, Mapping):
        raise _fail("palette", "a mapping of name -> list of shades (--palette FILE reads a "
                    "file)", value)
    return Palette.from_mapping(value, source=origin or "config")
