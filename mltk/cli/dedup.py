"""``mltk dedup``: groups of near-duplicate photos, no model needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mltk._output import Format
from mltk.cli._common import ConfigOption, FormatOption, command, get_output, load_settings


def register(app: typer.Typer) -> None:
    command(app, "dedup")(dedup)


def dedup(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(
        help="Image files and/or folders; '-' reads one path per line from stdin.")],
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Walk sub-folders.")
                         ] = False,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Least share (0-1) of the smaller photo's ORB features that one "
        "geometric transform (crop, scale, small rotation) must match (default 0.05); lower "
        "finds more, higher is stricter. With 200 features a photo, --min-inliers decides "
        "below 0.06.")] = None,
    min_inliers: Annotated[int | None, typer.Option(
        "--min-inliers", help="And at least this many matched features (default 12).")
    ] = None,
    hash_radius: Annotated[int | None, typer.Option(
        "--hash-radius", help="Candidates: 64-bit perceptual hashes at most this many bits "
        "apart (default 22).")] = None,
    candidates: Annotated[int | None, typer.Option(
        "--candidates", min=1, help="Most candidates verified per photo (default 8).")
    ] = None,
    jobs: Annotated[int | None, typer.Option(
        "-j", "--jobs", min=1, help="Worker processes (default all cores).")] = None,
    sheet: Annotated[Path | None, typer.Option(
        "--sheet", help="Write a contact sheet (PNG) of each group to this folder.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image failed.")
                      ] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Write report.html (the groups side by side, with their scores) and "
        "dedup.csv to this folder.")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="A run folder of `mltk train`: each photo's nearest others by "
        "embedding are candidates too (still verified by local features).")] = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Find near-duplicate photos: re-encoded, resized, cropped, rotated, mirrored, watermarked.

    Prints one record per photo: path, group (None when unique), duplicate_of (the group's
    largest photo), score (the share of features matched) and error.

    Example: mltk dedup photos/ -r --report dedup-report/ -f csv
    """
    from mltk._imaging import iter_image_paths
    from mltk.similar.dedup import COLUMNS, find_duplicates

    out = get_output(ctx)
    settings = load_settings(ctx, "similar", {
        "threshold": threshold, "min_inliers": min_inliers, "hash_radius": hash_radius,
        "candidates": candidates}, config)
    if "-" in paths:
        paths = [p for p in paths if p != "-"] + [line.strip() for line in sys.stdin
                                                  if line.strip()]
    files = list(iter_image_paths(paths, recursive=recursive))
    if not files:
        out.warn("no image files found")
    embedding = None
    if model is not None:
        from mltk.classify import Classifier

        embedding = Classifier.load(model, need_tf=False)
    records = find_duplicates(files, settings, jobs=jobs, embedding=embedding)
    failed = [r for r in records if r["error"]]
    for rec in failed:
        out.warn(f"{rec['path']}: {rec['error']}")
    out.emit(records, fmt, columns=COLUMNS, title="Near-duplicate photos")
    groups = {r["group"] for r in records if r["group"] is not None}
    dups = sum(r["duplicate_of"] is not None for r in records)
    out.info(f"{len(records)} photos: {len(groups)} groups, {dups} duplicates, "
             f"{len(failed)} failed")
    if sheet is not None:
        from mltk import _config
        from mltk.similar.sheet import write_sheets

        written = write_sheets(sheet, records)
        _config.save(sheet / "config.yaml", settings.to_dict())
        out.info(f"wrote {len(written)} contact sheets to {sheet}")
    if report is not None:
        from mltk.similar.report import write_report

        out.info(f"report: {write_report(report, records, settings.to_dict())}")
    if strict and failed:
        out.error(f"{len(failed)} of {len(records)} images failed")
        raise typer.Exit(1)
