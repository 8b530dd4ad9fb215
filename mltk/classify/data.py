"""Image-classification data: which shards to read, and the tf.data pipelines that read them.

:func:`resolve_source` works out files, layout (mltk ``standard`` shards or the legacy ``raw``
layout), class names and the record count without TensorFlow (manifest or record headers).
:func:`train_dataset` is the training pipeline: shuffled shard list, parallel interleave,
bounded shuffle of serialized records, parallel decode, random flip and resize per image,
batch (drop remainder), contrast and brightness on whole batches folded into the scaling to
[-1, 1], prefetch. :func:`eval_dataset` reads every
record exactly once, in order, with the last partial batch kept.

Damaged files: :func:`check_records` checks every record's CRCs (as ``mltk tfrecord count
--verify`` does, with its words and offsets) and returns a :class:`Damage` per damaged file;
:func:`skip_damage` limits a source to the records before each file's first bad one, which is
all that TensorFlow's reader can return from such a file. :func:`find_damage` names the file
behind a read error that surfaced inside TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mltk.errors import InputError

PREFERRED_TRAIN = ("train",)
PREFERRED_VAL = ("validation", "val", "valid")
PREFERRED_TEST = ("test", "validation", "val")


@dataclass
class DataSource:
    files: list[Path]
    layout: str                   # standard | raw
    classes: list[str]
    records: int
    split: str | None = None
    stored_size: int | None = None  # raw layout: the side of the stored images
    # Records to read from the start of a file (a damaged one: those before its first bad
    # record); files not listed are read whole.
    limits: dict[Path, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"files": len(self.files), "layout": self.layout, "classes": len(self.classes),
                "records": self.records, "split": self.split}


def _group_by_split(files: Sequence[Path]) -> dict[str | None, list[Path]]:
    from mltk.tfrecords.read import split_of

    groups: dict[str | None, list[Path]] = {}
    for f in files:
        groups.setdefault(split_of(f), []).append(f)
    return groups


def resolve_source(paths: Sequence[str | os.PathLike], split: str | None = None,
                   prefer: Sequence[str] = (), num_classes: int | None = None,
                   required: bool = True,
                   tolerate_damage: bool = False) -> DataSource | None:
    """Files from folders, globs or lists; one split of a multi-split folder.

    ``split`` names the split to use; otherwise a folder holding several splits gives the first
    of ``prefer`` that it has (``train`` for training), and anything else is an error asking for
    a split. ``required=False`` returns None when no preferred split exists (validation).
    A file whose record headers are damaged (truncated, a bad length) is an error, unless
    ``tolerate_damage`` (the caller then runs :func:`check_records`).
    """
    from mltk.tfrecords.read import expand_paths, labels_for

    groups = _group_by_split(expand_paths(paths))
    chosen = _choose_split(paths, groups, split, prefer, required)
    if chosen is _NO_SPLIT:
        return None
    files = groups[chosen]
    layout = _one_layout(files)
    records = _count_records(files, tolerate_damage)
    classes = labels_for(files[0])
    if classes is None:
        classes = _classes_from_records(files, num_classes)
    stored = _raw_side(files[0]) if layout == "raw" else None
    return DataSource(files, layout, classes, records, chosen, stored)


_NO_SPLIT: Any = object()  # no preferred split, and none is required


def _choose_split(paths: Sequence[str | os.PathLike], groups: dict[str | None, list[Path]],
                  split: str | None, prefer: Sequence[str], required: bool) -> Any:
    """The split to read: ``split``, the only one, or the first of ``prefer`` present."""
    where = ", ".join(map(str, paths))
    if split is not None:
        if split not in groups:
            raise InputError(f"{where}: no split named {split!r} "
                             f"(found: {', '.join(sorted(str(g) for g in groups))})")
        return split
    if len(groups) == 1:
        chosen = next(iter(groups))
    else:
        chosen = next((p for p in prefer if p in groups), _NO_SPLIT)
        if chosen is _NO_SPLIT:
            if not required:
                return _NO_SPLIT
            raise InputError(f"{where} holds several splits "
                             f"({', '.join(sorted(str(g) for g in groups))}); choose one with "
                             "`split` or a glob such as DIR/train-*")
    if not required and chosen not in prefer:
        return _NO_SPLIT
    return chosen


def _one_layout(files: Sequence[Path]) -> str:
    """The layout all ``files`` share (one dataset, one layout)."""
    from mltk.tfrecords.parse import detect_layout

    layouts = {f: detect_layout(f) for f in files}
    kinds = set(layouts.values())
    if len(kinds) > 1:
        odd = next(f for f, k in layouts.items() if k != layouts[files[0]])
        raise InputError(f"{odd}: {layouts[odd]} layout, but {files[0]} is "
                         f"{layouts[files[0]]}; one dataset must use one layout")
    return kinds.pop()


def _count_records(files: Sequence[Path], tolerate_damage: bool) -> int:
    """Records in ``files`` by their headers; damaged headers are an error unless tolerated."""
    counts = _counts(files)
    bad = [c for c in counts if not c["ok"]]
    if bad and not tolerate_damage:
        raise InputError(f"{bad[0]['file']}: {bad[0]['error']} (check with mltk tfrecord count "
                         "--verify)")
    return sum(c["records"] for c in counts)


@dataclass(frozen=True)
class Damage:
    """A damaged file: ``readable`` records before the first bad one, of ``total`` by the
    record headers (or the manifest; None when neither can count them)."""

    file: Path
    error: str            # mltk tfrecord count --verify's words, with the record and offset
    offset: int
    readable: int
    total: int | None

    @property
    def lost(self) -> int | None:
        return None if self.total is None else max(0, self.total - self.readable)

    def describe(self) -> str:
        return f"{self.file}: {self.error}"

    def skipped(self) -> str:
        """What reading it up to the damage costs, in words."""
        if self.lost is None:
            return (f"{self.describe()}: only its first {self.readable} records can be read "
                    "(the rest of the file is skipped)")
        return (f"{self.describe()}: {self.lost} of its {self.total} records skipped (the "
                f"first {self.readable} are read)")


def check_records(files: Sequence[Path], threads: int = 8) -> list[Damage]:
    """Every record's length and data CRC in ``files`` (each read once, in threads): one
    :class:`Damage` per damaged file, in file order, worded as ``count --verify`` words it."""
    from concurrent.futures import ThreadPoolExecutor

    from mltk.tfrecords.format import scan

    with ThreadPoolExecutor(max(1, min(threads, len(files)))) as pool:
        results = list(pool.map(lambda f: scan(f, verify=True), files))
    damage = []
    for f, res in zip(files, results, strict=True):
        if res.ok:
            continue
        damage.append(Damage(Path(f), res.error or "damaged", int(res.offset or 0), res.records,
                             _total_records(Path(f))))
    return damage


def _total_records(path: Path) -> int | None:
    """The record count of a damaged file by its manifest entry or headers, if they allow."""
    from mltk.tfrecords.read import count_records

    counted = count_records(path)
    return counted["records"] if counted["ok"] else None


def skip_damage(src: DataSource, damage: Sequence[Damage]) -> DataSource:
    """``src`` limited to the records that can be read: each damaged file up to its first bad
    record (TensorFlow's reader ends a file at a bad record; the limit keeps it from reaching
    it, so nothing is dropped unseen or counted twice)."""
    if not damage:
        return src
    limits = {**src.limits, **{d.file: d.readable for d in damage}}
    counted = {Path(c["file"]): c for c in _counts(src.files)}
    records = 0
    for f in src.files:
        if f in limits:
            records += limits[f]
        else:
            records += counted[f]["records"]
    return replace(src, limits=limits, records=records)


def _counts(files: Sequence[Path]) -> list[dict[str, Any]]:
    from mltk.tfrecords.read import count_paths

    return count_paths(files)


def find_damage(files: Sequence[Path]) -> Damage | None:
    """The first damaged file of ``files`` (after a read error inside TensorFlow)."""
    found = check_records(files)
    return found[0] if found else None


def op_error_line(exc: BaseException) -> str:
    """The first line of a TensorFlow error's own message, without its graph context."""
    text = str(getattr(exc, "message", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.split("{{function_node", 1)[0].strip() or type(exc).__name__


def _classes_from_records(files: Sequence[Path], num_classes: int | None) -> list[str]:
    """No labels.txt or manifest: ``num_classes`` if given, else the largest label seen + 1."""
    if num_classes:
        return [str(i) for i in range(num_classes)]
    from mltk.tfrecords.read import count_by_label

    labels = [r["label"] for r in count_by_label(files)]
    if not labels:
        raise InputError(f"{files[0]}: no records")
    if min(labels) < 0:
        raise InputError(f"{files[0]}: negative label {min(labels)}")
    return [str(i) for i in range(max(labels) + 1)]


def _raw_side(path: Path) -> int:
    from mltk.tfrecords.format import decode_example, iter_records

    for payload in iter_records(path):
        n = len(decode_example(payload)["image"][1][0])
        side = int(round((n / 3) ** 0.5))
        if side * side * 3 != n:
            raise InputError(f"{path}: record 0: raw image of {n} bytes is not a square RGB "
                             "image")
        return side
    raise InputError(f"{path}: no records")


# --- tf.data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Augment:
    flip: bool = True
    brightness: float = 0.125          # delta as a fraction of the value range
    contrast: tuple[float, float] | None = (0.2, 1.8)

    @classmethod
    def from_settings(cls, settings: Any) -> Augment | None:
        """The augmentation of a run's settings (a TrainSettings); None: ``augment`` off."""
        if not settings.augment:
            return None
        return cls(settings.flip, float(settings.brightness or 0.0),
                   tuple(settings.contrast) if settings.contrast is not None else None)


def _decode_fn(src: DataSource, image_size: int, with_filename: bool = False,
               flip_seed: int | None = None) -> Any:
    """serialized Example -> (float32 image SxSx3 in 0..255, label[, filename]).

    With ``flip_seed`` the function takes (index, serialized) and flips each image left-right
    with probability 1/2, seeded by (flip_seed, index): cheap on one image, repeatable.
    """
    tf = _tf()
    if src.layout == "standard":
        spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
        if with_filename:
            spec["image/filename"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    else:
        spec = {"image": tf.io.FixedLenFeature([], tf.string),
                "label": tf.io.FixedLenFeature([], tf.int64)}
    side = src.stored_size
    target = tf.constant([image_size, image_size])

    def decode(serialized, index=None):
        ex = tf.io.parse_single_example(serialized, spec)
        if src.layout == "standard":
            img = decode_reduced(ex["image/encoded"], image_size)
            label = ex["image/class/label"]
        else:
            img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [side, side, 3])
            label = ex["label"]
        if index is not None:
            img = tf.image.stateless_random_flip_left_right(
                img, tf.stack([tf.constant(flip_seed, tf.int64), index]))
        # Area averaging when shrinking (no aliasing, faster than antialiased bilinear),
        # bilinear when enlarging.
        shrink = tf.reduce_all(tf.shape(img)[:2] >= target)
        img = tf.cond(shrink, lambda: tf.image.resize(img, target, method="area"),
                      lambda: tf.image.resize(img, target, method="bilinear"))
        img.set_shape([image_size, image_size, 3])
        if with_filename:
            name = ex["image/filename"] if src.layout == "standard" else tf.constant("")
            return img, label, name
        return img, label

    if flip_seed is None:
        return decode
    return lambda index, serialized: decode(serialized, index)


def decode_reduced(data: Any, image_size: int) -> Any:
    """Decode image bytes to uint8 RGB; a JPEG whose shorter side is at least 2, 4 or 8 times
    ``image_size`` is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (most of the decode work
    skipped, the result still at least ``image_size`` on both sides)."""
    tf = _tf()

    def jpeg():
        short = tf.reduce_min(tf.io.extract_jpeg_shape(data)[:2])
        branch = tf.add_n([tf.cast(short >= image_size * r, tf.int32) for r in (2, 4, 8)])
        return tf.switch_case(branch, [
            (lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r)) for r in (1, 2, 4, 8)])

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    return tf.cond(tf.strings.substr(data, 0, 2) == b"\xff\xd8", jpeg, other)


def augment_batch(images: Any, seed: Any, aug: Augment) -> Any:
    """Random contrast and brightness per image of a float 0..255 batch, returned in [-1, 1].

    Stateless ops seeded per batch (a seeded deterministic run augments identically); contrast,
    brightness, clipping and scaling are folded into one multiply-add and one clip. (The random
    flip happens per image, before batching: see :func:`train_dataset`.)
    """
    tf = _tf()
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    factor = tf.ones([n, 1, 1, 1])
    offset = tf.zeros([n, 1, 1, 1])
    if aug.contrast is not None:
        low, high = aug.contrast
        factor = tf.random.stateless_uniform([n, 1, 1, 1], seeds[0], low, high)
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        offset = mean * (1.0 - factor)
    if aug.brightness:
        offset += tf.random.stateless_uniform([n, 1, 1, 1], seeds[1], -aug.brightness,
                                              aug.brightness) * 255.0
    # clip((x * f + o), 0, 255) / 127.5 - 1 == clip(x * f / 127.5 + (o / 127.5 - 1), -1, 1)
    return tf.clip_by_value(images * (factor / 127.5) + (offset / 127.5 - 1.0), -1.0, 1.0)


def to_unit_range(images: Any) -> Any:
    """0..255 -> [-1, 1], the input range of every mltk model."""
    return images / 127.5 - 1.0


def _tf() -> Any:
    from mltk._keras import import_tf

    return import_tf()


def train_dataset(src: DataSource, image_size: int, batch_size: int, augment: Augment | None,
                  seed: int, shuffle_buffer: int = 10000, interleave: int = 16,
                  deterministic: bool = False, skip_bad: bool = True,
                  threads: int | None = None) -> Any:
    """Endless shuffled, augmented batches of (images in [-1, 1], int labels).

    ``threads``: a private thread pool of that size for this pipeline (default: TensorFlow's
    shared pool, all cores).
    """
    tf = _tf()
    autotune = tf.data.AUTOTUNE
    files = _file_limits(src).shuffle(len(src.files), seed=seed,
                                      reshuffle_each_iteration=True).repeat()
    ds = files.interleave(
        lambda f, n: tf.data.TFRecordDataset(f, buffer_size=1 << 20).take(n),
        cycle_length=max(1, min(interleave, len(src.files))), block_length=1,
        num_parallel_calls=autotune, deterministic=deterministic)
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    flip = augment is not None and augment.flip
    if flip:
        ds = ds.enumerate()
    ds = ds.map(_decode_fn(src, image_size, flip_seed=seed if flip else None),
                num_parallel_calls=autotune, deterministic=deterministic)
    if skip_bad:
        # A record that does not decode is skipped with a warning instead of ending the run.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    counter = tf.data.Dataset.counter()
    ds = tf.data.Dataset.zip((ds, counter))

    def finish(batch, step):
        images, labels = batch
        if augment is not None and (augment.contrast is not None or augment.brightness):
            return augment_batch(images, tf.stack([tf.cast(seed, tf.int64), step]),
                                 augment), labels
        return to_unit_range(images), labels

    ds = ds.map(finish, num_parallel_calls=autotune, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options).prefetch(autotune)


def _file_limits(src: DataSource) -> Any:
    """(path, records to read) per file; -1 reads a file whole."""
    tf = _tf()
    return tf.data.Dataset.from_tensor_slices((
        [os.fspath(f) for f in src.files],
        tf.constant([src.limits.get(f, -1) for f in src.files], tf.int64)))


def eval_dataset(src: DataSource, image_size: int, batch_size: int,
                 with_filename: bool = False) -> Any:
    """Every record once, in file order, the last batch partial: (images, labels[, names])."""
    tf = _tf()
    autotune = tf.data.AUTOTUNE
    ds = _file_limits(src).flat_map(
        lambda f, n: tf.data.TFRecordDataset(f, buffer_size=1 << 20).take(n))
    ds = ds.map(_decode_fn(src, image_size, with_filename), num_parallel_calls=autotune,
                deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    # The count from the record headers: Keras then knows where the data ends (and TensorFlow
    # checks that the files really hold that many).
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-src.records // batch_size)))

    def finish(images, labels, *names):
        return (to_unit_range(images), labels, *names)

    ds = ds.map(finish, num_parallel_calls=autotune, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options).prefetch(autotune)


def synthetic_batches(batch_size: int, image_size: int, num_classes: int, seed: int) -> Any:
    """An endless generator of one random batch (numpy; no TensorFlow needed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (batch_size, image_size, image_size, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, batch_size).astype(np.int64)
    while True:
        yield images, labels
