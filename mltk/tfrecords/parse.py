"""TensorFlow parse functions for mltk shards, shared with the training pipeline.

``standard`` layout: ``image/encoded`` JPEG bytes + ``image/class/label``; ``raw`` layout:
``image`` (raw uint8 HxWx3 bytes of a fixed size) + ``label``.
"""

from __future__ import annotations

import os
from typing import Any

from mltk.errors import InputError
from mltk.tfrecords.format import decode_example, iter_records


def detect_layout(path: str | os.PathLike) -> str:
    """'standard' or 'raw' from the first record's keys (no TensorFlow needed)."""
    for payload in iter_records(path):
        keys = decode_example(payload)
        if "image/encoded" in keys:
            return "standard"
        if "image" in keys and "label" in keys:
            return "raw"
        raise InputError(f"{path}: unknown feature layout (keys: {', '.join(sorted(keys))})")
    raise InputError(f"{path}: no records")


def parse_fn(layout: str = "standard", image_size: int | None = None) -> Any:
    """A function serialized-Example -> (uint8 image HxWx3, int64 label) for tf.data.

    For the raw layout ``image_size`` (the fixed side) is required.
    """
    from mltk._quiet import import_quietly

    tf = import_quietly("tensorflow")
    if layout == "standard":
        spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(serialized):
            ex = tf.io.parse_single_example(serialized, spec)
            img = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
            return img, ex["image/class/label"]

        return parse
    if layout == "raw":
        if not image_size:
            raise InputError("the raw layout needs the image size (`image_size`, e.g. 150)")
        spec = {"image": tf.io.FixedLenFeature([], tf.string),
                "label": tf.io.FixedLenFeature([], tf.int64)}

        def parse_raw(serialized):
            ex = tf.io.parse_single_example(serialized, spec)
            img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8),
                             [image_size, image_size, 3])
            return img, ex["label"]

        return parse_raw
    raise InputError(f"unknown layout {layout!r}")
