"""The kinds of batch work: how each plans its items and runs one chunk of them.

Every kind turns the arguments of its one-machine command into a plan (inputs, resolved
settings, the identity of the model it uses, the number of items) and runs a chunk of items into
the same records that command prints. A bad item (an unreadable image, a malformed row, an
unknown item id) is an error record, never a failed chunk.

``tfrecord-build`` is one item per shard: a chunk writes its shard into OUT (as
``mltk tfrecord build`` does, bad images skipped and listed) and returns the shard's stats, and
:func:`finalize` writes labels.txt and manifest.json once every shard is done. OUT holds a
marker (``.mltk-job.json``) naming the plan it belongs to, so another build is never mixed in.

``embed`` is one item per image: a chunk embeds its images with the run (L2-normalised pooled
features, as ``mltk embed``) into records ``{path, dim, vector, error}`` (``vector``: base64 of
``dim`` little-endian float32 values), and :func:`finalize` merges them, in input order, into
the vectors folder ``--vectors DIR`` (the PCA of ``--dim`` fitted on them all), the same folder
``mltk embed`` writes, for ``mltk index build``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from mltk._json import read_or_none
from mltk.errors import InputError, MltkError

KINDS = ("colors", "predict", "xgb-predict", "recommend", "tfrecord-build", "embed")
TFRECORD_MARK = ".mltk-job.json"  # in a tfrecord-build job's OUT: the plan it belongs to

#: The options of the one-machine command that each kind takes.
OPTIONS: dict[str, frozenset[str]] = {
    "colors": frozenset({"recursive", "k", "top", "palette", "crop", "seed", "config"}),
    "predict": frozenset({"recursive", "top_k", "batch_size"}),
    "xgb-predict": frozenset({"unknown_categories"}),
    "recommend": frozenset({"k"}),
    "tfrecord-build": frozenset({"split", "shards", "shard_size", "shard_by_label", "layout",
                                 "size", "quality", "max_side", "reencode", "verify_images",
                                 "seed", "config"}),
    "embed": frozenset({"recursive", "batch_size", "vectors", "dim", "whiten", "seed"}),
}


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _crop(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, (list, tuple)) and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


#: What each option's value must be, and how that reads in an error.
_OPTION_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (_positive, "a positive integer") for k in (
        "k", "top", "top_k", "batch_size", "shards", "size", "max_side", "dim")},
    "quality": (lambda v: _whole(v) and 1 <= v <= 100, "an integer from 1 to 100"),
    "seed": (_whole, "an integer"),
    **{k: (lambda v: isinstance(v, bool), "true or false") for k in (
        "recursive", "shard_by_label", "reencode", "verify_images", "whiten")},
    **{k: (_text, "text") for k in ("palette", "config", "split", "layout", "vectors")},
    "shard_size": (lambda v: _text(v) or _positive(v), "a size such as 128MB"),
    "unknown_categories": (lambda v: v in ("error", "missing"), "error or missing"),
    "crop": (_crop, "x0,y0,x1,y1 fractions"),
}


def check_options(kind: str, options: Mapping[str, Any],
                  spell: Callable[[str], str] = str) -> dict[str, Any]:
    """The options given for ``kind`` (None/False dropped); another kind's option, or a value
    of the wrong type, is an error (option names written by ``spell``: the CLI names its
    flags)."""
    if kind not in OPTIONS:
        raise InputError(f"unknown job kind {kind!r} (kinds: {', '.join(OPTIONS)})")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    extra = [k for k in given if k not in OPTIONS[kind]]
    if extra:
        raise InputError(f"not an option of {kind}: {', '.join(map(spell, extra))} (its "
                         f"options: {', '.join(map(spell, sorted(OPTIONS[kind])))})")
    for key, value in given.items():
        ok, what = _OPTION_TYPES[key]
        if not ok(value):
            raise InputError(f"{spell(key)} must be {what}, got {_shown(value)}")
    return given


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


@dataclasses.dataclass
class Plan:
    kind: str
    inputs: dict[str, Any]
    settings: dict[str, Any]
    model: dict[str, Any] | None
    total: int  # number of items
    items: list[Any] | None = None  # stored in items.ndjson when the kind lists its items
    chunk_size: int | None = None  # forced by the kind (tfrecord-build: one shard per chunk)


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
def plan(kind: str, args: Sequence[str], options: Mapping[str, Any],
         roots: Sequence[str] = ()) -> Plan:
    """The plan of a job of ``kind`` for the command-line arguments and options given; with
    ``roots`` (a server's job roots), a job kept to them (:mod:`mltk.jobs.roots`)."""
    options = check_options(kind, options)
    made = _PLANNERS[kind](list(args), dict(options))
    if roots:
        _keep_to_roots(made, roots)
    return made


def _keep_to_roots(made: Plan, roots: Sequence[str]) -> None:
    """What the job reads, and the folders it writes, are checked now, as its chunks check
    them when they run (:func:`_kept`, :func:`_kept_items`); the roots stay out of the plan:
    a worker checks again against its own roots, see :func:`run`."""
    from mltk.jobs.roots import real_roots

    real = real_roots(roots)
    job = {"kind": made.kind, "inputs": made.inputs}
    _kept(job, real)
    _kept_items(job, made.items, real)


def _plan_colors(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk import _config

    if not args:
        raise InputError("colors: give image files or folders")
    config, palette = opts.pop("config", None), opts.pop("palette", None)
    recursive = bool(opts.pop("recursive", False))
    if isinstance(opts.get("crop"), str):
        opts["crop"] = _floats(opts["crop"], 4, "crop")
    elif "crop" in opts:
        opts["crop"] = [float(v) for v in opts["crop"]]  # one job id for 0 and 0.0
    settings = _config.resolve("colors", opts, config)
    model = None
    if palette:
        settings["palette_file"] = os.path.abspath(palette)
        model = {"palette": file_digest(palette)}
    _colors_settings(settings)  # checked now, not in every chunk
    items = _image_items(args, recursive)
    return Plan("colors", {"paths": args, "recursive": recursive}, settings, model, len(items),
                items)


def _floats(text: str, n: int, name: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise InputError(f"{name} must be {n} numbers separated by commas, got {text!r}")
    return values


def _colors_settings(settings: Mapping[str, Any]) -> Any:
    from mltk.colors import ColorSettings

    s = dict(settings)
    return ColorSettings.from_config(s, palette_file=s.pop("palette_file", None))


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


def _model_and_file(args: list[str], kind: str, usage: str, what: str) -> tuple[str, str]:
    """MODEL_DIR and a data file, the folder holding a model of ``kind``."""
    from mltk.predictors import detect_kind

    if len(args) != 2:
        raise InputError(usage)
    if detect_kind(args[0]) != kind:
        raise InputError(f"{args[0]}: not {what}")
    return args[0], args[1]


def _plan_xgb(args: list[str], opts: dict[str, Any]) -> Plan:
    model_dir, data = _model_and_file(args, "two-group", "xgb-predict: give MODEL_DIR and "
                                      "DATA.csv", "an xgb-analyze folder")
    rows = _count_csv_rows(data)
    settings = {"unknown_categories": opts.get("unknown_categories") or "error"}
    return Plan("xgb-predict", {"model_dir": os.path.abspath(model_dir),
                                "data": os.path.abspath(data), "data_digest": file_digest(data)},
                settings, folder_identity(model_dir), rows)


def _plan_recommend(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk.recommend import read_queries

    model_dir, queries = _model_and_file(args, "recommender", "recommend: give MODEL_DIR and "
                                         "QUERIES.csv", "a recommend fit folder")
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


def _plan_tfrecord(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk.tfrecords.building import options_dict, plan_build

    if len(args) != 2:
        raise InputError("tfrecord-build: give SRC and OUT")
    src, out = args
    options = _build_options(opts)
    classes, tasks = plan_build(src, options)
    items = [{"split": t.split, "index": t.index, "count": t.count, "name": t.name,
              "items": [[os.path.abspath(p), label, p] for p, label in t.items]}
             for t in tasks]
    settings = options_dict(options)
    fingerprint = _digest({"classes": classes, "settings": settings, "shards": items})
    _check_tfrecord_out(Path(out), fingerprint)
    inputs = {"src": os.path.abspath(src), "out": os.path.abspath(out), "classes": classes,
              "fingerprint": fingerprint}
    return Plan("tfrecord-build", inputs, settings, None, len(items), items, chunk_size=1)


def _build_options(opts: dict[str, Any]) -> Any:
    """The BuildOptions ``mltk tfrecord build`` resolves from these options (and --config)."""
    from mltk import settings

    keys = ("layout", "size", "quality", "shard_size", "shards", "split", "seed", "max_side")
    flags = ("reencode", "shard_by_label", "verify_images")
    return settings.load("tfrecord", opts.get("config"), **{k: opts.get(k) for k in keys},
                         **{k: bool(opts.get(k)) for k in flags})


def _check_tfrecord_out(out: Path, fingerprint: str) -> None:
    """OUT must be empty or hold this plan's files (as ``tfrecord build`` without --resume)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    mark = read_or_none(out / TFRECORD_MARK) or {}
    if mark.get("fingerprint") != fingerprint:
        raise InputError(f"{out} is not empty and is not this build's output (its "
                         f"{TFRECORD_MARK} is missing or names another); give an empty folder")


def _digest(obj: Any) -> str:
    from mltk._json import dumps

    return hashlib.sha256(dumps(obj, sort_keys=True).encode()).hexdigest()


def _plan_embed(args: list[str], opts: dict[str, Any]) -> Plan:
    from mltk.predictors import detect_kind
    from mltk.similar.embed import identity_of_run

    if len(args) < 2:
        raise InputError("embed: give RUN_DIR and image files or folders")
    run_dir, paths = args[0], args[1:]
    if detect_kind(run_dir) != "image-classifier":
        raise InputError(f"{run_dir}: not an mltk train run folder")
    if not opts.get("vectors"):
        raise InputError("embed: give the vectors folder to write (vectors)")
    if opts.get("whiten") and not opts.get("dim"):
        raise InputError("embed: whiten needs dim")
    out = Path(opts["vectors"])
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    settings = {"batch_size": int(opts.get("batch_size") or 64), "dim": opts.get("dim"),
                "whiten": bool(opts.get("whiten")), "seed": int(opts.get("seed") or 0)}
    items = _image_items(paths, bool(opts.get("recursive")))
    model = {**folder_identity(run_dir), "identity": identity_of_run(run_dir)}
    return Plan("embed", {"run_dir": os.path.abspath(run_dir), "paths": paths,
                          "out": os.path.abspath(out)}, settings, model, len(items), items)


_PLANNERS: dict[str, Callable[[list[str], dict[str, Any]], Plan]] = {
    "colors": _plan_colors, "predict": _plan_predict, "xgb-predict": _plan_xgb,
    "recommend": _plan_recommend, "tfrecord-build": _plan_tfrecord, "embed": _plan_embed}


# -- running one chunk ------------------------------------------------------------------------
_cache: dict[tuple, Any] = {}  # per worker process: models are loaded once and kept


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def run(job: Mapping[str, Any], items: list[Any] | None, start: int, stop: int,
        roots: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The output records of items ``start``..``stop`` of ``job``; with ``roots`` (the
    worker's own, never job.json's), every file it reads and folder it writes is checked by
    real path first and used by its real path (:mod:`mltk.jobs.roots`)."""
    if not roots:
        return _RUNNERS[job["kind"]](job, items, start, stop)
    from mltk.jobs.roots import real_roots

    real = real_roots(roots)
    if job["kind"] in _FILE_ITEMS:
        return _run_inside(job, items or [], start, stop, real)
    return _RUNNERS[job["kind"]](_kept(job, real), _kept_items(job, items, real), start, stop)


def _kept(job: Mapping[str, Any], roots: Sequence[str]) -> dict[str, Any]:
    """``job`` with the files and folders it reads and writes checked against ``roots``, their
    real paths under ``real`` (what the runners open: a link swapped in after the check is not
    followed; one swapped in between the check and the open still is)."""
    from mltk.jobs import roots as job_roots

    real = {}
    for key in ("data", "queries"):
        if key in job["inputs"]:
            real[key] = job_roots.resolved(job["inputs"][key], roots)
    if "out" in job["inputs"]:
        job_roots.check_tree(job["inputs"]["out"], roots)
        real["out"] = os.path.realpath(job["inputs"]["out"])
    return {**job, "real": real}


def _kept_items(job: Mapping[str, Any], items: list[Any] | None,
                roots: Sequence[str]) -> list[Any] | None:
    """A tfrecord-build shard whose files are all under ``roots``, read by their real paths
    (shown by their given names); one file outside fails the chunk."""
    from mltk.jobs.roots import resolved

    if job["kind"] != "tfrecord-build" or not items:
        return items
    return [{**shard, "items": [[resolved(path, roots), label, shown]
                                for path, label, shown in shard["items"]]}
            for shard in items]


def _source(job: Mapping[str, Any], key: str) -> str:
    """The path to open for input ``key``: its checked real path when roots apply."""
    return job.get("real", {}).get(key) or job["inputs"][key]


#: Kinds whose items are ``[path, shown]`` of one input file each.
_FILE_ITEMS = ("colors", "predict", "embed")


def _run_inside(job: Mapping[str, Any], items: list[Any], start: int, stop: int,
                roots: Sequence[str]) -> list[dict[str, Any]]:
    """Run the chunk with each item whose real path leaves the roots refused on its own: it
    is given as a path that can never be read (its record is an unreadable file's), then its
    error says why; the other items are read by their real paths (a link swapped in after the
    check is not followed; one swapped in between the check and the open still is). The
    vectors folder of an embed job is checked when it is written (:func:`finalize`)."""
    from mltk.jobs.roots import problem

    refused = {}
    checked = []
    for i, (path, shown) in enumerate(items):
        why = problem(path, roots)
        if why:
            refused[i] = why
            path = os.path.join(os.devnull, str(i))  # under a device: never a file
        checked.append([os.path.realpath(path) if not why else path, shown])
    records = _RUNNERS[job["kind"]](job, checked, start, stop)
    for i, why in refused.items():
        records[i]["error"] = why
    return records


def _run_colors(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    from mltk.colors import ColorNamer, analyze_image

    def make() -> tuple[Any, Any]:
        import cv2

        cv2.setNumThreads(1)  # one worker process per core, as mltk colors' own pool
        settings = _colors_settings(job["settings"])
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
    out = []
    for (_, name), rec in zip(items, p.predict_paths([Path(path) for path, _ in items],
                                                     s["batch_size"], threads=2), strict=True):
        rec["path"] = name  # by position: two items may share a real path
        out.append(rec)
    return out


def _run_xgb(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    import pandas as pd

    from mltk.predictors.two_group import TwoGroupPredictor

    p = _cached(("xgb", job["model"]["digest"]),
                lambda: TwoGroupPredictor.open(job["inputs"]["model_dir"]))
    p.unknown_categories = job["settings"]["unknown_categories"]
    df = pd.read_csv(_source(job, "data"), skiprows=range(1, start + 1), nrows=stop - start)
    rows = df.to_dict("records")
    out = []
    for i, (row, outcome) in enumerate(zip(rows, p.predict(rows), strict=True)):
        if isinstance(outcome, InputError):
            ids = {c: row[c] for c in p.id_cols if c in row}
            outcome = {**ids, "probability": None, "label": None,
                       "error": f"row {start + i + 1}: {outcome}"}
        out.append(_plain(outcome if "error" in outcome else {**outcome, "error": None}))
    return out


def _run_recommend(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    from mltk.predictors.recommender import RecommenderPredictor
    from mltk.recommend import read_queries

    p = _cached(("recommend", job["model"]["digest"]),
                lambda: RecommenderPredictor.open(job["inputs"]["model_dir"]))
    with _open(_source(job, "queries")) as fh:
        rows = list(islice(read_queries(fh, job["inputs"]["queries"]), start, stop))
    out = []
    for i, rec in enumerate(p.query_records(rows, job["settings"]["k"])):
        rec["row"] = start + i
        out.append(_plain(rec))
    return out


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    from mltk._json import clean

    return {str(k): clean(v.item() if hasattr(v, "item") else v) for k, v in record.items()}


def _run_tfrecord(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    import cv2

    from mltk.tfrecords.building import ShardTask, write_shard

    (shard,) = items
    out = Path(_source(job, "out"))
    _claim_tfrecord_out(out, job)
    cv2.setNumThreads(1)  # as tfrecord build's workers: one process per shard, no oversubscription
    task = ShardTask(shard["split"], shard["index"], shard["count"], shard["name"],
                     tuple((path, label) for path, label, _ in shard["items"]))
    stats = write_shard(task, os.fspath(out), job["inputs"]["classes"],
                        _options_from(job["settings"]), keep_stats=False)
    shown = {path: name for path, _, name in shard["items"]}
    stats["skipped"] = [{**s, "path": shown.get(s["path"], s["path"])}
                        for s in stats["skipped"]]
    return [stats]


def _claim_tfrecord_out(out: Path, job: Mapping[str, Any]) -> None:
    """Mark OUT as this plan's (first chunk), or refuse when another build holds it."""
    from mltk._atomic import write_json

    fingerprint = job["inputs"]["fingerprint"]
    mark = read_or_none(out / TFRECORD_MARK)
    if mark is None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / TFRECORD_MARK, {"fingerprint": fingerprint, "job": job["id"]})
    elif mark.get("fingerprint") != fingerprint:
        raise InputError(f"{out / TFRECORD_MARK}: {out} holds the shards of another build "
                         f"(job {mark.get('job')})")


def _options_from(settings: Mapping[str, Any]) -> Any:
    from mltk.tfrecords.building import BuildOptions

    return BuildOptions(**{**settings, "split": dict(settings["split"])})


def _run_embed(job: Mapping[str, Any], items: Any, start: int, stop: int) -> list[dict]:
    import base64

    import numpy as np

    from mltk.classify import Classifier
    from mltk.similar.embed import embed_images

    run_dir = job["inputs"]["run_dir"]
    classifier = _cached(("embed", job["model"]["digest"]),
                         lambda: Classifier.load(run_dir, need_tf=False))
    errors: list[str | None] = []
    x, _, _ = embed_images(classifier, [path for path, _ in items],
                           batch_size=job["settings"]["batch_size"], threads=2,
                           on_row=lambda path, error: errors.append(error))
    rows = iter(x.astype("<f4"))
    out = []
    for (_, shown), error in zip(items, errors, strict=True):
        if error is None:
            v = next(rows)
            out.append({"path": shown, "dim": int(v.shape[0]),
                        "vector": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode(),
                        "error": None})
        else:
            out.append({"path": shown, "dim": None, "vector": None, "error": error})
    return out


_RUNNERS: dict[str, Callable[..., list[dict]]] = {
    "colors": _run_colors, "predict": _run_predict, "xgb-predict": _run_xgb,
    "recommend": _run_recommend, "tfrecord-build": _run_tfrecord, "embed": _run_embed}


# -- finishing a job --------------------------------------------------------------------------
def has_final_step(kind: str) -> bool:
    return kind in _FINALIZERS


def finalize(job: Mapping[str, Any], records: list[dict[str, Any]], seconds: float,
             roots: Sequence[str] = ()) -> Any:
    """The kind's last step once every chunk is done (idempotent); ``records`` are the job's
    records in input order, ``seconds`` its time from submission to its last chunk. With
    ``roots``, the folder it writes is checked first (and written by its real path)."""
    if roots:
        from mltk.jobs.roots import real_roots

        job = _kept(job, real_roots(roots))
    return _FINALIZERS[job["kind"]](job, records, seconds)


def _finish_tfrecord(job: Mapping[str, Any], records: list[dict[str, Any]],
                     seconds: float) -> dict[str, Any]:
    """labels.txt and manifest.json, as ``tfrecord build`` writes them last; nothing is written
    when manifest.json already says the same (apart from its timing)."""
    from mltk._atomic import write_json, write_text
    from mltk.tfrecords.building import manifest_for

    out = Path(_source(job, "out"))
    classes = job["inputs"]["classes"]
    manifest = manifest_for(records, classes, _options_from(job["settings"]), seconds)
    labels = "".join(f"{c}\n" for c in classes)
    _check_shards(out, records)
    _remove_leftovers(out)
    found = read_or_none(out / "manifest.json")
    if (isinstance(found, dict) and _untimed(found) == _untimed(manifest)
            and _read_text(out / "labels.txt") == labels):
        return found
    write_text(out / "labels.txt", labels)
    write_json(out / "manifest.json", manifest)  # last, as in tfrecord build
    return manifest


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def _check_shards(out: Path, records: list[dict[str, Any]]) -> None:
    """Every shard is in OUT with the size its chunk wrote (OUT may have been emptied since)."""
    for i, stats in enumerate(records):
        shard = out / stats["file"]
        if not shard.is_file() or shard.stat().st_size != stats["bytes"]:
            raise MltkError(f"{shard}: missing or not the {stats['bytes']} bytes chunk {i} "
                            f"wrote; delete parts/chunk-{i:05d}.ndjson in the job folder and "
                            "submit again to rebuild it")


def _untimed(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "seconds"}


def _remove_leftovers(out: Path) -> None:
    """Temporary shards of runs killed mid-shard (every shard is complete by now)."""
    for p in out.glob(".*.tfrecord.tmp-*"):
        p.unlink(missing_ok=True)


def _finish_embed(job: Mapping[str, Any], records: list[dict[str, Any]],
                  seconds: float) -> dict[str, Any]:
    """The vectors folder of every chunk's vectors, in input order (what ``mltk embed``
    writes); nothing is written when the folder already holds this job's vectors."""
    import base64

    import numpy as np

    from mltk.similar.embed import from_rows

    out = Path(_source(job, "out"))
    s = job["settings"]
    good = [r for r in records if r.get("error") is None]
    errors = [{"path": r["path"], "error": r["error"]} for r in records if r.get("error")]
    x = (np.stack([np.frombuffer(base64.b64decode(r["vector"]), "<f4") for r in good])
         if good else np.zeros((0, 0), np.float32))
    model = os.fspath(Path(job["inputs"]["run_dir"]).resolve())
    result = from_rows(x, [r["path"] for r in good], errors, model=model,
                       identity=job["model"]["identity"], dim=s["dim"], whiten=s["whiten"],
                       seed=s["seed"], seconds=seconds)
    summary = {"out": job["inputs"]["out"], **result.summary()}
    found = _yaml_or_empty(out / "config.yaml")
    if found.get("job") == job["id"] and found.get("count") == len(result):
        return summary
    result.save(out, extra={"job": job["id"]})
    return summary


def _yaml_or_empty(path: Path) -> dict[str, Any]:
    """A YAML mapping, or {} when it is missing or unreadable."""
    from mltk import _config

    try:
        found = _config.load_yaml(path)
    except (OSError, MltkError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


_FINALIZERS: dict[str, Callable[..., Any]] = {"tfrecord-build": _finish_tfrecord,
                                              "embed": _finish_embed}
