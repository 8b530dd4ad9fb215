"""Importing TensorFlow/Keras without their native start-up chatter on stderr.

TensorFlow's C++ layers print INFO lines before its logging is configured, which no environment
variable silences; mltk's stderr is for mltk's messages, so the file descriptor is muted for
the duration of the import (``-v`` keeps the chatter).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def muted_stderr_fd() -> Iterator[None]:
    if os.environ.get("MLTK_TF_CHATTER") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        fd = sys.__stderr__.fileno()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def import_quietly(name: str) -> Any:
    """``import name`` (e.g. "keras", "tensorflow") with native stderr muted the first time."""
    if name in sys.modules:
        return sys.modules[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with muted_stderr_fd():
        return importlib.import_module(name)
