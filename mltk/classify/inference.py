"""Evaluating and using a trained classifier: ``evaluate`` on TFRecords, ``Predictor`` on files.

``evaluate`` runs one pass that sees every record exactly once (no repeat, the last partial
batch kept): labels travel through the model beside the images, so predictions and labels stay
paired on any number of devices, and the count is checked against the record headers.
``Predictor`` decodes image files with OpenCV in threads and scores them in batches; it needs
Keras but not TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltk.classify import runtime
from mltk.errors import InputError, MltkError


@dataclass
class LoadedModel:
    model: Any
    classes: list[str]
    image_size: int
    path: Path
    run_dir: Path | None
    config: dict[str, Any]
    rt: runtime.Runtime


def model_file(target: str | os.PathLike) -> tuple[Path, Path | None]:
    """RUN_DIR (its best.keras, else last.keras) or a .keras file -> (model file, run dir)."""
    p = Path(target)
    if p.is_dir():
        for name in ("best.keras", "last.keras"):
            if (p / name).is_file():
                return p / name, p
        raise InputError(f"{p}: no best.keras or last.keras (is it an mltk train run folder?)")
    if not p.exists():
        raise InputError(f"{p}: no such run folder or model file")
    if p.suffix != ".keras":
        raise InputError(f"{p}: expected a run folder or a .keras model")
    return p, p.parent if (p.parent / "labels.txt").is_file() else None


def load(target: str | os.PathLike, backend: str | None = None, gpus: int | None = None,
         strategy: str = "auto", cpu_replicas: int = 1, need_tf: bool = True) -> LoadedModel:
    """Set up devices, then load the model (inside the distribution scope) and its labels."""
    from mltk import _config

    path, run_dir = model_file(target)
    cfg = _config.load_yaml(run_dir / "config.yaml") if run_dir and (
        run_dir / "config.yaml").is_file() else {}
    backend = backend or cfg.get("backend") or "tensorflow"
    rt = runtime.setup(backend, gpus, strategy, cpu_replicas, "float32",
                       need_tf=need_tf or backend == "tensorflow")
    from mltk.classify.models import load_model

    with rt.scope():
        model = load_model(path)
    n = int(model.output_shape[-1])
    labels_file = (run_dir or path.parent) / "labels.txt"
    if labels_file.is_file():
        classes = [ln for ln in labels_file.read_text(encoding="utf-8").splitlines()]
        if len(classes) != n:
            raise InputError(f"{labels_file}: {len(classes)} labels but the model has {n} "
                             "outputs")
    else:
        classes = [str(i) for i in range(n)]
    size = model.input_shape[1]
    if not size:
        raise InputError(f"{path}: the model has no fixed input size")
    return LoadedModel(model, classes, int(size), path, run_dir, cfg, rt)


def evaluate(lm: LoadedModel, data: Sequence[str], split: str | None = None, top_k: int = 3,
             batch_size: int = 64, with_predictions: bool = False) -> dict[str, Any]:
    """Metrics over every record of ``data``; ``with_predictions`` adds per-record rows."""
    import numpy as np

    from mltk._keras import import_keras, import_tf
    from mltk.classify import data as data_mod

    keras = import_keras()
    tf = import_tf()
    src = data_mod.resolve_source(data, split, prefer=data_mod.PREFERRED_TEST,
                                  num_classes=len(lm.classes))
    warnings: list[str] = []
    if len(src.classes) != len(lm.classes):
        raise InputError(f"{src.files[0]}: the data has {len(src.classes)} classes, the model "
                         f"{len(lm.classes)}")
    if src.classes != lm.classes and src.layout == "standard":
        warnings.append("the data's class names differ from the model's labels.txt; "
                        "labels are compared by index")
    global_batch = batch_size * lm.rt.replicas
    ds = data_mod.eval_dataset(src, lm.image_size, global_batch)
    ds = ds.map(lambda x, y: ((x, y),))
    with lm.rt.scope():
        image_in = keras.Input(lm.model.input_shape[1:], name="image")
        label_in = keras.Input((), dtype="int64", name="label")
        paired = keras.Model([image_in, label_in],
                             [lm.model(image_in), keras.layers.Identity()(label_in)])
    try:
        probs, labels = paired.predict(ds, verbose=0)
    except tf.errors.OpError as exc:
        # TensorFlow's words and offsets differ from count --verify's: find the file ourselves.
        damage = data_mod.find_damage(src.files)
        if damage is not None:
            raise InputError(f"{damage.describe()} (evaluate reads every record; mltk tfrecord "
                             "count --verify lists the damaged files)") from None
        raise MltkError(f"reading {src.describe()['files']} file(s) failed: "
                        f"{data_mod.op_error_line(exc)} (check them with mltk tfrecord count "
                        "--verify)") from None
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only within ~1e-7
    if len(labels) != src.records:
        raise MltkError(f"evaluated {len(labels)} records but the files hold {src.records}")
    bad = labels[(labels < 0) | (labels >= len(lm.classes))]
    if bad.size:
        raise InputError(f"label {int(bad[0])} is outside the model's {len(lm.classes)} classes")
    result = metrics(labels, probs, lm.classes, top_k)
    result["data"] = src.describe()
    result["model"] = os.fspath(lm.path)
    result["replicas"] = lm.rt.replicas
    result["warnings"] = warnings
    if with_predictions:
        result["predictions"] = _prediction_rows(src, labels, probs, lm.classes, top_k)
    return result


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


def write_evaluation(out: Path, result: dict[str, Any]) -> None:
    """metrics.json, predictions.csv, per_class.csv, confusion.csv and confusion.png."""
    import csv
    import io

    from mltk._atomic import write_csv, write_json, write_text
    from mltk.classify.plots import confusion_heatmap

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {k: v for k, v in result.items() if k != "predictions"})
    write_csv(out / "predictions.csv", result.get("predictions") or [])
    write_csv(out / "per_class.csv", result["per_class"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true/predicted", *result["classes"]])
    for name, row in zip(result["classes"], result["confusion"], strict=True):
        writer.writerow([name, *row])
    write_text(out / "confusion.csv", buf.getvalue())
    confusion_heatmap(out / "confusion.png", result["confusion"], result["classes"])


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


class Predictor:
    """Top-k labels for image files, in batches; undecodable files give an error row.

    A thin file-streaming front of :class:`mltk.predictors.ImageClassifier`, the predictor the
    server uses too, so ``mltk predict`` and ``mltk serve`` cannot disagree.
    """

    def __init__(self, lm: LoadedModel, top_k: int = 3, batch_size: int = 64,
                 threads: int | None = None) -> None:
        from mltk.predictors.image import ImageClassifier

        source = os.fspath(lm.run_dir or lm.path)
        self.predictor = ImageClassifier(Path(source).name, source, lm, top_k)
        self.top_k = self.predictor.top_k
        self.batch_size = batch_size
        self.threads = threads

    def predict(self, paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
        """One row per path, in input order: label, probability, the next labels, error."""
        return self.predictor.predict_paths(paths, self.batch_size, self.threads)
