"""``mltk demo``: every available capability run end to end on generated sample data.

Each capability contributes a :class:`Step`; :func:`run_demo` runs them in order into one
folder and writes ``index.md`` linking every output. A step that fails is recorded in the index
with its error and the remaining steps still run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mltk._atomic import write_text

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StepResult:
    summary: str
    outputs: list[tuple[str, Path]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Step:
    name: str
    title: str
    run: Callable[[Path, int], StepResult]


@dataclasses.dataclass
class StepReport:
    name: str
    title: str
    seconds: float
    ok: bool
    summary: str
    outputs: list[tuple[str, Path]]


def _step_sample_data(root: Path, seed: int) -> StepResult:
    from mltk.datasets import make

    info = make("labelled-images", root / "data" / "labelled-images", n=300, seed=seed)
    return StepResult(
        f"{info.n} real handwritten-digit scans (scikit-learn) as RGB JPEGs in "
        f"{info.extra['classes']} class folders.",
        [("images (one folder per class)", info.path), ("ground truth", info.truth)],
    )


def steps() -> list[Step]:
    """The demo steps, in order. Capabilities append theirs here."""
    return [
        Step("data", "Sample data: labelled images", _step_sample_data),
    ]


def run_demo(out: Path, seed: int = 0, only: list[str] | None = None,
             on_step: Callable[[StepReport], None] | None = None) -> list[StepReport]:
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for step in steps():
        if only and step.name not in only:
            continue
        log.info(f"demo: {step.title} ...")
        t0 = time.perf_counter()
        try:
            result = step.run(out, seed)
            report = StepReport(step.name, step.title, time.perf_counter() - t0, True,
                                result.summary, result.outputs)
        except Exception as exc:  # one failed step must not hide the others
            log.warning(f"demo step {step.name} failed: {exc}")
            report = StepReport(step.name, step.title, time.perf_counter() - t0, False,
                                f"failed: {type(exc).__name__}: {exc}", [])
        reports.append(report)
        if on_step:
            on_step(report)
    write_text(out / "index.md", render_index(out, reports))
    return reports


def render_index(root: Path, reports: list[StepReport]) -> str:
    lines = ["# mltk demo", "",
             "Every step below ran on generated sample data; links are relative to this file.", ""]
    for r in reports:
        status = "" if r.ok else " — FAILED"
        lines += [f"## {r.title}{status}", "", f"{r.summary} ({r.seconds:.1f} s)", ""]
        for label, path in r.outputs:
            rel = os.path.relpath(path, root)
            lines.append(f"- [{label}]({Path(rel).as_posix()})")
        lines.append("")
    return "\n".join(lines)
