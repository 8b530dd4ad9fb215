"""mltk.predictors without a server: specs, kinds read from config.yaml, colours on bytes."""

from __future__ import annotations

import pytest

from mltk.errors import InputError, PixelLimitError
from mltk.predictors import detect_kind, open_predictor, parse_model_spec


def test_model_specs():
    assert parse_model_spec("shop=models/rec") == ("shop", "models/rec")
    assert parse_model_spec("colors") == ("colors", "colors")
    assert parse_model_spec("swatch=colors:my.yaml") == ("swatch", "colors:my.yaml")
    assert parse_model_spec("runs/first/")[0] == "first"
    with pytest.raises(InputError, match="NAME=PATH"):
        parse_model_spec("=x")


def test_kind_comes_from_config_yaml_not_file_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "best.keras").write_bytes(b"x")  # a name alone says nothing
    with pytest.raises(InputError, match="no config.yaml"):
        detect_kind(tmp_path / "a")
    (tmp_path / "a" / "config.yaml").write_text("k: 5\n")
    with pytest.raises(InputError, match="not written by mltk train"):
        detect_kind(tmp_path / "a")
    (tmp_path / "a" / "config.yaml").write_text("model: small_cnn\nimage_size: 32\n")
    assert detect_kind(tmp_path / "a") == "image-classifier"
    (tmp_path / "a" / "config.yaml").write_text("kind: recommender\n")
    assert detect_kind(tmp_path / "a") == "recommender"
    with pytest.raises(InputError, match="no such model folder"):
        detect_kind(tmp_path / "nope")


def test_colors_predictor_gives_the_colors_record(tmp_path, cli):
    import json

    from mltk.datasets import make

    make("product-images", tmp_path, n=3, seed=1)
    photo = sorted(tmp_path.glob("*.jpg"))[0]
    result = cli("colors", str(photo), "--format", "json")
    (expected,) = json.loads(result.stdout)
    p = open_predictor("colors")
    (got,) = p.predict([photo.read_bytes()])
    assert {**got, "path": None} == {**expected, "path": None}
    bad, = p.predict([b"not an image"])
    assert isinstance(bad, InputError) and "not an image" in str(bad)
    assert p.metadata()["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]


def test_colors_predictor_with_a_config_file_and_pixel_limit(tmp_path):
    import cv2
    import numpy as np

    (tmp_path / "c.yaml").write_text("top: 1\nmax_pixels: 100\n")
    p = open_predictor("colors:" + str(tmp_path / "c.yaml"), "small")
    assert p.name == "small" and p.settings.top == 1
    ok, png = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))
    (outcome,) = p.predict([png.tobytes()])
    assert isinstance(outcome, PixelLimitError) and "20x20" in str(outcome)
