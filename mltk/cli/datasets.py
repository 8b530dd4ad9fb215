"""``mltk datasets``: write sample data sets (with their ground truth) for trying mltk out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mltk.cli._common import FormatOption, MltkGroup, command, get_output

datasets_app = typer.Typer(help="Sample data sets with ground truth.", no_args_is_help=True,
                           cls=MltkGroup)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")


@command(datasets_app, "list")
def list_(ctx: typer.Context, fmt: FormatOption = "table") -> None:
    """List the sample data sets that `datasets make` can write."""
    from mltk.datasets import GENERATORS

    get_output(ctx).emit(
        ({"name": g.name, "default_n": g.default_n, "description": g.help}
         for g in GENERATORS.values()), fmt)


@command(datasets_app, "make")
def make(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Data set name (see `mltk datasets list`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write to.")],
    n: Annotated[int | None, typer.Option("--n", help="Number of samples.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    fmt: FormatOption = "table",
) -> None:
    """Write a sample data set and its ground truth.

    Example: mltk datasets make labelled-images --out data/digits --n 300
    """
    from mltk.datasets import make as make_dataset

    out_ = get_output(ctx)
    info = make_dataset(name, out, n=n, seed=seed)
    out_.info(f"wrote {info.n} samples of {info.name} to {info.path}")
    out_.emit([info.as_record()], fmt)
