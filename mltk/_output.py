"""The single place where mltk writes anything a person or a pipeline reads.

Results go to stdout in one of four stable formats (``table``, ``json``, ``ndjson``, ``csv``);
logs, warnings, summaries and progress bars go to stderr. Progress bars and colour appear only
when stderr is a terminal (and colour never when ``NO_COLOR`` is set). The core modules log
through the standard :mod:`logging` module under the ``mltk`` logger; :class:`Output` installs
the handler that sends those records to stderr.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from mltk._json import dumps


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


Record = Mapping[str, Any]


def flatten_value(value: Any) -> Any:
    """A cell value for csv/table: nested structures become compact JSON."""
    if isinstance(value, (dict, list, tuple)):
        return dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def update_total(self, total: int | None) -> None:
        pass


class _RichProgress:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def update_total(self, total: int | None) -> None:
        self._progress.update(self._task, total=total)


class _StderrHandler(logging.Handler):
    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                self.output.warn(msg)
            elif record.levelno >= logging.INFO:
                self.output.info(msg)
            else:
                self.output.debug(msg)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class Output:
    """Writes results to stdout and everything else to stderr.

    ``verbosity``: -1 quiet (errors only), 0 normal (info and warnings), 1 verbose (debug too).
    The streams are looked up when used, so test runners that swap ``sys.stdout`` see the output.
    """

    def __init__(self, verbosity: int = 0, debug: bool = False) -> None:
        self.verbosity = verbosity
        self.debug_mode = debug
        self._err_console: Any = None

    # -- stderr ---------------------------------------------------------------------------
    @property
    def stderr_is_tty(self) -> bool:
        return _isatty(sys.stderr)

    @property
    def color(self) -> bool:
        return self.stderr_is_tty and "NO_COLOR" not in os.environ

    def err_console(self) -> Any:
        from rich.console import Console

        if self._err_console is None or self._err_console.file is not sys.stderr:
            self._err_console = Console(
                file=sys.stderr, no_color=not self.color, highlight=False,
                force_terminal=None if self.color else False, soft_wrap=True,
            )
        return self._err_console

    def _stderr_line(self, text: str, style: str | None = None) -> None:
        if self.color and style:
            self.err_console().print(text, style=style, markup=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            self._stderr_line(message)

    def debug(self, message: str) -> None:
        if self.verbosity >= 1:
            self._stderr_line(message, "dim")

    def warn(self, message: str) -> None:
        if self.verbosity >= 0:
            self._stderr_line(f"Warning: {message}", "yellow")

    def error(self, message: str) -> None:
        first = str(message).strip().splitlines()
        self._stderr_line(f"Error: {first[0] if first else 'unknown error'}", "bold red")

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Any]:
        """A progress bar on stderr, drawn only when stderr is a terminal and not quiet."""
        if not self.stderr_is_tty or self.verbosity < 0:
            yield _NoProgress()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.err_console(),
            transient=True,
        ) as progress:
            yield _RichProgress(progress, progress.add_task(description, total=total))

    @contextlib.contextmanager
    def capture_logs(self) -> Iterator[None]:
        """Route the core's ``logging`` records to stderr for the duration of a command."""
        logger = logging.getLogger("mltk")
        handler = _StderrHandler(self)
        previous = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if self.verbosity >= 1 else logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous[0])
            logger.propagate = previous[1]

    # -- stdout ---------------------------------------------------------------------------
    def emit(
        self,
        records: Iterable[Record],
        fmt: Format | str,
        *,
        columns: Sequence[str] | None = None,
        flatten: Callable[[Record], Record] | None = None,
        title: str | None = None,
    ) -> int:
        """Write ``records`` to stdout in ``fmt``; returns how many were written.

        json and ndjson keep nested values; csv and table get ``flatten(record)`` (nested values
        become compact JSON). json and ndjson stream: each record is written when it arrives.
        """
        fmt = Format(fmt)
        out = sys.stdout
        n = 0
        if fmt is Format.ndjson:
            for rec in records:
                out.write(dumps(rec) + "\n")
                out.flush()
                n += 1
            return n
        if fmt is Format.json:
            out.write("[")
            for rec in records:
                out.write(("," if n else "") + "\n  " + dumps(rec))
                out.flush()
                n += 1
            out.write("\n]\n" if n else "]\n")
            out.flush()
            return n
        rows = (self._flat(rec, flatten) for rec in records)
        if fmt is Format.csv:
            writer = None
            for row in rows:
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(columns or row.keys()),
                                            extrasaction="ignore", lineterminator="\n")
                    writer.writeheader()
                writer.writerow(row)
                out.flush()
                n += 1
            if writer is None and columns:
                csv.writer(out, lineterminator="\n").writerow(columns)
            return n
        table_rows = list(rows)
        self.print_table(table_rows, columns=columns, title=title)
        return len(table_rows)

    @staticmethod
    def _flat(rec: Record, flatten: Callable[[Record], Record] | None) -> dict[str, Any]:
        row = flatten(rec) if flatten else rec
        return {k: flatten_value(v) for k, v in row.items()}

    def print_table(
        self, rows: Sequence[Mapping[str, Any]], *, columns: Sequence[str] | None = None,
        title: str | None = None, stream: Any = None,
    ) -> None:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        stream = stream or sys.stdout
        cols = list(columns or (rows[0].keys() if rows else []))
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for c in cols:
            table.add_column(c, overflow="fold")
        for row in rows:
            table.add_row(*(str(flatten_value(row.get(c, ""))) for c in cols))
        tty = _isatty(stream)
        # Rendered to a string and written here: rich's own console turns a closed pipe
        # (`| head`) into a silent exit 1, where every other format raises BrokenPipeError
        # for the command's error boundary (exit 0).
        text = io.StringIO()
        console = Console(
            file=text, no_color=not tty or "NO_COLOR" in os.environ, highlight=False,
            force_terminal=tty, width=None if tty else 200,
        )
        console.print(table)
        stream.write(text.getvalue())
        stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
