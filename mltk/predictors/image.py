"""The image classifier of a ``mltk train`` run folder: image bytes -> top-k labels.

Images are checked from their header against the pixel limit before anything is decoded, then
decoded (JPEGs at reduced resolution when the model's input size allows), resized to the model's
size and scaled to [-1, 1] as in training. ``mltk predict`` streams files through
:meth:`ImageClassifier.predict_paths`; the server sends the bytes it received.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mltk._imaging import read_regular_file
from mltk.errors import InputError
from mltk.predictors.base import Outcome, Predictor, TensorSpec


class ImageClassifier(Predictor):
    kind = "image-classifier"
    input_kind = "image"
    batchable = True

    def __init__(self, name: str, source: str, loaded: Any, top_k: int = 3,
                 max_pixels: int | None = None) -> None:
        super().__init__(name, source)
        self.lm = loaded
        self.classes: list[str] = list(loaded.classes)
        self.top_k = max(1, min(int(top_k), len(self.classes)))
        self.max_pixels = max_pixels

    @classmethod
    def open(cls, folder: str | os.PathLike, name: str | None = None, top_k: int = 3,
             backend: str | None = None, gpus: int | None = None,
             max_pixels: int | None = None) -> ImageClassifier:
        from mltk.classify.inference import load

        lm = load(folder, backend=backend, gpus=gpus, need_tf=False)
        return cls(name or Path(folder).name, os.fspath(folder), lm, top_k, max_pixels)

    @property
    def image_size(self) -> int:
        return int(self.lm.image_size)

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("image", "BYTES", (-1,))]

    def outputs(self) -> list[TensorSpec]:
        suffixes = [""] + [f"_{r + 1}" for r in range(1, self.top_k)]
        return [TensorSpec("label", "BYTES", (-1, self.top_k),
                           tuple(f"label{s}" for s in suffixes)),
                TensorSpec("probability", "FP32", (-1, self.top_k),
                           tuple(f"probability{s}" for s in suffixes))]

    def prepare(self, item: Any) -> Any:
        import cv2
        import numpy as np

        from mltk._imaging import (
            check_image_bytes,
            check_pixels,
            decode_budget,
            decode_image,
            decoded_pixels,
        )

        data = bytes(item)
        fmt = check_image_bytes(data)
        check_pixels(data, self.max_pixels)
        side = self.image_size
        # the full-size image counts against the decode budget until it is resized
        with decode_budget.hold(decoded_pixels(data, fmt, side) if decode_budget.capacity
                                else 0):
            rgb = decode_image(data, fmt, min_side=side, max_pixels=self.max_pixels or -1,
                               keep_alpha=False).rgb
            h, w = rgb.shape[:2]
            interp = cv2.INTER_AREA if h > side or w > side else cv2.INTER_LINEAR
            img = cv2.resize(rgb, (side, side), interpolation=interp).astype(np.float32)
        return img / 127.5 - 1.0

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Outcome]:
        import numpy as np

        probs = np.asarray(self.lm.model.predict_on_batch(np.stack(prepared)))
        return [self.record(p) for p in probs]

    def record(self, p: Any) -> dict[str, Any]:
        """``label, probability, label_2, probability_2, ...`` for one probability vector."""
        order = [int(j) for j in (-p).argsort()[: self.top_k]]
        row: dict[str, Any] = {}
        for r, j in enumerate(order):
            suffix = "" if r == 0 else f"_{r + 1}"
            row[f"label{suffix}"] = self.classes[j]
            row[f"probability{suffix}"] = round(float(p[j]), 6)
        return row

    def empty_record(self) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for r in range(self.top_k):
            suffix = "" if r == 0 else f"_{r + 1}"
            row[f"label{suffix}"] = None
            row[f"probability{suffix}"] = None
        return row

    def example(self) -> bytes:
        return gray_png(self.image_size)

    # -- files (mltk predict) ----------------------------------------------------------------
    def predict_paths(self, paths: Iterable[Path], batch_size: int = 64,
                      threads: int | None = None) -> Iterator[dict[str, Any]]:
        """One row per file, in input order: path, labels and probabilities, error."""
        threads = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            for chunk in _chunks(paths, batch_size):
                loaded = list(pool.map(self._prepare_file, chunk))
                good = [img for _, img in loaded if not isinstance(img, InputError)]
                scored = iter(self.predict_prepared(good) if good else [])
                for path, img in loaded:
                    if isinstance(img, InputError):
                        yield {"path": os.fspath(path), **self.empty_record(), "error": str(img)}
                    else:
                        yield {"path": os.fspath(path), **next(scored), "error": None}

    def _prepare_file(self, path: Path) -> tuple[Path, Any]:
        try:
            return path, self.prepare(read_regular_file(path))
        except InputError as exc:
            return path, exc
        except FileNotFoundError:
            return path, InputError("file not found")
        except IsADirectoryError:
            return path, InputError("is a directory")
        except OSError as exc:
            return path, InputError(f"cannot read file ({exc.strerror or exc})")


def gray_png(side: int) -> bytes:
    """A mid-grey square PNG: a valid image for warm-ups."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.full((side, side, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


def _chunks(items: Iterable[Path], n: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
