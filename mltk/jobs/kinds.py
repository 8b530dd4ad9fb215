"""The kinds of batch work: how each plans its items and runs one chunk of them.

Every kind turns the arguments of its one-machine command into a plan (inputs, resolved
settings, the identity of the model it uses, the number of items) and runs a chunk of items into
the same records that command prints. A bad item (an unreadable image, a malformed row, an
unknown item id) is an error record, never a failed chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from mltk.errors import InputError

KINDS = ("colors", "predict", "xgb-predict", "recommend")

#: The options of the one-machine command that each kind takes.
OPTIONS: dict[str, frozenset[str]] = {
    "colors": frozenset({"recursive", "k", "top", "palette", "crop", "seed", "config"}),
    "predict": frozenset({"recursive", "top_k", "batch_size"}),
    "xgb-predict": frozenset({"unknown_categories"}),
    "recommend": frozenset({"k"}),
}


def check_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given for ``kind`` (None/False dropped); another kind's option is an error."""
    if kind not in OPTIONS:
        raise InputError(f"unknown job kind {kind!r} (kinds: {', '.join(OPTIONS)})")
    given = {k: v for k, v in options.items() if v not in (None, False)}
    extra = sorted(set(given) - OPTIONS[kind])
    if extra:
        raise InputError(f"not an option of {kind}: {', '.join(extra)} (its options: "
                         f"{', '.join(sorted(OPTIONS[kind]))})")
    return given


@dataclasses.dataclass
class Plan:
    kind: str
    inputs: dict[str, Any]
    settings: dict[str, Any]
    model: dict[str, Any] | None
    total: int  # number of items
    items: list[Any] | None = None  # stored in items.ndjson when the kind lists its items


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_identity(folder: str | os.PathLike) -> dict[str, Any]:
    """The model a job uses: its folder and a digest of every file at the folder's top level."""
    d = Path(folder).resolve()
    if not d.is_dir():
        raise InputError(f"{folder}: no such model folder")
    h = hashlib.sha256()
    for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.name}\0{f.stat().st_size}\0{file_digest(f)}\n".encode())
    return {"path": os.fspath(d), "digest": h.hexdigest()}


def _image_items(paths: Sequence[str], recursive: bool) -> list[list[str]]:
    from mltk._imaging import iter_image_paths

    files = list(iter_image_paths(paths, recursive=recursive))
    if not files:
        raise InputError("no image files found")
    return [[os.path.abspath(f), os.fspath(f)] for f in files]


# -- planning ---------------------------------------------------------------------------------
def plan(kind: str, args: Sequence[str], options: Mapping[str, Any]) -> Plan:
    """The plan of a job of ``kind`` for the command-line arguments and options given."""
    options = check_options(kind, options)
    return _PLANNERS[kind](list(args), dict(options))


def _plan_colors(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk import _config

    if not args:
        raise InputError("colors: give image files or folders")
    config, palette = opts.pop("config", None), opts.pop("palette", None)
    recursive = bool(opts.pop("recursive", False))
    settings = _config.resolve("colors", opts, config)
    model = None
    if palette:
        settings["palette_file"] = os.path.abspath(palette)
        model = {"palette": file_digest(palette)}
    items = _image_items(args, recursive)
    return Plan("colors", {"paths": args, "recursive": recursive}, settings, model, len(items),
                items)


def _plan_predict(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk.predictors import detect_kind

    if len(args) < 2:
        raise InputError("predict: give RUN_DIR and image files or folders")
    run_dir, paths = args[0], args[1:]
    if detect_kind(run_dir) != "image-classifier":
        raise InputError(f"{run_dir}: not an mltk train run folder")
    settings = {"top_k": int(opts.get("top_k") or 3), "batch_size": int(opts.get("batch_size")
                                                                         or 64)}
    items = _image_items(paths, bool(opts.get("recursive")))
    return Plan("predict", {"run_dir": os.path.abspath(run_dir), "paths": paths}, settings,
                folder_identity(run_dir), len(items), items)


def _plan_xgb(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk.predictors import detect_kind

    if len(args) != 2:
        raise InputError("xgb-predict: give MODEL_DIR and DATA.csv")
    model_dir, data = args
    if detect_kind(model_dir) != "two-group":
        raise InputError(f"{model_dir}: not an xgb-analyze folder")
    rows = _count_csv_rows(data)
    settings = {"unknown_categories": opts.get("unknown_categories") or "error"}
    return Plan("xgb-predict", {"model_dir": os.path.abspath(model_dir),
                                "data": os.path.abspath(data), "data_digest": file_digest(data)},
                settings, folder_identity(model_dir), rows)


def _plan_recommend(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk.predictors import detect_kind
    from mltk.recommend import read_queries

    if len(args) != 2:
        raise InputError("recommend: give MODEL_DIR and QUERIES.csv")
    model_dir, queries = args
    if detect_kind(model_dir) != "recommender":
        raise InputError(f"{model_dir}: not a recommend fit folder")
    k = opts.get("k")
    if k is not None and (not isinstance(k, int) or k < 1):
        raise InputError(f"k must be a positive integer, got {k!r}")
    with _open(queries) as fh:
        rows = sum(1 for _ in read_queries(fh, queries))
    return Plan("recommend", {"model_dir": os.path.abspath(model_dir),
                              "queries": os.path.abspath(queries),
                              "queries_digest": file_digest(queries)},
                {"k": k}, folder_identity(model_dir), rows)


def _open(path: str) -> Any:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    return open(path, encoding="utf-8-sig", newline="")


def _count_csv_rows(path: str) -> int:
    import csv

    with _open(path) as fh:
        n = sum(1 for row in csv.reader(fh) if row) - 1
    if n < 1:
        raise InputError(f"{path}: no rows")
    return n


_PLANNERS: dict[str, Callable[[list[str], dict[str, Any]], Plan]] = {
    "colors": _plan_colors, "predict": _plan_predict, "xgb-predict": _plan_xgb,
    "recommend": _plan_recommend}


# -- running one chunk ------------------------------------------------------------------------
_cache: dict[tuple, Any] = {}  # per worker process: models are loaded once and kept


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def run(job: Mapping[str, Any], items: list[Any] | None, start: int, stop: int,
        ) -> list[dict[str, Any]]:
    """The output records of items ``start``..``stop`` of ``job``."""
    return _RUNNERS[job["kind"]](job, items, start, stop)


def _run_colors(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    from mltk.colors import ColorNamer, ColorSettings, analyze_image

    def make() -> tuple[Any, Any]:
        s = dict(job["settings"])
        settings = ColorSettings.from_config(s, palette_file=s.pop("palette_file", None))
        return settings, ColorNamer(settings.palette, settings.distance, settings.achromatic)

    settings, namer = _cached(("colors", job["id"]), make)
    out = []
    for path, shown in items:
        rec = analyze_image(path, settings, namer)
        rec["path"] = shown
        out.append(rec)
    return out


def _run_predict(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    from mltk.predictors.image import ImageClassifier

    s = job["settings"]
    p = _cached(("predict", job["model"]["digest"], s["top_k"]),
                lambda: ImageClassifier.open(job["inputs"]["run_dir"], top_k=s["top_k"]))
    shown = {path: name for path, name in items}
    out = []
    for rec in p.predict_paths([Path(path) for path, _ in items], s["batch_size"], threads=2):
        rec["path"] = shown[rec["path"]]
        out.append(rec)
    return out


def _run_xgb(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    import pandas as pd

    from mltk.predictors.tabular import TwoGroupPredictor

    p = _cached(("xgb", job["model"]["digest"]),
                lambda: TwoGroupPredictor.open(job["inputs"]["model_dir"]))
    df = pd.read_csv(job["inputs"]["data"], skiprows=range(1, start + 1), nrows=stop - start)
    unknown = job["settings"]["unknown_categories"]
    try:
        return [_plain({**r, "error": None}) for r in
                p.score_frame(df, unknown).to_dict("records")]
    except InputError:
        pass
    out = []  # one bad row spoils the batch: score row by row to tell good rows from bad
    for i in range(len(df)):
        row = df.iloc[[i]]
        try:
            (rec,) = p.score_frame(row, unknown).to_dict("records")
            out.append(_plain({**rec, "error": None}))
        except InputError as exc:
            ids = {c: row[c].iloc[0] for c in p.id_cols if c in row.columns}
            message = str(exc).replace("row 1, ", "", 1)
            out.append(_plain({**ids, "probability": None, "label": None,
                               "error": f"row {start + i + 1}: {message}"}))
    return out


def _run_recommend(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    from mltk.predictors.recommender import RecommenderPredictor
    from mltk.recommend import read_queries

    p = _cached(("recommend", job["model"]["digest"]),
                lambda: RecommenderPredictor.open(job["inputs"]["model_dir"]))
    with _open(job["inputs"]["queries"]) as fh:
        rows = list(islice(read_queries(fh, job["inputs"]["queries"]), start, stop))
    out = []
    for i, rec in enumerate(p.query_records(rows, job["settings"]["k"])):
        rec["row"] = start + i
        out.append(_plain(rec))
    return out


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    from mltk._json import clean

    return {str(k): clean(v.item() if hasattr(v, "item") else v) for k, v in record.items()}


_RUNNERS: dict[str, Callable[..., list[dict]]] = {
    "colors": _run_colors, "predict": _run_predict, "xgb-predict": _run_xgb,
    "recommend": _run_recommend}
