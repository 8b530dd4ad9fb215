"""A similarity index (``mltk index build``) as a servable predictor: neighbours of a query.

A query is an id already in the index ("more like item 123", the item itself left out), a
vector (projected and normalised as the index's vectors were), or an image's bytes, embedded
with the index's own model (an index built from ``mltk embed`` vectors or with ``--model``);
each may carry its own ``k`` (default 10) and ``where`` filter. The answer is the record
``mltk index query`` prints for the same query: ``{query, neighbors: [{id, score,
...metadata}]}``, computed by the same code (:func:`mltk.similar.query_records`).

Work is split as every predictor's: :meth:`SimilarPredictor.prepare` checks one query (an
unknown id, a vector of the wrong dimension, bytes that are no image, a bad filter: that
query's error) and decodes images; :meth:`SimilarPredictor.predict_prepared` embeds the images
of a batch in one model call and searches the batch's vectors together.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mltk.errors import InputError
from mltk.predictors.base import Outcome, Predictor, TensorSpec

DEFAULT_K = 10


@dataclasses.dataclass
class Query:
    """One checked query: its label, then either a vector (as the index holds it) and the row
    it excludes, or a preprocessed image still to embed."""

    label: Any
    k: int
    where: str | None
    vector: np.ndarray | None = None
    exclude: int | None = None
    image: Any = None


class SimilarPredictor(Predictor):
    kind = "similar"
    input_kind = "similar"
    batchable = True

    def __init__(self, name: str, source: str, index: Any, classifier: Any = None,
                 model_error: str | None = None, max_pixels: int | None = None) -> None:
        super().__init__(name, source)
        self.index = index
        self.classifier = classifier
        self.model_error = model_error
        self.max_pixels = max_pixels

    @classmethod
    def open(cls, folder: str | os.PathLike, name: str | None = None) -> SimilarPredictor:
        """The index in ``folder``, and its model when it names one (a model that cannot be
        loaded leaves image queries refused, with the reason, and the rest served)."""
        from mltk.similar import SimilarityIndex

        index = SimilarityIndex.load(folder)
        classifier, problem = None, None
        if index.config.get("model"):
            from mltk.similar.embed import load_index_model

            try:
                classifier = load_index_model(index.config)
            except InputError as exc:
                problem = str(exc)
        return cls(name or Path(folder).name, os.fspath(folder), index, classifier, problem)

    # -- schema ------------------------------------------------------------------------------
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("id", "BYTES", (-1,)), TensorSpec("image", "BYTES", (-1,)),
                TensorSpec("vector", "FP32", (-1, self.index.dim)),
                TensorSpec("k", "INT64", (-1,)), TensorSpec("where", "BYTES", (-1,))]

    def outputs(self) -> list[TensorSpec]:
        # the record of index query; the neighbours as JSON text
        return [TensorSpec("query", "BYTES", (-1,)), TensorSpec("neighbors", "BYTES", (-1,))]

    def metadata(self) -> dict[str, Any]:
        doc = super().metadata()
        info = self.index.info()
        doc["parameters"].update({k: info[k] for k in ("count", "dim", "factory", "metric",
                                                       "model", "recall@10", "metadata")})
        return doc

    # -- work --------------------------------------------------------------------------------
    def prepare(self, item: Any) -> Query:
        if isinstance(item, (bytes, bytearray)):
            item = {"image": bytes(item)}
        elif not isinstance(item, Mapping):
            item = {"id": item}
        k, where = _k(item.get("k")), item.get("where")
        if where is not None:
            self._check_where(where)
        given = [key for key in ("id", "image", "vector") if item.get(key) is not None]
        if len(given) != 1:
            raise InputError("a query is one of id, image or vector" + (
                f" (got {', '.join(given)})" if given else ""))
        if given[0] == "image":
            return Query("(image)", k, where, image=self._image(item["image"]))
        if given[0] == "vector":
            return Query("(vector)", k, where, vector=self._vector(item["vector"]))
        from mltk.similar.queries import by_ids

        found = by_ids(self.index, [_text(item["id"])])
        return Query(found.labels[0], k, where, vector=found.vectors[0],
                     exclude=found.exclude[0])

    def _check_where(self, where: Any) -> None:
        from mltk.similar import Where

        if not isinstance(where, str):
            raise InputError(f"where must be text, got {where!r}")
        Where(where).mask(self.index.items.head(0))

    def _image(self, data: Any) -> Any:
        if self.classifier is None:
            raise InputError(self.model_error or "this index has no model: query it by id or "
                             "vector (image queries need an index built from `mltk embed` "
                             "vectors or with --model)")
        return self.classifier.preprocess(bytes(data), self.max_pixels)

    def _vector(self, values: Any) -> np.ndarray:
        try:
            x = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError("vector must be a list of numbers") from None
        if x.ndim != 1:
            raise InputError(f"vector must be a flat list of numbers, got shape {x.shape}")
        return self.index.prepare(x[None, :], "vector")[0]

    def predict_prepared(self, prepared: Sequence[Query]) -> list[Outcome]:
        from mltk.similar.reduce import l2_normalize

        images = [q for q in prepared if q.image is not None]
        if images:
            x = l2_normalize(self.classifier.embed_batch([q.image for q in images]))
            for q, v in zip(images, self.index.prepare(x, "image queries"), strict=True):
                q.vector, q.image = v, None
        out: list[Outcome] = [InputError("not searched")] * len(prepared)
        groups: dict[tuple[int, str | None], list[int]] = {}
        for i, q in enumerate(prepared):
            groups.setdefault((q.k, q.where), []).append(i)
        for (k, where), rows in groups.items():
            try:
                for i, rec in zip(rows, self._search([prepared[i] for i in rows], k, where),
                                  strict=True):
                    out[i] = rec
            except InputError as exc:  # an empty index: every query of the group
                for i in rows:
                    out[i] = exc
        return out

    def _search(self, queries: Sequence[Query], k: int, where: str | None) -> list[dict]:
        from mltk.similar import query_records
        from mltk.similar.queries import Queries

        batch = Queries([q.label for q in queries], np.stack([q.vector for q in queries]),
                        [q.exclude for q in queries])
        return list(query_records(self.index, batch, k, where))

    def limit_threads(self, n: int) -> None:
        import faiss

        faiss.omp_set_num_threads(n)

    def warmup(self) -> None:
        if len(self.index):  # an empty index answers every query with its error
            super().warmup()

    def example(self) -> dict[str, Any]:
        from mltk._json import clean

        return {"id": clean(self.index.items["id"].iloc[0])}


def _k(value: Any) -> int:
    if value is None:
        return DEFAULT_K
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise InputError(f"k must be a positive integer, got {value!r}") from None
    if k < 1 or k != value and not isinstance(value, str):
        raise InputError(f"k must be a positive integer, got {value!r}")
    return k


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
