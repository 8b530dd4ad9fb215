"""The fast colour pipeline gives exactly the records of the plain one it replaced.

:func:`reference_record` below is the pipeline as it was before it was tuned for speed (BGR
decode then a colour swap, the (n, k) distance expression, scikit-image's ``rgb2lab`` and
``deltaE_ciede2000`` on broadcast arrays, every centre measured against every shade), kept here
slow and plain. Every record of ``analyze_image`` (names, shares, hex, Lab, sizes) must equal it
on real photos and generated products, JPEG (at every decode reduction, grey, CMYK, rotated by
EXIF) and PNG with alpha, under several settings.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from mltk.colors import ColorNamer, ColorSettings, analyze_image, rgb_to_lab

# -- the reference: the pipeline before the speed work, plain ------------------------------------


def _ref_lab(rgb):
    from skimage.color import rgb2lab

    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb2lab((rgb / 255.0).reshape(-1, 1, 3)).reshape(rgb.shape)


def _ref_decode(data: bytes, settings: ColorSettings):
    buf = np.frombuffer(data, np.uint8)
    with Image.open(io.BytesIO(data)) as im:
        width, height, fmt = im.width, im.height, im.format
    if fmt == "JPEG":
        factor = 1
        if settings.reduced_decode:
            factor = next((f for f in (8, 4, 2) if width // f >= settings.size
                           and height // f >= settings.size), 1)
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        return cv2.cvtColor(cv2.imdecode(buf, flag), cv2.COLOR_BGR2RGB), None, width, height
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint8 and img.ndim == 3, "the reference reads 8-bit colour PNGs"
    alpha = img[:, :, 3] if img.shape[2] == 4 else None
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB), alpha, width, height


def _ref_working(data: bytes, settings: ColorSettings):
    rgb_full, alpha, width, height = _ref_decode(data, settings)
    x0, y0, x1, y1 = settings.crop
    h, w = rgb_full.shape[:2]

    def span(f0, f1, n):
        a = min(n - 1, int(round(f0 * n)))
        return a, max(a + 1, min(n, int(round(f1 * n))))

    (cx0, cx1), (cy0, cy1) = span(x0, x1, w), span(y0, y1, h)
    out_w = max(1, round(settings.size * (x1 - x0)))
    out_h = max(1, round(settings.size * (y1 - y0)))
    region = rgb_full[cy0:cy1, cx0:cx1]
    interp = cv2.INTER_AREA if region.shape[0] >= out_h and region.shape[1] >= out_w \
        else cv2.INTER_LINEAR
    if alpha is None:
        return cv2.resize(region, (out_w, out_h), interpolation=interp), None, width, height
    a = alpha[cy0:cy1, cx0:cx1].astype(np.float32) / 255.0
    num = cv2.resize(region.astype(np.float32) * a[..., None], (out_w, out_h), interpolation=interp)
    den = cv2.resize(a, (out_w, out_h), interpolation=interp)
    rgb = np.clip(num / np.maximum(den, 1e-6)[..., None] + 0.5, 0, 255).astype(np.uint8)
    return rgb, den * 255.0 >= settings.min_alpha, width, height


def _ref_fit(rgb, mask, settings: ColorSettings):
    px = rgb.reshape(-1, 3)
    if mask is not None:
        px = px[mask.reshape(-1)]
    data = px.astype(np.float32)
    sample = np.ascontiguousarray(data[::-(-len(data) // 2048)])
    if len(sample) == 1:
        centers = sample
    else:
        cv2.setRNGSeed(settings.seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, settings.max_iter, 0.5)
        centers = cv2.kmeans(sample, min(settings.k, len(sample)), None, criteria, 1,
                             cv2.KMEANS_PP_CENTERS)[2]
    k = len(centers)
    labels = ((centers * centers).sum(1)[None, :] - 2.0 * (data @ centers.T)).argmin(1)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(labels, weights=data[:, c], minlength=k) for c in range(3)], 1)
    keep = counts > 0
    centers, counts = sums[keep] / counts[keep, None], counts[keep]
    order = np.lexsort((centers[:, 2], centers[:, 1], centers[:, 0], -counts))
    return centers[order], counts[order] / counts.sum()


def _ref_names(lab, settings: ColorSettings):
    from skimage.color import deltaE_ciede2000

    palette, ach = settings.palette, settings.achromatic
    ref = palette.shade_lab
    n, s = len(lab), len(ref)
    if settings.distance == "cie76":
        dist = np.linalg.norm(lab[:, None, :] - ref[None, :, :], axis=-1)
    else:
        dist = deltaE_ciede2000(np.broadcast_to(lab[:, None, :], (n, s, 3)),
                                np.broadcast_to(ref[None, :, :], (n, s, 3)))
    names = []
    for (L, a, b), owner in zip(lab, palette.shade_owner[dist.argmin(1)], strict=True):
        key = "black" if L < ach["black_below_l"] else (
            "white" if L > ach["white_above_l"] else "gray")
        fixed = np.hypot(a, b) < ach["max_chroma"] and ach[key] in palette.names
        names.append(ach[key] if fixed else palette.names[owner])
    return names


def _ref_hex(rgb):
    r, g, b = (int(min(255, max(0, round(float(v))))) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def reference_record(path, settings: ColorSettings) -> dict:
    rgb, mask, width, height = _ref_working(path.read_bytes(), settings)
    centers, shares = _ref_fit(rgb, mask, settings)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(_ref_names(_ref_lab(centers), settings)):
        groups.setdefault(name, []).append(i)
    weights = [shares[idx] for idx in groups.values()]
    rgbs = np.array([(centers[idx] * w[:, None]).sum(0) / w.sum()
                     for idx, w in zip(groups.values(), weights, strict=True)])
    named = sorted(({"name": name, "share": float(w.sum()), "hex": _ref_hex(rgb),
                     "lab": [round(float(v), 2) for v in lab]}
                    for name, w, rgb, lab in zip(groups, weights, rgbs, _ref_lab(rgbs),
                                                 strict=True)),
                   key=lambda c: (-c["share"], c["name"]))
    top = [c for c in named if c["share"] >= settings.min_share][: settings.top] or named[:1]
    for c in top:
        c["share"] = round(c["share"], 6)
    return {"path": str(path), "width": width, "height": height, "colors": top,
            "other_share": round(max(0.0, 1.0 - sum(c["share"] for c in top)), 6), "error": None}


# -- the images ----------------------------------------------------------------------------------

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "colorwheel",
          "retina", "hubble_deep_field", "cat")


def _jpeg(path, rgb, quality=90, **pil):
    Image.fromarray(rgb).save(path, quality=quality, **pil)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real photos at several sizes, generated products, and the odd formats."""
    from skimage import data

    from mltk.datasets.products import BASE_SHADES, render_product

    out = tmp_path_factory.mktemp("unchanged")
    paths = []
    for i, name in enumerate(PHOTOS):
        rgb = getattr(data, name)()
        for w, h in ((1024, 768), (640, 480), (300, 200) if i % 2 else (1600, 1280)):
            big = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)
            paths.append(_jpeg(out / f"{name}_{w}.jpg", big, 85 + i))
    rng = np.random.default_rng(7)
    names = sorted(BASE_SHADES)
    for i in range(2 * len(names)):
        second = names[(i * 5 + 3) % len(names)] if i % 3 == 0 else None
        rgb = render_product(rng, names[i % len(names)], second, 1024, 768)
        paths.append(_jpeg(out / f"product_{i:02d}.jpg", rgb, 90))
    astronaut = data.astronaut()
    paths.append(_jpeg(out / "grey.jpg", cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)))
    Image.fromarray(astronaut).convert("CMYK").save(out / "cmyk.jpg", quality=90)
    paths.append(out / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    paths.append(_jpeg(out / "rotated.jpg", data.coffee(), exif=exif))
    Image.fromarray(data.logo()).save(out / "logo.png")  # RGBA, transparent around the logo
    Image.fromarray(data.coffee()).save(out / "coffee.png")
    return paths + [out / "logo.png", out / "coffee.png"]


SETTINGS = {
    "default": {},
    "cie76": {"distance": "cie76"},
    "full-decode": {"reduced_decode": False, "crop": [0.1, 0.1, 0.7, 0.7]},
    "small-k": {"k": 3, "size": 64, "top": 2},
    "large-k": {"k": 8, "size": 120, "crop": [0.0, 0.0, 1.0, 1.0], "min_share": 0.0},
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n != "default"
                                               else []) for n in SETTINGS])
def test_records_are_those_of_the_plain_pipeline(images, name):
    settings = ColorSettings.from_config(SETTINGS[name])
    namer = ColorNamer(settings.palette, settings.distance, settings.achromatic)
    for path in images:
        got = analyze_image(path, settings, namer)
        got["path"] = str(path)
        assert got == reference_record(path, settings), path.name


def test_lab_conversion_is_scikit_images_to_the_bit():
    rng = np.random.default_rng(3)
    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for rgb in (cube, rng.uniform(0, 255, (1000, 3)), rng.uniform(-20, 300, (7, 3)),
                rng.uniform(0, 255, (4, 5, 3)), np.array([12.5, 200.0, 99.0])):
        assert np.array_equal(rgb_to_lab(rgb), _ref_lab(rgb), equal_nan=True)


def test_ciede2000_is_scikit_images_to_the_bit():
    from skimage.color import deltaE_ciede2000

    from mltk.colors.core import ciede2000

    namer = ColorNamer()
    ref = namer.palette.shade_lab
    rng = np.random.default_rng(4)
    greys = rgb_to_lab(np.repeat(np.arange(0, 256, 15)[:, None], 3, 1))
    for lab in (rgb_to_lab(rng.uniform(0, 255, (500, 3))), ref, greys, ref[:1]):
        n, s = len(lab), len(ref)
        expected = deltaE_ciede2000(np.broadcast_to(lab[:, None, :], (n, s, 3)),
                                    np.broadcast_to(ref[None, :, :], (n, s, 3)))
        assert np.array_equal(namer.distances(lab), expected)
        L, a, b = (ref[None, :, i] for i in range(3))
        assert np.array_equal(ciede2000(lab, (L, a, b, np.hypot(a, b))), expected)


def test_names_of_many_colours_are_unchanged():
    """A lattice of the RGB cube (and every grey) gets the name it had."""
    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 15)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lab = rgb_to_lab(np.concatenate([cube, np.repeat(np.arange(256)[:, None], 3, 1)]))
    for distance in ("ciede2000", "cie76"):
        settings = ColorSettings.from_config({"distance": distance})
        namer = ColorNamer(settings.palette, distance, settings.achromatic)
        for chunk in np.array_split(lab, 4):
            assert namer.name(chunk) == _ref_names(chunk, settings)
