"""mltk.colors without files: extractor, namer, palette."""

from __future__ import annotations

import numpy as np
import pytest

from mltk.colors import ColorExtractor, ColorNamer, Palette, named_colors, rgb_to_lab
from mltk.colors.palette import load_palette
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
