"""report.html of ``mltk evaluate --out DIR``: how good the classifier is, and where it errs.

The answer first (accuracy, top-k, macro F1, the weakest classes and the most frequent
confusion), then the evidence: the confusion matrix, the most frequent confusions, the worst
examples (the records misclassified with the highest confidence, as thumbnails read from the
TFRecords) and the per-class table; every row is in the CSV files beside the report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Misclassified records shown as thumbnails (the most confident mistakes first).
WORST = 24
#: Off-diagonal cells of the confusion matrix listed.
CONFUSIONS = 15
THUMB_SIDE = 112


def top_k_key(metrics: Mapping[str, Any]) -> str | None:
    return next((k for k in metrics if re.fullmatch(r"top\d+_accuracy", k)), None)


def confusions(metrics: Mapping[str, Any], most: int = CONFUSIONS) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: true class, predicted class, records, share of the
    true class's records."""
    classes, matrix = metrics["classes"], metrics["confusion"]
    cells = []
    for i, row in enumerate(matrix):
        total = sum(row)
        for j, n in enumerate(row):
            if i != j and n:
                cells.append({"true": classes[i], "predicted": classes[j], "records": int(n),
                              "share of the class": n / total})
    cells.sort(key=lambda c: (-c["records"], c["true"], c["predicted"]))
    return cells[:most]


def worst_examples(predictions: Sequence[Mapping[str, Any]] | None, most: int = WORST
                   ) -> list[Mapping[str, Any]]:
    """The misclassified records, the most confident first (ties in record order)."""
    wrong = [p for p in predictions or [] if not p["correct"]]
    return sorted(wrong, key=lambda p: (-p["probability"], p["record"]))[:most]


def record_images(files: Sequence[str] | None, wanted: Sequence[int]) -> dict[int, str]:
    """Thumbnails (data URIs) of the records numbered ``wanted`` (in file order across
    ``files``): ``image/encoded`` of the standard layout, ``image`` (square RGB pixels) of the
    legacy raw layout; only those records are decoded."""
    from mltk.tfrecords.format import decode_example, iter_records

    left, found, i = set(wanted), {}, 0
    for f in files or []:
        if not left:
            break
        for payload in iter_records(f, verify=False):
            if i in left:
                uri = _thumbnail(decode_example(payload))
                if uri:
                    found[i] = uri
                left.discard(i)
            i += 1
    return found


def _thumbnail(example: Mapping[str, Any]) -> str | None:
    import math

    import numpy as np

    from mltk import _report

    encoded = example.get("image/encoded", ("bytes", []))[1]
    if encoded:
        return _report.thumbnail_bytes_uri(encoded[0], THUMB_SIDE, 80)
    raw = example.get("image", ("bytes", []))[1]
    side = math.isqrt(len(raw[0]) // 3) if raw else 0
    if not side or side * side * 3 != len(raw[0]):
        return None
    pixels = np.frombuffer(raw[0], np.uint8).reshape(side, side, 3)
    return _report.thumbnail_array_uri(pixels, THUMB_SIDE, 80)


def answer(metrics: Mapping[str, Any]) -> list[str]:
    key = top_k_key(metrics)
    first = (f"The classifier is right on {metrics['accuracy']:.1%} of the "
             f"{metrics['records']:,} records"
             + (f" (top-{key[3:-9]}: {metrics[key]:.1%})" if key else "")
             + f"; macro F1 {metrics['macro_f1']:.3f} over {len(metrics['classes'])} classes.")
    scored = [c for c in metrics["per_class"] if c["support"]]
    weakest = sorted(scored, key=lambda c: (c["f1"], c["class"]))[:3]
    parts = []
    if weakest:
        parts.append("The weakest classes are " + ", ".join(
            f"{c['class']} (F1 {c['f1']:.2f})" for c in weakest))
    top = confusions(metrics, 1)
    if top:
        c = top[0]
        parts.append(f"the most frequent mistake is {c['true']} taken for {c['predicted']} "
                     f"({c['records']:,} record{'s' if c['records'] != 1 else ''}, "
                     f"{c['share of the class']:.0%} of "
                     f"{c['true']})")
    return [first] + (["; ".join(parts) + "."] if parts else [])


def _cards(evaluation: Any) -> list[dict[str, Any]]:
    worst = worst_examples(evaluation.predictions)
    images = record_images(evaluation.files, [p["record"] for p in worst])
    cards = []
    for p in worst:
        alt = [lab for k, lab in sorted(p.items()) if k.startswith("label_")]
        cards.append({"record": p["record"], "file": p.get("file") or "",
                      "true": p["true"], "predicted": p["predicted"],
                      "probability": p["probability"],
                      "true_in_top": p["true"] in alt,
                      "thumb": images.get(p["record"])})
    return cards


def render_html(evaluation: Any, folder: str | os.PathLike | None = None) -> str:
    """The page; ``folder`` holds confusion.png (embedded when there)."""
    from mltk import _report

    m = evaluation.metrics
    key = top_k_key(m)
    headline = [("accuracy", f"{m['accuracy']:.1%}")]
    if key:
        headline.append((f"top-{key[3:-9]} accuracy", f"{m[key]:.1%}"))
    headline += [("macro F1", f"{m['macro_f1']:.3f}"), ("log loss", f"{m['log_loss']:.3f}"),
                 ("records", f"{m['records']:,}")]
    plot = _report.file_uri(Path(folder) / "confusion.png") if folder is not None else None
    n_wrong = sum(not p["correct"] for p in evaluation.predictions or [])
    return _report.render(
        "evaluate.html.j2", title="Classifier evaluation",
        kicker=f"mltk evaluate · {m.get('model', '')}",
        question="How often is the classifier right, and where does it go wrong?",
        answer=answer(m), headline=headline, plot=plot, cards=_cards(evaluation),
        wrong=n_wrong, has_predictions=evaluation.predictions is not None,
        confusions=_report.table(confusions(m), caption="The most frequent mistakes",
                                 formats={"share of the class": ".1%"}),
        per_class=_report.table(m["per_class"], caption="Per-class precision, recall and F1",
                                full_csv="per_class.csv"),
        warnings=m.get("warnings", []),
        settings={"model": m.get("model", ""), **{f"data {k}": v for k, v in
                                                 (m.get("data") or {}).items()},
                  "replicas": m.get("replicas", "")})


def write_report(folder: str | os.PathLike, evaluation: Any) -> Path:
    """``folder``/report.html (beside the files of :meth:`Evaluation.save`)."""
    from mltk import _report

    return _report.write(Path(folder) / "report.html", render_html(evaluation, folder))
