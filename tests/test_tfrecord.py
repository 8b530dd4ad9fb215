"""mltk tfrecord: build, count, verify, inspect; compatibility with TensorFlow both ways."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mltk.errors import InputError, MltkError
from mltk.tfrecords import (
    BuildOptions,
    build,
    count_by_label,
    count_paths,
    count_records,
    decode_example,
    encode_example,
    read_manifest,
    scan,
)
from mltk.tfrecords.building import STATE_DIR, list_csv, plan_shards
from mltk.tfrecords.format import frame, iter_records

tf = pytest.importorskip("tensorflow")


def read_with_tf(files):
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
            "image/class/text": tf.io.FixedLenFeature([], tf.string),
            "image/filename": tf.io.FixedLenFeature([], tf.string),
            "image/height": tf.io.FixedLenFeature([], tf.int64),
            "image/channels": tf.io.FixedLenFeature([], tf.int64)}
    out = []
    for rec in tf.data.TFRecordDataset([str(f) for f in files]):
        ex = tf.io.parse_single_example(rec, spec)
        out.append({k: v.numpy() for k, v in ex.items()})
    return out


def test_round_trip_with_tensorflow(digits_dir, tmp_path):
    manifest = build(digits_dir, tmp_path / "out",
                     BuildOptions(split={"train": 0.8, "validation": 0.2}, shards=5, jobs=2))
    files = sorted((tmp_path / "out").glob("*.tfrecord"))
    assert [f.name for f in files] == [f"train-{i:05d}-of-00004.tfrecord" for i in range(4)] + [
        "validation-00000-of-00001.tfrecord"]
    labels = (tmp_path / "out" / "labels.txt").read_text().split()
    assert labels == [str(i) for i in range(10)]
    records = read_with_tf(files)
    assert len(records) == 300 == sum(s["records"] for s in manifest["shards"])
    by_name = {p.name: p for p in digits_dir.rglob("*.jpg")}
    for r in records:
        src = by_name[r["image/filename"].decode()]
        assert r["image/encoded"] == src.read_bytes()  # JPEG bytes kept as they are
        assert labels[r["image/class/label"]] == src.parent.name == r["image/class/text"].decode()
        assert r["image/height"] == 64 and r["image/channels"] == 3
    # every shard mixes classes, and the split is stratified
    for s in manifest["shards"]:
        assert len(s["class_counts"]) >= 5
    val = manifest["splits"]["validation"]["class_counts"]
    train = manifest["splits"]["train"]["class_counts"]
    for c in labels:
        assert abs(val[c] / (val[c] + train[c]) - 0.2) < 0.05
    assert manifest["format_version"] == 1 and manifest["options"]["seed"] == 0
    assert read_manifest(tmp_path / "out")["classes"] == labels


def test_same_seed_same_dataset(digits_dir, tmp_path):
    opts = BuildOptions(shards=3, seed=7, jobs=1)
    build(digits_dir, tmp_path / "a", opts)
    build(digits_dir, tmp_path / "b", BuildOptions(shards=3, seed=7, jobs=2))
    for f in sorted((tmp_path / "a").glob("*.tfrecord")):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()


def test_tensorflow_written_shards_are_counted_and_verified(tmp_path):
    std = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff" * 100])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}))
    raw = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(12)])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
    for name, ex, n in (("std.tfrecord", std, 11), ("raw.tfrecord", raw, 7)):
        with tf.io.TFRecordWriter(str(tmp_path / name)) as w:
            for _ in range(n):
                w.write(ex.SerializeToString())
        res = count_records(tmp_path / name, verify=True)
        assert (res["records"], res["ok"]) == (n, True)
        assert count_records(tmp_path / name)["records"] == n
    assert count_by_label([tmp_path / "std.tfrecord"]) == [
        {"label": 3, "name": None, "records": 11}]
    assert decode_example(std.SerializeToString())["image/class/label"] == ("int64", [3])
    # and our framing and Example encoding are byte-identical to TensorFlow's
    ours = encode_example({"image": bytes(12), "label": 1})
    assert tf.train.Example.FromString(ours) == raw
    data = (tmp_path / "raw.tfrecord").read_bytes()
    assert data == frame(raw.SerializeToString()) * 7


def _write_records(path, payloads):
    path.write_bytes(b"".join(frame(p) for p in payloads))
    return path


def test_truncated_and_corrupt_shards(tmp_path, cli):
    payloads = [bytes([i]) * (50 + i) for i in range(6)]
    good = _write_records(tmp_path / "good.tfrecord", payloads)
    data = good.read_bytes()
    offsets = np.cumsum([0] + [16 + len(p) for p in payloads])
    trunc = tmp_path / "trunc.tfrecord"
    trunc.write_bytes(data[: offsets[4] + 20])  # cut inside record 4
    flipped = bytearray(data)
    flipped[offsets[2] + 12 + 5] ^= 0xFF  # one payload byte of record 2
    flip = tmp_path / "flip.tfrecord"
    flip.write_bytes(bytes(flipped))
    res = scan(trunc)
    assert (res.ok, res.records, res.offset) == (False, 4, offsets[4])
    assert "truncated record" in res.error
    assert scan(flip).ok  # headers alone cannot see a payload flip ...
    res = scan(flip, verify=True)  # ... --verify does, at the right offset
    assert (res.ok, res.records, res.offset) == (False, 2, offsets[2])
    assert "data CRC mismatch in record 2" in res.error
    result = cli("tfrecord", "count", trunc, good, "--per-file", "-f", "json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert rows[0] == {"file": str(trunc), "split": None, "records": 4,
                       "bytes": len(data[: offsets[4] + 20]), "ok": False,
                       "error": rows[0]["error"], "offset": int(offsets[4]), "source": "scan"}
    assert rows[1]["ok"] and rows[1]["records"] == 6
    assert f"{trunc}: truncated record at byte {offsets[4]}" in result.stderr
    result = cli("tfrecord", "count", flip, "--verify")
    assert result.exit_code == 1 and f"at byte {offsets[2]}" in result.stderr
    assert cli("tfrecord", "count", flip).exit_code == 0
    # readers name the record as count --verify does
    with pytest.raises(InputError, match=f"data CRC mismatch in record 2 at byte {offsets[2]}"):
        list(iter_records(flip))
    with pytest.raises(InputError, match=f"truncated record 4 at byte {offsets[4]}"):
        list(iter_records(trunc))


def test_count_uses_manifest_and_splits(digits_dir, tmp_path, cli):
    build(digits_dir, tmp_path / "ds", BuildOptions(split={"train": 0.5, "test": 0.5}, shards=4))
    rows = count_paths([tmp_path / "ds"])
    assert {r["source"] for r in rows} == {"manifest"}
    assert count_paths([tmp_path / "ds"], use_manifest=False)[0]["source"] == "scan"
    assert [r["records"] for r in rows] == [r["records"] for r in
                                            count_paths([tmp_path / "ds"], use_manifest=False)]
    result = cli("tfrecord", "count", str(tmp_path / "ds" / "*.tfrecord"), "-f", "json")
    assert result.exit_code == 0
    splits = read_manifest(tmp_path / "ds")["splits"]
    assert json.loads(result.stdout) == [
        {"split": "test", "files": 2, "records": splits["test"]["records"],
         "bytes": rows[0]["bytes"] + rows[1]["bytes"]},
        {"split": "train", "files": 2, "records": splits["train"]["records"],
         "bytes": rows[2]["bytes"] + rows[3]["bytes"]},
        {"split": "total", "files": 4, "records": 300, "bytes": sum(r["bytes"] for r in rows)}]
    labels = count_by_label([tmp_path / "ds"])
    assert [r["name"] for r in labels] == [str(i) for i in range(10)]
    assert sum(r["records"] for r in labels) == 300
    # a shard whose size no longer matches its manifest entry is scanned
    shard = tmp_path / "ds" / "train-00000-of-00002.tfrecord"
    with open(shard, "ab") as fh:
        fh.write(frame(encode_example({"label": 1})))
    row = count_records(shard)
    assert row["source"] == "scan" and row["records"] == rows[2]["records"] + 1


def test_by_label_reports_unlabelled_record(tmp_path):
    p = _write_records(tmp_path / "x.tfrecord", [encode_example({"other": 1})])
    with pytest.raises(InputError, match="record 0 has no label"):
        count_by_label([p])


def test_bad_files_skipped_and_listed(tmp_path, cli):
    src = tmp_path / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(src / c / f"{i}.jpg"), np.full((20, 20, 3), 40 * i, np.uint8))
    (src / "a" / "empty.jpg").write_bytes(b"")
    (src / "a" / "notes.txt").write_text("hello")
    (src / "b" / "cut.jpg").write_bytes((src / "b" / "0.jpg").read_bytes()[:100])
    no_frame = b"\xff\xd8\xff\xe0\x00\x04ab" + b"junk" * 20 + b"\xff\xd9"
    (src / "b" / "nosof.jpg").write_bytes(no_frame)
    (src / "empty_class").mkdir()
    result = cli("tfrecord", "build", src, tmp_path / "out", "--shards", "2", "-f", "json")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "out")
    reasons = {Path(s["path"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"empty.jpg", "notes.txt", "cut.jpg", "nosof.jpg"}
    assert "no frame or scan header" in reasons["nosof.jpg"]
    assert "empty file" in reasons["empty.jpg"] and "not an image" in reasons["notes.txt"]
    assert "truncated JPEG" in reasons["cut.jpg"]
    assert "Warning: class folder" in result.stderr and "empty_class is empty" in result.stderr
    assert "skipped" in result.stderr and "cut.jpg" in result.stderr
    assert sum(s["records"] for s in manifest["shards"]) == 8
    assert manifest["classes"] == ["a", "b", "empty_class"]


def test_output_folder_rules_and_empty_source(digits_dir, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("tfrecord", "build", digits_dir, out, "--shards", "1").exit_code == 0
    again = cli("tfrecord", "build", digits_dir, out, "--shards", "1")
    assert again.exit_code == 1 and "is not empty; use --resume" in again.stderr
    assert cli("tfrecord", "build", digits_dir, out, "--shards", "2", "--overwrite"
               ).exit_code == 0
    assert len(list(out.glob("*.tfrecord"))) == 2
    result = cli("tfrecord", "build", digits_dir, out, "--shards", "2", "--resume")
    assert result.exit_code == 1 and "already complete (manifest.json exists)" in result.stderr
    (out / "manifest.json").unlink()  # as if interrupted: the plan stays, the options change
    (out / STATE_DIR).mkdir(exist_ok=True)
    (out / STATE_DIR / "plan.json").write_text('{"fingerprint": "other"}')
    result = cli("tfrecord", "build", digits_dir, out, "--shards", "2", "--resume")
    assert result.exit_code == 1 and "options differ from the interrupted build" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("tfrecord", "build", empty, tmp_path / "o2")
    assert result.exit_code == 1 and "no class sub-folders" in result.stderr
    with pytest.raises(MltkError, match="add up to 1"):
        BuildOptions(split={"train": 0.9, "validation": 0.2})


def test_from_csv_and_conversions(tmp_path):
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("CMYK", (30, 20), (0, 200, 200, 0)).save(imgs / "cmyk.jpg")
    Image.new("L", (30, 20), 128).save(imgs / "grey.jpg")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, :15, 3] = 255  # left half opaque red, right half transparent
    cv2.imwrite(str(imgs / "alpha.png"), rgba)
    Image.new("RGB", (400, 100), (0, 0, 255)).save(imgs / "wide.webp")
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([["imgs/cmyk.jpg", "x"], ["imgs/grey.jpg", "y"], ["imgs/alpha.png", "x"],
                     [str(imgs / "wide.webp"), "y"]])
    build(None, tmp_path / "out", BuildOptions(shards=1, max_side=200),
          from_csv=tmp_path / "list.csv")
    recs = read_with_tf(sorted((tmp_path / "out").glob("*.tfrecord")))
    assert len(recs) == 4
    for r in recs:
        img = tf.io.decode_jpeg(r["image/encoded"]).numpy()
        assert img.shape[2] == 3 and r["image/channels"] == 3
        name = r["image/filename"].decode()
        if name == "alpha.png":
            assert img[10, 5, 0] > 200 and img[10, 25].min() > 200  # red, then white
        if name == "wide.webp":
            assert img.shape[:2] == (50, 200)  # --max-side


def test_raw_layout_round_trip(digits_dir, tmp_path):
    from mltk.tfrecords import detect_layout, parse_fn

    build(digits_dir, tmp_path / "raw", BuildOptions(layout="raw", size=32, shards=1))
    files = sorted((tmp_path / "raw").glob("*.tfrecord"))
    assert detect_layout(files[0]) == "raw"
    ds = tf.data.TFRecordDataset([str(f) for f in files]).map(parse_fn("raw", 32))
    images, labels = zip(*[(img.numpy(), int(lab)) for img, lab in ds], strict=True)
    assert len(images) == 300 and images[0].shape == (32, 32, 3)
    assert sorted(set(labels)) == list(range(10))


def test_interrupted_build_resumes_to_the_same_records(digits_dir, tmp_path, mltk_proc):
    """Kill a build while it is blocked on one input (a FIFO), then --resume."""
    rows = [[str(p), p.parent.name] for p in sorted(digits_dir.rglob("*.jpg"))]
    fifo = tmp_path / "slow.jpg"
    os.mkfifo(fifo)
    rows.append([str(fifo), "3"])
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label"], *rows])
    classes, items = list_csv(listing)
    seed = next(s for s in range(50) if 2 <= next(
        i for i, t in enumerate(plan_shards(items, classes, BuildOptions(shards=6, seed=s)))
        if str(fifo) in [p for p, _ in t.items]))
    args = ["tfrecord", "build", "--from-csv", listing, "--shards", "6", "--seed", str(seed),
            "-j", "1"]
    out = tmp_path / "out"
    from tests.conftest import mltk_executable

    proc = subprocess.Popen(mltk_executable() + [str(a) for a in args + [out]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("*.tfrecord"))) < 2:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = sorted(p.name for p in out.glob("*.tfrecord"))
    assert 2 <= len(partial) < 6  # complete shards only, and not all of them
    assert not (out / "manifest.json").exists()
    fifo.unlink()
    shutil.copy(rows[0][0], fifo)  # the slow input becomes an ordinary image
    before = {n: (out / n).stat().st_mtime_ns for n in partial}
    assert mltk_proc(*args, "--resume", out).returncode == 0
    assert {n: (out / n).stat().st_mtime_ns for n in partial} == before  # kept, not rebuilt
    assert mltk_proc(*args, tmp_path / "fresh").returncode == 0
    names = sorted(p.name for p in (tmp_path / "fresh").glob("*.tfrecord"))
    assert sorted(p.name for p in out.glob("*.tfrecord")) == names
    for n in names:
        assert (out / n).read_bytes() == (tmp_path / "fresh" / n).read_bytes()
    assert sum(s["records"] for s in read_manifest(out)["shards"]) == 301
    assert not list(out.glob(".*"))  # no temporary files or build state left


def test_inspect(digits_dir, tmp_path, cli):
    build(digits_dir, tmp_path / "ds", BuildOptions(shards=1))
    shard = next((tmp_path / "ds").glob("*.tfrecord"))
    result = cli("tfrecord", "inspect", shard, "-n", "2", "--save-images", tmp_path / "png",
                 "-f", "json")
    assert result.exit_code == 0, result.output
    recs = json.loads(result.stdout)
    assert len(recs) == 2
    assert recs[0]["features"]["image/class/label"]["type"] == "int64"
    assert recs[0]["label_name"] == recs[0]["features"]["image/class/text"]["value"][0]
    assert cv2.imread(recs[0]["image"]).shape == (64, 64, 3)


def test_python_m_mltk_counts(digits_dir, tmp_path):
    build(digits_dir, tmp_path / "ds", BuildOptions(shards=2))
    proc = subprocess.run([sys.executable, "-m", "mltk", "tfrecord", "count", str(tmp_path / "ds"),
                           "-f", "csv"], capture_output=True, text=True)
    assert proc.stdout.splitlines()[-1].startswith("total,2,300,")


def test_shard_by_label_is_explicit(digits_dir, tmp_path):
    manifest = build(digits_dir, tmp_path / "ds", BuildOptions(shard_by_label=True))
    assert len(manifest["shards"]) == 10
    assert all(len(s["class_counts"]) == 1 for s in manifest["shards"])
    default = build(digits_dir, tmp_path / "mixed", BuildOptions(shards=10))
    assert all(len(s["class_counts"]) > 1 for s in default["shards"])
