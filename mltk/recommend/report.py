"""report.html of ``mltk recommend evaluate --report DIR``: the recommender against its two
baselines (hit rate, NDCG and coverage at k), and evaluation.csv beside it."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk._atomic import write_text

LABELS = {"mltk": "mltk", "popular_in_category": "most bought in the category",
          "random_in_meta": "random in the meta-category"}


def answer(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    by = {r["method"]: r for r in rows}
    m = by["mltk"]
    k = m["k"]
    baselines = " and ".join(f"{by[name]['hit_rate']:.3f} for {LABELS[name]}"
                             for name in LABELS if name != "mltk" and name in by)
    return [f"For {m['users']:,} users, the item bought last is among mltk's top {k} "
            f"recommendations for the item bought before it {m['hit_rate']:.1%} of the time "
            f"(hit rate@{k} {m['hit_rate']:.3f}, against {baselines}).",
            f"NDCG@{k} {m['ndcg']:.3f}; the recommendations cover {m['coverage']:.1%} of the "
            "catalogue."]


def plot(rows: Sequence[Mapping[str, Any]]) -> str:
    """Hit rate, NDCG and coverage per method, grouped bars, as a data URI."""
    import numpy as np

    from mltk import _report
    from mltk._plotting import pyplot

    metrics = ("hit_rate", "ndcg", "coverage")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(metrics))
    width = 0.8 / len(rows)
    # Okabe-Ito colours with hatching, so that the methods differ without colour too.
    for i, (r, colour, hatch) in enumerate(zip(rows, ("#0072B2", "#E69F00", "#999999"),
                                               ("", "//", ".."), strict=False)):
        ax.bar(x + i * width, [r[m] for m in metrics], width,
               label=LABELS.get(r["method"], r["method"]), color=colour, hatch=hatch,
               edgecolor="black", linewidth=0.5)
    ax.set_xticks(x + width * (len(rows) - 1) / 2, [f"{m}@{rows[0]['k']}" for m in metrics])
    ax.set(ylabel="share", title="Leave-last-purchase-out evaluation")
    ax.legend(fontsize=8)
    return _report.figure_uri(fig)


def render_html(rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> str:
    from mltk import _report

    by = {r["method"]: r for r in rows}
    k = rows[0]["k"]
    return _report.render(
        "recommend.html.j2", title="Recommendation evaluation",
        kicker="mltk recommend evaluate",
        question="Do the recommendations find what users bought next?", answer=answer(rows),
        headline=[(f"hit rate@{k}", f"{by['mltk']['hit_rate']:.3f}"),
                  (f"NDCG@{k}", f"{by['mltk']['ndcg']:.3f}"),
                  ("catalogue coverage", f"{by['mltk']['coverage']:.1%}"),
                  ("users", f"{by['mltk']['users']:,}")],
        plot=plot(rows),
        table=_report.table([{**r, "method": LABELS.get(r["method"], r["method"])}
                             for r in rows], caption="Each method at the same cut-off"),
        settings=dict(settings))


def write_report(folder: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                 settings: Mapping[str, Any]) -> Path:
    """``folder``/evaluation.csv and ``folder``/report.html."""
    out = Path(folder)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "evaluation.csv", buf.getvalue())
    from mltk import _report

    return _report.write(out / "report.html", render_html(rows, settings))
