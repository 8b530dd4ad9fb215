"""The typed settings of `mltk colors`, checked once; errors say where a bad value came from.

:class:`ColorSettings` checks every field's type and range when it is made; a bad value raises
:class:`SettingError`, which knows the setting's key. :meth:`ColorSettings.from_config` takes the
origins that :func:`mltk._config.resolve_with_origins` records, so the one-line error names the
environment variable (``MLTK_COLORS_CROP: ...``) or the config file the value came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from mltk._imaging import default_max_pixels
from mltk._settings import (  # noqa: F401 (SettingError and check_int are re-exported)
    SettingError,
    Settings,
    boolean,
    check_int,
    check_number,
    integer,
    setting,
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


def _check_distance(key: str, value: Any) -> str:
    if value not in DISTANCES:
        raise _fail(key, " or ".join(DISTANCES), value)
    return value


def _check_palette(key: str, value: Any) -> Palette | None:
    if value is not None and not isinstance(value, Palette):
        raise _fail(key, "a Palette", value)
    return value


@dataclasses.dataclass(frozen=True)
class ColorSettings(Settings):
    """What ``mltk colors`` does to each image (see configs/colors.yaml); checked when made."""

    SECTION: ClassVar[str] = "colors"

    k: int = setting(5, integer(1), "k-means clusters per image")
    top: int = setting(4, integer(1), "names reported per image")
    size: int = setting(150, integer(8), "working size: the image is resized to size x size")
    crop: tuple[float, float, float, float] = setting(
        (0.2, 0.2, 0.8, 0.8), None, "x0, y0, x1, y1 as fractions (checked against size)")
    distance: str = setting("ciede2000", _check_distance, "ciede2000 | cie76")
    seed: int = setting(0, integer(-(2**31), 2**31 - 1), "k-means seed (OpenCV's C int)")
    max_iter: int = setting(20, integer(1), "k-means iterations")
    max_pixels: int = setting(None, integer(1), "images larger than this are refused",
                              factory=default_max_pixels)
    min_alpha: int = setting(128, integer(0, 255), "pixels more transparent than this are "
                             "left out")
    min_share: float = setting(0.05, lambda key, v: check_number(key, v, 0.0, 1.0, True),
                               "names with a smaller pixel share are left out")
    reduced_decode: bool = setting(True, boolean(), "decode JPEGs at 1/2, 1/4 or 1/8 size")
    achromatic: Mapping[str, Any] = setting(
        None, lambda key, v: check_achromatic(v), "the black / gray / white rule",
        factory=lambda: dict(DEFAULT_ACHROMATIC))
    palette: Palette | None = setting(None, _check_palette, "the colour names and shades")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "crop", check_crop(self.crop, self.size))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], palette_file: str | os.PathLike | None = None,
                    origins: Mapping[str, str] | None = None) -> ColorSettings:
        """Settings from a resolved config dict (see configs/colors.yaml).

        ``origins`` (key -> where its value came from, as :func:`mltk._config.resolve_with_origins`
        records) puts that place in front of an error: ``MLTK_COLORS_CROP: crop must be ...``.
        """
        origins = origins or {}
        fields = set(cls.field_names()) - {"palette"}
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
