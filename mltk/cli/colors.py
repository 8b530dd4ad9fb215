"""``mltk colors``: named dominant colours of product photos."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format
from mltk.cli._common import (
    ConfigOption,
    FormatOption,
    SeedOption,
    command,
    get_output,
    option_of,
    parse_floats,
)


def register(app: typer.Typer) -> None:
    command(app, "colors")(colors)


def colors(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(help="Image files and/or folders; '-' reads one path per line from stdin."),
    ],
    k: Annotated[
        int | None, typer.Option("-k", "--k", min=1, help="Clusters per image (default 5).")
    ] = None,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Names per image (default 4).")
    ] = None,
    palette: Annotated[
        Path | None,
        typer.Option(
            "--palette", help="Palette YAML replacing the default in configs/colors.yaml."
        ),
    ] = None,
    distance: Annotated[
        str | None, typer.Option("--distance", help="ciede2000 (default) or cie76.")
    ] = None,
    crop: Annotated[
        str | None,
        typer.Option(
            "--crop", help="X0,Y0,X1,Y1 fractions of the image (default 0.2,0.2,0.8,0.8)."
        ),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", min=8, help="Working size (default 150).")
    ] = None,
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Walk sub-folders.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option("-j", "--jobs", min=1, help="Worker processes (default all cores)."),
    ] = None,
    seed: SeedOption = None,
    swatch: Annotated[
        Path | None,
        typer.Option(
            "--swatch", help="Write a PNG bar per image and a contact sheet to this folder."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write report.html (the photos with their named swatches, and the roll-up), "
            "colors.csv and summary.csv to this folder.",
        ),
    ] = None,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Output the folder roll-up instead of per-image records "
            "(table format always shows both).",
        ),
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image failed.")] = False,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Name the dominant colours of product photos (k-means on the central crop, CIELAB).

    Example: mltk colors photos/ -r --top 3 --format ndjson
    """
    from mltk import _config
    from mltk.colors import analyze_paths, iter_image_paths, summarize

    out = get_output(ctx)
    cli = {
        "k": k,
        "top": top,
        "size": size,
        "distance": distance,
        "seed": seed,
        "crop": list(parse_floats(crop, 4, "--crop")) if crop else None,
    }
    cfg, origins = _config.resolve_with_origins("colors", cli, config)
    settings = _settings(ctx, cfg, palette, origins)
    if "-" in paths:
        stdin_paths = [line.strip() for line in sys.stdin if line.strip()]
        paths = [p for p in paths if p != "-"] + stdin_paths
    files = list(iter_image_paths(paths, recursive=recursive))
    if not files:
        out.warn("no image files found")
    records: list[dict[str, Any]] = []

    def stream():
        with out.progress(len(files), "colors") as bar:
            for rec in analyze_paths(files, settings, jobs=jobs):
                if rec["error"]:
                    out.warn(f"{rec['path']}: {rec['error']}")
                records.append(rec)
                bar.advance()
                yield rec

    if fmt is Format.table:
        out.emit(stream(), fmt, flatten=_table_row, title="Dominant colours")
    elif summary:
        for _ in stream():
            pass
    else:
        out.emit(
            stream(),
            fmt,
            flatten=lambda r: _csv_row(r, settings.top),
            columns=_csv_columns(settings.top),
        )
    roll = summarize(records)
    if summary or fmt is Format.table:
        out.emit(
            roll["colors"],
            fmt,
            title=f"Folder roll-up: {roll['images']} images, {roll['failed']} failed",
        )
    top_names = ", ".join(r["name"] for r in roll["colors"][: settings.top]) or "-"
    out.info(
        f"{roll['images']} images analysed, {roll['failed']} failed; main colours: {top_names}"
    )
    _write_files(out, swatch, report, records, roll, {**cfg, "palette": palette or cfg["palette"]})
    if strict and roll["failed"]:
        out.error(f"{roll['failed']} of {len(records)} images failed")
        raise typer.Exit(1)


def _write_files(out: Any, swatch: Path | None, report: Path | None, records: list[dict],
                 roll: dict[str, Any], cfg: dict[str, Any]) -> None:
    """The swatch folder (--swatch) and the report folder (--report), when asked for."""
    if swatch is not None:
        from mltk import _config
        from mltk.colors.swatch import write_swatches

        written = write_swatches(swatch, records)
        _config.save(swatch / "config.yaml", cfg)
        out.info(f"wrote {len(written)} swatch images to {swatch}")
    if report is not None:
        from mltk.colors.report import write_report

        out.info(f"report: {write_report(report, records, roll, cfg)}")


def _settings(ctx: typer.Context, cfg: dict[str, Any], palette: Path | None,
              origins: dict[str, str]) -> Any:
    """ColorSettings; a bad value from an option is a usage error naming the option."""
    from mltk.colors import ColorSettings
    from mltk.colors.settings import SettingError

    try:
        return ColorSettings.from_config(cfg, palette_file=palette, origins=origins)
    except SettingError as exc:
        flag = option_of(ctx, exc.key, {"k": "-k"})
        if exc.origin == "command line" and flag:
            raise typer.BadParameter(exc.problem, param_hint=flag) from None
        raise


def _table_row(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": rec["path"],
        "size": f"{rec['width']}x{rec['height']}" if rec["width"] else "",
        "colors": ", ".join(f"{c['name']} {c['share']:.0%}" for c in rec["colors"]),
        "error": rec["error"] or "",
    }


def _csv_columns(top: int) -> list[str]:
    cols = ["path", "width", "height"]
    for i in range(1, top + 1):
        cols += [f"color_{i}", f"share_{i}", f"hex_{i}"]
    return cols + ["other_share", "error"]


def _csv_row(rec: dict[str, Any], top: int) -> dict[str, Any]:
    row = {"path": rec["path"], "width": rec["width"], "height": rec["height"]}
    for i in range(1, top + 1):
        c = rec["colors"][i - 1] if i <= len(rec["colors"]) else None
        row |= {
            f"color_{i}": c and c["name"],
            f"share_{i}": c and c["share"],
            f"hex_{i}": c and c["hex"],
        }
    return row | {"other_share": rec["other_share"], "error": rec["error"]}
