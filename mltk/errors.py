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
