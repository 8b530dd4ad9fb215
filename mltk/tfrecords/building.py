"""Build sharded TFRecord datasets from labelled image folders (or a path,label CSV).

The plan (which file goes to which split and shard) depends only on the source listing, the
options and the seed: files are split per class (stratified), shuffled, and cut into shards that
each mix all classes. Each shard is one task for a worker process, written to a temporary name
and renamed when complete, so an interrupted build leaves no file that looks complete and
``resume=True`` rebuilds only the missing shards. ``manifest.json`` is written last.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk import __version__
from mltk._atomic import write_json, write_text
from mltk.errors import InputError, MltkError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_DIR = ".mltk-build"
LAYOUTS = ("standard", "raw")
STANDARD_SCHEMA = {
    "image/encoded": "bytes", "image/format": "bytes", "image/height": "int64",
    "image/width": "int64", "image/channels": "int64", "image/class/label": "int64",
    "image/class/text": "bytes", "image/filename": "bytes",
}
RAW_SCHEMA = {"image": "bytes (raw uint8 HxWx3)", "label": "int64"}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    layout: str = "standard"
    size: int = 150  # raw layout: fixed output size
    reencode: bool = False
    max_side: int | None = None
    quality: int = 95
    shards: int | None = None
    shard_size: int = 128 * 1024 * 1024
    shard_by_label: bool = False
    verify_images: bool = False  # fully decode kept JPEGs too (slower); else structural checks
    split: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"train": 1.0})
    seed: int = 0
    jobs: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise MltkError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not 1 <= self.quality <= 100:
            raise MltkError(f"quality must be between 1 and 100, got {self.quality}")
        if self.shards is not None and self.shards < 1:
            raise MltkError(f"shards must be at least 1, got {self.shards}")
        if self.shard_size < 1:
            raise MltkError(f"shard size must be positive, got {self.shard_size}")
        if self.max_side is not None and self.max_side < 8:
            raise MltkError(f"max-side must be at least 8, got {self.max_side}")
        if not self.split or any(v <= 0 for v in self.split.values()):
            raise MltkError(f"split fractions must be positive, got {dict(self.split)}")
        if abs(sum(self.split.values()) - 1.0) > 1e-6:
            raise MltkError(f"split fractions must add up to 1, got {dict(self.split)}")
        for name in self.split:
            if not name or not name.replace("_", "").isalnum():
                raise MltkError(f"split names must be alphanumeric, got {name!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], origins: Mapping[str, str] | None = None,
                    ) -> BuildOptions:
        """Options from resolved settings (configs/tfrecord.yaml plus the build's own values),
        sizes and splits given as text (``128MB``, ``train=0.9,validation=0.1``) parsed."""
        from mltk._settings import check_known

        values = dict(cfg)
        check_known("tfrecord", values, [f.name for f in dataclasses.fields(cls)])
        if isinstance(values.get("shard_size"), str):
            values["shard_size"] = parse_size(values["shard_size"])
        if isinstance(values.get("split"), str):
            values["split"] = parse_split(values["split"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int
    name: str
    items: tuple[tuple[str, int], ...]  # (path, label id)


def parse_size(text: str | int) -> int:
    """'128MB', '1.5GiB', '64k', 1000 -> bytes (whole bytes, at least one)."""
    from fractions import Fraction

    if isinstance(text, int):
        return text
    units = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
             "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([a-z]*)", text.strip().lower().replace(" ", ""))
    unit = m.group(2) if m else "?"
    # Exact arithmetic: as floats, 1.005kB is 1004 bytes and a long number overflows.
    size = int(Fraction(m.group(1)) * units[unit]) if unit in units else 0
    if size < 1:
        raise MltkError(f"cannot parse size {text!r} (e.g. 128MB, 1GiB)")
    return size


def parse_split(text: str) -> dict[str, float]:
    """'train=0.9,validation=0.1' -> {'train': 0.9, 'validation': 0.1}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise MltkError(f"cannot parse split {text!r} (e.g. train=0.9,validation=0.1)"
                            ) from None
    return out


# -- listing the source ------------------------------------------------------------------------
def list_folder(src: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted sub-folders) and (path, label) for every regular file in them."""
    if not src.is_dir():
        raise InputError(f"{src}: source folder not found")
    classes = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(f"{src}: no class sub-folders (expected one folder per class)")
    items = []
    for label, name in enumerate(classes):
        files = sorted(f for f in (src / name).rglob("*")
                       if f.is_file() and not f.name.startswith("."))
        if not files:
            log.warning(f"class folder {src / name} is empty")
        items.extend((os.fspath(f), label) for f in files)
    if not items:
        raise InputError(f"{src}: the class folders hold no files")
    return classes, items


def list_csv(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes and items from a CSV with columns path,label (paths relative to the CSV ok)."""
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read CSV ({exc.strerror})") from None
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise InputError(f"{path}: expected columns path,label, got "
                             f"{','.join(reader.fieldnames or [])}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row["path"] or row["label"] in (None, ""):
                raise InputError(f"{path}: row {line}: empty path or label")
            p = Path(row["path"])
            rows.append((os.fspath(p if p.is_absolute() else path.parent / p), row["label"]))
    if not rows:
        raise InputError(f"{path}: no rows")
    classes = sorted({label for _, label in rows})
    ids = {c: i for i, c in enumerate(classes)}
    return classes, [(p, ids[label]) for p, label in rows]


# -- the plan ----------------------------------------------------------------------------------
def plan_shards(items: Sequence[tuple[str, int]], classes: Sequence[str], opts: BuildOptions,
                sizes: Mapping[str, int] | None = None) -> list[ShardTask]:
    """Split (stratified by class), shuffle, and cut into shards; deterministic given the seed."""
    rng = random.Random(opts.seed)
    by_class: dict[int, list[str]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    split_names = list(opts.split)
    splits: dict[str, list[tuple[str, int]]] = {s: [] for s in split_names}
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        rng.shuffle(paths)
        counts = _apportion(len(paths), [opts.split[s] for s in split_names])
        start = 0
        for name, n in zip(split_names, counts, strict=True):
            splits[name].extend((p, label) for p in paths[start:start + n])
            start += n
    tasks = []
    for name in split_names:
        chosen = splits[name]
        rng.shuffle(chosen)
        if not chosen:
            continue
        if opts.shard_by_label:
            groups = [[it for it in chosen if it[1] == label] for label in sorted(by_class)]
            groups = [g for g in groups if g]
        else:
            if opts.shards:
                n = max(1, min(len(chosen), round(opts.shards * opts.split[name])))
            else:
                total = sum((sizes or {}).get(p, 0) for p, _ in chosen)
                n = max(1, min(len(chosen), math.ceil(total / opts.shard_size)))
            groups = [chosen[i * len(chosen) // n:(i + 1) * len(chosen) // n] for i in range(n)]
        for i, group in enumerate(groups):
            tasks.append(ShardTask(name, i, len(groups),
                                   f"{name}-{i:05d}-of-{len(groups):05d}.tfrecord",
                                   tuple(group)))
    return tasks


def _apportion(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder split of n items by fractions."""
    raw = [n * f for f in fractions]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: -(raw[i] - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    return counts


# -- encoding one image --------------------------------------------------------------------------
def encode_item(path: str, label: int, classes: Sequence[str], opts: BuildOptions) -> bytes:
    """The serialized tf.train.Example for one image; raises InputError for a bad file."""
    import cv2
    import numpy as np

    from mltk._imaging import check_image_bytes, check_pixels, jpeg_size
    from mltk.tfrecords.format import encode_example

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})") from None
    fmt = check_image_bytes(data)
    if opts.layout == "raw":
        img = _decode_rgb(data, fmt)
        img = cv2.resize(img, (opts.size, opts.size),
                         interpolation=cv2.INTER_AREA if min(img.shape[:2]) >= opts.size
                         else cv2.INTER_LINEAR)
        return encode_example({"image": np.ascontiguousarray(img).tobytes(), "label": label})
    keep = fmt == "jpeg" and not opts.reencode and opts.max_side is None
    if keep:
        # Structural checks (end marker, frame header, scan header) catch empty, truncated and
        # non-JPEG files without decoding; --verify-images decodes the pixel data as well.
        size = jpeg_size(data)
        if size is None or not size[0] or not size[1] or b"\xff\xda" not in data:
            raise InputError("cannot read JPEG structure (no frame or scan header)")
        if opts.verify_images and cv2.imdecode(np.frombuffer(data, np.uint8),
                                               cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            raise InputError("cannot decode JPEG (corrupt data)")
        head = check_pixels(data)
        keep = head.mode == "RGB"  # grayscale and CMYK JPEGs are converted below
    if keep:
        encoded, width, height = data, head.width, head.height
    else:
        img = _decode_rgb(data, fmt)
        if opts.max_side and max(img.shape[:2]) > opts.max_side:
            scale = opts.max_side / max(img.shape[:2])
            img = cv2.resize(img, (max(1, round(img.shape[1] * scale)),
                                   max(1, round(img.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, opts.quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise InputError("JPEG encoding failed")
        encoded, height, width = buf.tobytes(), img.shape[0], img.shape[1]
    return encode_example({
        "image/encoded": encoded, "image/format": b"jpeg", "image/height": int(height),
        "image/width": int(width), "image/channels": 3, "image/class/label": label,
        "image/class/text": classes[label], "image/filename": os.path.basename(path),
    })


def _decode_rgb(data: bytes, fmt: str) -> Any:
    """RGB uint8; transparent pixels are composited over white (product-photo background)."""
    import numpy as np

    from mltk._imaging import decode_image

    img = decode_image(data, fmt)
    if img.alpha is None:
        return img.rgb
    a = img.alpha.astype(np.float32)[..., None] / 255.0
    return (img.rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)


# -- writing shards ---------------------------------------------------------------------------
def write_shard(task: ShardTask, out: str, classes: Sequence[str], opts: BuildOptions,
                keep_stats: bool = True) -> dict[str, Any]:
    """Write one shard under a temporary name, then its stats (unless ``keep_stats`` is false:
    a caller that keeps them itself), then rename it."""
    from mltk.tfrecords.format import write_record

    out_dir = Path(out)
    final = out_dir / task.name
    tmp = out_dir / f".{task.name}.tmp-{os.getpid()}"
    records = nbytes = 0
    per_class: dict[str, int] = {}
    skipped = []
    try:
        with open(tmp, "wb") as fh:
            for path, label in task.items:
                try:
                    example = encode_item(path, label, classes, opts)
                except InputError as exc:
                    skipped.append({"path": path, "reason": str(exc)})
                    continue
                nbytes += write_record(fh, example)
                records += 1
                per_class[classes[label]] = per_class.get(classes[label], 0) + 1
            fh.flush()
            os.fsync(fh.fileno())
        stats = {"file": task.name, "split": task.split, "records": records, "bytes": nbytes,
                 "class_counts": dict(sorted(per_class.items())), "skipped": skipped}
        if keep_stats:
            write_json(out_dir / STATE_DIR / f"{task.name}.json", stats)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return stats


_state: dict[str, Any] = {}


def _init(out: str, classes: Sequence[str], opts: BuildOptions) -> None:
    import cv2

    cv2.setNumThreads(1)
    _state.update(out=out, classes=classes, opts=opts)


def _run(task: ShardTask) -> dict[str, Any]:
    return write_shard(task, _state["out"], _state["classes"], _state["opts"])


# -- the build ---------------------------------------------------------------------------------
def _our_files(out: Path) -> list[Path]:
    return [p for p in out.iterdir()
            if p.suffix == ".tfrecord" or p.name in ("labels.txt", "manifest.json", STATE_DIR)
            or ".tfrecord.tmp-" in p.name]


def _plan_fingerprint(tasks: Sequence[ShardTask], classes: Sequence[str],
                      opts: BuildOptions) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"classes": list(classes), "options": options_dict(opts)},
                        sort_keys=True).encode())
    for t in tasks:
        h.update(t.name.encode())
        for path, label in t.items:
            h.update(f"{path}\0{label}\n".encode())
    return h.hexdigest()


def options_dict(opts: BuildOptions) -> dict[str, Any]:
    """The options as saved in the manifest (plain JSON; ``jobs`` is not part of the result)."""
    d = dataclasses.asdict(opts)
    d.pop("jobs")
    d["split"] = dict(opts.split)
    return d


def build(src: str | os.PathLike | None, out: str | os.PathLike, options: BuildOptions,
          from_csv: str | os.PathLike | None = None, resume: bool = False,
          overwrite: bool = False, on_shard: Callable[[dict[str, Any]], None] | None = None,
          ) -> dict[str, Any]:
    """Build the dataset; returns the manifest (also written to OUT/manifest.json)."""
    t0 = time.perf_counter()
    classes, tasks = plan_build(src, options, from_csv)
    out_dir = Path(out)
    _prepare_out_dir(out_dir, resume, overwrite)
    state = out_dir / STATE_DIR
    fingerprint = _plan_fingerprint(tasks, classes, options)
    done = _completed_shards(out_dir, tasks, fingerprint) if resume else {}
    for p in out_dir.glob(".*.tfrecord.tmp-*"):  # leftovers of an interrupted run
        p.unlink()
    write_json(state / "plan.json",
               {"fingerprint": fingerprint, "shards": [t.name for t in tasks]})
    if done:
        log.info(f"resuming: {len(done)} of {len(tasks)} shards already complete")
    todo = [t for t in tasks if t.name not in done]
    results = dict(done)
    for stats in _run_tasks(todo, out_dir, classes, options):
        results[stats["file"]] = stats
        for s in stats["skipped"]:
            log.warning(f"skipped {s['path']}: {s['reason']}")
        if on_shard:
            on_shard(stats)
    write_text(out_dir / "labels.txt", "".join(f"{c}\n" for c in classes))
    manifest = _manifest(tasks, results, classes, options, time.perf_counter() - t0)
    write_json(out_dir / "manifest.json", manifest)
    shutil.rmtree(state, ignore_errors=True)
    return manifest


def _prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create OUT; refuse a non-empty one unless resuming or overwriting (which removes our
    files, and only ours)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MltkError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()) and not (resume or overwrite):
        raise MltkError(f"{out_dir} is not empty; use `resume` to finish an interrupted build "
                        "or `overwrite` to replace it")
    if overwrite and not resume:
        for p in _our_files(out_dir):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _completed_shards(out_dir: Path, tasks: Sequence[ShardTask], fingerprint: str
                      ) -> dict[str, dict[str, Any]]:
    """Resuming: the stats of the shards an interrupted build of the same plan finished."""
    state = out_dir / STATE_DIR
    plan_file = state / "plan.json"
    if not plan_file.exists():
        if (out_dir / "manifest.json").exists():
            raise MltkError(f"{out_dir}: the build is already complete (manifest.json exists); "
                            "use `overwrite` to rebuild")
        return {}
    if json.loads(plan_file.read_text()).get("fingerprint") != fingerprint:
        raise MltkError(f"{out_dir}: the source files or options differ from the interrupted "
                        "build; use `overwrite` to start again")
    done = {}
    for t in tasks:
        stats_file = state / f"{t.name}.json"
        if (out_dir / t.name).exists() and stats_file.exists():
            stats = json.loads(stats_file.read_text())
            if stats.get("bytes") == (out_dir / t.name).stat().st_size:
                done[t.name] = stats
    return done


def plan_build(src: str | os.PathLike | None, options: BuildOptions,
               from_csv: str | os.PathLike | None = None) -> tuple[list[str], list[ShardTask]]:
    """The classes and the shards :func:`build` writes for this source and these options."""
    if (src is None) == (from_csv is None):
        raise MltkError("give either a source folder or `from_csv` (a CSV of paths and labels)")
    classes, items = (list_csv(Path(from_csv)) if from_csv is not None
                      else list_folder(Path(src)))
    sizes = {} if options.shards or options.shard_by_label else {
        p: _file_size(p) for p, _ in items}
    return classes, plan_shards(items, classes, options, sizes)


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _run_tasks(tasks: Sequence[ShardTask], out: Path, classes: Sequence[str],
               opts: BuildOptions):
    jobs = min(opts.jobs or os.cpu_count() or 1, max(1, len(tasks)))
    if jobs <= 1:
        _init(os.fspath(out), classes, opts)
        for task in tasks:
            yield _run(task)
        return
    from mltk._parallel import process_context

    ctx = process_context(["mltk.tfrecords.building"])
    # Largest shards first keeps the workers busy until the end.
    ordered = sorted(tasks, key=lambda t: -len(t.items))
    with ctx.Pool(jobs, initializer=_init, initargs=(os.fspath(out), classes, opts)) as pool:
        yield from pool.imap_unordered(_run, ordered)


def _manifest(tasks: Sequence[ShardTask], results: Mapping[str, dict[str, Any]],
              classes: Sequence[str], opts: BuildOptions, seconds: float) -> dict[str, Any]:
    return manifest_for([results[t.name] for t in tasks], classes, opts, seconds)


def manifest_for(shards: Sequence[Mapping[str, Any]], classes: Sequence[str],
                 opts: BuildOptions, seconds: float) -> dict[str, Any]:
    """The manifest of a dataset from its shards' stats (as :func:`write_shard` returns them),
    in plan order; ``seconds`` is its one timing field."""
    splits: dict[str, dict[str, Any]] = {}
    for s in shards:
        sp = splits.setdefault(s["split"], {"records": 0, "bytes": 0, "shards": 0,
                                            "class_counts": {}})
        sp["records"] += s["records"]
        sp["bytes"] += s["bytes"]
        sp["shards"] += 1
        for c, n in s["class_counts"].items():
            sp["class_counts"][c] = sp["class_counts"].get(c, 0) + n
    skipped = [dict(sk, shard=s["file"]) for s in shards for sk in s["skipped"]]
    return {
        "format_version": FORMAT_VERSION,
        "mltk_version": __version__,
        "layout": opts.layout,
        "features": STANDARD_SCHEMA if opts.layout == "standard" else RAW_SCHEMA,
        "image_size": opts.size if opts.layout == "raw" else None,
        "classes": list(classes),
        "splits": splits,
        "shards": [{k: s[k] for k in ("file", "split", "records", "bytes", "class_counts")}
                   for s in shards],
        "skipped": skipped,
        "options": options_dict(opts),
        "seconds": round(seconds, 3),
    }


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Load ``manifest.json`` (given the file or its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no manifest") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: invalid manifest JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "shards" not in data:
        raise InputError(f"{p}: not an mltk manifest")
    return data

