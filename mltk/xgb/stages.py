"""Optional stages of the analysis (explanations, plots): one that fails is logged as a warning
and listed under ``not_computed`` in the report, and the rest of the analysis goes on."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Stages:
    """Runs the optional stages (explanations, plots): one that fails is logged as a warning
    and recorded in ``not_computed`` (stage -> reason), never raised, so that it cannot take
    the analysis down."""

    def __init__(self, not_computed: dict[str, str] | None = None) -> None:
        self.not_computed: dict[str, str] = {} if not_computed is None else not_computed

    def run(self, stage: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``, or None when it raises."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # any failure of an optional stage; the analysis goes on
            log.debug(f"{stage} failed:\n{traceback.format_exc()}")  # shown with -v
            self.skip(stage, _reason(exc))
            return None

    def skip(self, stage: str, reason: str) -> None:
        self.not_computed[stage] = reason
        log.warning(f"{stage} could not be computed ({reason}); the rest of the report is "
                    "written without it")


def _reason(exc: Exception) -> str:
    """The exception's type and first sentence (library messages go on with advice)."""
    text = " ".join(str(exc).split()) or "no message"
    end = text.find(". ")
    if 0 < end < 200:
        text = text[:end + 1]
    elif len(text) > 200:
        text = text[:200] + " ..."
    return f"{type(exc).__name__}: {text}"
