"""Dominant colours as a model: image bytes -> the record ``mltk colors`` prints for the file.

There is no folder to open: the settings come from ``configs/colors.yaml`` (or a given config
file, or a palette), exactly as for ``mltk colors``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mltk.errors import InputError
from mltk.predictors.base import Outcome, Predictor, TensorSpec


class ColorsPredictor(Predictor):
    kind = "colors"
    input_kind = "image"

    def __init__(self, name: str, settings: Any, source: str = "colors") -> None:
        super().__init__(name, source)
        from mltk.colors import ColorNamer

        self.settings = settings
        self.namer = ColorNamer(settings.palette, settings.distance, settings.achromatic)

    @classmethod
    def open(cls, name: str = "colors", config: str | os.PathLike | None = None,
             palette: str | os.PathLike | None = None) -> ColorsPredictor:
        from mltk import _config
        from mltk.colors import ColorSettings

        cfg = _config.resolve("colors", {}, config)
        return cls(name, ColorSettings.from_config(cfg, palette_file=palette))

    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("image", "BYTES", (-1,))]

    def outputs(self) -> list[TensorSpec]:
        # the record of mltk colors but its path (none) and error (a 400 instead); the list of
        # colours as JSON text: [{"name", "share", "hex", "lab"}, ...]
        return [TensorSpec("colors", "BYTES", (-1,)), TensorSpec("width", "INT64", (-1,)),
                TensorSpec("height", "INT64", (-1,)), TensorSpec("other_share", "FP64", (-1,))]

    def prepare(self, item: Any) -> Any:
        from mltk._imaging import check_decode_pixels, check_image_bytes

        data = bytes(item)
        fmt = check_image_bytes(data)
        s = self.settings  # refused (413) exactly where mltk colors refuses the file
        check_decode_pixels(data, fmt, s.size if s.reduced_decode else None, s.max_pixels)
        return data

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Outcome]:
        from mltk._imaging import check_image_bytes, decode_budget, decoded_pixels
        from mltk.colors import analyze_bytes

        s = self.settings
        out: list[Outcome] = []
        for data in prepared:
            # the full-size image (and its float copies with alpha) counts against the decode
            # budget until it is reduced to the working size
            pixels = decoded_pixels(data, check_image_bytes(data), s.size if s.reduced_decode
                                    else None) if decode_budget.capacity else 0
            with decode_budget.hold(pixels):
                rec = analyze_bytes(data, s, self.namer)
            out.append(InputError(rec["error"]) if rec["error"] else rec)
        return out

    def example(self) -> bytes:
        from mltk.predictors.image import gray_png

        return gray_png(64)
