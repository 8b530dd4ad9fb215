"""How well mltk's colour names agree with how people name colours: the XKCD colour survey.

The survey's ~950 names (crowd-sourced by Randall Munroe in 2010, shipped by matplotlib as
``matplotlib.colors.XKCD_COLORS``) mostly end in a base term: "sky blue", "dusty pink", "forest
green". :data:`BASE_TERMS` maps those last words onto mltk's vocabulary; a survey colour whose
last word is not in it ("lime", "mauve", "burgundy") is left out. Each kept colour is named as a
single-colour image would be (:class:`~mltk.colors.core.ColorNamer` on its Lab value) and agrees
when that name is its base term.

The colours are split into two fixed halves by a hash of their name: the palette and the
achromatic rule in ``configs/colors.yaml`` were calibrated on the ``calibration`` half only, so the
``held-out`` half measures how well the calibration carries to colours it never saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence

from mltk.colors.core import ColorNamer, rgb_to_lab
from mltk.errors import InputError

#: Last word of a survey name -> mltk name. The vocabulary's own words, the spelling "grey", and
#: the blue-green words (which mltk's vocabulary has no name for) -> blue, where the palette has
#: always put cyan and turquoise.
BASE_TERMS: Mapping[str, str] = {
    "black": "black", "white": "white", "gray": "gray", "grey": "gray", "red": "red",
    "pink": "pink", "orange": "orange", "yellow": "yellow", "beige": "beige", "brown": "brown",
    "green": "green", "blue": "blue", "navy": "navy", "purple": "purple",
    "aqua": "blue", "cyan": "blue", "teal": "blue", "turquoise": "blue",
}
#: Two-word base terms, checked before the last word: "dark navy blue" is navy, not blue.
COMPOUND_TERMS: Mapping[str, str] = {"navy blue": "navy"}
HALVES = ("calibration", "held-out")


@dataclasses.dataclass(frozen=True)
class SurveyColor:
    name: str  # the survey's name, without matplotlib's "xkcd:" prefix
    hex: str
    term: str  # the base term, as an mltk name
    half: str  # "calibration" or "held-out"


def base_term(name: str) -> str | None:
    """The mltk name for a survey name's base term, or None when it has none we map.

    The base term is the last word, after dropping a trailing "with ..." clause ("blue with a
    hint of purple" is blue); :data:`COMPOUND_TERMS` are matched first.
    """
    words = name.lower().split(" with ")[0].split()
    if not words:
        return None
    return COMPOUND_TERMS.get(" ".join(words[-2:])) or BASE_TERMS.get(words[-1])


def half_of(name: str) -> str:
    """The fixed half of a survey name: the parity of the first byte of its SHA-256."""
    return HALVES[hashlib.sha256(name.encode("utf-8")).digest()[0] % 2]


def survey_colors(half: str | None = None) -> list[SurveyColor]:
    """The XKCD survey colours that have a base term (one half of them, if ``half`` is given)."""
    from matplotlib.colors import XKCD_COLORS

    out = []
    for key, hex_ in XKCD_COLORS.items():
        name = key.removeprefix("xkcd:")
        term = base_term(name)
        if term is not None and (half is None or half_of(name) == half):
            out.append(SurveyColor(name, hex_.lower(), term, half_of(name)))
    return out


def hex_to_lab(hexes: Sequence[str]):
    """CIELAB of ``"#rrggbb"`` strings, as an (n, 3) array."""
    import numpy as np

    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in hexes], dtype=np.float64)
    return rgb_to_lab(rgb.reshape(-1, 3))


def names_for(colors: Sequence[SurveyColor], namer: ColorNamer | None = None) -> list[str]:
    """mltk's name for each survey colour."""
    return (namer or ColorNamer()).name(hex_to_lab([c.hex for c in colors]))


def agreement(colors: Sequence[SurveyColor], namer: ColorNamer | None = None) -> float:
    """Fraction of ``colors`` that mltk names by their base term."""
    if not colors:
        raise InputError("no survey colours to measure")
    names = names_for(colors, namer)
    return sum(n == c.term for n, c in zip(names, colors, strict=True)) / len(colors)


def agreement_by_half(namer: ColorNamer | None = None,
                      colors: Iterable[SurveyColor] | None = None) -> dict[str, float]:
    """:func:`agreement` on each half of the survey: ``{"calibration": .., "held-out": ..}``."""
    colors = list(survey_colors() if colors is None else colors)
    return {h: agreement([c for c in colors if c.half == h], namer) for h in HALVES}
