"""Calibrating a palette on human colour names: a greedy search over reference shades.

:func:`calibrate` starts from a palette and repeatedly makes the one move that scores best:
adding a survey colour as a reference shade of its base term, or removing a shade from the
palette. A colour scores 2 when it is named by its base term, 1 by a neighbouring term (see
:mod:`mltk.colors.naming`). A move that would change the name of any ``keep`` colour (colours the
palette must go on naming as it does, such as the product generator's shades) is not made, unless
the new name is the one that colour may become (``keep_may_become``: the product's own colour,
for the colours of generated product photos); neither is removing a name's last shade. It stops
when no move gains. The default palette in ``configs/colors.yaml`` was calibrated this way on the
calibration halves of the XKCD survey and of the ISCC-NBS centroids (:func:`tuning_colors`),
keeping :func:`keep_colors`; their held-out halves measure the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mltk.colors.core import ColorNamer, rgb_to_hex
from mltk.colors.naming import SOURCES, SurveyColor, hex_to_lab, reference_colors
from mltk.colors.palette import Palette


@dataclasses.dataclass(frozen=True)
class Move:
    action: str  # "add" or "remove"
    name: str  # the palette name the shade belongs to
    hex: str
    survey_name: str | None  # the survey colour added, for "add"
    correct: int  # calibration colours named by an accepted term (base or neighbour) after it
    exact: int = 0  # calibration colours named by their base term after it


def calibrate(palette: Palette, colors: Sequence[SurveyColor], keep_lab: Any = None,
              achromatic: Mapping[str, Any] | None = None, distance: str = "ciede2000",
              max_moves: int = 200,
              keep_may_become: Sequence[str | None] | None = None) -> list[Move]:
    """The moves, in order, that take ``palette`` to its calibrated form on ``colors``."""
    search = _Search(palette, colors, keep_lab, achromatic, distance, keep_may_become)
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
                 achromatic: Mapping[str, Any] | None, distance: str,
                 keep_may_become: Sequence[str | None] | None = None) -> None:
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
        # accepted[i, n]: name n is colour i's base term or a neighbouring term
        self.accepted = np.array([[n in c.accepted for n in names] for c in self.survey],
                                 dtype=bool).reshape(len(self.survey), len(names))
        self.keep_names = self._names("keep", self.used)
        may = keep_may_become or [None] * len(keep_lab)
        self.keep_may_become = np.array([names.index(n) if n in names else -1 for n in may],
                                        dtype=np.int64)

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

    def _counts(self, used: Any) -> tuple[int, int]:
        """(accepted, exact): colours named by an accepted term, and by their base term."""
        import numpy as np

        names = self._names("target", used)
        return (int(self.accepted[np.arange(len(names)), names].sum()),
                int((names == self.target).sum()))

    def _keeps(self, used: Any) -> bool:
        """Whether every keep colour keeps its name, or takes the one it may become."""
        keep = self._names("keep", used)
        return bool(((keep == self.keep_names) | (keep == self.keep_may_become)).all())

    def best_move(self) -> Move | None:
        best, best_j = sum(self._counts(self.used)), None
        for j in range(len(self.used)):
            if not self._allowed(j):
                continue
            used = self.used.copy()
            used[j] = not used[j]
            score = sum(self._counts(used))
            if score > best and self._keeps(used):
                best, best_j = score, j
        return None if best_j is None else self._make(best_j)

    def _make(self, j: int) -> Move:
        from skimage.color import lab2rgb

        action = "remove" if self.used[j] else "add"
        self.used[j] = not self.used[j]
        correct, exact = self._counts(self.used)
        rgb = lab2rgb(self.shades.shade_lab[j].reshape(1, 1, 3)).reshape(3) * 255
        survey = self.survey[j - self.n_palette] if j >= self.n_palette else None
        return Move(action, self.names[self.shades.shade_owner[j]],
                    survey.hex if survey else rgb_to_hex(rgb),
                    survey.name if survey else None, correct, exact)


def product_shades_lab() -> Any:
    """Lab of the product generator's shades, as shot (x1) and in shadow and light (x0.85, x1.1):
    colours that :func:`calibrate` must go on naming as the palette did."""
    import numpy as np

    from mltk.colors.core import rgb_to_lab
    from mltk.datasets.products import BASE_SHADES

    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)]
                    for shades in BASE_SHADES.values() for h in shades], dtype=np.float64)
    return rgb_to_lab(np.concatenate([np.clip(rgb * f, 0, 255) for f in (0.85, 1.0, 1.1)]))


#: scikit-image's bundled photos, which the colour tests name (tests/test_colors_files.py).
SAMPLE_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def sample_photo_centres_lab() -> Any:
    """Lab of the colour centres that ``mltk colors`` finds, at its default settings, in
    :data:`SAMPLE_PHOTOS`: real photos whose colours :func:`calibrate` must go on naming too."""
    import cv2
    import numpy as np
    from skimage import data

    from mltk.colors.core import ColorExtractor
    from mltk.colors.pipeline import ColorSettings, working_image_from_bytes

    settings = ColorSettings.from_config({})
    out = []
    for name in SAMPLE_PHOTOS:
        png = cv2.imencode(".png", cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))[1]
        rgb, mask, _, _ = working_image_from_bytes(png.tobytes(), settings)
        ext = ColorExtractor(settings.k, settings.seed, settings.max_iter).fit(rgb, mask)
        out.append(ext.lab_)
    return np.concatenate(out)


def product_photo_centres(n: int = 65, seed: int = 1) -> tuple[Any, list[str]]:
    """Lab of the colour centres that ``mltk colors`` finds in ``n`` generated product photos
    (JPEG, seed 1, not the tests' seed 0), the generator's shades as shading, texture, blur,
    noise and compression leave them; and for each, the colour of its product."""
    import cv2
    import numpy as np

    from mltk.colors.core import ColorExtractor
    from mltk.colors.pipeline import ColorSettings, working_image_from_bytes
    from mltk.datasets.products import BASE_SHADES, render_product

    settings = ColorSettings.from_config({})
    rng = np.random.default_rng(seed)
    names = sorted(BASE_SHADES)
    labs, products = [], []
    for i in range(n):
        product = names[i % len(names)]
        rgb = render_product(rng, product, None, 320, 320)
        jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        work, mask, _, _ = working_image_from_bytes(jpg.tobytes(), settings)
        lab = ColorExtractor(settings.k, settings.seed, settings.max_iter).fit(work, mask).lab_
        labs.append(lab)
        products += [product] * len(lab)
    return np.concatenate(labs), products


def keep_colors() -> tuple[Any, list[str | None]]:
    """The colours the default palette was calibrated not to rename, and the name each may take
    instead: :func:`product_shades_lab` and :func:`sample_photo_centres_lab` (none), and
    :func:`product_photo_centres` (its product's colour: the edge of an orange product, named
    beige or brown, may become orange)."""
    import numpy as np

    shades, photos = product_shades_lab(), sample_photo_centres_lab()
    centres, products = product_photo_centres()
    lab = np.concatenate([shades, centres, photos])
    return lab, [None] * len(shades) + list(products) + [None] * len(photos)


def tuning_colors() -> list[SurveyColor]:
    """The colours the default palette is calibrated on: the calibration half of each source."""
    return [c for source in SOURCES for c in reference_colors(source, "calibration")]
