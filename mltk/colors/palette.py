"""Colour palettes: each base name owns many reference shades, stored in CIELAB.

A palette is a mapping ``name -> [shade, ...]`` where a shade is ``"#rrggbb"`` (or ``"#rgb"``)
or an ``[L, a, b]`` list. Loading validates every entry and names the one at fault.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from mltk.errors import ConfigError

_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


@dataclasses.dataclass(frozen=True, eq=False)
class Palette:
    """Reference shades in CIELAB (D65), each owned by one base name."""

    names: tuple[str, ...]
    shade_lab: Any  # float64 (S, 3)
    shade_owner: Any  # int (S,), index into names

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str = "palette") -> Palette:
        import numpy as np
        from skimage.color import rgb2lab

        if not isinstance(mapping, Mapping) or not mapping:
            raise ConfigError(f"{source}: a palette must be a non-empty mapping of name -> "
                              "list of shades")
        names, labs, owners = [], [], []
        for name, shades in mapping.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{source}: palette name {name!r} must be a non-empty string")
            if isinstance(shades, (str, bytes)) or not isinstance(shades, (list, tuple)):
                shades = [shades]
            if not shades:
                raise ConfigError(f"{source}: palette entry {name!r} has no shades")
            idx = len(names)
            names.append(name)
            for i, shade in enumerate(shades, 1):
                labs.append(_parse_shade(shade, f"{source}: palette entry {name!r} shade {i}"))
                owners.append(idx)
        # Hex shades are converted to Lab in one vectorised call.
        lab = np.zeros((len(labs), 3))
        is_rgb = np.array([kind == "rgb" for kind, _ in labs])
        values = np.array([v for _, v in labs], dtype=np.float64)
        if is_rgb.any():
            lab[is_rgb] = rgb2lab((values[is_rgb] / 255.0).reshape(-1, 1, 3)).reshape(-1, 3)
        lab[~is_rgb] = values[~is_rgb]
        return cls(tuple(names), lab, np.array(owners, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.names)


def _parse_shade(shade: Any, where: str) -> tuple[str, tuple[float, float, float]]:
    if isinstance(shade, str):
        m = _HEX.match(shade.strip())
        if not m:
            raise ConfigError(f"{where}: {shade!r} is not a hex colour (#rrggbb) or [L, a, b]")
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return ("rgb", (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
    if isinstance(shade, (list, tuple)) and len(shade) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in shade):
        L, a, b = (float(v) for v in shade)
        if not (0.0 <= L <= 100.0 and -128.0 <= a <= 128.0 and -128.0 <= b <= 128.0):
            raise ConfigError(f"{where}: Lab value {list(shade)} is out of range "
                              "(L 0..100, a and b -128..128)")
        return ("lab", (L, a, b))
    raise ConfigError(f"{where}: {shade!r} is not a hex colour (#rrggbb) or [L, a, b]")


def palette_mapping_from_yaml(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """A palette file may hold ``palette: {...}`` (like configs/colors.yaml) or the mapping."""
    if isinstance(data.get("palette"), Mapping):
        return data["palette"]
    return data


def load_palette(path: str | os.PathLike[str]) -> Palette:
    """Load a palette YAML file (see :func:`palette_mapping_from_yaml`)."""
    from mltk._config import load_yaml

    data = load_yaml(path)
    return Palette.from_mapping(palette_mapping_from_yaml(data, str(path)), source=str(path))


def default_palette() -> Palette:
    from mltk._config import load_default

    return Palette.from_mapping(load_default("colors")["palette"], source="configs/colors.yaml")
