"""``labelled-images``: scikit-learn's bundled handwritten digits (real scans, 8x8 grey levels)
written as RGB JPEGs, one sub-folder per class, with ``truth.csv`` (file, label)."""

from __future__ import annotations

import csv
from pathlib import Path

from mltk._atomic import atomic_open, write_bytes
from mltk.datasets import DatasetInfo


def make_labelled_images(out: Path, n: int = 500, seed: int = 0, size: int = 64,
                         quality: int = 95) -> DatasetInfo:
    """Write ``n`` digit images (balanced draw without replacement while possible)."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    if n > len(order):
        order = np.concatenate([order, rng.integers(0, len(order), n - len(order))])
    order = order[:n]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, idx in enumerate(order):
        label = int(digits.target[idx])
        grey = (digits.images[idx] / 16.0 * 255.0).astype(np.float32)
        # The scans are dark ink on white paper in real life: invert, upscale smoothly.
        grey = cv2.resize(255.0 - grey, (size, size), interpolation=cv2.INTER_CUBIC)
        grey = np.clip(grey, 0, 255).astype(np.uint8)
        bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            raise RuntimeError("JPEG encoding failed")
        rel = Path(str(label)) / f"digit_{i:05d}.jpg"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_bytes(out / rel, buf.tobytes())
        rows.append((rel.as_posix(), label))
    truth = out / "truth.csv"
    with atomic_open(truth, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    classes = sorted({r[1] for r in rows})
    return DatasetInfo("labelled-images", out, len(rows), truth,
                       extra={"classes": len(classes), "size": size})
