"""Sample-data generators: each writes a small data set and its ground truth to a folder.

Generators register themselves with :func:`generator`; ``mltk datasets make NAME`` and
``mltk demo`` find them through :data:`GENERATORS`. Each returns a :class:`DatasetInfo`
listing what it wrote, with the ground-truth file among them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mltk.errors import MltkError


@dataclasses.dataclass
class DatasetInfo:
    name: str
    path: Path
    n: int
    truth: Path | None
    files: dict[str, Path] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {"name": self.name, "path": os.fspath(self.path), "n": self.n,
                "truth": os.fspath(self.truth) if self.truth else None,
                **{k: os.fspath(v) for k, v in self.files.items()}}


@dataclasses.dataclass(frozen=True)
class Generator:
    name: str
    help: str
    default_n: int
    module: str
    function: str

    def load(self) -> Callable[..., DatasetInfo]:
        return getattr(importlib.import_module(self.module), self.function)


#: name -> Generator; modules are imported only when a generator runs.
GENERATORS: dict[str, Generator] = {
    "labelled-images": Generator(
        "labelled-images",
        "scikit-learn's handwritten digits (real data) as RGB JPEGs, one folder per class",
        500, "mltk.datasets.images", "make_labelled_images"),
    "product-images": Generator(
        "product-images",
        "synthetic product photos of known main (and second) colours, with truth.csv",
        200, "mltk.datasets.products", "make_product_images"),
    "purchases": Generator(
        "purchases",
        "users who buy once vs again: ~10 features with known effects, truth.json",
        5000, "mltk.datasets.purchases", "make_purchases"),
    "marketplace": Generator(
        "marketplace",
        "items, users and transactions following planted category groups, truth.json",
        3000, "mltk.datasets.marketplace", "make_marketplace"),
    "near-duplicates": Generator(
        "near-duplicates",
        "real photos that packages ship, with resized, cropped, rotated, mirrored, "
        "watermarked... copies; truth.csv",
        60, "mltk.datasets.duplicates", "make_near_duplicates"),
}


def make(name: str, out: str | os.PathLike[str], n: int | None = None, seed: int = 0,
         **kwargs: Any) -> DatasetInfo:
    """Write the sample data set ``name`` to ``out`` and return what was written."""
    try:
        gen = GENERATORS[name]
    except KeyError:
        raise MltkError(f"unknown dataset {name!r}; choose from {', '.join(GENERATORS)}") from None
    n = gen.default_n if n is None else n
    if n < 1:
        raise MltkError(f"`n` must be at least 1, got {n}")
    return gen.load()(Path(out), n=n, seed=seed, **kwargs)
