"""report.html of ``mltk colors --report DIR``: a grid of the photos, each with its named
swatches, and the folder roll-up; colors.csv and summary.csv beside it hold every row."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._atomic import write_text

#: Photos shown in the grid (thumbnails); every image is in colors.csv.
MAX_GRID = 150
THUMB_SIDE = 128


def answer(roll: Mapping[str, Any], top: int = 3) -> list[str]:
    main = [f"{c['name']} (a top colour in {c['image_fraction']:.0%} of the images)"
            for c in roll["colors"][:top]]
    first = ("The main colours of the folder are " + _and(main) + ".") if main else \
        "No image could be analysed."
    return [first, f"{roll['images']:,} images analysed, {roll['failed']:,} failed."]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _card(rec: Mapping[str, Any]) -> dict[str, Any]:
    from mltk import _report

    return {"name": Path(rec["path"]).name, "path": rec["path"],
            "thumb": _report.thumbnail_uri(rec["path"], THUMB_SIDE, quality=75),
            "size": f"{rec['width']}×{rec['height']}" if rec["width"] else "",
            "colors": rec["colors"], "other": rec.get("other_share") or 0.0}


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def image_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per image: path, size, the named colours with their shares, error."""
    return [{"path": r["path"], "width": r["width"], "height": r["height"],
             "colors": "; ".join(f"{c['name']} {c['hex']} {c['share']:.3f}"
                                 for c in r["colors"]),
             "other_share": r["other_share"], "error": r["error"] or ""} for r in records]


def render_html(records: Sequence[Mapping[str, Any]], roll: Mapping[str, Any],
                settings: Mapping[str, Any] | None = None, max_grid: int = MAX_GRID) -> str:
    from mltk import _report

    ok = [r for r in records if not r.get("error")]
    failed = [{"path": r["path"], "error": r["error"]} for r in records if r.get("error")]
    grid_note = (f"The first {max_grid:,} of {len(ok):,} photos are shown; every image is in "
                 "colors.csv." if len(ok) > max_grid else None)
    return _report.render(
        "colors.html.j2", title="Dominant colours", kicker="mltk colors",
        question="Which colours are these product photos?", answer=answer(roll),
        headline=[(f"top colour, in {c['image_fraction']:.0%} of images", c["name"])
                  for c in roll["colors"][:3]] + [("images", f"{roll['images']:,}")],
        cards=[_card(r) for r in ok[:max_grid]], grid_note=grid_note,
        roll=_report.table(roll["colors"], caption="Folder roll-up: names by the number of "
                           "images in which they are a top colour", full_csv="summary.csv"),
        failed=_report.table(failed, caption="Images that could not be analysed",
                             full_csv="colors.csv"),
        settings={k: v for k, v in (settings or {}).items()})


def write_report(folder: str | os.PathLike, records: Sequence[Mapping[str, Any]],
                 roll: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> Path:
    """``folder``/report.html, colors.csv (one row per image) and summary.csv (the roll-up)."""
    out = Path(folder)
    write_text(out / "colors.csv", _csv(image_rows(records), ["path", "width", "height",
                                                              "colors", "other_share",
                                                              "error"]))
    write_text(out / "summary.csv", _csv(roll["colors"], ["rank", "name", "images",
                                                          "image_fraction", "pixel_share",
                                                          "rank_by_share"]))
    from mltk import _report

    return _report.write(out / "report.html", render_html(records, roll, settings))
