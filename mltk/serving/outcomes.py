"""What REST and gRPC answer alike: the status and message of an exception raised while
answering, the records of a request's outcomes (or its first bad input's error), and the
constants both protocols share. No HTTP or gRPC in here."""

from __future__ import annotations

from typing import Any

from mltk.errors import BusyError, InputError, PixelLimitError
from mltk.serving.batching import QueueFull
from mltk.serving.codecs import CodecError
from mltk.serving.dataplane import NotFound, NotReady

#: The one version of every model (a model is a folder given at start).
MODEL_VERSION = "1"

#: Bodies of more bytes are decoded in a worker thread: a batch transform's megabytes of rows
#: take a second, which would hold up every other request on the event loop; for a small one
#: the thread hop costs more than the work.
LARGE_BODY = 256 * 1024


def status_of(exc: BaseException) -> int:
    """The HTTP status for an exception raised while answering a request."""
    if isinstance(exc, CodecError):
        return exc.status
    if isinstance(exc, PixelLimitError):
        return 413
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (NotReady, QueueFull, BusyError)):
        return 503
    if isinstance(exc, TimeoutError):
        return 504
    if isinstance(exc, InputError):
        return 400
    return 500


def message_of(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the request took longer than the timeout"
    if status_of(exc) == 500:
        # not the exception's text: it may quote a library's stack or a file's content
        return (f"internal error ({type(exc).__name__}); the server's log has its traceback")
    return str(exc)


def answer_records(outcomes: list[Any], input_kind: str) -> list[dict[str, Any]]:
    """The records, or the first bad input's error (naming it when there are several, and
    always naming a row)."""
    for i, o in enumerate(outcomes):
        if isinstance(o, InputError):
            if len(outcomes) == 1 and input_kind != "row":
                raise o
            kind = PixelLimitError if isinstance(o, PixelLimitError) else InputError
            # "row 2, column 'x': ..." as xgb-predict says it; "image 3: ..."
            sep = ", " if str(o).startswith("column ") else ": "
            raise kind(f"{input_kind} {i + 1}{sep}{o}")
    return outcomes
