"""``mltk embed``: image vectors from a trained run, as a vectors folder for ``mltk index``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format
from mltk.cli._common import FormatOption, SeedOption, command, get_output


def register(app: typer.Typer) -> None:
    command(app, "embed")(embed)


def image_paths(items: list[str], recursive: bool) -> Any:
    """Paths from the arguments, '-' replaced by the paths on stdin, folders expanded."""
    from mltk.cli.train import _image_paths

    if "-" in items:
        stdin = [ln.strip() for ln in sys.stdin if ln.strip()]
        items = [q for p in items for q in (stdin if p == "-" else [p])]
    return _image_paths(items, recursive)


def embed(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="A run folder or a .keras model (of `mltk "
                                           "train`).")],
    images: Annotated[list[str], typer.Argument(help="Image files or folders; '-' reads "
                                                "paths from stdin.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Vectors folder to write "
                                      "(vectors.npy, ids.parquet, config.yaml, pca.npz).")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk sub-folders.")
                         ] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Decoding threads "
                                             "(default: up to 8).")] = None,
    dim: Annotated[int | None, typer.Option("--dim", min=1, help="Reduce to D dims by a PCA "
                                            "fitted on these vectors (saved as pca.npz).")
                   ] = None,
    whiten: Annotated[bool, typer.Option("--whiten", help="Whiten the PCA components.")
                      ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")
                          ] = 64,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image failed.")
                      ] = False,
    seed: SeedOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Image vectors (the run's pooled features before its head), L2-normalised, optionally
    PCA-reduced; images that cannot be read get an error (stderr) and are left out.

    Example: mltk embed runs/first photos/ -r --dim 128 --out vectors/
    """
    from mltk.classify import Classifier
    from mltk.similar.embed import embed_paths

    if whiten and dim is None:
        raise typer.BadParameter("--whiten needs --dim", param_hint="--whiten")
    output = get_output(ctx)
    classifier = Classifier.load(target, need_tf=False)
    with output.progress(None, "images") as bar:
        def row(path: str, error: str | None) -> None:
            if error:
                output.warn(f"{path}: {error}")
            bar.advance()

        result = embed_paths(classifier, image_paths(images, recursive), batch_size=batch_size,
                             threads=jobs, dim=dim, whiten=whiten, seed=seed or 0, on_row=row)
    result.save(out)
    output.emit([{"out": str(out), **result.summary()}], fmt, title="Embeddings")
    output.info(f"{len(result)} images embedded ({result.dim} dims), {len(result.errors)} "
                f"failed; vectors in {out}")
    if strict and result.errors:
        output.error(f"{len(result.errors)} of {len(result) + len(result.errors)} images failed")
        raise typer.Exit(1)
