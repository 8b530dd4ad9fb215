"""mltk colors on real files: formats, bad input, accuracy, decode shortcut, parallelism, CLI."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import cv2
import numpy as np
import pytest

from mltk.colors import ColorExtractor, ColorSettings, analyze_image, analyze_paths, rgb_to_lab
from mltk.colors.pipeline import load_working_image
from mltk.datasets import make

SETTINGS = ColorSettings.from_config({})


def write(path, rgb_or_bgra, params=()):
    ok, buf = cv2.imencode(path.suffix, rgb_or_bgra, list(params))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def solid(h, w, rgb):
    return np.full((h, w, 3), rgb[::-1], np.uint8)  # BGR for OpenCV


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    out = tmp_path_factory.mktemp("products")
    make("product-images", out, n=200, seed=0)
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """scikit-image's bundled photos as JPEGs, upscaled so that reduced decoding applies."""
    from skimage import data

    out = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        rgb = getattr(data, name)()
        rgb = cv2.resize(rgb, (rgb.shape[1] * 2, rgb.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
        paths[name] = write(out / f"{name}.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def test_top1_accuracy_on_generated_products(products):
    rows = list(csv.DictReader(open(products / "truth.csv")))
    recs = list(analyze_paths([products / r["file"] for r in rows], SETTINGS, jobs=2))
    pairs = list(zip(recs, rows, strict=True))
    hits = sum(rec["colors"][0]["name"] == row["main_color"] for rec, row in pairs)
    assert hits / len(rows) >= 0.95
    with_second = [(rec, row) for rec, row in pairs if row["second_color"]]
    found = sum(row["second_color"] in [c["name"] for c in rec["colors"]]
                for rec, row in with_second)
    assert with_second and found / len(with_second) >= 0.9


@pytest.mark.parametrize("name, acceptable", [
    ("coffee", {"red", "brown"}), ("chelsea", {"brown", "orange", "beige"}),
    ("astronaut", {"gray", "white", "orange"}), ("rocket", {"navy", "blue", "black"}),
])
def test_scikit_image_photos_get_sensible_names(photos, name, acceptable):
    rec = analyze_image(photos[name], SETTINGS)
    assert rec["error"] is None
    assert rec["colors"][0]["name"] in acceptable
    total = sum(c["share"] for c in rec["colors"]) + rec["other_share"]
    assert total == pytest.approx(1.0, abs=1e-5)


def test_reduced_decode_matches_full_decode(photos):
    """The 1/2-1/8 JPEG decode changes the working pixels by well under ΔE00 2, so the colour
    centres found on the full decode (those big enough to be reported, share >= min_share) move
    by at most 2 when their pixels come from the reduced decode, and the image gets the same main
    colour. (Two independent k-means runs may settle in different local minima, so the
    comparison holds the full decode's clustering fixed.)"""
    from skimage.color import deltaE_ciede2000

    full = dataclasses.replace(SETTINGS, reduced_decode=False)
    for path in photos.values():
        fast_px = load_working_image(path, SETTINGS)[0].reshape(-1, 3).astype(float)
        full_px = load_working_image(path, full)[0].reshape(-1, 3).astype(float)
        assert deltaE_ciede2000(rgb_to_lab(fast_px), rgb_to_lab(full_px)).mean() < 2.0
        ext = ColorExtractor().fit(full_px.astype(np.uint8))
        labels = ((full_px[:, None, :] - ext.centers_[None]) ** 2).sum(-1).argmin(1)
        for i, centre in enumerate(ext.centers_):
            if ext.shares_[i] < SETTINGS.min_share:
                continue
            moved = fast_px[labels == i].mean(0)
            d = deltaE_ciede2000(rgb_to_lab(centre), rgb_to_lab(moved))
            assert d <= 2.0, (path.name, i, d)
        assert (analyze_image(path, SETTINGS)["colors"][0]["name"]
                == analyze_image(path, full)["colors"][0]["name"])


def test_output_does_not_depend_on_jobs(products):
    paths = sorted(products.glob("product_*"))[:40]
    one = list(analyze_paths(paths, SETTINGS, jobs=1))
    two = list(analyze_paths(paths, SETTINGS, jobs=2))
    assert one == two
    assert [r["path"] for r in one] == [str(p) for p in paths]  # input order


def test_image_formats(tmp_path):
    red = (210, 25, 30)
    bgr = solid(64, 64, red)
    paths = [write(tmp_path / "a.png", bgr), write(tmp_path / "a.webp", bgr),
             write(tmp_path / "a.bmp", bgr), write(tmp_path / "a.tif", bgr),
             write(tmp_path / "a.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])]
    grey = write(tmp_path / "grey.png", np.full((50, 50), 128, np.uint8))
    deep = write(tmp_path / "deep.png", (bgr.astype(np.uint16) * 257))
    for p in paths + [deep]:
        rec = analyze_image(p, SETTINGS)
        assert rec["error"] is None, (p, rec)
        assert rec["colors"][0]["name"] == "red", p
        assert (rec["width"], rec["height"]) == (64, 64)
    assert analyze_image(grey, SETTINGS)["colors"][0]["name"] == "gray"


def test_alpha_pixels_are_ignored(tmp_path):
    bgra = np.zeros((60, 60, 4), np.uint8)
    bgra[..., :3] = (0, 255, 0)  # green, but fully transparent ...
    bgra[20:40, 20:40] = (40, 30, 200, 255)  # ... around an opaque red square
    rec = analyze_image(write(tmp_path / "alpha.png", bgra), SETTINGS)
    assert [c["name"] for c in rec["colors"]] == ["red"]


def test_edge_case_images(tmp_path):
    from PIL import Image

    one = analyze_image(write(tmp_path / "one.png", solid(1, 1, (20, 40, 200))), SETTINGS)
    assert one["error"] is None and one["colors"][0]["name"] == "blue"
    assert (one["width"], one["height"]) == (1, 1)
    white = analyze_image(write(tmp_path / "white.jpg", solid(300, 300, (255, 255, 255))),
                          SETTINGS)
    assert [c["name"] for c in white["colors"]] == ["white"]
    assert white["colors"][0]["share"] == 1.0
    clear = analyze_image(write(tmp_path / "clear.png", np.zeros((30, 30, 4), np.uint8)),
                          SETTINGS)
    assert clear["colors"] == [] and "transparent" in clear["error"]
    Image.fromarray(np.full((100, 100, 3), (20, 40, 200), np.uint8)).convert("CMYK").save(
        tmp_path / "cmyk.jpg", quality=95)
    cmyk = analyze_image(tmp_path / "cmyk.jpg", SETTINGS)
    assert cmyk["error"] is None and cmyk["colors"][0]["name"] in {"blue", "navy"}


def test_huge_image_is_decoded_small(tmp_path):
    img = np.empty((9000, 12000, 3), np.uint8)
    img[:] = (30, 30, 200)  # red (BGR)
    path = write(tmp_path / "huge.jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del img
    rec = analyze_image(path, SETTINGS)
    assert rec["error"] is None and (rec["width"], rec["height"]) == (12000, 9000)
    assert rec["colors"][0]["name"] == "red"
    tight = dataclasses.replace(SETTINGS, max_pixels=1_000_000)
    assert "max_pixels" in analyze_image(path, tight)["error"]


def test_bad_files_are_reported_per_file(tmp_path):
    good = write(tmp_path / "good.jpg", solid(64, 64, (250, 200, 0)))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    png = write(tmp_path / "cut.png", solid(64, 64, (1, 2, 3)))
    png.write_bytes(png.read_bytes()[:-30])
    recs = list(analyze_paths([empty, good, truncated, text, png], SETTINGS, jobs=2))
    errors = [r["error"] for r in recs]
    assert errors[1] is None and recs[1]["colors"][0]["name"] == "yellow"
    assert "empty file" in errors[0]
    assert "truncated JPEG" in errors[2]
    assert "not an image" in errors[3]
    assert "truncated PNG" in errors[4]


# -- CLI ------------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    write(tmp_path / "b_blue.jpg", solid(80, 80, (30, 90, 220)))
    write(tmp_path / "a_red.png", solid(80, 80, (210, 20, 30)))
    (tmp_path / "c_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "readme.txt").write_text("not an image, and not picked up from folders")
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "green.jpg", solid(80, 80, (40, 150, 60)))
    return tmp_path


def test_cli_ndjson_streams_in_order_with_errors(cli, folder):
    result = cli("colors", folder, "-f", "ndjson", "-j", "2")
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in recs] == ["a_red.png", "b_blue.jpg",
                                                          "c_broken.jpg"]
    assert [r["colors"][0]["name"] for r in recs[:2]] == ["red", "blue"]
    assert recs[2]["colors"] == [] and "truncated JPEG" in recs[2]["error"]
    assert list(recs[0]) == ["path", "width", "height", "colors", "other_share", "error"]
    assert list(recs[0]["colors"][0]) == ["name", "share", "hex", "lab"]
    assert "c_broken.jpg: truncated JPEG" in result.stderr
    assert "2 images analysed, 1 failed" in result.stderr


def test_cli_recursive_strict_and_summary(cli, folder):
    result = cli("colors", folder, "-r", "--summary", "-f", "json")
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == {"red", "blue", "green"}
    assert list(rows[0]) == ["rank", "name", "images", "image_fraction", "pixel_share",
                             "rank_by_share"]
    assert result.exit_code == 0
    strict = cli("colors", folder, "--strict", "-f", "json")
    assert strict.exit_code == 1
    assert strict.stderr.strip().splitlines()[-1] == "Error: 1 of 3 images failed"


def test_cli_csv_table_and_stdin(cli, folder):
    result = cli("colors", "-", "-f", "csv", "--top", "2",
                 input=f"{folder / 'a_red.png'}\n{folder / 'b_blue.jpg'}\n")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["color_1"] for r in rows] == ["red", "blue"]
    assert list(rows[0]) == ["path", "width", "height", "color_1", "share_1", "hex_1",
                             "color_2", "share_2", "hex_2", "other_share", "error"]
    table = cli("colors", folder)
    assert "Dominant colours" in table.stdout and "Folder roll-up: 2 images, 1 failed" in \
        table.stdout


def test_cli_settings_and_swatches(cli, folder, tmp_path):
    result = cli("colors", folder / "a_red.png", "-f", "json", "--swatch", tmp_path / "sw",
                 env={"MLTK_COLORS_DISTANCE": "cie76"})
    assert json.loads(result.stdout)[0]["colors"][0]["name"] == "red"
    written = sorted(p.name for p in (tmp_path / "sw").iterdir())
    assert written == ["00000_a_red.png", "config.yaml", "contact_sheet.png"]
    assert "distance: cie76" in (tmp_path / "sw" / "config.yaml").read_text()
    bar = cv2.imread(str(tmp_path / "sw" / "00000_a_red.png"))
    assert bar.shape[0] > 10 and tuple(bar[5, 5]) == tuple(solid(1, 1, (210, 20, 30))[0, 0])


def test_cli_bad_options(cli, folder, tmp_path):
    missing = cli("colors", folder / "nope.jpg")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: {folder / 'nope.jpg'}: no such file or directory"
    bad_palette = tmp_path / "pal.yaml"
    bad_palette.write_text("red: ['#ff0000']\nblue: ['oops']\n")
    result = cli("colors", folder, "--palette", bad_palette)
    assert result.exit_code == 1
    assert "palette entry 'blue' shade 1: 'oops'" in result.stderr
    assert cli("colors", folder, "--crop", "0.1,0.2").exit_code == 2
    # A value an option gives that the settings refuse is a usage error naming the option.
    assert cli("colors", folder, "--crop", "0.8,0.1,0.2,0.9").exit_code == 2
    assert cli("colors", folder, "--distance", "euclid").exit_code == 2


@pytest.mark.parametrize("name, value, expected", [
    ("MLTK_COLORS_CROP", "notalist", "crop must be 4 numbers x0,y0,x1,y1"),
    ("MLTK_COLORS_CROP", "[0.5, 0.5, 0.501, 0.501]", "crop must be at least one pixel"),
    ("MLTK_COLORS_K", "abc", "k must be a positive integer, got 'abc'"),
    ("MLTK_COLORS_MIN_SHARE", "abc", "min_share must be a number in [0, 1), got 'abc'"),
    ("MLTK_COLORS_ACHROMATIC", "3", "achromatic must be a mapping"),
    ("MLTK_COLORS_ACHROMATIC", "{max_chroma: x}", "achromatic.max_chroma must be a number"),
    ("MLTK_COLORS_PALETTE", "mine.yaml", "palette must be a mapping of name -> list of shades"),
    ("MLTK_COLORS_REDUCED_DECODE", "maybe", "reduced_decode must be true or false"),
    ("MLTK_COLORS_SEED", "[1", "cannot parse value '[1'"),
])
def test_cli_env_values_of_the_wrong_type_name_the_variable(cli, folder, name, value, expected):
    result = cli("colors", folder, "-f", "json", env={name: value})
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {name}: {expected}"), lines
    assert result.stdout == ""


def test_cli_config_values_of_the_wrong_type_name_the_file(cli, folder, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("colors:\n  top: many\n")
    result = cli("colors", folder, "--config", cfg)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {cfg}: top must be a positive integer, got 'many'"


def test_cli_crop_smaller_than_a_pixel_is_a_usage_error(cli, folder):
    result = cli("colors", folder, "--crop", "0.5,0.5,0.501,0.501", "-f", "ndjson")
    assert result.exit_code == 2
    assert "--crop" in result.stderr and "at least one pixel" in result.stderr
    assert result.stdout == ""
    # With a working size that makes it a pixel, the same crop works on the whole folder.
    ok = cli("colors", folder, "--crop", "0.5,0.5,0.501,0.501", "--size", "1000", "-f", "ndjson")
    assert ok.exit_code == 0 and len(ok.stdout.splitlines()) == 3


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson", "csv"])
def test_cli_closed_pipe_is_not_an_error(folder, fmt):
    """`mltk colors ... | head -1`: the reader takes one line and closes the pipe."""
    import fcntl
    import os
    import subprocess

    from tests.conftest import mltk_executable

    read_fd, write_fd = os.pipe()
    # A one-page pipe: whatever the format, the output cannot all fit before the reader closes.
    fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    args = ["colors", *[str(folder / "a_red.png")] * 150, "-f", fmt, "-j", "1"]
    proc = subprocess.Popen(mltk_executable() + args, stdout=write_fd, stderr=subprocess.PIPE,
                            text=True)
    os.close(write_fd)
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(read_fd, 1)  # unbuffered: take exactly the first line
        assert chunk, "no output"
        line += chunk
    os.close(read_fd)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, stderr
    assert "Error" not in stderr and "Exception" not in stderr and "Traceback" not in stderr
