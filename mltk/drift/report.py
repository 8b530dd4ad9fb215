"""report.html of a drift check: the PSI of each feature against the thresholds."""

from __future__ import annotations

import os
from pathlib import Path

from mltk.drift.comparison import DRIFT, THRESHOLDS_NOTE, WATCH, DriftResult


def answer(result: DriftResult) -> list[str]:
    drift, watch = result.by_status("drift"), result.by_status("watch")
    worst = max((f for f in result.features if f.psi is not None), key=lambda f: f.psi,
                default=None)
    first = (f"{len(drift)} of {len(result.features)} features drift (PSI {DRIFT} or more)"
             + (f": {', '.join(drift[:8])}" if drift else "") + f"; {len(watch)} to watch "
             f"(PSI {WATCH} to {DRIFT}).")
    second = (f"The largest shift is {worst.feature} (PSI {worst.psi:.3f}); "
              f"{result.rows:,} rows compared with the {result.reference_rows:,} reference rows."
              if worst else f"{result.rows:,} rows compared.")
    return [first, second]


def psi_plot(result: DriftResult) -> str | None:
    """A bar per feature (largest PSI on top) with the two thresholds, as a data URI."""
    from mltk import _report
    from mltk._plotting import pyplot

    shown = sorted((f for f in result.features if f.psi is not None), key=lambda f: f.psi)[-30:]
    if not shown:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.5))
    # Okabe-Ito colours, distinguishable with colour-blindness; the status is in the table too.
    colours = {"ok": "#009E73", "watch": "#E69F00", "drift": "#D55E00"}
    # A few huge values (a column gone missing) would flatten the rest: the axis stops at 1
    # and longer bars carry their value.
    top = max(0.5, min(1.0, 1.05 * shown[-1].psi))
    ax.barh([f.feature for f in shown], [min(f.psi, top) for f in shown],
            color=[colours[f.status] for f in shown])
    for i, f in enumerate(shown):
        if f.psi > top:
            ax.text(top, i, f" {f.psi:.2f}", va="center", ha="right", fontsize=8,
                    color="white", fontweight="bold")
    ax.set_xlim(0, top)
    for x, style in ((WATCH, ":"), (DRIFT, "--")):
        ax.axvline(x, color="black", lw=0.9, ls=style)
    ax.set(xlabel=f"PSI (dotted {WATCH}: watch, dashed {DRIFT}: drift)",
           title="Population stability index per feature")
    return _report.figure_uri(fig)


def render_html(result: DriftResult, reference: str, data: str) -> str:
    from mltk import _report

    rows = [{"feature": f.feature, "kind": f.kind, "psi": f.psi, "status": f.status,
             "missing rate": f.missing_rate, "reference missing rate": f.reference_missing_rate,
             "new categories": f.new_categories or "",
             "rows with a new category": f.new_category_rows} for f in result.features]
    rows.sort(key=lambda r: -(r["psi"] if r["psi"] is not None else float("inf")))
    return _report.render(
        "drift.html.j2", title="Drift check", kicker=f"mltk drift · {reference} vs {data}",
        question="Are these rows like the rows the model learned from?",
        answer=answer(result),
        headline=[("features that drift", str(len(result.by_status("drift")))),
                  ("features to watch", str(len(result.by_status("watch")))),
                  ("rows compared", f"{result.rows:,}")],
        plot=psi_plot(result), thresholds=THRESHOLDS_NOTE,
        table=_report.table(rows, caption="Drift per feature", full_csv="drift.csv"),
        settings={"reference": reference, "data": data, "thresholds": THRESHOLDS_NOTE})


def write_report(folder: str | os.PathLike, result: DriftResult, reference: str,
                 data: str) -> Path:
    """``folder``/drift.csv (every feature) and ``folder``/report.html."""
    import csv
    import io

    from mltk import _report
    from mltk._atomic import write_text

    out = Path(folder)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["feature", "psi", "missing_rate", "new_categories", "status"],
                            lineterminator="\n")
    writer.writeheader()
    for r in result.records():
        writer.writerow({**r, "new_categories": "|".join(r["new_categories"] or [])})
    write_text(out / "drift.csv", buf.getvalue())
    return _report.write(out / "report.html", render_html(result, reference, data))
