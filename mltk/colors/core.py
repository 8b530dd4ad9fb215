"""Dominant colours of one image, without files: k-means on pixels, then names for centres.

* :class:`ColorExtractor` clusters RGB pixels with OpenCV's k-means (k-means++ seeding, seeded
  so the same pixels and seed give the same centres in any process).
* :class:`ColorNamer` names CIELAB centres by their nearest reference shade (CIEDE2000 or
  CIE76), with low-chroma centres named black/gray/white by lightness.
* :func:`named_colors` merges clusters that get the same name (their shares add up).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from mltk.colors.palette import Palette, default_palette
from mltk.errors import InputError, MltkError

DISTANCES = ("ciede2000", "cie76")
DEFAULT_ACHROMATIC = {"max_chroma": 7.0, "black_below_l": 22.0, "white_above_l": 90.0,
                      "black": "black", "gray": "gray", "white": "white"}


# scikit-image's sRGB -> XYZ matrix and D65 (2 degree) white, for rgb2lab's formulas below.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                 (0.212671, 0.715160, 0.072169),
                 (0.019334, 0.119193, 0.950227))
_D65_WHITE = (0.95047, 1.0, 1.08883)


@functools.cache
def _lab_constants() -> tuple[Any, Any]:
    import numpy as np

    return np.array(_XYZ_FROM_RGB).T, np.array(_D65_WHITE)


def rgb_to_lab(rgb: Any) -> Any:
    """sRGB in 0..255 (any shape ending in 3) -> CIELAB (D65).

    The same operations as scikit-image's ``rgb2lab``, in the same order, so the same bits
    (a test holds it to that), without its per-call checks and copies: a few centres convert
    in microseconds.
    """
    import numpy as np

    rgb = np.asarray(rgb, dtype=np.float64)
    arr = (rgb / 255.0).reshape(-1, 1, 3)
    # Each branch only where it applies (ufunc ``where=``), as scikit-image's masked updates.
    lin = arr / 12.92
    np.power((arr + 0.055) / 1.055, 2.4, out=lin, where=arr > 0.04045)
    to_xyz, white = _lab_constants()
    xyz = (lin @ to_xyz) / white
    f = 7.787 * xyz + 16.0 / 116.0
    np.cbrt(xyz, out=f, where=xyz > 0.008856)
    x, y, z = f[..., 0], f[..., 1], f[..., 2]
    lab = np.empty_like(f)
    np.subtract(116.0 * y, 16.0, out=lab[..., 0])
    np.multiply(500.0, x - y, out=lab[..., 1])
    np.multiply(200.0, y - z, out=lab[..., 2])
    return lab.reshape(rgb.shape)


def ciede2000(lab1: Any, shades: tuple[Any, Any, Any, Any]) -> Any:
    """(n, S) CIEDE2000 distances from the (n, 3) CIELAB colours ``lab1`` to S shades.

    ``shades``: the shades' L, a, b as (1, S) rows and their chroma ``hypot(a, b)``. The same
    operations as scikit-image's ``deltaE_ciede2000`` (kL = kC = kH = 1), in the same order,
    without broadcasting both inputs to (n, S, 3) first.
    """
    import numpy as np

    L1, a1, b1 = (lab1[:, i, None] for i in range(3))
    L2, a2, b2, chroma2 = shades
    Cbar = 0.5 * (np.hypot(a1, b1) + chroma2)
    c7 = Cbar**7
    scale = 1 + 0.5 * (1 - np.sqrt(c7 / (c7 + 25**7)))
    C1, h1 = _polar_2pi(a1 * scale, b1)
    C2, h2 = _polar_2pi(a2 * scale, b2)
    tmp = (0.5 * (L1 + L2) - 50) ** 2
    L_term = (L2 - L1) / (1 + 0.015 * tmp / np.sqrt(20 + tmp))
    Cbar = 0.5 * (C1 + C2)
    C_term = (C2 - C1) / (1 + 0.045 * Cbar)
    h_diff = h2 - h1
    h_sum = h1 + h2
    CC = C1 * C2
    # scikit-image's masked updates, as selections (np.where): the same values, fewer calls.
    grey = CC == 0.0
    dH = np.where(h_diff > np.pi, h_diff - 2 * np.pi,
                  np.where(h_diff < -np.pi, h_diff + 2 * np.pi, h_diff))
    dH_term = 2 * np.sqrt(CC) * np.sin(np.where(grey, 0.0, dH) / 2)
    Hbar = np.where(np.abs(h_diff) > np.pi,
                    np.where(h_sum < 2 * np.pi, h_sum + 2 * np.pi, h_sum - 2 * np.pi), h_sum)
    Hbar = np.where(grey, h_sum * 2, Hbar)
    Hbar *= 0.5
    # T = 1 - 0.17 cos(H - 30) + 0.24 cos(2H) + 0.32 cos(3H + 6) - 0.20 cos(4H - 63), with
    # its four cosines in one call (x + -y and -(a * b) round as x - y and a * b do).
    mult, offset, coef = _hue_terms()
    t = coef * np.cos(Hbar * mult + offset)
    T = 1 + t[0]
    T += t[1]
    T += t[2]
    T += t[3]
    H_term = dH_term / (1 + 0.015 * Cbar * T)
    c7 = Cbar**7
    Rc = 2 * np.sqrt(c7 / (c7 + 25**7))
    dtheta = _RAD_30 * np.exp(-(((np.rad2deg(Hbar) - 275) / 25) ** 2))
    dE2 = L_term**2
    dE2 += C_term**2
    dE2 += H_term**2
    dE2 += -np.sin(2 * dtheta) * Rc * C_term * H_term
    return np.sqrt(np.maximum(dE2, 0))


_RAD_30 = math.radians(30)  # the same bits as np.deg2rad(30)


@functools.cache
def _hue_terms() -> tuple[Any, Any, Any]:
    """The multiples, offsets and weights of the four cosines in CIEDE2000's T."""
    import numpy as np

    def column(values: tuple[float, ...]) -> Any:
        return np.array(values)[:, None, None]

    return (column((1.0, 2.0, 3.0, 4.0)),
            column((-_RAD_30, 0.0, math.radians(6), -math.radians(63))),
            column((-0.17, 0.24, 0.32, -0.20)))


def _polar_2pi(x: Any, y: Any) -> tuple[Any, Any]:
    import numpy as np

    r, t = np.hypot(x, y), np.arctan2(y, x)
    t += np.where(t < 0.0, 2 * np.pi, 0)
    return r, t


def rgb_to_hex(rgb: Any) -> str:
    r, g, b = (int(min(255, max(0, round(float(v))))) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


class ColorExtractor:
    """K-means colour clusters of an image's pixels.

    ``fit(pixels, mask=None)`` takes uint8 RGB pixels, (H, W, 3) or (N, 3), and an optional
    boolean mask of the pixels to use. Learned: ``centers_`` (RGB float, sorted by share),
    ``shares_`` (fractions summing to 1), ``lab_`` (CIELAB of the centres), ``n_pixels_``.
    Images with at most ``k`` distinct colours get those colours exactly. At most ``sample``
    pixels (evenly strided) are clustered; every pixel then counts towards its nearest centre.
    """

    def __init__(self, k: int = 5, seed: int = 0, max_iter: int = 20, epsilon: float = 0.5,
                 sample: int | None = 2048):
        self.k = k
        self.seed = seed
        self.max_iter = max_iter
        self.epsilon = epsilon
        self.sample = sample

    def fit(self, pixels: Any, mask: Any = None) -> ColorExtractor:
        import numpy as np

        if not isinstance(self.k, int) or self.k < 1:
            raise MltkError(f"k must be a positive integer, got {self.k!r}")
        px = np.asarray(pixels)
        if px.ndim < 2 or px.shape[-1] != 3:
            raise InputError(f"expected RGB pixels of shape (..., 3), got {px.shape}")
        px = px.reshape(-1, 3)
        if mask is not None:
            px = px[np.asarray(mask).reshape(-1).astype(bool)]
        if len(px) == 0:
            raise InputError("no pixels to cluster (fully transparent or empty crop)")
        if px.dtype != np.uint8:
            px = np.clip(np.round(px), 0, 255).astype(np.uint8)
        data = px.astype(np.float32)
        # Cluster an evenly strided subsample (deterministic), then give every pixel to its
        # nearest centre and take the centres as the means of all their pixels. Images with
        # fewer distinct colours than k come out exact: duplicate centres end up empty.
        step = -(-len(data) // self.sample) if self.sample else 1
        centers = self._kmeans(np.ascontiguousarray(data[::step]))
        k = len(centers)
        # Nearest centre for every pixel (|c|^2 - 2 p.c, in float32); ties (duplicate centres)
        # go to the first. Scaling by -2 is exact, so updating in place gives the same bits as
        # the plain expression, without two more (n, k) arrays.
        d2 = data @ centers.T
        d2 *= -2.0
        d2 += (centers * centers).sum(1)
        labels = d2.argmin(1)
        self._set_clusters(np.bincount(labels, minlength=k).tolist(),
                           [np.bincount(labels, weights=data[:, c], minlength=k).tolist()
                            for c in range(3)])
        self.lab_ = rgb_to_lab(self.centers_)
        self.n_pixels_ = int(len(px))
        return self

    def _set_clusters(self, counts: list[int], sums: list[list[float]]) -> None:
        """Centres (means of their pixels) and shares from the pixel counts and channel sums.

        A handful of clusters: plain Python floats, which round exactly as NumPy's float64
        would (the sums are whole numbers, so their order does not matter either).
        """
        import numpy as np

        rows = [(r / n, g / n, b / n, n) for n, r, g, b in zip(counts, *sums, strict=True) if n]
        # By share, ties by colour (a stable sort, like lexsort), so the order never depends
        # on the clustering's labels; duplicate centres ended up empty and are gone.
        rows.sort(key=lambda row: (-row[3], row[0], row[1], row[2]))
        total = sum(counts)
        self.centers_ = np.array([row[:3] for row in rows])
        self.shares_ = np.array([row[3] / total for row in rows])

    def _kmeans(self, sample: Any) -> Any:
        """min(k, len(sample)) seeded k-means++ centres of float32 (n, 3) pixels."""
        import cv2

        if len(sample) == 1:  # OpenCV would read one row as three one-dimensional samples
            return sample
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, self.max_iter,
                    self.epsilon)
        cv2.setRNGSeed(int(self.seed))
        return cv2.kmeans(sample, min(self.k, len(sample)), None, criteria, 1,
                          cv2.KMEANS_PP_CENTERS)[2]


class ColorNamer:
    """Names CIELAB colours by the base name owning the nearest reference shade."""

    def __init__(self, palette: Palette | None = None, distance: str = "ciede2000",
                 achromatic: Mapping[str, Any] | None = None):
        if distance not in DISTANCES:
            raise MltkError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        self.palette = palette if palette is not None else default_palette()
        self.distance = distance
        self.achromatic = {**DEFAULT_ACHROMATIC, **(achromatic or {})}

    def distances(self, lab: Any) -> Any:
        """(n, S) distances from each colour to each reference shade."""
        import numpy as np

        lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
        ref = self.palette.shade_lab
        if self.distance == "cie76":
            return np.linalg.norm(lab[:, None, :] - ref[None, :, :], axis=-1)
        return ciede2000(lab, self._shades())

    def _shades(self) -> tuple[Any, Any, Any, Any]:
        """The palette's L, a, b (as (1, S) rows) and chroma, computed once per palette."""
        import numpy as np

        ref = self.palette.shade_lab
        if getattr(self, "_shade_terms", (None,))[0] is not ref:
            L, a, b = (ref[None, :, i] for i in range(3))
            self._shade_terms = (ref, (L, a, b, np.hypot(a, b)))
        return self._shade_terms[1]

    def name(self, lab: Any) -> list[str]:
        """Base name of each CIELAB colour in ``lab`` ((3,) or (n, 3))."""
        import numpy as np

        lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
        names = self.achromatic_names(lab)
        # Fixed names need no distances: only the other colours are measured.
        todo = [i for i, fixed in enumerate(names) if fixed is None]
        if todo:
            nearest = self.palette.shade_owner[self.distances(lab[todo]).argmin(1)].tolist()
            for i, owner in zip(todo, nearest, strict=True):
                names[i] = self.palette.names[owner]
        return names

    def achromatic_names(self, lab: Any) -> list[str | None]:
        """Black, gray or white (by lightness) for colours with chroma under ``max_chroma``;
        None for the others, and where the palette has no such name."""
        import numpy as np

        lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
        ach = self.achromatic
        chroma = np.hypot(lab[:, 1], lab[:, 2]).tolist()
        out: list[str | None] = []
        for L, c in zip(lab[:, 0].tolist(), chroma, strict=True):
            key = "black" if L < ach["black_below_l"] else (
                "white" if L > ach["white_above_l"] else "gray")
            # A custom palette may not have the name.
            ok = c < ach["max_chroma"] and ach[key] in self.palette.names
            out.append(ach[key] if ok else None)
        return out


def named_colors(extractor: ColorExtractor, namer: ColorNamer) -> list[dict[str, Any]]:
    """Merge the extractor's clusters by name: one entry per name, by descending share.

    Each entry: ``name``, ``share`` (summed), ``hex`` and ``lab`` of the share-weighted mean
    RGB of the merged centres.
    """
    import numpy as np

    names = namer.name(extractor.lab_)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    centers, shares = extractor.centers_.tolist(), extractor.shares_.tolist()
    merged = [_weighted_mean([centers[i] for i in idx], [shares[i] for i in idx])
              for idx in groups.values()]
    # A colour that is still its centre keeps the centre's Lab (the conversion is row by row);
    # only colours that moved are converted again.
    lab_rows = extractor.lab_.tolist()
    labs = [lab_rows[idx[0]] if rgb == centers[idx[0]] else None
            for idx, (rgb, _) in zip(groups.values(), merged, strict=True)]
    moved = [i for i, lab in enumerate(labs) if lab is None]
    if moved:
        for i, lab in zip(moved, rgb_to_lab(np.array([merged[i][0] for i in moved])).tolist(),
                          strict=True):
            labs[i] = lab
    out = [{"name": name, "share": share, "hex": rgb_to_hex(rgb),
            "lab": [round(v, 2) for v in lab]}
           for name, (rgb, share), lab in zip(groups, merged, labs, strict=True)]
    out.sort(key=lambda c: (-c["share"], c["name"]))
    return out


def _weighted_mean(rgbs: list[list[float]], weights: list[float]) -> tuple[list[float], float]:
    """(sum(w * rgb) / sum(w), sum(w)) of a few centres, rounded as NumPy rounds
    ``(rgb * w[:, None]).sum(0) / w.sum()``: in order, one term at a time."""
    if len(weights) >= 8:  # NumPy sums 8 or more in pairs: let it
        import numpy as np

        w = np.array(weights)
        return ((np.array(rgbs) * w[:, None]).sum(0) / w.sum()).tolist(), float(w.sum())
    total = weights[0]
    acc = [v * weights[0] for v in rgbs[0]]
    for rgb, w in zip(rgbs[1:], weights[1:], strict=True):
        total += w
        acc = [a + v * w for a, v in zip(acc, rgb, strict=True)]
    return [a / total for a in acc], total
