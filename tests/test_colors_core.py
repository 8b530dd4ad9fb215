"""mltk.colors without files: extractor, namer, palette."""

from __future__ import annotations

import numpy as np
import pytest

from mltk.colors import ColorExtractor, ColorNamer, Palette, named_colors, rgb_to_lab
from mltk.colors.palette import load_palette
from mltk.colors.settings import ColorSettings, SettingError
from mltk.errors import ConfigError, InputError


def two_colour_image(a, b, frac=0.7, size=60):
    img = np.empty((size, size, 3), np.uint8)
    cut = int(size * frac)
    img[:cut] = a
    img[cut:] = b
    return img


def test_extractor_recovers_exact_colours_and_shares():
    img = two_colour_image((200, 30, 40), (20, 20, 160), frac=0.7)
    ext = ColorExtractor(k=5, seed=0).fit(img)
    assert ext.centers_.shape[1] == 3
    np.testing.assert_allclose(ext.centers_[0], (200, 30, 40))
    np.testing.assert_allclose(ext.centers_[1], (20, 20, 160))
    np.testing.assert_allclose(ext.shares_, [0.7, 0.3])
    assert ext.n_pixels_ == 3600


def test_extractor_shares_sum_to_one_and_are_seeded():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    a = ColorExtractor(k=5, seed=3).fit(img)
    b = ColorExtractor(k=5, seed=3).fit(img)
    assert len(a.shares_) == 5
    assert a.shares_.sum() == pytest.approx(1.0)
    assert np.all(np.diff(a.shares_) <= 0)  # sorted by share
    np.testing.assert_array_equal(a.centers_, b.centers_)


def test_extractor_mask_and_errors():
    img = two_colour_image((255, 255, 255), (0, 0, 0), frac=0.5)
    mask = np.zeros(img.shape[:2], bool)
    mask[40:] = True  # only the black half
    ext = ColorExtractor().fit(img, mask)
    np.testing.assert_allclose(ext.centers_, [[0, 0, 0]])
    with pytest.raises(InputError, match="no pixels"):
        ColorExtractor().fit(img, np.zeros(img.shape[:2], bool))
    with pytest.raises(InputError, match="shape"):
        ColorExtractor().fit(np.zeros((4, 4)))


def test_namer_names_base_colours():
    namer = ColorNamer()
    samples = {"#d01c1f": "red", "#1e6fd9": "blue", "#14214d": "navy", "#2e8b3c": "green",
               "#ffd600": "yellow", "#f57c00": "orange", "#7b1fa2": "purple",
               "#f48fb1": "pink", "#6d4326": "brown", "#e8d3b0": "beige", "#000000": "black",
               "#ffffff": "white", "#808080": "gray"}
    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in samples], float)
    assert namer.name(rgb_to_lab(rgb)) == list(samples.values())
    assert ColorNamer(distance="cie76").name(rgb_to_lab(rgb)) == list(samples.values())


def test_low_chroma_is_named_by_lightness():
    namer = ColorNamer()
    # A very pale, slightly bluish grey would be nearest to a pale blue shade by distance.
    labs = np.array([[75.0, -1.0, -5.0], [10.0, 2.0, -3.0], [96.0, 1.0, 3.0]])
    assert namer.name(labs) == ["gray", "black", "white"]


def test_named_colors_merges_same_names():
    img = np.empty((40, 40, 3), np.uint8)
    img[:20] = (30, 100, 220)  # two different blues ...
    img[20:30] = (40, 130, 240)
    img[30:] = (250, 250, 250)
    ext = ColorExtractor(k=5).fit(img)
    named = named_colors(ext, ColorNamer())
    assert [c["name"] for c in named] == ["blue", "white"]  # ... merge into one entry
    assert named[0]["share"] == pytest.approx(0.75)
    assert sum(c["share"] for c in named) == pytest.approx(1.0)
    assert named[0]["hex"].startswith("#") and len(named[0]["lab"]) == 3


def test_palette_accepts_hex_and_lab():
    pal = Palette.from_mapping({"red": ["#f00", "#cc0000"], "ink": [[10, 0, 0]]})
    assert pal.names == ("red", "ink")
    assert pal.shade_lab.shape == (3, 3)
    np.testing.assert_allclose(pal.shade_lab[2], [10, 0, 0])
    assert list(pal.shade_owner) == [0, 0, 1]


@pytest.mark.parametrize("mapping, message", [
    ({"red": ["#ff00zz"]}, "palette entry 'red' shade 1: '#ff00zz' is not a hex colour"),
    ({"red": []}, "palette entry 'red' has no shades"),
    ({"red": [[200, 0, 0]]}, "palette entry 'red' shade 1: Lab value .* out of range"),
    ({"red": ["#ff0000", [1, 2]]}, "palette entry 'red' shade 2"),
    ({}, "non-empty mapping"),
])
def test_malformed_palette_names_the_entry(mapping, message):
    with pytest.raises(ConfigError, match=message):
        Palette.from_mapping(mapping, source="p.yaml")


def test_palette_file_forms(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("red: ['#ff0000']\nblue: ['#0000ff']\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("palette:\n  red: ['#ff0000']\n")
    assert load_palette(flat).names == ("red", "blue")
    assert load_palette(nested).names == ("red",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("red: ['#ff0000'\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_palette(bad)


def test_extractor_on_a_single_pixel():
    """OpenCV's k-means reads one RGB row as three one-dimensional samples; one pixel (a tiny
    crop, or a mask that leaves one opaque pixel) must still give that pixel's colour."""
    one = ColorExtractor().fit(np.array([[10, 20, 200]], np.uint8))
    np.testing.assert_allclose(one.centers_, [[10, 20, 200]])
    np.testing.assert_allclose(one.shares_, [1.0])
    img = two_colour_image((255, 255, 255), (0, 0, 0), frac=0.5, size=10)
    mask = np.zeros((10, 10), bool)
    mask[9, 9] = True
    np.testing.assert_allclose(ColorExtractor().fit(img, mask).centers_, [[0, 0, 0]])


@pytest.mark.parametrize("field, value, message", [
    ("crop", "notalist", r"^crop must be 4 numbers x0,y0,x1,y1 .*, got 'notalist'$"),
    ("crop", [0.1, 0.2, "x", 0.9], r"^crop must be 4 numbers"),
    ("crop", 5, r"^crop must be 4 numbers"),
    ("crop", [0.8, 0.1, 0.2, 0.9], r"^crop must be fractions with 0 <= x0 < x1 <= 1"),
    ("crop", [0.5, 0.5, 0.501, 0.501], r"^crop must be at least one pixel of the 150x150 "),
    ("k", "5", r"^k must be a positive integer, got '5'$"),
    ("k", 2.5, r"^k must be a positive integer, got 2.5$"),
    ("top", True, r"^top must be a positive integer, got True$"),
    ("size", [150], r"^size must be an integer of at least 8"),
    ("seed", "x", r"^seed must be an integer from"),
    ("max_iter", 0, r"^max_iter must be a positive integer"),
    ("max_pixels", "big", r"^max_pixels must be a positive integer"),
    ("min_alpha", 300, r"^min_alpha must be an integer from 0 to 255, got 300$"),
    ("min_share", "abc", r"^min_share must be a number in \[0, 1\), got 'abc'$"),
    ("min_share", 1.0, r"^min_share must be a number in \[0, 1\)"),
    ("reduced_decode", "yes", r"^reduced_decode must be true or false, got 'yes'$"),
    ("distance", 3, r"^distance must be ciede2000 or cie76, got 3$"),
    ("achromatic", 3, r"^achromatic must be a mapping with keys max_chroma, "),
    ("achromatic", {"max_chroma": "high"}, r"^achromatic.max_chroma must be a number"),
    ("achromatic", {"white": 7}, r"^achromatic.white must be a colour name, got 7$"),
    ("achromatic", {"max_chrome": 5}, r"^achromatic has unknown key\(s\) max_chrome"),
])
def test_settings_of_the_wrong_type_name_the_setting(field, value, message):
    with pytest.raises(SettingError, match=message) as info:
        ColorSettings(**{field: value})
    assert isinstance(info.value, ConfigError) and info.value.key == field


def test_settings_errors_name_where_the_value_came_from():
    cfg = {"crop": "notalist", "k": 3}
    with pytest.raises(ConfigError, match=r"^MLTK_COLORS_CROP: crop must be 4 numbers"):
        ColorSettings.from_config(cfg, origins={"crop": "MLTK_COLORS_CROP", "k": "command line"})
    with pytest.raises(ConfigError, match=r"^crop must be 4 numbers"):  # no origins: the key
        ColorSettings.from_config(cfg)
    with pytest.raises(ConfigError, match=r"^my.yaml: palette must be a mapping"):
        ColorSettings.from_config({"palette": "pal.yaml"}, origins={"palette": "my.yaml"})


def test_settings_accept_what_the_config_and_environment_give():
    s = ColorSettings.from_config({"crop": "0.1,0.1,0.7,0.7", "min_share": 0, "seed": -1,
                                   "achromatic": {"max_chroma": 5}})
    assert s.crop == (0.1, 0.1, 0.7, 0.7) and s.min_share == 0.0
    assert s.achromatic["max_chroma"] == 5 and s.achromatic["white"] == "white"
    # The smallest crop the working size allows is one pixel across.
    assert ColorSettings(size=100, crop=(0.5, 0.5, 0.51, 0.51)).crop[2] == 0.51
