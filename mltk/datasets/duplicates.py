"""``near-duplicates``: real photos that Python packages ship (scikit-image, scikit-learn,
matplotlib), non-overlapping tiles of the large ones as look-alikes, and imagededup-style
copies of each: resized, cropped, rotated a few degrees, mirrored, brightened, re-encoded as a
poor JPEG, watermarked, colour-shifted. ``truth.csv`` (file, source, transform) says which
files are copies of which original: two files with the same source are a duplicate pair."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mltk._atomic import atomic_open, write_bytes
from mltk.datasets import DatasetInfo

TRANSFORMS = ("resize", "crop", "rotate", "mirror", "brightness", "jpeg", "watermark",
              "colour")
_SKIMAGE = ("astronaut", "camera", "chelsea", "coffee", "coins", "clock", "hubble_deep_field",
            "immunohistochemistry", "moon", "retina", "rocket", "cell", "brick", "grass",
            "gravel", "page", "text", "colorwheel")


def source_photos(size: int = 640) -> list[tuple[str, Any]]:
    """(name, RGB uint8 photo with its longer side ``size``) for every shipped photo; the photos
    larger than 2 ``size`` / 1.5 as 2 x 2 non-overlapping tiles instead."""
    import cv2
    import numpy as np

    found: list[tuple[str, Any]] = []

    def add(name: str, img: Any) -> None:
        img = np.asarray(img)
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype.kind == "f" else \
                img.astype(np.uint8)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        img = img[:, :, :3]
        h, w = img.shape[:2]
        if min(h, w) >= 2 * size / 1.5:
            for ty in range(2):
                for tx in range(2):
                    found.append((f"{name}_t{ty}{tx}", _fit(
                        img[ty * h // 2:(ty + 1) * h // 2, tx * w // 2:(tx + 1) * w // 2], size)))
        else:  # tiles only: the whole photo would contain them (a crop is a duplicate)
            found.append((name, _fit(img, size)))

    import skimage.data as data

    for name in _SKIMAGE:
        try:
            add(name, getattr(data, name)())
        except Exception:  # noqa: BLE001 - an image this version lacks or must download
            continue
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    for fname, img in zip(sample.filenames, sample.images, strict=True):
        add(Path(fname).stem, img)
    try:
        import matplotlib.cbook as cbook

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            buf = np.frombuffer(fh.read(), np.uint8)
        add("grace_hopper", cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    except (OSError, ValueError):  # pragma: no cover - matplotlib without sample data
        pass
    return found


def _fit(img: Any, size: int) -> Any:
    import cv2

    h, w = img.shape[:2]
    scale = size / max(h, w)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=interp)


def transform(img: Any, kind: str, rng: Any) -> Any:
    """One imagededup-style change of an RGB photo."""
    import cv2
    import numpy as np

    h, w = img.shape[:2]
    if kind == "resize":
        return _fit(img, int(max(h, w) * rng.uniform(0.45, 0.75)))
    if kind == "crop":
        keep = rng.uniform(0.75, 0.9)
        ch, cw = int(h * keep), int(w * keep)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return img[y: y + ch, x: x + cw]
    if kind == "rotate":
        angle = float(rng.choice([-1, 1]) * rng.uniform(2, 6))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if kind == "mirror":
        return np.ascontiguousarray(img[:, ::-1])
    if kind == "brightness":
        return np.clip(img.astype(np.float32) * rng.choice([0.65, 1.35]), 0, 255).astype(
            np.uint8)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                          int(rng.integers(15, 30))])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    if kind == "watermark":
        out = img.copy()
        text = str(rng.choice(["SALE -50%", "@my_shop", "SOLD OUT", "mercari"]))
        scale = w / 320
        cv2.putText(out, text, (int(w * 0.08), int(h * rng.uniform(0.4, 0.9))),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(2, int(3 * scale)),
                    cv2.LINE_AA)
        return cv2.addWeighted(out, 0.7, img, 0.3, 0)
    if kind == "colour":
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + int(rng.integers(25, 60))) % 180
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * 1.3, 0, 255).astype(np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    raise ValueError(f"unknown transform {kind!r}")


def make_near_duplicates(out: Path, n: int = 60, seed: int = 0, copies: int = 3,
                         size: int = 640) -> DatasetInfo:
    """Up to ``n`` originals, each with ``copies`` transformed copies (transforms taken in turn
    so that every kind appears), as JPEGs, with ``truth.csv``."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    photos = source_photos(size)[:n]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    turn = 0
    for i, (name, img) in enumerate(photos):
        versions = [("original", img)]
        for _ in range(copies):
            kind = TRANSFORMS[turn % len(TRANSFORMS)]
            turn += 1
            versions.append((kind, transform(img, kind, rng)))
        for j, (kind, version) in enumerate(versions):
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(version[:, :, ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
                raise RuntimeError("JPEG encoding failed")
            rel = f"{i:03d}_{j}_{kind}.jpg"
            write_bytes(out / rel, buf.tobytes())
            rows.append({"file": rel, "source": name, "transform": kind})
    truth = out / "truth.csv"
    with atomic_open(truth, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "source", "transform"])
        writer.writeheader()
        writer.writerows(rows)
    return DatasetInfo("near-duplicates", out, len(rows), truth,
                       extra={"originals": len(photos), "copies": copies})
