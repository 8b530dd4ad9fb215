"""Dominant colours of one image, without files: k-means on pixels, then names for centres.

* :class:`ColorExtractor` clusters RGB pixels with OpenCV's k-means (k-means++ seeding, seeded
  so the same pixels and seed give the same centres in any process).
* :class:`ColorNamer` names CIELAB centres by their nearest reference shade (CIEDE2000 or
  CIE76), with low-chroma centres named black/gray/white by lightness.
* :func:`named_colors` merges clusters that get the same name (their shares add up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mltk.colors.palette import Palette, default_palette
from mltk.errors import InputError, MltkError

DISTANCES = ("ciede2000", "cie76")
DEFAULT_ACHROMATIC = {"max_chroma": 7.0, "black_below_l": 22.0, "white_above_l": 90.0,
                      "black": "black", "gray": "gray", "white": "white"}


def rgb_to_lab(rgb: Any) -> Any:
    """sRGB in 0..255 (any shape ending in 3) -> CIELAB (D65) with scikit-image."""
    import numpy as np
    from skimage.color import rgb2lab

    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb2lab((rgb / 255.0).reshape(-1, 1, 3)).reshape(rgb.shape)


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
        # Nearest centre for every pixel; ties (duplicate centres) go to the first.
        d2 = (centers * centers).sum(1)[None, :] - 2.0 * (data @ centers.T)
        labels = d2.argmin(1)
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.stack([np.bincount(labels, weights=data[:, c], minlength=k) for c in range(3)],
                        1)
        keep = counts > 0
        centers, counts = sums[keep] / counts[keep, None], counts[keep]
        # Sort by share, ties by colour, so the order never depends on the clustering's labels.
        order = np.lexsort((centers[:, 2], centers[:, 1], centers[:, 0], -counts))
        self.centers_ = centers[order]
        self.shares_ = counts[order] / counts.sum()
        self.lab_ = rgb_to_lab(self.centers_)
        self.n_pixels_ = int(len(px))
        return self

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
        from skimage.color import deltaE_ciede2000

        n, s = len(lab), len(ref)
        return deltaE_ciede2000(np.broadcast_to(lab[:, None, :], (n, s, 3)),
                                np.broadcast_to(ref[None, :, :], (n, s, 3)))

    def name(self, lab: Any) -> list[str]:
        """Base name of each CIELAB colour in ``lab`` ((3,) or (n, 3))."""
        import numpy as np

        lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
        nearest = self.palette.shade_owner[np.argmin(self.distances(lab), axis=1)]
        return [fixed or self.palette.names[i]
                for fixed, i in zip(self.achromatic_names(lab), nearest, strict=True)]

    def achromatic_names(self, lab: Any) -> list[str | None]:
        """Black, gray or white (by lightness) for colours with chroma under ``max_chroma``;
        None for the others, and where the palette has no such name."""
        import numpy as np

        lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
        ach = self.achromatic
        chroma = np.hypot(lab[:, 1], lab[:, 2])
        out: list[str | None] = []
        for L, c in zip(lab[:, 0], chroma, strict=True):
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
    shares = [extractor.shares_[idx] for idx in groups.values()]
    rgbs = np.array([(extractor.centers_[idx] * w[:, None]).sum(0) / w.sum()
                     for idx, w in zip(groups.values(), shares, strict=True)])
    labs = rgb_to_lab(rgbs)
    out = [{"name": name, "share": float(w.sum()), "hex": rgb_to_hex(rgb),
            "lab": [round(float(v), 2) for v in lab]}
           for name, w, rgb, lab in zip(groups, shares, rgbs, labs, strict=True)]
    out.sort(key=lambda c: (-c["share"], c["name"]))
    return out
