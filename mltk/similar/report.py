"""report.html of ``mltk dedup --report DIR``: the duplicate groups side by side.

Each group is a row of thumbnails, its representative (the largest photo, the one to keep)
first and framed, every copy with its score (the share of local features that one geometric
transform matches); the largest groups first. dedup.csv beside the report holds every record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Groups shown (thumbnails); photos shown per group. The rest are in dedup.csv.
MAX_GROUPS = 40
PER_GROUP = 8
THUMB_SIDE = 112
COLUMNS = ["path", "group", "duplicate_of", "score", "error"]
#: The settings that decide duplicates (the rest of SimilarSettings is for the index).
DEDUP_SETTINGS = ("threshold", "min_inliers", "hash_radius", "candidates", "features",
                  "work_size", "levels")


def groups_of(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The groups, each with its representative first and the copies by score (highest
    first); the largest groups first, then by group number."""
    by: dict[int, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("group") is not None:
            by.setdefault(r["group"], []).append(r)
    out = []
    for number in sorted(by):
        members = sorted(by[number], key=lambda r: (r["duplicate_of"] is not None,
                                                     -(r["score"] or 0.0), r["path"]))
        out.append(members)
    out.sort(key=lambda g: -len(g))  # stable: group number within a size
    return out


def answer(records: Sequence[Mapping[str, Any]], threshold: float | None = None) -> list[str]:
    groups = groups_of(records)
    copies = sum(r.get("duplicate_of") is not None for r in records)
    failed = sum(bool(r.get("error")) for r in records)
    if not groups:
        first = f"No near-duplicates among the {len(records):,} photos."
    else:
        first = (f"{copies:,} of the {len(records):,} photos are near-duplicates of another: "
                 f"{len(groups):,} groups, the largest of {len(groups[0])} photos; keeping the "
                 f"largest photo of each group removes {copies:,}.")
    scores = [r["score"] for r in records if r.get("score") is not None]
    second = (f"Scores (the share of local features one transform matches) run from "
              f"{min(scores):.2f} to {max(scores):.2f}"
              + (f"; a pair needs at least {threshold:g}" if threshold is not None else "") + ". "
              if scores else "")
    second += f"{failed:,} file(s) could not be read." if failed else "Every file was read."
    return [first, second]


def _card(rec: Mapping[str, Any]) -> dict[str, Any]:
    from mltk import _report

    return {"name": Path(rec["path"]).name, "path": rec["path"], "score": rec["score"],
            "keep": rec["duplicate_of"] is None,
            "thumb": _report.thumbnail_uri(rec["path"], THUMB_SIDE, quality=70)}


def render_html(records: Sequence[Mapping[str, Any]], settings: Mapping[str, Any] | None = None,
                max_groups: int = MAX_GROUPS, per_group: int = PER_GROUP) -> str:
    from mltk import _report

    settings = {k: v for k, v in (settings or {}).items() if k in DEDUP_SETTINGS}
    groups = groups_of(records)
    shown = [{"number": g[0]["group"], "size": len(g),
              "cards": [_card(r) for r in g[:per_group]],
              "more": max(0, len(g) - per_group)} for g in groups[:max_groups]]
    note = (f"The largest {max_groups:,} of {len(groups):,} groups are shown; every photo is in "
            "dedup.csv." if len(groups) > max_groups else None)
    failed = [{"path": r["path"], "error": r["error"]} for r in records if r.get("error")]
    copies = sum(r.get("duplicate_of") is not None for r in records)
    return _report.render(
        "dedup.html.j2", title="Near-duplicate photos", kicker="mltk dedup",
        question="Which photos are copies of one another?",
        answer=answer(records, settings.get("threshold")),
        headline=[("groups", f"{len(groups):,}"), ("copies", f"{copies:,}"),
                  ("photos", f"{len(records):,}"), ("unreadable", f"{len(failed):,}")],
        groups=shown, group_note=note,
        failed=_report.table(failed, caption="Files that could not be read",
                             full_csv="dedup.csv"),
        settings=settings)


def write_report(folder: str | os.PathLike, records: Sequence[Mapping[str, Any]],
                 settings: Mapping[str, Any] | None = None) -> Path:
    """``folder``/report.html and ``folder``/dedup.csv (every record)."""
    import csv
    import io

    from mltk import _report
    from mltk._atomic import write_text

    out = Path(folder)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(out / "dedup.csv", buf.getvalue())
    return _report.write(out / "report.html", render_html(records, settings))
