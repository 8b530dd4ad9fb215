"""Queries of an index and the records they answer with: ``{query, neighbors: [{id, score,
...metadata}]}``, one per query, best neighbour first.

A query is an id already in the index ("more like item 123": the item itself left out) or a
vector (``--vectors FILE``, in any format :func:`~mltk.similar.vectors.read_vectors` reads).
An image file is embedded with the index's own model (:func:`by_texts`, given the
classifier of :func:`~mltk.similar.embed.load_index_model`) when the index knows its model
(built from ``mltk embed`` vectors or with ``--model``); an index without one refuses it with
a message that says what to give instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mltk._imaging import IMAGE_EXTENSIONS
from mltk.errors import InputError
from mltk.similar.filters import Where
from mltk.similar.index import SimilarityIndex
from mltk.similar.vectors import VectorSet


@dataclasses.dataclass
class Queries:
    """Labels (what each record's ``query`` says), vectors as the index holds them, and the
    row of the index each query is (left out of its own answer), or None."""

    labels: list[Any]
    vectors: np.ndarray
    exclude: list[int | None]


def by_ids(index: SimilarityIndex, ids: Sequence[str]) -> Queries:
    """Queries for ids already in the index (their stored vectors)."""
    import pandas as pd

    numeric = index.items["id"].dtype.kind == "i"
    wanted = [index.coerce_id(v, numeric) for v in ids]
    rows = index.id_index().get_indexer(pd.Index(wanted, dtype=object))
    for text, row in zip(ids, rows, strict=True):
        if row < 0:
            raise InputError(_unknown(index, text))
    return Queries(wanted, index.vectors_of(rows), [int(r) for r in rows])


def is_image_query(index: SimilarityIndex, text: str) -> bool:
    """An existing image file, asked of an index that knows its model."""
    return bool(index.config.get("model")) and Path(text).suffix.lower() in IMAGE_EXTENSIONS \
        and Path(text).is_file()


def by_images(index: SimilarityIndex, paths: Sequence[str], classifier: Any) -> Queries:
    """Queries for image files, embedded with ``classifier`` (the index's model) and
    projected as the index's vectors were; an image that does not decode is an error."""
    from mltk.similar.embed import embed_images

    x, ids, errors = embed_images(classifier, paths)
    if errors:
        raise InputError(f"{errors[0]['path']}: {errors[0]['error']}")
    return Queries(list(ids), index.prepare(x, "image queries"), [None] * len(ids))


def merge(parts: Sequence[Queries]) -> Queries:
    """Several query lists as one, in order."""
    dim = parts[0].vectors.shape[1] if parts else 0
    return Queries([lab for q in parts for lab in q.labels],
                   np.concatenate([q.vectors for q in parts]) if parts
                   else np.zeros((0, dim), np.float32),
                   [e for q in parts for e in q.exclude])


def by_texts(index: SimilarityIndex, texts: Sequence[str],
             classifier: Callable[[], Any] | None = None) -> Queries:
    """Queries for command-line words, in order: image files (when the index knows its
    model; ``classifier()`` gives it, loaded once) and ids already in the index."""
    runs: list[tuple[bool, list[str]]] = []
    for text in texts:
        image = is_image_query(index, text)
        if runs and runs[-1][0] == image:
            runs[-1][1].append(text)
        else:
            runs.append((image, [text]))
    model = classifier() if classifier and any(image for image, _ in runs) else None
    return merge([by_images(index, words, model) if image else by_ids(index, words)
                  for image, words in runs])


def _unknown(index: SimilarityIndex, text: str) -> str:
    looks_like_image = Path(text).suffix.lower() in IMAGE_EXTENSIONS or Path(text).is_file()
    if looks_like_image and not index.config.get("model"):
        return (f"{text}: an image, but this index has no model; give --vectors or ids "
                f"(image queries need an index built from `mltk embed` vectors)")
    if looks_like_image:
        return f"{text}: no such image file, and no such id in the index"
    return f"query {text!r}: no such id in the index"


def by_vectors(index: SimilarityIndex, vs: VectorSet) -> Queries:
    """Queries for vectors made elsewhere (PCA-projected and normalised as the index was)."""
    index.check_model(vs)
    return Queries(list(vs.ids.tolist()), index.prepare(vs.vectors, vs.source, vs.ids),
                   [None] * len(vs))


def query_records(index: SimilarityIndex, queries: Queries, k: int, where: str | None = None,
                  batch: int = 1024) -> Iterator[dict[str, Any]]:
    """One record per query, in order, searched ``batch`` at a time."""
    if k < 1:
        raise InputError(f"`k` must be at least 1, got {k}")
    allowed = Where(where).mask(index.items) if where else None
    columns = {c: index.items[c].to_numpy() for c in index.metadata_columns}
    ids = index.items["id"].to_numpy()
    for start in range(0, len(queries.labels), batch):
        stop = start + batch
        found = index.search(queries.vectors[start:stop], k, allowed=allowed,
                             exclude=queries.exclude[start:stop])
        # Whole columns of the batch's neighbours at once, then plain lists sliced per query:
        # per-query NumPy (or per-cell pandas) calls would cost more than the search.
        every = np.concatenate([rows for rows, _ in found]) if found else np.zeros(0, int)
        cells = [ids[every].tolist(), np.round(np.concatenate(
            [s for _, s in found]).astype(np.float64), 6).tolist() if found else []]
        cells += [_plain_list(col[every]) for col in columns.values()]
        names = ["id", "score", *columns]
        at = 0
        for label, (rows, _) in zip(queries.labels[start:stop], found, strict=True):
            end = at + len(rows)
            if columns:
                neighbors = [dict(zip(names, values, strict=True))
                             for values in zip(*(c[at:end] for c in cells), strict=True)]
            else:  # a dict display: a third of the time of dict(zip(...)) per neighbour
                neighbors = [{"id": i, "score": s} for i, s in zip(
                    cells[0][at:end], cells[1][at:end], strict=True)]
            yield {"query": _plain(label), "neighbors": neighbors}
            at = end


def _plain_list(values: np.ndarray) -> list[Any]:
    """A column's values as plain Python (NaN as None); ints, bools and strings need no
    look at each value."""
    if values.dtype.kind in "biuSU":
        return values.tolist()
    return [_plain(v) for v in values.tolist()]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
