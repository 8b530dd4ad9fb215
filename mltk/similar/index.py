"""A similarity index over user ids: build, add, remove, search, save and load, on faiss.

Small collections get exact search (``IDMap2,Flat``: inner product over every vector); larger
ones an IVF index whose codes are the most accurate that fit the memory budget (``IVF,SQfp16``,
then ``IVF,SQ8``, then ``IVF,PQ``), or any faiss factory string given. Half-precision codes rank
neighbours as float32 does (a relative error of 2^-11, far below the gaps between neighbours)
at half the bytes, and a search over IVF lists is bound by the bytes it reads: ``IVF,SQfp16``
answers about twice as many queries a second as ``IVF,Flat`` at the same recall. Each item gets an
internal int64 key that is never reused; ``items`` maps keys to the user's ids (ints or
strings) and metadata, so ids stay stable across :meth:`add` and :meth:`remove`. A build tunes
``nprobe`` (``efSearch`` for HNSW) on a sample of its own vectors until recall@10 against exact
search reaches ``target_recall``, and reports what it measured.

Filtered search (:meth:`search` with ``allowed``) never returns fewer than k results when k
items pass: an allowed set of at most ``filter_exact_max`` items is searched exactly (its
vectors reconstructed from the index), a larger one through faiss with an ID selector and
``nprobe`` raised by the inverse of the allowed share, and any query still short is redone
exactly.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mltk.errors import InputError
from mltk.similar import store
from mltk.similar.reduce import PCA, l2_normalize
from mltk.similar.settings import SimilarSettings
from mltk.similar.vectors import ID, VectorSet, check_vectors

log = logging.getLogger(__name__)
KEY = "_key"
RECALL_K = 10


def _faiss(threads: int | None = None) -> Any:
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    return faiss


def choose_factory(n: int, dim: int, settings: SimilarSettings) -> str:
    """The faiss factory string for ``n`` vectors of ``dim``: exact up to ``exact_max``, else
    IVF with the most accurate codes that fit ``memory_mb`` (half precision first: as accurate
    as float32 for ranking, and twice as fast to scan)."""
    if settings.factory:
        return settings.factory
    if n <= settings.exact_max:
        return "Flat"
    nlist = nlist_for(n)
    budget = settings.memory_mb * 1024 * 1024 / max(n, 1)
    pq = next((m for m in (dim // 4, dim // 8, dim // 16) if m >= 1 and dim % m == 0), 1)
    for codes, size in (("SQfp16", 2 * dim), ("SQ8", dim), (f"PQ{pq}", pq)):
        if size + 24 <= budget:  # + id, direct-map entry
            return f"IVF{nlist},{codes}"
    return f"IVF{nlist},PQ{pq}"


def nlist_for(n: int) -> int:
    """Inverted lists: a power of two near 4 sqrt(n) (shorter lists: fewer vectors read for the
    same recall), with at least 39 training points each."""
    nlist = 2 ** round(math.log2(max(4.0 * math.sqrt(n), 1.0)))
    while nlist > 1 and n < 39 * nlist:
        nlist //= 2
    return max(nlist, 1)


class SimilarityIndex:
    """A faiss index with user ids and metadata (``items``: one row per item, key order)."""

    def __init__(self, index: Any, items: Any, config: dict[str, Any],
                 pca: PCA | None = None) -> None:
        self.index, self.items, self.config, self.pca = index, items, config, pca
        self._ids: Any = None

    # -- facts ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.items.columns if c not in (KEY, ID)]

    def info(self) -> dict[str, Any]:
        c = self.config
        return {"count": len(self), "dim": self.dim, "factory": c["factory"],
                "metric": c["metric"], "model": c.get("model"), "identity": c.get("identity"),
                "pca": c.get("pca"), "params": c.get("params") or {},
                "recall@10": c.get("recall"), "metadata": self.metadata_columns}

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, vs: VectorSet, settings: SimilarSettings, *, dim: int | None = None,
              whiten: bool = False, pca: PCA | None = None) -> tuple[SimilarityIndex,
                                                                    dict[str, Any]]:
        """Index ``vs``; ``dim`` fits a PCA first, ``pca`` is one the vectors already went
        through (kept so raw queries can be projected). Returns (index, build report)."""
        if len(vs) == 0:
            raise InputError(f"{vs.source}: no vectors to index")
        started = time.perf_counter()
        faiss = _faiss(settings.threads)
        x = vs.vectors
        if dim is not None:
            if pca is not None:
                raise InputError(f"{vs.source}: the vectors already went through a PCA "
                                 f"({pca.describe()['dim']} dims); leave out --dim")
            pca = PCA(dim, whiten, seed=settings.seed).fit(x)
            x = pca.transform(x)
        x = l2_normalize(x) if settings.metric == "cosine" else x
        factory = choose_factory(len(x), x.shape[1], settings)
        index = _new_index(faiss, factory, x, settings.seed)
        keys = np.arange(len(x), dtype=np.int64)
        index.add_with_ids(x, keys)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:  # key -> list and offset, for reconstruct and remove; made after
            # the bulk add, so that the inverted lists grow without map entries between them
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        items = vs.table()
        items.insert(0, KEY, keys)
        config = {"factory": factory, "metric": settings.metric, "dim": int(x.shape[1]),
                  "model": vs.info.get("model"), "identity": vs.identity,
                  "pca": pca.describe() if pca is not None else None,
                  "next_key": int(len(x)), "params": {}, "recall": None,
                  "filter_exact_max": settings.filter_exact_max}
        built = cls(index, items, config, pca)
        recall, params = built.tune(x, settings)
        config.update(params=params, recall=recall)
        return built, {"count": len(x), "dim": int(x.shape[1]), "factory": factory,
                       **params, "recall@10": recall, "build_s": round(
                           time.perf_counter() - started, 3)}

    def tune(self, x: np.ndarray, settings: SimilarSettings) -> tuple[float, dict[str, Any]]:
        """Raise the search parameter until recall@10 on a sample reaches ``target_recall``;
        returns (recall@10 measured, parameters)."""
        rng = np.random.default_rng(settings.seed)
        sample = np.sort(rng.choice(len(x), min(settings.recall_queries, len(x)),
                                    replace=False))
        queries = x[sample]
        k = min(RECALL_K, len(x) - 1)
        if k < 1:
            return 1.0, {}
        # Each sample query is a stored vector: it finds itself, which says nothing of recall.
        # Both lists leave it out, as for a query from outside the collection.
        faiss = _faiss()
        _, truth = faiss.knn(queries, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        truth = _without(truth, sample, k)
        name, ladder = self._knob()
        recall, chosen = 0.0, {}
        for value in ladder:
            if name:
                self._set_param(name, value)
                chosen = {name: value}
            _, found = self.index.search(queries, k + 1)
            recall = recall_at(_without(found, sample, k), truth)
            if recall >= settings.target_recall:
                break
        return round(recall, 4), chosen

    def _knob(self) -> tuple[str | None, list[int]]:
        faiss = _faiss()
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            nlist = int(ivf.nlist)
            # 1 2 3 4 5 6 7 8 10 12 14 16 20 24 28 32 40 ...: a step costs at most 25% more
            steps = {1, 2, 3} | {m * 2 ** i for i in range(16) for m in (4, 5, 6, 7)}
            return "nprobe", sorted({min(v, nlist) for v in steps if v < 2 * nlist})
        if "HNSW" in self.config["factory"]:
            return "efSearch", [16, 32, 64, 128, 256, 512, 1024]
        return None, [0]

    def _set_param(self, name: str, value: int) -> None:
        faiss = _faiss()
        faiss.ParameterSpace().set_index_parameter(self.index, name, int(value))
        self.config.setdefault("params", {})[name] = int(value)

    # -- changing ------------------------------------------------------------------------------
    def prepare(self, vectors: np.ndarray, source: str, ids: Any = None) -> np.ndarray:
        """Vectors as the index holds them: PCA-projected when they have the PCA's input
        dimension, checked against the index dimension, normalised for cosine."""
        x = check_vectors(vectors, source, ids=ids)
        if self.pca is not None and x.shape[1] == self.pca.input_dim != self.dim:
            x = self.pca.transform(x)
        if x.shape[1] != self.dim:
            extra = f" or {self.pca.input_dim} before its PCA" if self.pca is not None else ""
            raise InputError(f"{source}: vectors have {x.shape[1]} dims; the index has "
                             f"{self.dim}{extra}")
        return l2_normalize(x) if self.config["metric"] == "cosine" else x

    def check_model(self, vs: VectorSet) -> None:
        """Vectors made with another model than the index's are refused, naming both."""
        mine, theirs = self.config.get("identity"), vs.identity
        if mine and theirs and mine != theirs:
            raise InputError(f"{vs.source}: made with model {vs.info.get('model')!r} "
                             f"(identity {theirs}), but the index was built with "
                             f"{self.config.get('model')!r} (identity {mine})")

    def add(self, vs: VectorSet) -> int:
        """Add the items of ``vs`` (their ids must be new); returns how many."""
        import pandas as pd

        self.check_model(vs)
        if len(vs) == 0:
            return 0
        self._check_id_kind(vs)
        known = self.id_index().get_indexer(pd.Index(vs.ids)) >= 0
        if known.any():
            row = int(np.argmax(known))
            raise InputError(f"{vs.source}: row {row}: id {_item(vs.ids[row])!r} is already in the "
                             f"index (remove it first to replace it)")
        x = self.prepare(vs.vectors, vs.source, vs.ids)
        keys = self.config["next_key"] + np.arange(len(x), dtype=np.int64)
        self.index.add_with_ids(x, keys)
        new = vs.table()
        new.insert(0, KEY, keys)
        self.items = pd.concat([self.items, new], ignore_index=True)
        self.config["next_key"] = int(keys[-1]) + 1
        self._ids = None
        return len(x)

    def _check_id_kind(self, vs: VectorSet) -> None:
        if len(self.items) and (self.items[ID].dtype.kind == "i") != (vs.ids.dtype.kind == "i"):
            kind = "whole numbers" if self.items[ID].dtype.kind == "i" else "text"
            raise InputError(f"{vs.source}: the index's ids are {kind}, these are not")

    def remove(self, ids: Any, *, missing_ok: bool = False) -> int:
        """Remove items by id; an id not in the index is an error naming it (unless
        ``missing_ok``). Returns how many were removed."""
        faiss = _faiss()
        rows = self.rows_of(ids, missing_ok=missing_ok)
        if not len(rows):
            return 0
        keys = np.ascontiguousarray(self.items[KEY].to_numpy()[rows], dtype=np.int64)
        try:  # IDSelectorArray: what an IVF direct map (hashtable) removes by
            removed = self.index.remove_ids(faiss.IDSelectorArray(keys))
        except RuntimeError:
            raise InputError(f"this index ({self.config['factory']}) cannot remove items "
                             f"(faiss has no removal for it): rebuild it, or build with an "
                             f"IVF or Flat factory") from None
        if removed != len(keys):
            raise InputError(f"faiss removed {removed} of {len(keys)} items: the index and "
                             f"its ids disagree; rebuild it")
        self.items = self.items.drop(index=self.items.index[rows]).reset_index(drop=True)
        self._ids = None
        return int(removed)

    # -- looking up ----------------------------------------------------------------------------
    def id_index(self) -> Any:
        import pandas as pd

        if self._ids is None:
            self._ids = pd.Index(self.items[ID])
        return self._ids

    def coerce_id(self, value: Any, numeric: bool | None = None) -> Any:
        """A query id as the index stores it (``"123"`` -> 123 when ids are numbers)."""
        if numeric is None:
            numeric = self.items[ID].dtype.kind == "i"
        if numeric and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return value
        return _item(value) if numeric else str(value)

    def rows_of(self, ids: Any, *, missing_ok: bool = False) -> np.ndarray:
        import pandas as pd

        numeric = self.items[ID].dtype.kind == "i"
        wanted = [self.coerce_id(v, numeric) for v in ids]
        rows = self.id_index().get_indexer(pd.Index(wanted, dtype=object))
        if (rows < 0).any() and not missing_ok:
            missing = [_item(wanted[i]) for i in np.flatnonzero(rows < 0)]
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise InputError(f"id {', '.join(map(repr, missing[:5]))}{more} not in the index")
        return rows[rows >= 0]

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (exact for Flat codes, decoded otherwise)."""
        keys = self.items[KEY].to_numpy()[rows]
        if not len(keys):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self.index.reconstruct_batch(keys), dtype=np.float32)

    # -- searching -----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               exclude: list[int | None] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query (rows of ``items``, scores), best first: at most k, and exactly
        min(k, items allowed and not excluded). ``allowed``: a boolean mask over rows;
        ``exclude``: per query a row to leave out (the query item itself) or None."""
        if len(self) == 0:
            raise InputError("the index is empty: nothing to search (add vectors with "
                             "`mltk index add`)")
        exclude = exclude or [None] * len(queries)
        pool = len(self) if allowed is None else int(allowed.sum())
        extra = int(any(e is not None for e in exclude))
        fetch = min(k + extra, pool)
        if fetch <= 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in queries]
        if allowed is not None and pool <= self.config.get("filter_exact_max", 20_000):
            rows, scores = self._exact(queries, np.flatnonzero(allowed), fetch)
        else:
            rows, scores = self._faiss_search(queries, fetch, allowed, pool)
        skip = np.array([-2 if e is None else e for e in exclude], dtype=np.int64)[:, None]
        keep = (rows >= 0) & (rows != skip)
        if keep[:, :k].all():  # every query has its k (the usual case): views, no masks
            return [(rows[i, :k], scores[i, :k]) for i in range(len(rows))]
        out = []
        for i, ex in enumerate(exclude):
            r, s = rows[i][keep[i]][:k], scores[i][keep[i]][:k]
            if len(r) < k:  # fewer than k: right only when fewer are allowed
                want = min(k, pool - int(ex is not None and (allowed is None or allowed[ex])))
                if len(r) < want:  # an approximate search came up short: redo it exactly
                    r, s = self._exact_one(queries[i], allowed, ex, k)
            out.append((r, s))
        return out

    def _exact_one(self, query: np.ndarray, allowed: np.ndarray | None, exclude: int | None,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
        cand = np.flatnonzero(allowed) if allowed is not None else np.arange(len(self))
        if exclude is not None:
            cand = cand[cand != exclude]
        rows, scores = self._exact(query[None, :], cand, min(k, len(cand)))
        return rows[0], scores[0]

    def _faiss_search(self, queries: np.ndarray, fetch: int, allowed: np.ndarray | None,
                      pool: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        params = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(self.items[KEY].to_numpy()[allowed])
            ivf = faiss.try_extract_index_ivf(self.index)
            if ivf is not None:
                share = pool / max(len(self), 1)
                nprobe = min(int(ivf.nlist), math.ceil(int(ivf.nprobe) / max(share, 1e-9)))
                params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            else:
                params = faiss.SearchParameters(sel=sel)
        scores, keys = self.index.search(queries, fetch, params=params)
        return self._rows_of_keys(keys), scores

    def _rows_of_keys(self, keys: np.ndarray) -> np.ndarray:
        all_keys = self.items[KEY].to_numpy()
        rows = np.searchsorted(all_keys, keys)
        rows = np.minimum(rows, len(all_keys) - 1)
        return np.where((keys >= 0) & (all_keys[rows] == keys), rows, -1)

    def _exact(self, queries: np.ndarray, cand: np.ndarray, k: int,
               chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of ``queries`` among the rows ``cand`` (vectors reconstructed)."""
        best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_r = np.zeros((len(queries), 0), dtype=np.int64)
        for start in range(0, len(cand), chunk):
            rows = cand[start: start + chunk]
            sims = queries @ self.vectors_of(rows).T
            if self.config["metric"] not in ("cosine", "ip"):  # pragma: no cover
                raise InputError(f"unknown metric {self.config['metric']!r}")
            best_s = np.concatenate([best_s, sims], axis=1)
            best_r = np.concatenate([best_r, np.broadcast_to(rows, sims.shape)], axis=1)
            if best_s.shape[1] > k:
                top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
                best_s = np.take_along_axis(best_s, top, 1)
                best_r = np.take_along_axis(best_r, top, 1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(best_r, order, 1), np.take_along_axis(best_s, order, 1)

    # -- saving --------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str]) -> dict[str, Any]:
        """Write a new generation atomically (see :mod:`mltk.similar.store`); returns sizes."""
        from mltk._atomic import atomic_path

        faiss = _faiss()
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        gen = store.next_generation(out)
        written: dict[str, Path] = {}
        with atomic_path(out / store.file_name("index", gen)) as tmp:
            faiss.write_index(self.index, os.fspath(tmp))
        written["index"] = out / store.file_name("index", gen)
        with atomic_path(out / store.file_name("items", gen)) as tmp:
            self.items.to_parquet(tmp, index=False)
        written["items"] = out / store.file_name("items", gen)
        if self.pca is not None:
            written["pca"] = self.pca.save(out / store.file_name("pca", gen))
        store.commit(out, gen, written, self.config)
        index_bytes = written["index"].stat().st_size
        return {"index_bytes": index_bytes, "bytes_per_vector": round(
            index_bytes / max(len(self), 1), 1), "generation": gen}

    @classmethod
    def load(cls, folder: str | os.PathLike[str], threads: int | None = None
             ) -> SimilarityIndex:
        """An index folder, its files checked against the manifest first. A save that
        finishes while this reads (and deletes the files it had named) is read again."""
        for attempt in (1, 2):
            try:
                return cls._load(Path(folder), threads)
            except InputError as exc:
                if attempt == 2 or "missing from the index folder" not in str(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _load(cls, path: Path, threads: int | None) -> SimilarityIndex:
        import pandas as pd

        faiss = _faiss(threads)
        manifest = store.read_manifest(path)
        index_file = store.verified(path, manifest, "index")
        items_file = store.verified(path, manifest, "items")
        if index_file is None or items_file is None:
            raise InputError(f"{path}/{store.MANIFEST}: names no index or items file; "
                             f"rebuild the index")
        pca_file = store.verified(path, manifest, "pca")
        try:
            index = faiss.read_index(os.fspath(index_file))
        except RuntimeError as exc:
            raise InputError(f"{index_file}: faiss cannot read it ({faiss_message(exc)}); "
                             f"rebuild the index") from None
        items = pd.read_parquet(items_file)
        if index.ntotal != len(items):
            raise InputError(f"{path}: the index holds {index.ntotal} vectors but "
                             f"{items_file.name} {len(items)} ids; rebuild the index")
        return cls(index, items, dict(manifest["config"]),
                   PCA.load(pca_file) if pca_file else None)


def _new_index(faiss: Any, factory: str, x: np.ndarray, seed: int) -> Any:
    """An empty, trained faiss index for ``factory`` that takes ids (IVF natively; others
    wrapped in IDMap2)."""
    try:
        inner = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"faiss cannot make index {factory!r} for {x.shape[1]} dims "
                         f"({faiss_message(exc)})") from None
    ivf = faiss.try_extract_index_ivf(inner)
    if not inner.is_trained:
        # 64 points a list; at least 40 per PQ / SQ centroid (256 of them)
        n_train = len(x) if ivf is None else min(len(x), max(64 * int(ivf.nlist), 10_240))
        if ivf is not None and len(x) < int(ivf.nlist):
            raise InputError(f"{factory}: {int(ivf.nlist)} lists need at least that many "
                             f"vectors, got {len(x)}")
        rows = np.random.default_rng(seed).choice(len(x), n_train, replace=False)
        if ivf is not None:
            ivf.cp.seed = seed
            # Polysemous training reorders PQ codes for Hamming pre-filtering, which mltk's
            # searches never use; it costs more than the rest of the training together.
            ivf = faiss.downcast_index(ivf)
            if getattr(ivf, "do_polysemous_training", False):
                ivf.do_polysemous_training = False
        inner.train(x[np.sort(rows)])
    return inner if ivf is not None else faiss.IndexIDMap2(inner)


def faiss_message(exc: BaseException) -> str:
    """faiss's reason without its C++ location (``Error in ... at file.cpp:12: reason``)."""
    import re

    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", text)


def _without(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row of ``found`` without its own key (keys are rows at build time), k long."""
    out = np.full((len(found), k), -1, dtype=np.int64)
    for i, row in enumerate(found):
        rest = row[row != own[i]][:k]
        out[i, : len(rest)] = rest
    return out


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each exact top-k found in the approximate top-k."""
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth,
                                                                         strict=True))
    return float(hits / max(truth.size, 1))
