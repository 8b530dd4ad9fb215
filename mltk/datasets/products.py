"""``product-images``: synthetic product photos of known colours, with ``truth.csv``.

Each photo shows one object (an ellipse, a rounded box or a blob, shaded, textured and noisy)
of a known base colour on a plain or gradient background; some carry a band of a second colour.
``truth.csv`` lists ``file, main_color, second_color``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mltk._atomic import atomic_open, write_bytes
from mltk.datasets import DatasetInfo

#: Typical shades for each base name: what a buyer would call by that name.
BASE_SHADES = {
    "black": ["#101010", "#1a1a1a", "#0d0d12"],
    "white": ["#fbfbfb", "#f6f6f4", "#fdfdfd"],
    "gray": ["#808080", "#9a9a9a", "#6b6b6b", "#b4b4b4"],
    "red": ["#d01c1f", "#b3121b", "#e3262e"],
    "pink": ["#f48fb1", "#ff69b4", "#f7a1c4"],
    "orange": ["#f57c00", "#ff8c1a", "#ef6c00"],
    "yellow": ["#ffd600", "#fbe13b", "#f7d417"],
    "beige": ["#e8d3b0", "#dcc49c", "#eedfc4"],
    "brown": ["#6d4326", "#7b4a2a", "#5d3a1f"],
    "green": ["#2e8b3c", "#3aa655", "#1f7a3a"],
    "blue": ["#1e6fd9", "#2a8af0", "#1c5fc4"],
    "navy": ["#14214d", "#1b2a5c", "#0f1b40"],
    "purple": ["#7b1fa2", "#8e3fbf", "#6a1b9a"],
}
BACKGROUNDS = ["#ffffff", "#f2f2f2", "#e6e6e6", "#f7f3ec", "#dfe6ec"]


def _rgb(hex_: str):
    import numpy as np

    h = hex_.lstrip("#")
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


def render_product(rng, main: str, second: str | None, width: int, height: int):
    """One RGB uint8 photo of an object of colour ``main`` (with a band of ``second``)."""
    import cv2
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg0, bg1 = _rgb(rng.choice(BACKGROUNDS)), _rgb(rng.choice(BACKGROUNDS))
    t = (yy / height)[..., None] if rng.random() < 0.5 else np.zeros((height, width, 1),
                                                                      np.float32)
    img = bg0 * (1 - t) + bg1 * t
    # The object: centred (with jitter), covering most of the central crop.
    cx = width * (0.5 + rng.uniform(-0.04, 0.04))
    cy = height * (0.5 + rng.uniform(-0.04, 0.04))
    rx, ry = width * rng.uniform(0.40, 0.46), height * rng.uniform(0.40, 0.46)
    mask = np.zeros((height, width), np.uint8)
    shape = rng.integers(0, 3)
    if shape == 0:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(-20, 20)),
                    0, 360, 255, -1)
    elif shape == 1:
        x0, y0, x1, y1 = int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)
        r = int(min(rx, ry) * 0.25)
        cv2.rectangle(mask, (x0 + r, y0), (x1 - r, y1), 255, -1)
        cv2.rectangle(mask, (x0, y0 + r), (x1, y1 - r), 255, -1)
        for px, py in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
            cv2.circle(mask, (px, py), r, 255, -1)
    else:
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False) + rng.uniform(-0.15, 0.15, 12)
        radii = rng.uniform(0.92, 1.05, 12)
        pts = np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    obj = mask > 0
    colour = np.broadcast_to(_rgb(rng.choice(BASE_SHADES[main])), (height, width, 3)).copy()
    if second:
        band = np.abs(yy - cy - rng.uniform(-0.2, 0.2) * ry) < ry * rng.uniform(0.12, 0.18)
        colour[band] = _rgb(rng.choice(BASE_SHADES[second]))
    # Soft directional shading and fabric-like texture.
    shade = 1.0 + 0.10 * ((xx - cx) / rx * rng.uniform(-1, 1) + (yy - cy) / ry * rng.uniform(-1, 1))
    texture = 1.0 + 0.03 * np.sin(xx * rng.uniform(0.2, 0.6)) * np.sin(yy * rng.uniform(0.2, 0.6))
    lit = colour * np.clip(shade * texture, 0.8, 1.15)[..., None]
    img = np.where(obj[..., None], lit, img)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    img = img + rng.normal(0, 4.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_product_images(out: Path, n: int = 200, seed: int = 0, second_fraction: float = 0.3,
                        ) -> DatasetInfo:
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    names = sorted(BASE_SHADES)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        main = names[i % len(names)] if i < len(names) else str(rng.choice(names))
        second = None
        if rng.random() < second_fraction:
            second = str(rng.choice([c for c in names if c != main]))
        w, h = int(rng.integers(240, 480)), int(rng.integers(240, 480))
        rgb = render_product(rng, main, second, w, h)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ext = ".png" if i % 5 == 4 else ".jpg"
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == ".jpg" else []
        ok, buf = cv2.imencode(ext, bgr, params)
        name = f"product_{i:05d}{ext}"
        write_bytes(out / name, buf.tobytes())
        rows.append((name, main, second or ""))
    truth = out / "truth.csv"
    with atomic_open(truth, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "main_color", "second_color"])
        writer.writerows(rows)
    return DatasetInfo("product-images", out, n, truth)
