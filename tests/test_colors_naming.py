"""mltk's colour names against human ones: the XKCD colour survey (shipped with matplotlib) and
the ISCC-NBS expert names (mltk.colors.iscc_nbs)."""

from __future__ import annotations

import pytest

from mltk.colors import ColorNamer, Palette, default_palette
from mltk.colors.calibrate import calibrate, keep_colors, tuning_colors
from mltk.colors.iscc_nbs import CENTROIDS
from mltk.colors.naming import (
    HALVES,
    SurveyColor,
    agreement,
    agreement_by_half,
    agreement_report,
    base_term,
    expert_term,
    half_of,
    hex_to_lab,
    iscc_nbs_colors,
    neighbour_terms,
    reference_colors,
    survey_colors,
)

#: Reached by the calibration in configs/colors.yaml (279 of 330 held-out colours; 272 before);
#: the test allows a margin of about two colours for numerical noise across library versions.
HELD_OUT_AGREEMENT = 282 / 330
CALIBRATION_AGREEMENT = 260 / 266
#: Held-out figures of configs/colors.yaml, calibrated on both sources' calibration halves:
#: (exact, with neighbours) colours of (330 XKCD, 148 ISCC-NBS). The palette calibrated on XKCD
#: alone had (279, 310) and (96, 133). The floors allow one colour less.
HELD_OUT = {"xkcd": (282, 314), "iscc-nbs": (100, 134)}


@pytest.mark.parametrize("name, term", [
    ("sky blue", "blue"), ("dusty pink", "pink"), ("forest green", "green"),
    ("blue grey", "gray"), ("grey blue", "blue"), ("navy blue", "navy"),
    ("dark navy blue", "navy"), ("navy", "navy"), ("teal", "blue"), ("deep turquoise", "blue"),
    ("blue with a hint of purple", "blue"), ("off white", "white"),
    ("mauve", None), ("green/blue", None), ("burgundy", None),
])
def test_base_terms(name, term):
    assert base_term(name) == term


def test_survey_is_split_in_two_fixed_halves():
    colors = survey_colors()
    assert len(colors) == 596  # of the survey's 949 names, those ending in a mapped base term
    halves = {h: [c.name for c in colors if c.half == h] for h in HALVES}
    assert len(halves["calibration"]) == 266 and len(halves["held-out"]) == 330
    assert [c.name for c in survey_colors("held-out")] == halves["held-out"]
    assert half_of("blue") == "calibration" and half_of("sky blue") == half_of("sky blue")


@pytest.mark.parametrize("name, neighbours", [
    ("yellowish brown", ("yellow",)), ("grey blue", ("gray", "navy")), ("purply pink", ("purple",)),
    ("orangey red", ("orange",)), ("blue/green", ()), ("sky blue", ("navy",)),
    ("dark navy blue", ("blue",)), ("bluey grey", ("blue", "navy")), ("forest green", ()),
    ("reddy brown", ("red",)), ("greenish teal", ("green", "navy")),
])
def test_neighbouring_terms(name, neighbours):
    assert neighbour_terms(name) == neighbours


@pytest.mark.parametrize("name, term, neighbours", [
    ("deep yellow", "yellow", ()), ("light orange", "orange", ()),
    ("reddish orange", "orange", ("red",)), ("moderate yellow green", "green", ("yellow",)),
    ("pale blue", "blue", ("gray", "navy")), ("dark violet", "purple", ("blue", "navy")),
    ("grayish yellow", "yellow", ("beige", "gray")), ("light yellowish brown", "brown",
                                                       ("beige", "yellow")),
    ("yellowish white", "white", ("beige", "yellow")), ("olive brown", "brown", ("green",)),
    ("blackish red", "red", ("black",)), ("moderate olive", None, None),
])
def test_expert_terms(name, term, neighbours):
    assert expert_term(name) == (None if term is None else (term, neighbours))


def test_iscc_nbs_centroids_are_split_in_two_fixed_halves():
    assert len(CENTROIDS) == 267 and len({n for n, _ in CENTROIDS}) == 267
    colors = iscc_nbs_colors()
    assert len(colors) == 261  # six names ending in "olive" are left out
    assert sum(c.half == "held-out" for c in colors) == 148
    assert [c.name for c in reference_colors("iscc-nbs", "calibration")] == [
        c.name for c in colors if c.half == "calibration"]
    assert {c.source for c in colors} == {"iscc-nbs"}


def test_both_held_out_halves_stay_where_calibration_took_them():
    """Agreement on colours the palette was never tuned on, from the crowd and from experts."""
    rows = {r["source"]: r for r in agreement_report() if r["half"] == "held-out"}
    assert rows["xkcd"]["colors"] == 330 and rows["iscc-nbs"]["colors"] == 148
    for source, (exact, with_neighbours) in HELD_OUT.items():
        assert rows[source]["exact"] >= exact - 1, source
        assert rows[source]["with_neighbours"] >= with_neighbours - 1, source


def test_expert_yellows_and_oranges():
    """ISCC-NBS dark yellow and light orange (tuning half) and dark orange yellow (held out) were
    named brown, beige and orange; now yellow, orange and yellow."""
    names = ColorNamer().name(hex_to_lab(["#ab9144", "#fab57f", "#be8a3d"]))
    assert names == ["yellow", "orange", "yellow"]


def test_held_out_agreement_stays_where_calibration_took_it():
    got = agreement_by_half()
    assert got["held-out"] >= HELD_OUT_AGREEMENT - 0.006
    assert got["calibration"] >= CALIBRATION_AGREEMENT - 0.006


def test_xkcd_blue_is_blue():
    assert ColorNamer().name(hex_to_lab(["#0343df"])) == ["blue"]  # the survey's "blue"


@pytest.mark.slow
def test_shipped_palette_is_calibrated():
    """The default palette is where the search stops: no move gains on the calibration halves
    without renaming the product generator's shades, generated photos' colours (except to their
    product's colour) or the sample photos' colours."""
    lab, may_become = keep_colors()
    assert calibrate(default_palette(), tuning_colors(), lab, max_moves=1,
                     keep_may_become=may_become) == []


def test_calibrate_adds_and_removes_shades():
    palette = Palette.from_mapping({"blue": ["#0000ff"], "purple": ["#800080", "#4040ff"]})
    colors = [SurveyColor("a", "#3050ff", "blue", "calibration"),
              SurveyColor("b", "#3a60f0", "blue", "calibration"),
              SurveyColor("c", "#7a007a", "purple", "calibration")]
    assert agreement(colors, ColorNamer(palette)) == pytest.approx(1 / 3)
    moves = calibrate(palette, colors)
    assert [(m.action, m.name) for m in moves] == [("remove", "purple")]
    assert moves[0].hex == "#4040ff" and moves[0].correct == 3
    keep = hex_to_lab(["#4040ff"])  # must stay purple: the removal is not allowed
    moves = calibrate(palette, colors, keep)
    assert [(m.action, m.name, m.survey_name) for m in moves] == [("add", "blue", "a")]
    assert moves[0].hex == "#3050ff" and moves[0].correct == 3


def test_a_keep_colour_may_become_only_its_own_name():
    palette = Palette.from_mapping({"blue": ["#0000ff"], "purple": ["#800080", "#4040ff"]})
    colors = [SurveyColor("a", "#3050ff", "blue", "calibration"),
              SurveyColor("b", "#3a60f0", "blue", "calibration"),
              SurveyColor("c", "#7a007a", "purple", "calibration")]
    keep = hex_to_lab(["#4040ff"])  # purple today; removing #4040ff makes it blue
    moves = calibrate(palette, colors, keep, keep_may_become=["blue"])
    assert [(m.action, m.name, m.hex) for m in moves] == [("remove", "purple", "#4040ff")]
    moves = calibrate(palette, colors, keep, keep_may_become=["navy"])
    assert [(m.action, m.survey_name) for m in moves] == [("add", "a")]
