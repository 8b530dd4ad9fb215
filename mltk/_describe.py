"""One line for an exception, as every error the user reads is shown (cores and CLI alike)."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """One line for an exception: its message, prefixed by its type unless it is ours."""
    from mltk.errors import MltkError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 400:  # library messages can embed whole tensors
        text = text[:400] + " ..."
    if isinstance(exc, MltkError):
        return text
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return f"{type(exc).__name__}: {text}"
