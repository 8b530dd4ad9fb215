"""The image classifier of a ``mltk train`` run folder as a servable predictor.

A thin adapter over :class:`mltk.classify.Classifier`, which does the work: image bytes are
checked against the pixel limit, decoded and resized (:meth:`~mltk.classify.Classifier.
preprocess`), then scored in batches into top-k labels. ``mltk predict`` and the jobs stream
files through :meth:`ImageClassifier.predict_paths`; the server sends the bytes it received.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mltk.predictors.base import Outcome, Predictor, TensorSpec


class ImageClassifier(Predictor):
    kind = "image-classifier"
    input_kind = "image"
    batchable = True

    def __init__(self, name: str, source: str, classifier: Any, top_k: int = 3,
                 max_pixels: int | None = None) -> None:
        super().__init__(name, source)
        self.classifier = classifier
        self.classes: list[str] = list(classifier.classes)
        self.top_k = max(1, min(int(top_k), len(self.classes)))
        self.max_pixels = max_pixels

    @classmethod
    def open(cls, folder: str | os.PathLike, name: str | None = None, top_k: int = 3,
             backend: str | None = None, gpus: int | None = None,
             max_pixels: int | None = None) -> ImageClassifier:
        from mltk.classify import Classifier

        classifier = Classifier.load(folder, backend=backend, gpus=gpus, need_tf=False)
        return cls(name or Path(folder).name, os.fspath(folder), classifier, top_k, max_pixels)

    @property
    def image_size(self) -> int:
        return self.classifier.image_size

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("image", "BYTES", (-1,))]

    def outputs(self) -> list[TensorSpec]:
        suffixes = [""] + [f"_{r + 1}" for r in range(1, self.top_k)]
        return [TensorSpec("label", "BYTES", (-1, self.top_k),
                           tuple(f"label{s}" for s in suffixes)),
                TensorSpec("probability", "FP32", (-1, self.top_k),
                           tuple(f"probability{s}" for s in suffixes))]

    def prepare(self, item: Any) -> Any:
        return self.classifier.preprocess(bytes(item), self.max_pixels)

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Outcome]:
        probs = self.classifier.predict_batch(prepared)
        return [self.classifier.top_labels(p, self.top_k) for p in probs]

    def example(self) -> bytes:
        return gray_png(self.image_size)

    def predict_paths(self, paths: Iterable[Path], batch_size: int = 64,
                      threads: int | None = None) -> Iterator[dict[str, Any]]:
        """One row per file, in input order: path, labels and probabilities, error."""
        return self.classifier.predict_paths(paths, self.top_k, batch_size, threads,
                                             self.max_pixels)


def gray_png(side: int) -> bytes:
    """A mid-grey square PNG: a valid image for warm-ups."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.full((side, side, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()
