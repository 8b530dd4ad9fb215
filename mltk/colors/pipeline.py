"""Dominant colours at folder scale: paths in, one record per image out, in input order.

Each image is decoded (JPEGs at reduced resolution when the working size allows), resized to the
working size, cropped to the product box, clustered and named. Work is spread over ``jobs``
processes with OpenCV limited to one thread each; every image is seeded the same way, so the
output does not depend on ``jobs``. A file that cannot be used gives a record with an ``error``
and the run goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from mltk._imaging import decode_image, iter_image_paths, read_image_bytes  # noqa: F401 (re-exported)
from mltk._parallel import process_context
from mltk.colors.core import ColorExtractor, ColorNamer, named_colors
from mltk.colors.settings import ColorSettings, SettingError  # noqa: F401 (re-exported)
from mltk.errors import InputError, MltkError

log = logging.getLogger(__name__)


def load_working_image(path: str | os.PathLike, settings: ColorSettings) -> tuple[Any, Any, int,
                                                                                   int]:
    """The product crop at working size: (rgb, opaque-mask or None, width, height)."""
    data, fmt = read_image_bytes(path)
    return working_image_from_bytes(data, settings, fmt)


def working_image_from_bytes(data: bytes, settings: ColorSettings, fmt: str | None = None,
                             ) -> tuple[Any, Any, int, int]:
    """:func:`load_working_image` for image bytes already in memory."""
    import cv2

    x0, y0, x1, y1 = settings.crop
    # The smallest decode that still covers the working size.
    img = decode_image(data, fmt, min_side=settings.size if settings.reduced_decode else None,
                       max_pixels=settings.max_pixels)
    h, w = img.rgb.shape[:2]
    cx0, cx1 = _span(x0, x1, w)
    cy0, cy1 = _span(y0, y1, h)
    out_w = max(1, round(settings.size * (x1 - x0)))
    out_h = max(1, round(settings.size * (y1 - y0)))
    region = img.rgb[cy0:cy1, cx0:cx1]
    interp = cv2.INTER_AREA if region.shape[0] >= out_h and region.shape[1] >= out_w \
        else cv2.INTER_LINEAR
    mask = None
    if img.alpha is None:
        rgb = cv2.resize(region, (out_w, out_h), interpolation=interp)
    else:
        # Premultiplied resize: colours of transparent pixels must not bleed into the product.
        import numpy as np

        a = img.alpha[cy0:cy1, cx0:cx1].astype(np.float32) / 255.0
        num = cv2.resize(region.astype(np.float32) * a[..., None], (out_w, out_h),
                         interpolation=interp)
        den = cv2.resize(a, (out_w, out_h), interpolation=interp)
        mask = den * 255.0 >= settings.min_alpha
        if not mask.any():
            raise InputError("no opaque pixels in the crop (the image is transparent there)")
        rgb = np.clip(num / np.maximum(den, 1e-6)[..., None] + 0.5, 0, 255).astype(np.uint8)
    return rgb, mask, img.width, img.height


def _span(f0: float, f1: float, n: int) -> tuple[int, int]:
    a = min(n - 1, int(round(f0 * n)))
    return a, max(a + 1, min(n, int(round(f1 * n))))


def analyze_image(path: str | os.PathLike, settings: ColorSettings,
                  namer: ColorNamer | None = None) -> dict[str, Any]:
    """One image's record: path, width, height, colors (top names), other_share, error."""
    return _analyze(os.fspath(path), lambda: load_working_image(path, settings), settings, namer)


def analyze_bytes(data: bytes, settings: ColorSettings, namer: ColorNamer | None = None,
                  path: str | None = None) -> dict[str, Any]:
    """:func:`analyze_image` for image bytes in memory (``path`` is only echoed)."""
    return _analyze(path, lambda: working_image_from_bytes(data, settings), settings, namer)


def _analyze(path: str | None, load: Any, settings: ColorSettings,
             namer: ColorNamer | None) -> dict[str, Any]:
    namer = namer or ColorNamer(settings.palette, settings.distance, settings.achromatic)
    record: dict[str, Any] = {"path": path, "width": None, "height": None,
                              "colors": [], "other_share": None, "error": None}
    try:
        rgb, mask, width, height = load()
        record["width"], record["height"] = width, height
        ext = ColorExtractor(settings.k, settings.seed, settings.max_iter).fit(rgb, mask)
        named = named_colors(ext, namer)
    except InputError as exc:
        record["error"] = str(exc)
        return record
    top = [c for c in named if c["share"] >= settings.min_share][: settings.top] or named[:1]
    for c in top:
        c["share"] = round(c["share"], 6)
    record["colors"] = top
    record["other_share"] = round(max(0.0, 1.0 - sum(c["share"] for c in top)), 6)
    return record


# -- parallel execution -------------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(settings: ColorSettings) -> None:
    import cv2

    cv2.setNumThreads(1)
    _silence_opencv()
    _worker["settings"] = settings
    _worker["namer"] = ColorNamer(settings.palette, settings.distance, settings.achromatic)


def _work(path: str) -> dict[str, Any]:
    return analyze_image(path, _worker["settings"], _worker["namer"])


def _silence_opencv() -> None:
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - older OpenCV builds
        pass


def analyze_paths(paths: Sequence[str | os.PathLike], settings: ColorSettings,
                  jobs: int | None = None) -> Iterator[dict[str, Any]]:
    """Records for ``paths`` in input order, computed by ``jobs`` processes (default: all cores).

    Records are yielded as soon as they and all before them are done, so output can stream.
    """
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise MltkError(f"jobs must be at least 1, got {jobs}")
    items = [os.fspath(p) for p in paths]
    if jobs == 1 or len(items) <= 1:
        import cv2

        previous = cv2.getNumThreads()
        _init_worker(settings)
        try:
            for item in items:
                yield _work(item)
        finally:
            cv2.setNumThreads(previous)
        return
    ctx = process_context(["mltk.colors.pipeline", "skimage.color"])
    chunk = max(1, min(16, len(items) // (jobs * 8)))
    with ctx.Pool(min(jobs, len(items)), initializer=_init_worker, initargs=(settings,)) as pool:
        yield from pool.imap(_work, items, chunksize=chunk)


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Folder roll-up: names ranked by the number of images in which they are a top colour,
    then by total pixel share; plus image and failure counts."""
    images = failed = 0
    count: dict[str, int] = {}
    share: dict[str, float] = {}
    for rec in records:
        if rec.get("error"):
            failed += 1
            continue
        images += 1
        for c in rec["colors"]:
            count[c["name"]] = count.get(c["name"], 0) + 1
            share[c["name"]] = share.get(c["name"], 0.0) + c["share"]
    order = sorted(count, key=lambda n: (-count[n], -share[n], n))
    by_share = {n: i + 1 for i, n in enumerate(sorted(share, key=lambda n: (-share[n], n)))}
    rows = [{"rank": i + 1, "name": n, "images": count[n],
             "image_fraction": round(count[n] / images, 4) if images else 0.0,
             "pixel_share": round(share[n] / images, 4) if images else 0.0,
             "rank_by_share": by_share[n]} for i, n in enumerate(order)]
    return {"images": images, "failed": failed, "colors": rows}
