"""Exceptions that the core raises for the user to read.

The core never prints and never exits; it raises :class:`MltkError` (or a subclass) with a
message that names the file, row or record at fault. The CLI turns it into one line
``Error: ...`` and exit code 1.
"""

from __future__ import annotations


class MltkError(Exception):
    """A runtime error whose message is written for the user."""


class InputError(MltkError):
    """Input data (a file, a row, a record) that cannot be used."""


class ConfigError(MltkError):
    """A configuration file or setting that is malformed."""


class PixelLimitError(InputError):
    """An image whose header announces more pixels than the configured limit (never decoded)."""


class BusyError(MltkError):
    """Too much work in flight to take this now; the same request later may pass (HTTP 503)."""


def describe(exc: BaseException) -> str:
    """One line for an exception: its message, prefixed by its type unless it is ours.

    Whitespace (newlines included) is collapsed and a very long message cut, since library
    messages can embed whole tensors; an :class:`OSError` with a file name reads ``FILE: why``.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 400:
        text = text[:400] + " ..."
    if isinstance(exc, MltkError):
        return text
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return f"{type(exc).__name__}: {text}"
