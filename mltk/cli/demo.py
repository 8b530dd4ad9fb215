"""``mltk demo``: run every capability end to end on generated data and write an index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mltk.cli._common import FormatOption, command, get_output


def register(app: typer.Typer) -> None:
    command(app, "demo")(demo)


def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for all demo outputs.")] = Path(
        "demo-output"),
    step: Annotated[list[str] | None, typer.Option(
        "--step", help="Run only this step (repeatable).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    fmt: FormatOption = "table",
) -> None:
    """Run each capability on generated sample data; writes OUT/index.html (and index.md)
    linking every step's report and outputs.

    Example: mltk demo --out demo-output
    """
    from mltk import demo

    output = get_output(ctx)
    reports = demo.run(out, seed=seed, only=step or None,
                       on_step=lambda r: output.info(f"{r.title}: {r.summary}"))
    output.emit(({"step": r.name, "ok": r.ok, "seconds": round(r.seconds, 2),
                  "summary": r.summary} for r in reports), fmt)
    output.info(f"index: {out / 'index.html'} (and index.md)")
    if not all(r.ok for r in reports):
        output.error("some demo steps failed; see index.md")
        raise typer.Exit(1)
