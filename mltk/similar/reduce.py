"""What every vector goes through before it is indexed or searched: PCA and L2 normalisation.

:class:`PCA` is fitted once (on the collection), saved beside the vectors (``pca.npz``: plain
arrays any NumPy reads) and applied to every query too, so queries land in the same space.
:func:`l2_normalize` makes inner product equal cosine similarity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mltk.errors import InputError


def l2_normalize(x: Any) -> np.ndarray:
    """Rows scaled to unit length, as float32 (an all-zero row stays zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


class PCA:
    """Principal components by SVD: ``PCA(dim, whiten).fit(x).transform(q)``.

    ``whiten`` divides each component by its standard deviation (every direction then weighs
    the same in a distance). Learned state: ``mean_``, ``components_`` (dim x input dim),
    ``explained_variance_``.
    """

    def __init__(self, dim: int, whiten: bool = False, *, max_fit_rows: int = 200_000,
                 seed: int = 0) -> None:
        self.dim, self.whiten, self.max_fit_rows, self.seed = dim, whiten, max_fit_rows, seed

    def fit(self, x: Any) -> PCA:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < 2:
            raise InputError(f"PCA needs a matrix of at least 2 rows, got shape {x.shape}")
        if not 1 <= self.dim <= min(x.shape):
            raise InputError(f"PCA dim must be from 1 to {min(x.shape)} (the smaller of rows "
                             f"and input dims), got {self.dim}")
        if x.shape[0] > self.max_fit_rows:  # a sample gives the same axes, much faster
            rows = np.random.default_rng(self.seed).choice(x.shape[0], self.max_fit_rows,
                                                           replace=False)
            x = x[np.sort(rows)]
        mean = x.mean(axis=0, dtype=np.float64)
        centred = x.astype(np.float64) - mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        self.mean_ = mean.astype(np.float32)
        self.components_ = vt[: self.dim].astype(np.float32)
        self.explained_variance_ = (s[: self.dim] ** 2 / (x.shape[0] - 1)).astype(np.float32)
        return self

    @property
    def input_dim(self) -> int:
        return int(self.components_.shape[1])

    def transform(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise InputError(f"PCA expects vectors of {self.input_dim} dims, got shape "
                             f"{x.shape}")
        out = (x - self.mean_) @ self.components_.T
        if self.whiten:
            out /= np.sqrt(np.maximum(self.explained_variance_, 1e-12))
        return np.ascontiguousarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "dim": self.dim, "whiten": self.whiten,
                "explained": round(float(self.explained_variance_.sum()), 6)}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """``pca.npz`` (mean, components, explained_variance, whiten), written atomically."""
        from mltk._atomic import atomic_open

        with atomic_open(path, "wb") as fh:
            np.savez(fh, mean=self.mean_, components=self.components_,
                     explained_variance=self.explained_variance_,
                     whiten=np.array(self.whiten))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PCA:
        try:
            with np.load(path, allow_pickle=False) as data:
                components = data["components"]
                pca = cls(int(components.shape[0]), bool(data["whiten"]))
                pca.mean_, pca.components_ = data["mean"], components
                pca.explained_variance_ = data["explained_variance"]
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not a readable PCA file ({exc})") from None
        return pca
