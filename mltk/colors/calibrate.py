"""Calibrating a palette on human colour names: a greedy search over reference shades.

:func:`calibrate` starts from a palette and repeatedly makes the one move that names the most
survey colours by their base term: adding a survey colour as a reference shade of its base term,
or removing a shade from the palette. A move that would change the name of any ``keep`` colour
(colours the palette must go on naming as it does, such as the product generator's shades) is
not made; neither is removing a name's last shade. It stops when no move gains. The default
palette in ``configs/colors.yaml`` was calibrated this way on the survey's calibration half (see
:mod:`mltk.colors.naming`); the held-out half measures the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mltk.colors.core import ColorNamer, rgb_to_hex
from mltk.colors.naming import SurveyColor, hex_to_lab
from mltk.colors.palette import Palette


@dataclasses.dataclass(frozen=True)
class Move:
    action: str  # "add" or "remove"
    name: str  # the palette name the shade belongs to
    hex: str
    survey_name: str | None  # the survey colour added, for "add"
    correct: int  # calibration colours named right after this move


def calibrate(palette: Palette, colors: Sequence[SurveyColor], keep_lab: Any = None,
              achromatic: Mapping[str, Any] | None = None, distance: str = "ciede2000",
              max_moves: int = 200) -> list[Move]:
    """The moves, in order, that take ``palette`` to its calibrated form on ``colors``."""
    search = _Search(palette, colors, keep_lab, achromatic, distance)
    moves: list[Move] = []
    while len(moves) < max_moves:
        move = search.best_move()
        if move is None:
            break
        moves.append(move)
    return moves


class _Search:
    """The candidate shades (the palette's, then the survey colours'), which are in use, and
    the distances from the calibration and keep colours to each, computed once."""

    def __init__(self, palette: Palette, colors: Sequence[SurveyColor], keep_lab: Any,
                 achromatic: Mapping[str, Any] | None, distance: str) -> None:
        import numpy as np

        names = list(palette.names)
        self.survey = [c for c in colors if c.term in names]
        lab = hex_to_lab([c.hex for c in self.survey])
        self.n_palette = len(palette.shade_lab)
        shades = Palette(palette.names, np.concatenate([palette.shade_lab, lab]),
                         np.concatenate([palette.shade_owner,
                                         [names.index(c.term) for c in self.survey]]))
        namer = ColorNamer(shades, distance, achromatic)
        self.shades, self.names = shades, names
        self.used = np.arange(len(shades.shade_lab)) < self.n_palette
        keep_lab = np.zeros((0, 3)) if keep_lab is None else np.asarray(keep_lab, float)
        self.dist = {"target": namer.distances(lab), "keep": namer.distances(keep_lab)}
        self.fixed = {"target": self._fixed(namer, lab), "keep": self._fixed(namer, keep_lab)}
        self.target = np.array([names.index(c.term) for c in self.survey])
        self.keep_names = self._names("keep", self.used)

    def _fixed(self, namer: ColorNamer, lab: Any) -> Any:
        """Index of the name the achromatic rule gives each colour, -1 where it gives none."""
        import numpy as np

        return np.array([self.names.index(n) if n else -1 for n in namer.achromatic_names(lab)],
                        dtype=np.int64)

    def _names(self, which: str, used: Any) -> Any:
        import numpy as np

        idx = np.flatnonzero(used)
        nearest = self.shades.shade_owner[idx[self.dist[which][:, idx].argmin(1)]]
        return np.where(self.fixed[which] >= 0, self.fixed[which], nearest)

    def _allowed(self, j: int) -> bool:
        if j >= self.n_palette:
            return not self.used[j]
        owner = self.shades.shade_owner
        return not self.used[j] or (self.used & (owner == owner[j])).sum() > 1

    def best_move(self) -> Move | None:
        correct = int((self._names("target", self.used) == self.target).sum())
        best, best_j = correct, None
        for j in range(len(self.used)):
            if not self._allowed(j):
                continue
            used = self.used.copy()
            used[j] = not used[j]
            score = int((self._names("target", used) == self.target).sum())
            if score > best and (self._names("keep", used) == self.keep_names).all():
                best, best_j = score, j
        return None if best_j is None else self._make(best_j, best)

    def _make(self, j: int, correct: int) -> Move:
        from skimage.color import lab2rgb

        action = "remove" if self.used[j] else "add"
        self.used[j] = not self.used[j]
        rgb = lab2rgb(self.shades.shade_lab[j].reshape(1, 1, 3)).reshape(3) * 255
        survey = self.survey[j - self.n_palette] if j >= self.n_palette else None
        return Move(action, self.names[self.shades.shade_owner[j]],
                    survey.hex if survey else rgb_to_hex(rgb),
                    survey.name if survey else None, correct)


def product_shades_lab() -> Any:
    """Lab of the product generator's shades, as shot (x1) and in shadow and light (x0.85, x1.1):
    the colours that :func:`calibrate` must go on naming as the palette did."""
    import numpy as np

    from mltk.colors.core import rgb_to_lab
    from mltk.datasets.products import BASE_SHADES

    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)]
                    for shades in BASE_SHADES.values() for h in shades], dtype=np.float64)
    return rgb_to_lab(np.concatenate([np.clip(rgb * f, 0, 255) for f in (0.85, 1.0, 1.1)]))
