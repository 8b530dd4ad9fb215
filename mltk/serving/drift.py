"""Drift in the server: the rows a two-group model scores, compared with its training data.

Each two-group model whose folder has ``data_profile.json`` (written by ``xgb-analyze``) keeps
a window of the last ``drift_window`` rows it was sent (``0`` turns this off). On request,
``GET /drift/{name}`` (routes in :mod:`mltk.serving.app`) compares the window with the
profile as ``mltk drift`` does (PSI per feature, missing-value rate, new categories, a status
from the thresholds 0.1 / 0.25), ``POST /drift/{name}`` does the same for the rows in its body
(CSV, JSON or JSON Lines, as ``/invocations`` takes them; nothing is scored), and
``/metrics`` carries ``mltk_drift_psi{model,feature}`` and ``mltk_drift_rows{model}`` for
alerts. The comparison runs only then, never on the request path: scoring pays one append.

With several workers each keeps its own window (a request lands on one worker), so the answer
is about that worker's share of the traffic, and the metrics report each feature's largest
PSI across workers.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from mltk.errors import InputError

log = logging.getLogger(__name__)

#: Below this many rows in the window the PSI is mostly noise: the answer says so and the
#: metrics stay unset.
MIN_ROWS = 100


class DriftWindow:
    """The last ``size`` rows sent to one model, and the profile to compare them with."""

    def __init__(self, profile: Any, size: int) -> None:
        self.profile = profile
        self.size = size
        self._rows: collections.deque = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.seen = 0  # rows observed since the start

    def observe(self, rows: Sequence[Any]) -> None:
        new = [r for r in rows[-self.size:] if isinstance(r, Mapping)]
        with self._lock:
            self._rows.extend(new)
            self.seen += len(rows)

    def snapshot(self) -> list[Mapping[str, Any]]:
        with self._lock:
            return list(self._rows)

    def compare(self) -> Any:
        """The :class:`~mltk.drift.DriftResult` of the rows now in the window."""
        import pandas as pd

        from mltk.drift import compare

        rows = self.snapshot()
        return compare(self.profile, pd.DataFrame.from_records(rows) if rows else
                       pd.DataFrame(columns=list(self.profile.features)))


class DriftMonitor:
    """The windows of a server's two-group models (see the module's docstring)."""

    def __init__(self, window: int, registry: Any = None) -> None:
        self.window = window
        self.windows: dict[str, DriftWindow] = {}
        self.unavailable: dict[str, str] = {}  # model -> why it has no window
        self.profiles: dict[str, Any] = {}  # model -> its training profile
        self._gauges = _gauges(registry) if registry is not None else None
        self._measured: dict[str, int] = {}  # model -> rows seen when last measured

    def add(self, name: str, predictor: Any) -> None:
        """Watch ``predictor`` when it is a two-group model with a training profile."""
        if predictor.kind != "two-group":
            self.unavailable[name] = (f"model {name!r} is {_article(predictor.kind)} "
                                      f"{predictor.kind} model: drift is measured for "
                                      "two-group models (xgb-analyze)")
            return
        from mltk.drift import load_reference

        try:
            self.profiles[name] = load_reference(predictor.source)
        except InputError as exc:
            self.unavailable[name] = str(exc)
            log.info("model %s: no drift check (%s)", name, exc)
            return
        if self.window <= 0:
            self.unavailable[name] = (f"no window of recent rows (drift_window: 0): POST rows "
                                      f"to /drift/{name} to check them, or set drift_window")
            return
        self.windows[name] = DriftWindow(self.profiles[name], self.window)

    def remove(self, name: str) -> None:
        """Forget a model that is no longer served (its window and profile)."""
        self.windows.pop(name, None)
        self.profiles.pop(name, None)
        self._measured.pop(name, None)
        self.unavailable[name] = f"no model named {name!r}"

    def profile(self, name: str) -> Any:
        """The training profile of a model; :class:`DriftUnavailable` when it has none."""
        try:
            return self.profiles[name]
        except KeyError:
            raise DriftUnavailable(self.unavailable.get(name, f"no model named {name!r}")
                                   ) from None

    def check(self, name: str, items: Sequence[Any]) -> dict[str, Any]:
        """The drift document of ``items`` (rows sent to POST /drift/{name}), no window."""
        import pandas as pd

        from mltk.drift import compare

        rows = [r for r in items if isinstance(r, Mapping)]
        profile = self.profile(name)
        result = compare(profile, pd.DataFrame.from_records(rows) if rows else
                         pd.DataFrame(columns=list(profile.features)))
        return {"model": name, **_document(result)}

    def observe(self, name: str, items: Sequence[Any]) -> None:
        window = self.windows.get(name)
        if window is not None:
            window.observe(items)

    def report(self, name: str) -> dict[str, Any]:
        """The drift document of one model's window; :class:`DriftUnavailable` when it has
        none."""
        window = self.windows.get(name)
        if window is None:
            raise DriftUnavailable(self.unavailable.get(name, f"no model named {name!r}"))
        result = window.compare()
        self._set_gauges(name, result)
        doc = _document(result)
        return {"model": name, "rows": doc.pop("rows"), "window": window.size,
                "rows_seen": window.seen, **doc}

    def refresh_metrics(self) -> None:
        """Compare every window that took rows since the last time, for a scrape of
        /metrics."""
        for name, window in self.windows.items():
            if self._measured.get(name) != window.seen:
                self._set_gauges(name, window.compare())
                self._measured[name] = window.seen

    def _set_gauges(self, name: str, result: Any) -> None:
        if self._gauges is None:
            return
        psi, rows = self._gauges
        rows.labels(name).set(result.rows)
        if result.rows < MIN_ROWS:
            return
        for f in result.features:
            if f.psi is not None:
                psi.labels(name, f.feature).set(f.psi)


def _document(result: Any) -> dict[str, Any]:
    """rows, reference_rows, thresholds, summary and one record per feature."""
    from mltk.drift.comparison import DRIFT, THRESHOLDS_NOTE, WATCH

    if result.rows == 0:
        summary = "no rows yet"
    elif result.rows < MIN_ROWS:
        summary = (f"only {result.rows} rows: the PSI is noisy below {MIN_ROWS} rows; "
                   f"{result.summary()}")
    else:
        summary = result.summary()
    return {"rows": result.rows, "reference_rows": result.reference_rows,
            "thresholds": {"watch": WATCH, "drift": DRIFT, "note": THRESHOLDS_NOTE},
            "summary": summary, "features": result.records() if result.rows else []}


class DriftUnavailable(InputError):
    """A model without a drift window (not two-group, no profile, or drift off)."""


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _gauges(registry: Any) -> tuple[Any, Any]:
    from prometheus_client import Gauge

    psi = Gauge("mltk_drift_psi", "Population stability index of a feature: the rows in the "
                "drift window against the training data (0.1 watch, 0.25 drift).",
                ["model", "feature"], registry=registry, multiprocess_mode="max")
    rows = Gauge("mltk_drift_rows", "Rows in the drift window of a model.", ["model"],
                 registry=registry, multiprocess_mode="max")
    return psi, rows
