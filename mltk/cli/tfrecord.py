"""``mltk tfrecord build|count|inspect``: sharded TFRecord datasets from image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format
from mltk.cli._common import (
    ConfigOption,
    FormatOption,
    MltkGroup,
    SeedOption,
    command,
    get_output,
)

tfrecord_app = typer.Typer(help="Build, count, verify and inspect TFRecord shards.",
                           no_args_is_help=True, cls=MltkGroup)


def register(app: typer.Typer) -> None:
    app.add_typer(tfrecord_app, name="tfrecord")


@command(tfrecord_app, "build")
def build(
    ctx: typer.Context,
    src: Annotated[Path | None, typer.Argument(
        help="Folder with one sub-folder per class (omit with --from-csv).")] = None,
    out: Annotated[Path | None, typer.Argument(help="Output folder for the shards.")] = None,
    from_csv: Annotated[Path | None, typer.Option(
        "--from-csv", help="CSV with columns path,label instead of SRC.")] = None,
    layout: Annotated[str | None, typer.Option(
        "--layout", help="standard (default) or raw (image, label at a fixed --size).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Raw layout image side (150).")
                    ] = None,
    reencode: Annotated[bool, typer.Option("--reencode", help="Re-encode JPEGs too.")] = False,
    max_side: Annotated[int | None, typer.Option(
        "--max-side", help="Downscale so the longer side is at most this (re-encodes).")] = None,
    quality: Annotated[int | None, typer.Option("--quality", help="JPEG quality (95).")] = None,
    shards: Annotated[int | None, typer.Option("--shards", min=1, help="Number of shards.")
                      ] = None,
    shard_size: Annotated[str | None, typer.Option(
        "--shard-size", help="Target shard size, e.g. 128MB (default).")] = None,
    shard_by_label: Annotated[bool, typer.Option(
        "--shard-by-label", help="One shard per class (starves shuffling; explicit only).")
    ] = False,
    verify_images: Annotated[bool, typer.Option(
        "--verify-images", help="Decode every kept JPEG to check its pixel data (slower; by "
        "default kept JPEGs get structural checks).")] = False,
    split: Annotated[str | None, typer.Option(
        "--split", help="Stratified splits, e.g. train=0.9,validation=0.1.")] = None,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", min=1,
                                             help="Worker processes (default: all cores).")
                    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep complete shards, build the rest."
                                         )] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")
                         ] = False,
    seed: SeedOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Pack labelled images into shuffled, sharded TFRecords with labels.txt and manifest.json.

    Example: mltk tfrecord build images/ shards/ --split train=0.9,validation=0.1 -j 4
    """
    from mltk import settings
    from mltk.tfrecords import build as build_dataset

    out_ = get_output(ctx)
    if from_csv is not None and out is None:
        src, out = None, src  # `build --from-csv FILE OUT`: the one positional is OUT
    if out is None:
        raise typer.BadParameter("missing OUT folder", param_hint="OUT")
    opts = settings.load("tfrecord", config, layout=layout, size=size, quality=quality,
                         shard_size=shard_size, shards=shards, split=split, seed=seed,
                         reencode=reencode, max_side=max_side, shard_by_label=shard_by_label,
                         verify_images=verify_images, jobs=jobs)
    with out_.progress(None, "shards") as bar:
        manifest = build_dataset(src, out, opts, from_csv=from_csv, resume=resume,
                                 overwrite=overwrite, on_shard=lambda s: bar.advance())
    out_.emit(({"split": name, "records": s["records"], "shards": s["shards"],
                "bytes": s["bytes"], "classes": len(s["class_counts"])}
               for name, s in manifest["splits"].items()), fmt)
    total = sum(s["records"] for s in manifest["splits"].values())
    out_.info(f"wrote {total} records in {len(manifest['shards'])} shards to {out} "
              f"({len(manifest['skipped'])} files skipped, {manifest['seconds']:.1f} s)")


@command(tfrecord_app, "count")
def count(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="TFRecord files, folders or globs.")],
    per_file: Annotated[bool, typer.Option("--per-file", help="One row per file.")] = False,
    by_label: Annotated[bool, typer.Option("--by-label", help="Records per class (parses "
                                           "every record).")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Check every record's CRCs.")
                      ] = False,
    no_manifest: Annotated[bool, typer.Option("--no-manifest", help="Always scan the files.")
                           ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Count records fast (headers only, or the manifest); --verify checks every CRC.

    Example: mltk tfrecord count shards/ --per-file --verify
    """
    from mltk.tfrecords import count_by_label, count_paths

    out = get_output(ctx)
    if by_label:
        out.emit(count_by_label(paths), fmt)
        return
    rows = count_paths(paths, verify=verify, use_manifest=not no_manifest)
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        out.warn(f"{r['file']}: {r['error']}")
    if per_file:
        out.emit(rows, fmt, columns=["file", "split", "records", "bytes", "ok", "error",
                                     "offset", "source"])
    else:
        out.emit(_rollup(rows), fmt)
    total = sum(r["records"] for r in rows)
    out.info(f"{total} records in {len(rows)} files" + (f", {len(bad)} bad" if bad else ""))
    if bad:
        out.error(f"{len(bad)} of {len(rows)} files are damaged (first: {bad[0]['file']}: "
                  f"{bad[0]['error']})")
        raise typer.Exit(1)


def _rollup(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    splits: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = splits.setdefault(r["split"] or "-", {"split": r["split"] or "-", "files": 0,
                                                  "records": 0, "bytes": 0})
        s["files"] += 1
        s["records"] += r["records"]
        s["bytes"] += r["bytes"]
    total = {"split": "total", "files": len(rows), "records": sum(r["records"] for r in rows),
             "bytes": sum(r["bytes"] for r in rows)}
    return [*splits.values(), total] if len(splits) > 1 else [total]


@command(tfrecord_app, "inspect")
def inspect_(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A TFRecord file (or a folder: its first file).")],
    n: Annotated[int, typer.Option("-n", min=1, help="Records to show.")] = 5,
    save_images: Annotated[Path | None, typer.Option(
        "--save-images", help="Write the decoded images as PNG to this folder.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show feature keys, types and shapes of the first records, and the label names.

    Example: mltk tfrecord inspect shards/train-00000-of-00004.tfrecord -n 3 --save-images png/
    """
    from mltk.tfrecords import inspect_records

    out = get_output(ctx)
    info = inspect_records(path, n=n, save_images=save_images)
    if fmt in (Format.json, Format.ndjson):
        out.emit(({"file": info["file"], **r} for r in info["records"]), fmt)
        return
    rows = [{"record": r["index"], "key": key, "type": f["type"], "shape": f["shape"],
             "value": f.get("value", f.get("bytes")), "label": r["label_name"] or r["label"]}
            for r in info["records"] for key, f in r["features"].items()]
    out.emit(rows, fmt)
    out.info(f"{info['file']}: layout {info['layout']}; labels: "
             f"{', '.join(info['labels'] or []) or 'no labels.txt'}")
