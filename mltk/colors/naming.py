"""How well mltk's colour names agree with how people name colours: the XKCD colour survey, and
the ISCC-NBS expert names (:mod:`mltk.colors.iscc_nbs`).

The survey's ~950 names (crowd-sourced by Randall Munroe in 2010, shipped by matplotlib as
``matplotlib.colors.XKCD_COLORS``) mostly end in a base term: "sky blue", "dusty pink", "forest
green". :data:`BASE_TERMS` maps those last words onto mltk's vocabulary; a survey colour whose
last word is not in it ("lime", "mauve", "burgundy") is left out. Each kept colour is named as a
single-colour image would be (:class:`~mltk.colors.core.ColorNamer` on its Lab value) and agrees
when that name is its base term.

The colours of each source are split into two fixed halves by a hash of their name
(:func:`half_of`): the palette and the achromatic rule in ``configs/colors.yaml`` were calibrated
on the ``calibration`` halves only, so the ``held-out`` halves measure how well the calibration
carries to colours it never saw. :func:`agreement_report` gives both figures for both sources.

Neighbouring terms: a survey name often carries a second colour word ("yellowish brown",
"grey blue", "purply pink"); mltk's name agrees *with neighbours accepted* when it is the base term
or one of those words (:data:`MODIFIER_TERMS`). mltk splits blue into blue and navy (a dark blue),
so wherever blue is accepted navy is too, and the other way round (:func:`accepted_terms`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from mltk.colors.core import ColorNamer, rgb_to_lab
from mltk.colors.iscc_nbs import (
    BEIGE_ALWAYS,
    BEIGE_WHEN_LIGHT,
    BEIGE_WHEN_WEAK,
    CENTROIDS,
    GRAYISH,
    HUE_MODIFIERS,
    HUE_TERMS,
    TONES,
)
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
#: Colour words before the base term -> the neighbouring mltk name they make acceptable: the base
#: terms themselves and their "-ish", "-y" and "-ey" forms ("greyish", "purply", "orangey").
MODIFIER_TERMS: Mapping[str, str] = {
    **BASE_TERMS,
    **{f"{stem}{end}": term for stem, term in [
        ("redd", "red"), ("pink", "pink"), ("orang", "orange"), ("orange", "orange"),
        ("yellow", "yellow"), ("brown", "brown"), ("green", "green"), ("blu", "blue"),
        ("blue", "blue"), ("purpl", "purple"), ("purple", "purple"), ("grey", "gray"),
        ("gray", "gray"), ("black", "black"), ("whit", "white"), ("teal", "blue"),
        ("aqua", "blue"), ("turquois", "blue")]
       for end in ("ish", "y", "ey")},
}
HALVES = ("calibration", "held-out")
SOURCES = ("xkcd", "iscc-nbs")


@dataclasses.dataclass(frozen=True)
class SurveyColor:
    name: str  # the survey's name, without matplotlib's "xkcd:" prefix
    hex: str
    term: str  # the base term, as an mltk name
    half: str  # "calibration" or "held-out"
    neighbours: tuple[str, ...] = ()  # other mltk names accepted as neighbouring terms
    source: str = "xkcd"

    @property
    def accepted(self) -> frozenset[str]:
        """The base term and its neighbours."""
        return frozenset((self.term, *self.neighbours))


def base_term(name: str) -> str | None:
    """The mltk name for a survey name's base term, or None when it has none we map.

    The base term is the last word, after dropping a trailing "with ..." clause ("blue with a
    hint of purple" is blue); :data:`COMPOUND_TERMS` are matched first.
    """
    words = name.lower().split(" with ")[0].split()
    if not words:
        return None
    return COMPOUND_TERMS.get(" ".join(words[-2:])) or BASE_TERMS.get(words[-1])


def neighbour_terms(name: str) -> tuple[str, ...]:
    """The neighbouring mltk names of a survey name: its colour words before the base term, and
    navy or blue (:func:`accepted_terms`); the base term itself is not among them."""
    words = re.split(r"[\s/-]+", name.lower().split(" with ")[0].strip())
    term = base_term(name)
    if term is None:
        return ()
    # "dark navy blue": the words of a compound base term are the term, not a neighbour.
    body = words[:-2] if COMPOUND_TERMS.get(" ".join(words[-2:])) else words[:-1]
    return accepted_terms(term, {MODIFIER_TERMS[w] for w in body if w in MODIFIER_TERMS})


def accepted_terms(term: str, neighbours: Iterable[str]) -> tuple[str, ...]:
    """``neighbours`` (sorted, without ``term``), plus navy where blue is accepted and blue where
    navy is: mltk's vocabulary splits blue in two, and either half is a fair name for the other."""
    out = set(neighbours) | {term}
    if out & {"blue", "navy"}:
        out |= {"blue", "navy"}
    return tuple(sorted(out - {term}))


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
            out.append(SurveyColor(name, hex_.lower(), term, half_of(name),
                                   neighbour_terms(name)))
    return out


def reference_colors(source: str, half: str | None = None) -> list[SurveyColor]:
    """The colours of one naming source, ``"xkcd"`` or ``"iscc-nbs"`` (one half, if given)."""
    if source == "xkcd":
        return survey_colors(half)
    if source == "iscc-nbs":
        return iscc_nbs_colors(half)
    raise InputError(f"unknown colour-name source {source!r}: expected one of "
                     f"{', '.join(SOURCES)}")


def expert_term(name: str) -> tuple[str, tuple[str, ...]] | None:
    """(base term, neighbouring terms) of an ISCC-NBS name as mltk names; None when its hue is
    not in mltk's vocabulary (olive)."""
    words = name.lower().split()
    term = HUE_TERMS.get(words[-1]) if words else None
    if term is None:
        return None
    tones = {w for w in words if w in TONES}
    hue = " ".join(w for w in words if w not in TONES)
    neighbours = {HUE_MODIFIERS[w] for w in hue.split()[:-1] if w in HUE_MODIFIERS}
    if words[-1] == "violet":
        neighbours.add("blue")
    if tones & GRAYISH:
        neighbours.add("gray")
    if (hue in BEIGE_ALWAYS or (hue in BEIGE_WHEN_WEAK and tones & GRAYISH)
            or (hue in BEIGE_WHEN_LIGHT and tones == {"light"})):
        neighbours.add("beige")
    return term, accepted_terms(term, neighbours)


def iscc_nbs_colors(half: str | None = None) -> list[SurveyColor]:
    """The ISCC-NBS centroids that have an mltk base term (one half of them, if ``half`` is
    given), split like the XKCD survey by :func:`~mltk.colors.naming.half_of` of their name."""
    out = []
    for name, hex_ in CENTROIDS:
        mapped = expert_term(name)
        if mapped is not None and (half is None or half_of(name) == half):
            out.append(SurveyColor(name, hex_, mapped[0], half_of(name), mapped[1], "iscc-nbs"))
    return out


def hex_to_lab(hexes: Sequence[str]):
    """CIELAB of ``"#rrggbb"`` strings, as an (n, 3) array."""
    import numpy as np

    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in hexes], dtype=np.float64)
    return rgb_to_lab(rgb.reshape(-1, 3))


def names_for(colors: Sequence[SurveyColor], namer: ColorNamer | None = None) -> list[str]:
    """mltk's name for each survey colour."""
    return (namer or ColorNamer()).name(hex_to_lab([c.hex for c in colors]))


def agreement(colors: Sequence[SurveyColor], namer: ColorNamer | None = None,
              neighbours: bool = False) -> float:
    """Fraction of ``colors`` that mltk names by their base term (or, with ``neighbours``, by
    their base term or a neighbouring term)."""
    if not colors:
        raise InputError("no survey colours to measure")
    names = names_for(colors, namer)
    agree = [n in c.accepted if neighbours else n == c.term
             for n, c in zip(names, colors, strict=True)]
    return sum(agree) / len(colors)


def agreement_by_half(namer: ColorNamer | None = None,
                      colors: Iterable[SurveyColor] | None = None,
                      neighbours: bool = False) -> dict[str, float]:
    """:func:`agreement` on each half of the survey: ``{"calibration": .., "held-out": ..}``."""
    colors = list(survey_colors() if colors is None else colors)
    return {h: agreement([c for c in colors if c.half == h], namer, neighbours) for h in HALVES}


def agreement_report(namer: ColorNamer | None = None) -> list[dict[str, object]]:
    """One row per source and half: ``source, half, colors, exact, with_neighbours`` (counts of
    colours named by their base term, and by it or a neighbouring term)."""
    namer = namer or ColorNamer()
    rows: list[dict[str, object]] = []
    for source in SOURCES:
        colors = reference_colors(source)
        names = names_for(colors, namer)
        for half in HALVES:
            pairs = [(n, c) for n, c in zip(names, colors, strict=True) if c.half == half]
            rows.append({"source": source, "half": half, "colors": len(pairs),
                         "exact": sum(n == c.term for n, c in pairs),
                         "with_neighbours": sum(n in c.accepted for n, c in pairs)})
    return rows
