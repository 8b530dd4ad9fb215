"""One pixel limit (configs/imaging.yaml), checked from the header before anything is decoded,
by every command that decodes images: colors, predict, tfrecord build (and the server)."""

from __future__ import annotations

import json
import struct
import zlib

import pytest


def huge_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (about 60 kB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" * (1 + (side + 7) // 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(row * side, 9)) + chunk(b"IEND", b""))


def huge_jpeg(side: int = 20000) -> bytes:
    """A JPEG whose frame header announces side x side pixels (its scan is garbage)."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, side, side, 3) + bytes(
        [1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0, 2, 0, 3, 0, 0, 63, 0])
    return b"\xff\xd8" + sof + sos + b"\x00" * 64 + b"\xff\xd9"


@pytest.fixture
def bombs(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a_huge.png").write_bytes(huge_png())
    (folder / "b_huge.jpg").write_bytes(huge_jpeg())
    return folder


def test_colors_refuses_from_the_header(bombs, cli):
    result = cli("colors", str(bombs), "--format", "json")
    assert result.exit_code == 0, result.output
    png, jpeg = json.loads(result.stdout)
    assert "20000x20000" in png["error"] and "max_pixels" in png["error"]
    # a JPEG is decoded at 1/8 for colours (2500x2500 here: within the limit); its scan is junk
    assert jpeg["error"] and jpeg["colors"] == []


def test_tfrecord_build_skips_images_over_the_limit(bombs, tmp_path, cli):
    import shutil

    import cv2
    import numpy as np

    src = tmp_path / "src"
    (src / "cats").mkdir(parents=True)
    shutil.copy(bombs / "b_huge.jpg", src / "cats" / "huge.jpg")
    ok, jpg = cv2.imencode(".jpg", np.full((40, 40, 3), 90, np.uint8))
    (src / "cats" / "small.jpg").write_bytes(jpg.tobytes())
    result = cli("tfrecord", "build", str(src), str(tmp_path / "out"), "--format", "json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sum(s["records"] for s in manifest["splits"].values()) == 1
    (skipped,) = manifest["skipped"]
    assert skipped["path"].endswith("huge.jpg") and "20000x20000" in skipped["reason"]
    assert "huge.jpg" in result.output and "max_pixels" in result.output


@pytest.mark.slow
def test_predict_refuses_from_the_header_and_the_limit_is_the_config(bombs, digits_run,
                                                                     digits_dir, cli):
    import shutil
    from pathlib import Path

    shutil.copy(sorted(Path(digits_dir).rglob("*.jpg"))[0], bombs / "c_digit.jpg")
    result = cli("predict", str(digits_run), str(bombs), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert ["20000x20000" in (r["error"] or "") for r in rows] == [True, True, False]
    # the same limit, from the environment (configs/imaging.yaml's max_pixels): tiny now
    result = cli("predict", str(digits_run), str(bombs / "c_digit.jpg"), "--format", "json",
                 env={"MLTK_IMAGING_MAX_PIXELS": "100"})
    (row,) = json.loads(result.stdout)
    assert "max_pixels limit of 100 pixels" in row["error"]


def test_pillows_own_guard_stays_on(bombs):
    from PIL import Image

    from mltk.predictors import open_predictor

    outcome = open_predictor("colors").predict([(bombs / "a_huge.png").read_bytes()])[0]
    assert "pixels" in str(outcome)  # refused from the header by mltk's own limit
    assert Image.MAX_IMAGE_PIXELS is not None
