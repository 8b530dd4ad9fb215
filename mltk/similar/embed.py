"""Image vectors from a trained classifier: :func:`embed_paths` -> :class:`Embedding`.

Each image goes through the run's own preprocessing and model up to its pooled features
(:meth:`~mltk.classify.Classifier.embed_batch`), streamed in batches; the vectors are
L2-normalised, optionally reduced by a PCA fitted on them (then normalised again), and saved as
a vectors folder (:func:`~mltk.similar.vectors.write_vectors`) whose config.yaml names the model
(its run folder) and its identity (:func:`model_identity`), so that an index built from them
embeds image queries with the same model and refuses vectors of another.

Images that cannot be read or decoded are left out of the vectors and listed in ``errors``.
:func:`embed_images` is the step a query uses: the same vectors for the same photo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mltk.errors import InputError
from mltk.similar.reduce import PCA, l2_normalize
from mltk.similar.vectors import VectorSet, write_vectors


def model_identity(classifier: Any) -> str:
    """A short hash of the model file's bytes and the class names: equal for the same
    trained model wherever it is copied, different after retraining or relabelling."""
    h = hashlib.sha256()
    with open(classifier.path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update("\n".join(classifier.classes).encode("utf-8"))
    return h.hexdigest()[:16]


def identity_of_run(target: str | os.PathLike[str]) -> str:
    """:func:`model_identity` of a run folder (or .keras file) from its files alone, without
    loading the model (a job plans with it); a model without labels.txt is loaded."""
    from mltk.classify.classifier import model_file

    path, run_dir = model_file(target)
    labels = (run_dir or path.parent) / "labels.txt"
    if not labels.is_file():
        from mltk.classify import Classifier

        return model_identity(Classifier.load(target, need_tf=False))
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update("\n".join(labels.read_text(encoding="utf-8").splitlines()).encode("utf-8"))
    return h.hexdigest()[:16]


def model_name(classifier: Any) -> str:
    """The model as config.yaml names it: the absolute path of its run folder (or file)."""
    return os.fspath(Path(classifier.source).resolve())


@dataclasses.dataclass
class Embedding:
    """``vectors`` (n x dim float32, L2-normalised), ``ids`` (the paths, as given), ``errors``
    (``{path, error}`` of images left out), ``model``, ``identity``, ``pca`` (or None),
    ``input_dim`` (the model's feature size) and ``seconds`` (decode + model time)."""

    vectors: np.ndarray
    ids: list[str]
    errors: list[dict[str, str]]
    model: str
    identity: str
    input_dim: int
    pca: PCA | None = None
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def info(self) -> dict[str, Any]:
        return {"model": self.model, "identity": self.identity, "normalized": True,
                "pca": self.pca.describe() if self.pca is not None else None}

    def vector_set(self) -> VectorSet:
        """The vectors as :func:`~mltk.similar.vectors.read_vectors` would read them back."""
        import pandas as pd

        ids = np.array(self.ids, dtype=object)
        return VectorSet(self.vectors, ids, pd.DataFrame(index=range(len(ids))),
                         {"format": "mltk-vectors/1", "count": len(ids), "dim": self.dim,
                          **self.info()}, "(embedded images)")

    def save(self, out: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """Write the vectors folder atomically (config.yaml last; ``extra`` keys added)."""
        if not self.ids:
            raise InputError("no image could be embedded: nothing to save")
        return write_vectors(out, self.vectors, np.array(self.ids, dtype=object),
                             model=self.model, identity=self.identity, normalized=True,
                             pca=self.pca, extra={"input_dim": self.input_dim, **(extra or {})})

    def summary(self) -> dict[str, Any]:
        n = len(self)
        return {"images": n + len(self.errors), "embedded": n, "failed": len(self.errors),
                "dim": self.dim, "input_dim": self.input_dim,
                "pca": self.pca is not None, "model": self.model, "identity": self.identity,
                "seconds": round(self.seconds, 3),
                "images_per_s": round(n / self.seconds, 1) if self.seconds > 0 else None}


def embed_images(classifier: Any, paths: Iterable[str | os.PathLike[str]], *,
                 batch_size: int = 64, threads: int | None = None,
                 on_row: Callable[[str, str | None], None] | None = None,
                 ) -> tuple[np.ndarray, list[str], list[dict[str, str]]]:
    """L2-normalised pooled features of the images that decode, their paths, and the errors
    of those that do not; ``on_row(path, error)`` is called once per image, in order."""
    rows: list[np.ndarray] = []
    ids: list[str] = []
    errors: list[dict[str, str]] = []
    for path, vector, error in classifier.embed_paths(paths, batch_size=batch_size,
                                                      threads=threads):
        if error is None:
            rows.append(vector)
            ids.append(path)
        else:
            errors.append({"path": path, "error": error})
        if on_row is not None:
            on_row(path, error)
    x = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    return l2_normalize(x), ids, errors


def embed_paths(classifier: Any, paths: Iterable[str | os.PathLike[str]], *,
                batch_size: int = 64, threads: int | None = None, dim: int | None = None,
                whiten: bool = False, seed: int = 0,
                on_row: Callable[[str, str | None], None] | None = None) -> Embedding:
    """Embed image files with ``classifier`` (see the module); ``dim`` fits a PCA to that many
    dimensions on the vectors (``whiten`` to unit variance) and re-normalises them."""
    t0 = time.perf_counter()
    x, ids, errors = embed_images(classifier, paths, batch_size=batch_size, threads=threads,
                                  on_row=on_row)
    return from_rows(x, ids, errors, model=model_name(classifier),
                     identity=model_identity(classifier), dim=dim, whiten=whiten, seed=seed,
                     seconds=time.perf_counter() - t0)


def from_rows(vectors: np.ndarray, ids: list[str], errors: list[dict[str, str]], *,
              model: str, identity: str, dim: int | None = None, whiten: bool = False,
              seed: int = 0, seconds: float = 0.0) -> Embedding:
    """An :class:`Embedding` of vectors already embedded and L2-normalised (the rows of
    :func:`embed_images`, maybe computed in parts elsewhere: the ``embed`` job kind), with the
    PCA of ``dim`` fitted on all of them, exactly as :func:`embed_paths` does."""
    x = np.asarray(vectors, dtype=np.float32)
    input_dim = int(x.shape[1]) if x.ndim == 2 else 0
    pca = None
    if dim is not None and dim >= input_dim > 0:
        raise InputError(f"--dim {dim}: the model gives {input_dim} features; a PCA must "
                         f"reduce them (give a smaller --dim)")
    if dim is not None and ids:
        pca = PCA(dim, whiten, seed=seed).fit(x)
        x = l2_normalize(pca.transform(x))
    return Embedding(x, ids, errors, model, identity, input_dim, pca, seconds)


def load_index_model(config: dict[str, Any], model: str | os.PathLike[str] | None = None,
                     ) -> Any:
    """The classifier that embeds image queries of an index (its config ``model``, or
    ``model`` given instead), checked to be the one its vectors were made with."""
    from mltk.classify import Classifier

    target = model or config.get("model")
    if not target:
        raise InputError("this index has no model; give --vectors or ids (image queries need "
                         "an index built from `mltk embed` vectors or with --model)")
    classifier = Classifier.load(target, need_tf=False)
    mine, theirs = config.get("identity"), model_identity(classifier)
    if mine and mine != theirs:
        raise InputError(f"model {model_name(classifier)!r} (identity {theirs}) is not the "
                         f"one the index's vectors were made with: {config.get('model')!r} "
                         f"(identity {mine})")
    return classifier
