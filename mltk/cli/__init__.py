"""The ``mltk`` command: one Typer app wiring one module per command group.

Nothing heavy is imported here or in the command modules at import time, so ``mltk --help``
stays fast; each command imports its core (and the core its libraries) when it runs.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mltk import __version__
from mltk._output import Output
from mltk.cli import (
    colors,
    datasets,
    dedup,
    demo,
    drift,
    embed,
    index,
    jobs,
    recommend,
    serve,
    tfrecord,
    train,
    xgb,
)
from mltk.cli._common import MltkGroup, env_flag

app = typer.Typer(
    name="mltk",
    help="Machine-learning utilities for product images and marketplace data.\n\n"
    "Results go to stdout (--format table|json|ndjson|csv); logs and progress to stderr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=MltkGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mltk {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug messages too.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (also MLTK_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Machine-learning utilities for product images and marketplace data."""
    ctx.obj = Output(verbosity=-1 if quiet else (1 if verbose else 0),
                     debug=debug or env_flag("MLTK_DEBUG"))


colors.register(app)
datasets.register(app)
dedup.register(app)
demo.register(app)
drift.register(app)
embed.register(app)
index.register(app)
jobs.register(app)
recommend.register(app)
serve.register(app)
tfrecord.register(app)
train.register(app)
xgb.register(app)


def main() -> None:
    """Console-script entry point."""
    import os

    # TensorFlow's C++ start-up chatter is not a message for mltk's users (-v shows it).
    if "-v" in sys.argv or "--verbose" in sys.argv:
        os.environ.setdefault("MLTK_TF_CHATTER", "1")
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app(prog_name="mltk")
