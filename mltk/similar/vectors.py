"""Vectors with their ids and metadata: the one on-disk format, and readers of foreign ones.

A **vectors folder** (what ``mltk embed`` writes; readable without mltk)::

    VECTORS_DIR/
      vectors.npy    float32 matrix, one row per item (numpy.load)
      ids.parquet    column ``id`` (int or string, unique) + metadata columns, row i <-> row i
      config.yaml    format: mltk-vectors/1, count, dim, model, identity, normalized, pca
                     (mltk embed: model = the run folder, identity = a hash of its model
                     file and classes, input_dim = the model's feature size)
      pca.npz        only when PCA was applied: mean, components, explained_variance, whiten

Each file is written atomically and ``config.yaml`` last, with the row count: a folder without
it, or whose files disagree with it, is refused as half-written. ``ids.csv`` is read in place
of ``ids.parquet`` too.

Vectors made elsewhere (CLIP, a catalogue's own embeddings) are read from a plain float32
``.npy`` matrix (ids are the row numbers, or come from ``ids_file``: a CSV/Parquet with an
``id`` column, or text with one id a line) or a Parquet file with an id column and a vector
(list) column. Every reader checks the dimension and finite values, naming file and row.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mltk.errors import InputError

FORMAT = "mltk-vectors/1"
ID = "id"


@dataclasses.dataclass
class VectorSet:
    """``vectors`` (n x d float32), ``ids`` (n unique: int64 or str), ``metadata`` (a DataFrame
    of n rows, maybe no columns), ``info`` (model, identity, normalized, pca), ``source``."""

    vectors: np.ndarray
    ids: np.ndarray
    metadata: Any
    info: dict[str, Any]
    source: str

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def identity(self) -> str | None:
        """The model identity the vectors were made with (None: made elsewhere, unknown)."""
        return self.info.get("identity")

    def table(self) -> Any:
        """ids and metadata as one DataFrame (``id`` first)."""
        df = self.metadata.copy()
        df.insert(0, ID, self.ids)
        return df


def make_ids(values: Any, source: str) -> np.ndarray:
    """User ids as an int64 array when every id is a whole number, else as strings; missing
    or repeated ids are an error naming the row."""
    import pandas as pd

    series = pd.Series(values).reset_index(drop=True)
    missing = series.isna()
    if missing.any():
        raise InputError(f"{source}: row {int(np.argmax(missing.to_numpy()))} has no id")
    if pd.api.types.is_integer_dtype(series):
        ids = series.to_numpy(dtype=np.int64)
    elif pd.api.types.is_float_dtype(series) and (series == series.round()).all():
        ids = series.to_numpy(dtype=np.int64)
    else:
        ids = series.astype(str).to_numpy(dtype=object)
    dup = pd.Index(ids).duplicated()
    if dup.any():
        row = int(np.argmax(dup))
        raise InputError(f"{source}: row {row}: id {_item(ids[row])!r} appears more than once")
    return ids


def check_vectors(vectors: Any, source: str, dim: int | None = None,
                  ids: Any = None) -> np.ndarray:
    """A C-contiguous float32 matrix; the wrong shape or dimension, NaN or infinite values are
    an error naming ``source`` and the first bad row (and its id)."""
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InputError(f"{source}: expected a 2-D matrix of vectors, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise InputError(f"{source}: vectors must be numbers, got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{source}: vectors have {x.shape[1]} dims, expected {dim} "
                         f"(every row)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        which = f" (id {_item(ids[row])!r})" if ids is not None else ""
        raise InputError(f"{source}: row {row}{which} has NaN or infinite values")
    return x


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def read_vectors(path: str | os.PathLike[str], ids_file: str | os.PathLike[str] | None = None,
                 *, id_column: str = ID, vector_column: str = "vector") -> VectorSet:
    """A vectors folder, a ``.npy`` matrix or a Parquet file with an id and a vector column."""
    p = Path(path)
    if p.is_dir():
        if ids_file is not None:
            raise InputError(f"{p}: a vectors folder has its own ids; --ids is for a .npy file")
        return _read_folder(p)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _read_npy(p, ids_file)
    if suffix in (".parquet", ".pq"):
        if ids_file is not None:
            raise InputError(f"{p}: a Parquet file has its own id column; --ids is for .npy")
        return _read_parquet(p, id_column, vector_column)
    raise InputError(f"{p}: not a vectors folder, .npy or .parquet file")


def _load_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise InputError(f"{path}: not a .npy matrix (no NumPy header)")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy matrix ({str(exc).splitlines()[0]})"
                         ) from None


def _read_npy(path: Path, ids_file: str | os.PathLike[str] | None) -> VectorSet:
    import pandas as pd

    raw = _load_npy(path)
    n = raw.shape[0] if raw.ndim else 0
    meta = pd.DataFrame(index=range(n))
    if ids_file is None:
        ids = np.arange(n, dtype=np.int64)
    else:
        table = read_id_table(ids_file)
        if len(table) != n:
            raise InputError(f"{ids_file}: {len(table)} ids for {n} vectors in {path}")
        ids = make_ids(table[ID], str(ids_file))
        meta = table.drop(columns=[ID]).reset_index(drop=True)
    return VectorSet(check_vectors(raw, str(path), ids=ids), ids, meta, {}, str(path))


def read_id_table(path: str | os.PathLike[str]) -> Any:
    """Ids (and metadata) from a CSV/Parquet with an ``id`` column or a text file of ids."""
    import pandas as pd

    from mltk._tables import load_table

    p = Path(path)
    if p.suffix.lower() in (".csv", ".parquet", ".pq", ".tsv") or os.fspath(path) == "-":
        table = load_table(path)
        if ID not in table.columns:
            raise InputError(f"{path}: no {ID!r} column (columns: {', '.join(map(str, table))})")
        return table
    if not p.exists():
        raise InputError(f"{p}: no such file")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    return pd.DataFrame({ID: pd.Series([x for x in lines if x]).map(_as_id)})


def _as_id(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def _read_parquet(path: Path, id_column: str, vector_column: str) -> VectorSet:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    for col in (id_column, vector_column):
        if col not in table.column_names:
            raise InputError(f"{path}: no {col!r} column (columns: "
                             f"{', '.join(table.column_names)})")
    vectors = list_column_matrix(table.column(vector_column), str(path))
    ids = make_ids(table.column(id_column).to_pandas(), str(path))
    meta = table.drop_columns([id_column, vector_column]).to_pandas()
    return VectorSet(check_vectors(vectors, str(path), ids=ids), ids, meta, {}, str(path))


def list_column_matrix(column: Any, source: str) -> np.ndarray:
    """A Parquet list column as a matrix; a row of another length, or null, names the row."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)
            or pa.types.is_fixed_size_list(arr.type)):
        raise InputError(f"{source}: the vector column holds {arr.type}, not lists of numbers")
    if len(arr) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if arr.null_count:
        row = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
        raise InputError(f"{source}: row {row} has no vector")
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != lengths[0])
    if bad.size:
        raise InputError(f"{source}: row {int(bad[0])} has {int(lengths[bad[0]])} dims, "
                         f"expected {int(lengths[0])} (as row 0)")
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(len(arr), int(lengths[0]))


def _read_folder(folder: Path) -> VectorSet:
    import pandas as pd

    from mltk import _config

    config_path = folder / "config.yaml"
    if not config_path.exists():
        raise InputError(f"{folder}: not a vectors folder (no config.yaml: missing or "
                         f"half-written)")
    info = _config.load_yaml(config_path)
    if info.get("format") != FORMAT:
        raise InputError(f"{config_path}: format {info.get('format')!r}, expected {FORMAT}")
    raw = _load_npy(folder / "vectors.npy")
    ids_path = next((folder / n for n in ("ids.parquet", "ids.csv") if (folder / n).exists()),
                    None)
    if ids_path is None:
        raise InputError(f"{folder}: no ids.parquet or ids.csv")
    table = read_id_table(ids_path)
    if not (raw.ndim == 2 and len(table) == raw.shape[0] == info.get("count")):
        raise InputError(f"{folder}: vectors.npy ({raw.shape[0] if raw.ndim else 0} rows), "
                         f"{ids_path.name} ({len(table)} rows) and config.yaml (count "
                         f"{info.get('count')}) disagree: a half-written folder?")
    ids = make_ids(table[ID], str(ids_path))
    meta = table.drop(columns=[ID]).reset_index(drop=True)
    vectors = check_vectors(raw, str(folder / "vectors.npy"), info.get("dim"), ids)
    if info.get("pca") and not (folder / "pca.npz").exists():
        raise InputError(f"{folder}: config.yaml names a PCA but pca.npz is missing")
    return VectorSet(vectors, ids, pd.DataFrame(meta), dict(info), str(folder))


def write_vectors(folder: str | os.PathLike[str], vectors: Any, ids: Any,
                  metadata: Any = None, *, model: str | None = None,
                  identity: str | None = None, normalized: bool = False,
                  pca: Any = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a vectors folder atomically (config.yaml last); returns the folder.

    ``pca`` is the fitted :class:`~mltk.similar.reduce.PCA` the vectors went through, saved so
    that queries can be projected the same way."""
    import pandas as pd

    from mltk import _config
    from mltk._atomic import atomic_open, atomic_path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ids = make_ids(ids, "ids")
    x = check_vectors(vectors, "vectors", ids=ids)
    if len(ids) != x.shape[0]:
        raise InputError(f"{len(ids)} ids for {x.shape[0]} vectors")
    table = pd.DataFrame({ID: ids})
    if metadata is not None and len(getattr(metadata, "columns", [])):
        table = pd.concat([table, pd.DataFrame(metadata).reset_index(drop=True)], axis=1)
    (out / "config.yaml").unlink(missing_ok=True)  # the folder is incomplete from here on
    with atomic_open(out / "vectors.npy", "wb") as fh:
        np.save(fh, x)
    with atomic_path(out / "ids.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    if pca is not None:
        pca.save(out / "pca.npz")
    info = {"format": FORMAT, "count": int(x.shape[0]), "dim": int(x.shape[1]),
            "model": model, "identity": identity, "normalized": bool(normalized),
            "pca": pca.describe() if pca is not None else None, **dict(extra or {})}
    _config.save(out / "config.yaml", info)
    return out
