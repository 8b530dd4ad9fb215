"""``xgb-predict MODEL DATA --out DIR``: a table in parts scored into parts, one output part per
input part, on a Dask cluster (``--dask``/``--scheduler``) or in this process.

Each part is read, typed and scored where it runs (the model is sent once to every worker) and
written atomically as ``DIR/<part>.parquet``: the id columns, ``probability`` and ``label``, row
for row. A part whose output exists is skipped, so a run that was interrupted is finished by
running it again; delete ``DIR`` to score everything anew.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mltk.errors import InputError, MltkError


@dataclasses.dataclass(frozen=True)
class PartResult:
    """One input part: where its scores are, how many rows, and whether this run scored it
    (``scored``) or found it done (``skipped``)."""

    part: str
    output: str
    rows: int | None
    status: str

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def output_names(files: Sequence[Path], data: str | os.PathLike) -> list[str]:
    """The output file of each input part: its path under a folder DATA (subfolders joined
    with ``__``: hive partitions such as ``date=2026-01-01`` keep their meaning), else its
    name; ``.parquet`` in place of its extension."""
    root = Path(data) if Path(data).is_dir() else None
    names = []
    for f in files:
        rel = f.relative_to(root) if root else Path(f.name)
        stem = "__".join(rel.with_name(rel.name.split(".")[0]).parts)
        names.append(f"{stem}.parquet")
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise InputError(f"input parts would share an output name ({', '.join(doubles)}): "
                         "give a folder, or rename the parts")
    return names


def score_part(path: str, output: str, model: Any, unknown_categories: str) -> int:
    """Score one part into ``output`` (atomically); the number of rows."""
    import pandas as pd

    from mltk._atomic import atomic_path

    try:
        df = pd.read_parquet(path) if path.endswith((".parquet", ".pq")) else pd.read_csv(path)
        scored = model.score(df, unknown_categories=unknown_categories)
    except MltkError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    with atomic_path(output) as tmp:
        scored.to_parquet(tmp, index=False)
    return len(scored)


def score_parts(model_dir: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                cluster: str | None = None, unknown_categories: str = "error"
                ) -> Iterator[PartResult]:
    """Score every part of ``data`` (a file, glob or folder) into ``out``, on ``cluster``
    (``local:N``, ``tcp://HOST:PORT``) or here when None; yields each part's result in input
    order, the skipped ones first."""
    from mltk.xgb.model import TwoGroupModel
    from mltk.xgb.partitions import list_parts

    model = TwoGroupModel(model_dir)
    files = list_parts(data)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = [folder / name for name in output_names(files, data)]
    todo = [(f, o) for f, o in zip(files, outputs, strict=True) if not o.exists()]
    for f, o in zip(files, outputs, strict=True):
        if o.exists():
            yield PartResult(os.fspath(f), os.fspath(o), None, "skipped")
    if not todo:
        return
    paths = [os.fspath(f) for f, _ in todo]
    targets = [os.fspath(o) for _, o in todo]
    if cluster is None:
        counts: list[int] = [score_part(p, t, model, unknown_categories)
                             for p, t in zip(paths, targets, strict=True)]
    else:
        counts = _on_cluster(cluster, paths, targets, model, unknown_categories)
    for p, t, n in zip(paths, targets, counts, strict=True):
        yield PartResult(p, t, int(n), "scored")


def _on_cluster(cluster: str, paths: list[str], targets: list[str], model: Any,
                unknown_categories: str) -> list[int]:
    from mltk.xgb.cluster import connect, watch_workers

    with connect(cluster) as client:
        shared = client.scatter(model, broadcast=True)
        futures = client.map(score_part, paths, targets, model=shared,
                             unknown_categories=unknown_categories, pure=False)
        return watch_workers(client, lambda: client.gather(futures), "scoring")
