"""TFRecord speed: counting ~1 GB of shards and building shards from JPEG folders.

Count (files in page cache, in the same run): `mltk tfrecord count` (header-and-seek scan, no
manifest; and with the manifest) vs `tf.data.TFRecordDataset(files).reduce(...)` vs
`tf.compat.v1.io.tf_record_iterator`.
Build: JPEG sources kept as bytes (images/s, MB/s) vs a single-process `tf.io.TFRecordWriter`
loop and vs a plain file copy of the same data; -j 1 vs -j 2 when re-encoding.

Run: .venv/bin/python benchmarks/bench_tfrecord.py [--records 100000] [--images 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def make_shards(folder: Path, records: int, payload: int = 10_000, shards: int = 10) -> list[Path]:
    from mltk.tfrecords.format import frame

    rng_bytes = os.urandom(payload * 4)
    paths = []
    per = records // shards
    for s in range(shards):
        path = folder / f"train-{s:05d}-of-{shards:05d}.tfrecord"
        with open(path, "wb") as fh:
            for i in range(per):
                start = (i * 7919) % (payload * 3)
                fh.write(frame(rng_bytes[start:start + payload]))
        paths.append(path)
    return paths


def bench_count(records: int) -> None:
    import tensorflow as tf

    from mltk.tfrecords import count_paths

    with tempfile.TemporaryDirectory() as tmp:
        files = make_shards(Path(tmp), records)
        size = sum(f.stat().st_size for f in files)
        for f in files:  # warm the page cache
            f.read_bytes()
        t_mltk, rows = timed(lambda: sum(r["records"] for r in count_paths(files,
                                                                           use_manifest=False)))
        names = [str(f) for f in files]
        t_tf, n_tf = timed(lambda: int(tf.data.TFRecordDataset(names).reduce(
            tf.constant(0, tf.int64), lambda x, _: x + 1)))
        t_it, n_it = timed(lambda: sum(1 for f in names
                                       for _ in tf.compat.v1.io.tf_record_iterator(f)))
        assert rows == n_tf == n_it == records
    print(f"count: {records} records of 10 KB in {len(files)} shards, {size / 1e9:.2f} GB")
    print(f"  mltk tfrecord count (scan)      {t_mltk:7.3f} s")
    print(f"  tf.data reduce                  {t_tf:7.3f} s   ({t_tf / t_mltk:.1f}x slower)")
    print(f"  tf.compat.v1 tf_record_iterator {t_it:7.3f} s   ({t_it / t_mltk:.1f}x slower)")


def make_jpegs(folder: Path, n: int) -> None:
    import cv2
    import numpy as np

    from mltk.datasets.products import BASE_SHADES, render_product

    rng = np.random.default_rng(0)
    names = sorted(BASE_SHADES)
    for i in range(n):
        cls = names[i % 4]
        (folder / cls).mkdir(parents=True, exist_ok=True)
        rgb = render_product(rng, cls, None, 640, 480)
        cv2.imwrite(str(folder / cls / f"{i:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])


def bench_build(n: int) -> None:
    import tensorflow as tf

    from mltk.tfrecords import BuildOptions, build

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        make_jpegs(src, n)
        files = sorted(src.rglob("*.jpg"))
        mb = sum(f.stat().st_size for f in files) / 1e6
        for f in files:
            f.read_bytes()

        def copy():
            dst = Path(tmp) / "copy"
            shutil.copytree(src, dst)
            for f in dst.rglob("*.jpg"):  # as durable as the shards mltk writes
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())

        def tf_writer():
            classes = sorted(p.name for p in src.iterdir())
            with tf.io.TFRecordWriter(str(Path(tmp) / "tf.tfrecord")) as w:
                for f in files:
                    ex = tf.train.Example(features=tf.train.Features(feature={
                        "image/encoded": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[f.read_bytes()])),
                        "image/class/label": tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[classes.index(f.parent.name)]))}))
                    w.write(ex.SerializeToString())

        def mltk(jobs: int, reencode: bool, name: str):
            return lambda: build(src, Path(tmp) / name, BuildOptions(
                shards=8, jobs=jobs, reencode=reencode))

        t_copy, _ = timed(copy)
        t_tf, _ = timed(tf_writer)
        t_keep1, _ = timed(mltk(1, False, "keep1"))
        t_keep2, _ = timed(mltk(2, False, "keep2"))
        t_re1, _ = timed(mltk(1, True, "re1"))
        t_re2, _ = timed(mltk(2, True, "re2"))
    print(f"build: {n} JPEGs 640x480, {mb:.0f} MB")
    rows = [("plain file copy (+fsync)", t_copy), ("tf.io.TFRecordWriter loop, 1 process", t_tf),
            ("mltk build, bytes kept, -j 1", t_keep1), ("mltk build, bytes kept, -j 2", t_keep2),
            ("mltk build, --reencode, -j 1", t_re1), ("mltk build, --reencode, -j 2", t_re2)]
    for name, t in rows:
        print(f"  {name:38s} {t:6.2f} s  {n / t:7.0f} img/s  {mb / t:6.0f} MB/s")
    print(f"  bytes kept -j 1 vs file copy: {t_keep1 / t_copy:.2f}x the time")
    print(f"  --reencode -j 2 / -j 1 speed-up: {t_re1 / t_re2:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    bench_count(args.records)
    bench_build(args.images)


if __name__ == "__main__":
    main()
