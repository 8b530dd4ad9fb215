"""A trained image classifier, loaded from its run folder: :class:`Classifier`.

``Classifier.load(path)`` takes a ``mltk train`` run folder (its best.keras, else last.keras)
or a ``.keras`` file, and knows its ``classes`` (labels.txt) and input ``image_size``. Images
are checked from their header against the pixel limit before anything is decoded, then decoded
(JPEGs at reduced resolution when the model's input size allows), resized to the model's size
and scaled to [-1, 1] as in training (:meth:`~Classifier.preprocess`). Then
:meth:`~Classifier.predict_batch` gives class probabilities and :meth:`~Classifier.embed_batch`
the pooled features before the classification head (what a similarity search compares);
:meth:`~Classifier.predict_paths` and :meth:`~Classifier.embed_paths` stream image files
through both stages in threads. Needs Keras but not TensorFlow (``need_tf=False``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mltk._imaging import read_regular_file
from mltk.classify import runtime
from mltk.errors import InputError

#: The layer whose output :meth:`Classifier.embed_batch` returns (see models.build_model).
POOLED_LAYER = "avg_pool"


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


def _classes(labels_file: Path, n: int) -> list[str]:
    if not labels_file.is_file():
        return [str(i) for i in range(n)]
    classes = labels_file.read_text(encoding="utf-8").splitlines()
    if len(classes) != n:
        raise InputError(f"{labels_file}: {len(classes)} labels but the model has {n} outputs")
    return classes


class Classifier:
    """A Keras classifier of [-1, 1] images with its class names.

    ``model`` (Keras), ``classes``, ``image_size`` (the input side), ``path`` (the model file),
    ``run_dir`` (None for a lone .keras file), ``config`` (the run's config.yaml, or {}) and
    ``runtime`` (the devices it runs on).
    """

    def __init__(self, model: Any, classes: Sequence[str], image_size: int, path: Path,
                 run_dir: Path | None = None, config: dict[str, Any] | None = None,
                 rt: runtime.Runtime | None = None) -> None:
        self.model = model
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.path = Path(path)
        self.run_dir = run_dir
        self.config = dict(config or {})
        self.runtime = rt or runtime.Runtime("tensorflow", ["cpu"])
        self._embedder: Any = None

    @classmethod
    def load(cls, target: str | os.PathLike, backend: str | None = None,
             gpus: int | None = None, strategy: str = "auto", cpu_replicas: int = 1,
             need_tf: bool = True) -> Classifier:
        """Set up the devices, then load the model (inside the distribution scope) and its
        labels. ``backend``: the run's own (config.yaml) unless given; ``need_tf``: TensorFlow
        is needed besides Keras (:func:`~mltk.classify.evaluation.evaluate` reads TFRecords)."""
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
        classes = _classes((run_dir or path.parent) / "labels.txt", int(model.output_shape[-1]))
        size = model.input_shape[1]
        if not size:
            raise InputError(f"{path}: the model has no fixed input size")
        return cls(model, classes, int(size), path, run_dir, cfg, rt)

    @property
    def source(self) -> Path:
        """The run folder, or the model file when there is none."""
        return self.run_dir or self.path

    # -- one image ------------------------------------------------------------------------------
    def preprocess(self, data: bytes, max_pixels: int | None = None) -> Any:
        """Image bytes -> the model's input (``image_size`` square, RGB, float32 in [-1, 1]).
        An :class:`InputError` for bytes that are no image or above the pixel limit
        (``max_pixels``; None: the default limit)."""
        import cv2
        import numpy as np

        from mltk._imaging import (
            check_image_bytes,
            check_pixels,
            decode_budget,
            decode_image,
            decoded_pixels,
        )

        data = bytes(data)
        fmt = check_image_bytes(data)
        check_pixels(data, max_pixels)
        side = self.image_size
        # the full-size image counts against the process's decode budget until it is resized
        with decode_budget.hold(decoded_pixels(data, fmt, side) if decode_budget.capacity
                                else 0):
            rgb = decode_image(data, fmt, min_side=side, max_pixels=max_pixels or -1,
                               keep_alpha=False).rgb
            h, w = rgb.shape[:2]
            interp = cv2.INTER_AREA if h > side or w > side else cv2.INTER_LINEAR
            img = cv2.resize(rgb, (side, side), interpolation=interp).astype(np.float32)
        return img / 127.5 - 1.0

    # -- batches --------------------------------------------------------------------------------
    def predict_batch(self, arrays: Sequence[Any]) -> Any:
        """Class probabilities, one row per preprocessed image (numpy, n x classes)."""
        import numpy as np

        return np.asarray(self.model.predict_on_batch(np.stack(arrays)))

    def embed_batch(self, arrays: Sequence[Any]) -> Any:
        """The pooled features before the classification head, one row per preprocessed image
        (numpy float32, n x features): the image's embedding for similarity search."""
        import numpy as np

        if self._embedder is None:
            from mltk._keras import import_keras

            keras = import_keras()
            try:
                pooled = self.model.get_layer(POOLED_LAYER).output
            except ValueError:
                raise InputError(f"{self.path}: the model has no {POOLED_LAYER} layer (not a "
                                 "model of mltk train)") from None
            with self.runtime.scope():
                self._embedder = keras.Model(self.model.inputs, pooled)
        return np.asarray(self._embedder.predict_on_batch(np.stack(arrays)), np.float32)

    def top_labels(self, probabilities: Any, k: int) -> dict[str, Any]:
        """``label, probability, label_2, probability_2, ...`` for one probability vector."""
        order = [int(j) for j in (-probabilities).argsort()[:k]]
        row: dict[str, Any] = {}
        for r, j in enumerate(order):
            suffix = "" if r == 0 else f"_{r + 1}"
            row[f"label{suffix}"] = self.classes[j]
            row[f"probability{suffix}"] = round(float(probabilities[j]), 6)
        return row

    def no_labels(self, k: int) -> dict[str, Any]:
        """The same keys as :meth:`top_labels`, all None (the row of an unreadable image)."""
        row: dict[str, Any] = {}
        for r in range(k):
            suffix = "" if r == 0 else f"_{r + 1}"
            row[f"label{suffix}"] = None
            row[f"probability{suffix}"] = None
        return row

    # -- files ----------------------------------------------------------------------------------
    def predict_paths(self, paths: Iterable[str | os.PathLike], top_k: int = 3,
                      batch_size: int = 64, threads: int | None = None,
                      max_pixels: int | None = None) -> Iterator[dict[str, Any]]:
        """One row per file, in input order: ``path``, the top-k labels and probabilities,
        ``error`` (a file that cannot be read or decoded gets its message and no labels)."""
        k = max(1, min(int(top_k), len(self.classes)))
        for path, probs, error in self._scored(self.predict_batch, paths, batch_size, threads,
                                               max_pixels):
            labels = self.no_labels(k) if error else self.top_labels(probs, k)
            yield {"path": path, **labels, "error": error}

    def embed_paths(self, paths: Iterable[str | os.PathLike], batch_size: int = 64,
                    threads: int | None = None, max_pixels: int | None = None,
                    ) -> Iterator[tuple[str, Any, str | None]]:
        """``(path, embedding, error)`` per file, in input order, decoded in threads and
        embedded ``batch_size`` at a time (:meth:`embed_batch`); a file that cannot be read or
        decoded gets its message and no embedding (None)."""
        yield from self._scored(self.embed_batch, paths, batch_size, threads, max_pixels)

    def _scored(self, score: Any, paths: Iterable[str | os.PathLike], batch_size: int,
                threads: int | None, max_pixels: int | None,
                ) -> Iterator[tuple[str, Any, str | None]]:
        """``(path, row of score(batch), error)`` per file, in input order: files read and
        decoded in threads, ``batch_size`` at a time; a file that fails gets its message."""
        threads = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            for chunk in _chunks(paths, batch_size):
                loaded = list(pool.map(lambda p: self._read(p, max_pixels), chunk))
                good = [img for _, img in loaded if not isinstance(img, InputError)]
                rows = iter(score(good) if good else [])
                for path, img in loaded:
                    if isinstance(img, InputError):
                        yield os.fspath(path), None, str(img)
                    else:
                        yield os.fspath(path), next(rows), None

    def _read(self, path: str | os.PathLike, max_pixels: int | None) -> tuple[Any, Any]:
        try:
            return path, self.preprocess(read_regular_file(path), max_pixels)
        except InputError as exc:
            return path, exc
        except FileNotFoundError:
            return path, InputError("file not found")
        except IsADirectoryError:
            return path, InputError("is a directory")
        except OSError as exc:
            return path, InputError(f"cannot read file ({exc.strerror or exc})")


def _chunks(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
