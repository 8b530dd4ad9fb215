"""``mltk drift``: are new rows like the rows a model learned from (PSI per feature)?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format, Output
from mltk.cli._common import FormatOption, command, get_output


def register(app: typer.Typer) -> None:
    command(app, "drift")(drift)


ReportOption = Annotated[Path | None, typer.Option(
    "--report", help="Also write report.html and drift.csv to this folder.")]


def drift(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(
        help="An xgb-analyze folder (its data_profile.json), a profile JSON, or a reference "
             "CSV/Parquet.")],
    data: Annotated[str, typer.Argument(help="CSV or Parquet of the rows to check; '-' for "
                                        "stdin.")],
    report: ReportOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Population stability index, missing rate and new categories of each feature.

    Thresholds: PSI below 0.1 ok, 0.1 to 0.25 watch, 0.25 or more drift.

    Example: mltk drift analysis/ new_users.csv --format csv --report drift-check/
    """
    from mltk._tables import load_table
    from mltk.drift import compare, load_reference

    profile = load_reference(reference)
    result = compare(profile, load_table(data))
    output = get_output(ctx)
    output.emit(result.records(), fmt, title="Drift per feature")
    render_summary(output, result, reference, data, report)


def render_summary(output: Output, result: Any, reference: str, data: str,
                   report: Path | None) -> None:
    """The one-line summary (thresholds named) on stderr, and the report when asked for."""
    if report is not None:
        from mltk.drift.report import write_report

        write_report(report, result, str(reference), str(data))
    line = result.summary()
    if result.by_status("drift"):
        output.warn(line)
    else:
        output.info(line)
    if report is not None:
        output.info(f"report: {report / 'report.html'}")
