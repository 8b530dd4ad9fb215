"""mltk dedup on real photos that packages ship, with imagededup-style copies built here.

The set (mltk.datasets ``near-duplicates``): scikit-image, scikit-learn and matplotlib sample
photos, the large ones cut into non-overlapping tiles (look-alikes that are not duplicates),
each with copies resized, cropped, rotated, mirrored, brightened, re-encoded, watermarked and
colour-shifted. Two files are a duplicate pair when truth.csv gives them the same source.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from mltk import settings
from mltk.datasets import make
from mltk.similar import find_duplicates
from mltk.similar.hashing import hamming, phash


@pytest.fixture(scope="session")
def near_duplicates(tmp_path_factory):
    root = tmp_path_factory.mktemp("near-duplicates")
    make("near-duplicates", root, n=16, seed=0, copies=3)
    truth = {str(root / r["file"]): r for r in csv.DictReader(open(root / "truth.csv"))}
    return root, truth


def pair_scores(records, truth):
    group = {r["path"]: r["group"] for r in records}
    true = pred = hit = 0
    for a, b in itertools.combinations(sorted(truth), 2):
        same = truth[a]["source"] == truth[b]["source"]
        found = group[a] is not None and group[a] == group[b]
        true += same
        pred += found
        hit += same and found
    return hit / true, hit / max(pred, 1)


def test_transformed_copies_are_found_and_look_alikes_are_not(cli, near_duplicates):
    root, truth = near_duplicates
    result = cli("dedup", root, "-j", "1", "-f", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == len(truth) and all(r["error"] is None for r in records)
    recall, precision = pair_scores(records, truth)
    assert precision == 1.0
    assert recall >= 0.85, recall
    by_path = {r["path"]: r for r in records}
    for rec in records:  # the representative is the largest photo of its group
        if rec["duplicate_of"]:
            rep = by_path[rec["duplicate_of"]]
            assert rep["duplicate_of"] is None and rep["group"] == rec["group"]
            assert 0.0 < rec["score"] <= 1.0
    assert "groups" in result.stderr and "0 failed" in result.stderr


def test_each_kind_of_copy_is_matched_to_its_original(near_duplicates):
    root, truth = near_duplicates
    cfg = settings.load("similar")
    found = {}
    for path, row in truth.items():
        if row["transform"] == "original":
            continue
        original = next(p for p, r in truth.items() if r["source"] == row["source"]
                        and r["transform"] == "original")
        rec = find_duplicates([original, path], cfg, jobs=1)
        found.setdefault(row["transform"], []).append(rec[0]["group"] is not None)
    assert set(found) == {"resize", "crop", "rotate", "mirror", "brightness", "jpeg",
                          "watermark", "colour"}
    share = {k: sum(v) / len(v) for k, v in found.items()}
    assert share["mirror"] == 1.0 and share["crop"] >= 0.5 and share["rotate"] >= 0.5, share


def test_hashes_alone_miss_crops_and_mirrors(near_duplicates):
    """Why hashes only propose candidates: a mirror or a crop flips many bits."""
    root, truth = near_duplicates
    gray = {p: cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in truth}
    original = next(p for p, r in truth.items() if r["transform"] == "original")
    assert hamming(phash(gray[original]), phash(gray[original][:, ::-1])) > 10


def test_bad_files_get_error_rows_and_the_run_goes_on(cli, near_duplicates, tmp_path):
    root, truth = near_duplicates
    good = sorted(p for p, r in truth.items() if r["source"] == truth[min(truth)]["source"])
    for p in good:
        shutil.copy(p, tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    data = (tmp_path / good[0].rsplit("/", 1)[1]).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    result = cli("dedup", tmp_path, "-j", "2", "-f", "json")
    assert result.exit_code == 0, result.output
    records = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(result.stdout)}
    assert records["empty.jpg"]["error"] == "empty file (0 bytes)"
    assert records["text.png"]["error"] == "not an image (unrecognised format)"
    assert records["truncated.jpg"]["error"] == "truncated JPEG (no end-of-image marker)"
    assert sum(r["group"] is not None for r in records.values()) >= 3
    assert "3 failed" in result.stderr
    assert cli("dedup", tmp_path, "-j", "1", "--strict").exit_code == 1


def test_sheets_one_png_per_group(cli, near_duplicates, tmp_path):
    root, truth = near_duplicates
    files = sorted(truth)[:8]
    result = cli("dedup", *files, "-j", "1", "--sheet", tmp_path / "sheets", "-f", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "path,group,duplicate_of,score,error" and len(lines) == 9
    groups = {line.split(",")[1] for line in lines[1:]} - {""}
    sheets = sorted((tmp_path / "sheets").glob("group_*.png"))
    assert len(sheets) == len(groups) >= 1
    assert (tmp_path / "sheets" / "config.yaml").exists()
    image = cv2.imread(str(sheets[0]))
    assert image is not None and image.shape[0] >= 200


def test_a_higher_threshold_only_removes_pairs(near_duplicates):
    root, truth = near_duplicates
    paths = sorted(truth)
    loose = find_duplicates(paths, settings.load("similar", threshold=0.05), jobs=1)
    strict = find_duplicates(paths, settings.load("similar", threshold=0.4), jobs=1)
    def pairs(records):
        return {(a["path"], b["path"]) for a, b in itertools.combinations(records, 2)
                if a["group"] is not None and a["group"] == b["group"]}
    assert pairs(strict) < pairs(loose)


def test_identical_files_score_high_and_unique_photos_stay_alone(tmp_path):
    rng = np.random.default_rng(0)
    noise = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), noise)
    cv2.imwrite(str(tmp_path / "b.png"), noise)
    cv2.imwrite(str(tmp_path / "c.png"), (rng.random((300, 400, 3)) * 255).astype(np.uint8))
    records = find_duplicates(sorted(tmp_path.glob("*.png")), settings.load("similar"), jobs=1)
    assert [r["group"] for r in records] == [1, 1, None]
    assert records[1]["duplicate_of"] == str(tmp_path / "a.png") and records[1]["score"] > 0.5


def test_report_shows_the_groups_side_by_side_in_a_browser(cli, near_duplicates, tmp_path):
    from tests.browser import open_report

    root, truth = near_duplicates
    result = cli("dedup", root, "-j", "1", "-f", "json", "--report", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    groups = {r["group"] for r in records if r["group"] is not None}
    copies = [r for r in records if r["duplicate_of"]]
    page = open_report(tmp_path / "rep" / "report.html", tmp_path)
    assert (f"{len(copies)} of the {len(records)} photos are near-duplicates of another: "
            f"{len(groups)} groups") in page.text
    scores = [r["score"] for r in copies]
    least = settings.load("similar").threshold
    assert f"from {min(scores):.2f} to {max(scores):.2f}; a pair needs at least {least:g}" in (
        page.text)
    in_groups = [r for r in records if r["group"] is not None]
    assert len(page.images) == len(in_groups)  # every grouped photo, once (groups are small)
    assert all(max(img.size) <= 112 for img in page.images)
    # each group a row, the photo to keep first, then its copies with their scores
    by_group = {}
    for r in in_groups:
        by_group.setdefault(r["group"], []).append(r)
    first = max(by_group.values(), key=len)
    keep = next(r for r in first if r["duplicate_of"] is None)
    row = page.dom.split(f'aria-label="Group {keep["group"]}"')[1].split("</section>")[0]
    names = re.findall(r'alt="(Kept|Copy) photo ([^ ]+) of group', row)
    assert names[0] == ("Kept", keep["path"].rsplit("/", 1)[1])
    assert len(names) == len(first) and all(k == "Copy" for k, _ in names[1:])
    best = max((r for r in first if r["duplicate_of"]), key=lambda r: r["score"])
    assert f"score {best['score']:.3f}" in row
    csv_rows = list(csv.DictReader(open(tmp_path / "rep" / "dedup.csv")))
    assert len(csv_rows) == len(records) and list(csv_rows[0]) == [
        "path", "group", "duplicate_of", "score", "error"]


def test_report_cuts_the_groups_with_a_note(near_duplicates):
    from mltk.similar.report import render_html

    root, truth = near_duplicates
    paths = sorted(truth)
    records = find_duplicates(paths, settings.load("similar"), jobs=1)
    html = render_html(records, {"threshold": 0.12, "metric": "cosine"}, max_groups=2,
                       per_group=2)
    n = len({r["group"] for r in records if r["group"] is not None})
    assert f"The largest 2 of {n} groups are shown; every photo is in dedup.csv." in html
    assert html.count("<img ") == 4 and "more in dedup.csv" in html
    assert "<code>0.12</code>" in html and "cosine" not in html  # only dedup's settings
    assert "No near-duplicates among the 1 photos." in render_html(records[:1] and [
        {**records[0], "group": None, "duplicate_of": None, "score": None}])


@pytest.mark.slow
def test_report_at_the_most_groups_stays_under_the_size_limit(near_duplicates):
    """The most thumbnails a report holds at the defaults (40 groups of 8 shown) fit the 2 MB
    that a report may weigh."""
    from mltk.similar.report import MAX_GROUPS, PER_GROUP, render_html
    from tests.browser import SIZE_LIMIT

    root, truth = near_duplicates
    paths = sorted(truth)
    records = [{"path": paths[(g * 9 + k) % len(paths)], "group": g + 1,
                "duplicate_of": None if k == 0 else paths[g * 9 % len(paths)],
                "score": None if k == 0 else 0.5, "error": None}
               for g in range(MAX_GROUPS + 5) for k in range(PER_GROUP + 1)]
    html = render_html(records, {"threshold": 0.12})
    assert html.count("<img ") == MAX_GROUPS * PER_GROUP
    assert len(html.encode()) < SIZE_LIMIT, len(html.encode())


def test_embedding_pairs_are_each_photos_nearest_others():
    from mltk.similar.dedup import embedding_pairs
    from mltk.similar.reduce import l2_normalize

    x = l2_normalize(np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.98, 0.2],
                               [0, 0, 1]], np.float32))
    assert embedding_pairs(x, 1) == {(0, 1): True, (2, 3): True, (3, 4): True}
    assert embedding_pairs(x[:1], 3) == {}


@pytest.mark.slow
def test_a_model_adds_candidates_that_hashes_miss(cli, near_duplicates, digits_run):
    """With hashes cut to exact matches, the run's embeddings still bring the copies up as
    candidates; local features verify them, so precision stays whole."""
    root, truth = near_duplicates
    narrow = ("dedup", root, "-j", "1", "--hash-radius", "0", "-f", "json")
    hashes = cli(*narrow)
    with_model = cli(*narrow, "--model", digits_run)
    assert hashes.exit_code == 0 and with_model.exit_code == 0, with_model.output
    recall_h, _ = pair_scores(json.loads(hashes.stdout), truth)
    recall_m, precision_m = pair_scores(json.loads(with_model.stdout), truth)
    assert precision_m == 1.0
    assert recall_m > recall_h + 0.1, (recall_h, recall_m)


def test_mirror_hashes_are_the_hashes_of_the_mirror_image(near_duplicates):
    """The mirrored half of a photo's hashes comes from the same DCT (odd horizontal
    frequencies change sign): it equals the plain half of the mirror image."""
    from mltk.similar.hashing import photo_hashes

    root, truth = near_duplicates
    for path in sorted(truth)[:6]:
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        ours, flipped = photo_hashes(gray), photo_hashes(np.ascontiguousarray(gray[:, ::-1]))
        half = len(ours) // 2
        assert len(ours) == 6
        for row in range(half):
            assert hamming(ours[half + row], flipped[row]) <= 2, (path, row)
            assert hamming(ours[row], flipped[half + row]) <= 2, (path, row)
        assert hamming(ours[0], phash(gray)) <= 2


def _features(hashes):
    from mltk.similar.dedup import PhotoFeatures

    return [PhotoFeatures(f"p{i}", 1, np.tile(h, (6, 1)), np.zeros((0, 2), np.float32),
                          np.zeros((0, 32), np.uint8), (1, 1)) for i, h in enumerate(hashes)]


def test_candidate_pairs_come_nearest_first_within_the_radius():
    from mltk.similar.dedup import candidate_pairs

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, 8, dtype=np.uint8)
    def flipped(bits):
        out = np.unpackbits(base)
        out[:bits] ^= 1
        return np.packbits(out)
    feats = _features([flipped(5), base, flipped(1), ~base])  # the last: 64 bits away
    cfg = settings.load("similar", hash_radius=10)
    pairs = candidate_pairs(feats, cfg)
    assert list(pairs) == [(1, 2), (0, 2), (0, 1)]  # 1, 4 and 5 bits apart
    assert not any(pairs.values())
    assert list(candidate_pairs(feats, settings.load("similar", hash_radius=10, candidates=1)
                                )) == [(1, 2), (0, 2)]


def test_a_mirrored_copy_is_matched_from_the_kept_image(near_duplicates, tmp_path):
    """The mirror image's features come from the working image kept in memory: the files can
    be gone by then. Beyond the memory budget the photo is decoded again."""
    from mltk.similar.dedup import candidate_pairs, features_of, kept_images, verify

    root, truth = near_duplicates
    mirror = next(p for p, r in truth.items() if r["transform"] == "mirror")
    original = next(p for p, r in truth.items() if r["source"] == truth[mirror]["source"]
                    and r["transform"] == "original")
    paths = [str(shutil.copy(p, tmp_path)) for p in (original, mirror)]
    cfg = settings.load("similar")
    feats = kept_images(features_of(paths, cfg, jobs=1))
    pairs = candidate_pairs(feats, cfg)
    assert pairs == {(0, 1): True}
    for p in paths:
        os.unlink(p)
    assert verify(feats, pairs, cfg)[(0, 1)] > 0.3
    dropped = kept_images(features_of([original, mirror], cfg, jobs=1), budget=0)
    assert all(f.gray is None for f in dropped)
    assert verify(dropped, pairs, cfg)[(0, 1)] > 0.3
