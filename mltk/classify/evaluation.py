"""Evaluating a trained classifier on TFRecords: ``evaluate`` returns an :class:`Evaluation`.

One pass sees every record exactly once (no repeat, the last partial batch kept): labels travel
through the model beside the images, so predictions and labels stay paired on any number of
devices, and the count is checked against the record headers. ``Evaluation.save(out)`` writes
metrics.json, predictions.csv, per_class.csv, confusion.csv, confusion.png and report.html
(:mod:`mltk.classify.report`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltk.classify.classifier import Classifier
from mltk.errors import InputError, MltkError


@dataclasses.dataclass
class Evaluation:
    """``metrics``: what metrics.json holds (records, accuracy, ``top{k}_accuracy``, macro
    and weighted F1, log loss, ``per_class``, ``confusion``, ``classes``, ``data``, ``model``,
    ``replicas``, ``warnings``); ``predictions``: one row per record (or None); ``files``:
    the TFRecord files read, in order (the report's thumbnails come from them)."""

    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] | None = None
    files: list[str] | None = None

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def records(self) -> int:
        return int(self.metrics["records"])

    @property
    def per_class(self) -> list[dict[str, Any]]:
        return self.metrics["per_class"]

    @property
    def warnings(self) -> list[str]:
        return self.metrics.get("warnings", [])

    def to_dict(self) -> dict[str, Any]:
        """The metrics, with ``predictions`` when there are any."""
        if self.predictions is None:
            return dict(self.metrics)
        return {**self.metrics, "predictions": self.predictions}

    def save(self, out: str | os.PathLike) -> None:
        """metrics.json, predictions.csv, per_class.csv, confusion.csv, confusion.png and
        report.html."""
        import csv
        import io

        from mltk._atomic import write_csv, write_json, write_text
        from mltk.classify.plots import confusion_heatmap

        out = Path(out)
        m = self.metrics
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", m)
        write_csv(out / "predictions.csv", self.predictions or [])
        write_csv(out / "per_class.csv", m["per_class"])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["true/predicted", *m["classes"]])
        for name, row in zip(m["classes"], m["confusion"], strict=True):
            writer.writerow([name, *row])
        write_text(out / "confusion.csv", buf.getvalue())
        confusion_heatmap(out / "confusion.png", m["confusion"], m["classes"])
        from mltk.classify.report import write_report

        write_report(out, self)


def evaluate(classifier: Classifier, data: Sequence[str], split: str | None = None,
             top_k: int = 3, batch_size: int = 64, with_predictions: bool = False) -> Evaluation:
    """Metrics over every record of ``data``; ``with_predictions`` adds per-record rows."""
    import numpy as np

    from mltk.classify import data as data_mod

    classes = classifier.classes
    src = data_mod.resolve_source(data, split, prefer=data_mod.PREFERRED_TEST,
                                  num_classes=len(classes))
    warnings: list[str] = []
    if len(src.classes) != len(classes):
        raise InputError(f"{src.files[0]}: the data has {len(src.classes)} classes, the model "
                         f"{len(classes)}")
    if src.classes != classes and src.layout == "standard":
        warnings.append("the data's class names differ from the model's labels.txt; "
                        "labels are compared by index")
    probs, labels = _predict(classifier, src, batch_size)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only within ~1e-7
    if len(labels) != src.records:
        raise MltkError(f"evaluated {len(labels)} records but the files hold {src.records}")
    bad = labels[(labels < 0) | (labels >= len(classes))]
    if bad.size:
        raise InputError(f"label {int(bad[0])} is outside the model's {len(classes)} classes")
    result = metrics(labels, probs, classes, top_k)
    result["data"] = src.describe()
    result["model"] = os.fspath(classifier.path)
    result["replicas"] = classifier.runtime.replicas
    result["warnings"] = warnings
    rows = _prediction_rows(src, labels, probs, classes, top_k) if with_predictions else None
    return Evaluation(result, rows, [os.fspath(f) for f in src.files])


def _predict(classifier: Classifier, src: Any, batch_size: int) -> tuple[Any, Any]:
    """(probabilities, labels) of every record, in file order."""
    from mltk._keras import import_keras, import_tf
    from mltk.classify import data as data_mod

    keras = import_keras()
    tf = import_tf()
    rt, model = classifier.runtime, classifier.model
    ds = data_mod.eval_dataset(src, classifier.image_size, batch_size * rt.replicas)
    ds = ds.map(lambda x, y: ((x, y),))
    with rt.scope():
        image_in = keras.Input(model.input_shape[1:], name="image")
        label_in = keras.Input((), dtype="int64", name="label")
        paired = keras.Model([image_in, label_in],
                             [model(image_in), keras.layers.Identity()(label_in)])
    try:
        return paired.predict(ds, verbose=0)
    except tf.errors.OpError as exc:
        # TensorFlow's words and offsets differ from count --verify's: find the file ourselves.
        damage = data_mod.find_damage(src.files)
        if damage is not None:
            raise InputError(f"{damage.describe()} (evaluate reads every record; mltk tfrecord "
                             "count --verify lists the damaged files)") from None
        raise MltkError(f"reading {src.describe()['files']} file(s) failed: "
                        f"{data_mod.op_error_line(exc)} (check them with mltk tfrecord count "
                        "--verify)") from None


def metrics(labels: Any, probs: Any, classes: Sequence[str], top_k: int = 3) -> dict[str, Any]:
    """Accuracy, top-k, log loss, per-class report, macro/weighted F1, confusion matrix."""
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        log_loss,
        top_k_accuracy_score,
    )

    n = len(classes)
    ids = np.arange(n)
    pred = probs.argmax(axis=1)
    report = classification_report(labels, pred, labels=ids, target_names=list(classes),
                                   output_dict=True, zero_division=0)
    per_class = [{"class": c, "precision": report[c]["precision"],
                  "recall": report[c]["recall"], "f1": report[c]["f1-score"],
                  "support": int(report[c]["support"])} for c in classes]
    k = min(top_k, n)
    return {
        "records": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        f"top{top_k}_accuracy": float(top_k_accuracy_score(labels, probs, k=k, labels=ids))
        if k < n else 1.0,
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "weighted_f1": float(report["weighted avg"]["f1-score"]),
        "log_loss": float(log_loss(labels, np.clip(probs, 1e-15, 1), labels=ids)),
        "per_class": per_class,
        "confusion": confusion_matrix(labels, pred, labels=ids).tolist(),
        "classes": list(classes),
    }


def _prediction_rows(src: Any, labels: Any, probs: Any, classes: Sequence[str],
                     top_k: int) -> list[dict[str, Any]]:
    names = _record_names(src)
    top = (-probs).argsort(axis=1)[:, :top_k]
    rows = []
    for i, (y, order) in enumerate(zip(labels, top, strict=True)):
        row = {"record": i, "file": names[i] if names else "", "true": classes[y],
               "predicted": classes[order[0]], "probability": round(float(probs[i, order[0]]), 6),
               "correct": bool(order[0] == y)}
        for r, j in enumerate(order[1:], start=2):
            row[f"label_{r}"] = classes[j]
            row[f"probability_{r}"] = round(float(probs[i, j]), 6)
        rows.append(row)
    return rows


def _record_names(src: Any) -> list[str] | None:
    """``image/filename`` of every record in file order (standard layout), without decoding."""
    if src.layout != "standard":
        return None
    from mltk.tfrecords.format import decode_example, iter_records

    names = []
    for f in src.files:
        for payload in iter_records(f):
            values = decode_example(payload).get("image/filename", ("bytes", []))[1]
            names.append(values[0].decode("utf-8", "replace") if values else "")
    return names
