"""mltk._report, the layout every report.html shares: tables cut with a note, numbers sorted
by value, text escaped, plots scaled down to fit when embedded. (The reports of each command,
opened in a browser, are tests/test_reports.py.)"""

from __future__ import annotations

import numpy as np

from mltk import _report


def test_tables_are_cut_with_a_note_and_numbers_sort_by_value():
    rows = [{"name": f"f{i}", "value": i / 3} for i in range(250)]
    t = _report.table(rows, full_csv="all.csv")
    assert len(t.rows) == _report.MAX_TABLE_ROWS and t.total == 250
    assert t.note == "The first 200 of 250 rows are shown; all 250 are in all.csv."
    assert t.numeric == [False, True] and t.rows[1][1] == ("0.3333", 1 / 3)
    html = _report.render("demo.html.j2", title="t", kicker="k", question="q?",
                          answer=["a <b>"], headline=[], steps=[])
    assert "a &lt;b&gt;" in html  # escaped


def test_a_heavy_plot_is_scaled_down_when_embedded(tmp_path):
    """A correlation matrix of hundreds of features makes a PNG of megabytes: embedded, it is
    scaled down to fit, and still decodes; the file beside the report keeps every pixel."""
    from PIL import Image

    from tests.browser import decode_images

    noise = np.random.default_rng(0).integers(0, 255, (2400, 2400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "heavy.png")
    assert (tmp_path / "heavy.png").stat().st_size > 4 * _report.MAX_IMAGE_BYTES
    uri = _report.file_uri(tmp_path / "heavy.png")
    assert len(uri) * 3 / 4 <= _report.MAX_IMAGE_BYTES * 1.01
    (img,) = decode_images(f'<img src="{uri}" alt="x">')
    assert max(img.size) <= _report.MAX_IMAGE_SIDE
    small = tmp_path / "small.png"
    Image.new("RGB", (50, 40), "white").save(small)
    assert _report.file_uri(small).endswith(
        __import__("base64").b64encode(small.read_bytes()).decode())  # as it is
