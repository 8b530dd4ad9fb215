"""Sharded TFRecord datasets: build from image folders, count and verify fast, inspect.

Library API::

    from mltk.tfrecords import BuildOptions, build, count_records, read_manifest, parse_fn
    manifest = build("images/", "shards/", BuildOptions(split={"train": .9, "validation": .1}))
    count_records("shards/train-00000-of-00004.tfrecord", verify=True)
    ds = tf.data.TFRecordDataset(files).map(parse_fn("standard"))
"""

from mltk.tfrecords.building import BuildOptions, build, parse_size, parse_split, read_manifest
from mltk.tfrecords.format import decode_example, encode_example, scan, write_record
from mltk.tfrecords.parse import detect_layout, parse_fn
from mltk.tfrecords.read import count_by_label, count_paths, count_records, inspect_records

__all__ = [
    "BuildOptions", "build", "count_by_label", "count_paths", "count_records", "decode_example",
    "detect_layout", "encode_example", "inspect_records", "parse_fn", "parse_size",
    "parse_split", "read_manifest", "scan", "write_record",
]
