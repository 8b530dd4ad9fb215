"""Named dominant colours of product photos.

Library use, without files::

    from mltk.colors import ColorExtractor, ColorNamer, named_colors
    ext = ColorExtractor(k=5, seed=0).fit(rgb_uint8_array)
    ext.centers_, ext.shares_             # RGB centres and pixel shares, by share
    ColorNamer().name(ext.lab_)           # ['pink', 'white', ...]
    named_colors(ext, ColorNamer())       # merged by name: name, share, hex, lab

Folder scale: :func:`analyze_paths` and :func:`summarize` (see :mod:`mltk.colors.pipeline`).
How the names agree with people's: :mod:`mltk.colors.naming` (the XKCD survey, and the report
over both sources), :mod:`mltk.colors.iscc_nbs` (expert names), :mod:`mltk.colors.calibrate`
(tuning the palette on their calibration halves).
"""

from mltk.colors.core import ColorExtractor, ColorNamer, named_colors, rgb_to_hex, rgb_to_lab
from mltk.colors.palette import Palette, default_palette, load_palette
from mltk.colors.pipeline import (
    ColorSettings,
    analyze_bytes,
    analyze_image,
    analyze_paths,
    iter_image_paths,
    summarize,
)

__all__ = [
    "ColorExtractor", "ColorNamer", "ColorSettings", "Palette", "analyze_bytes", "analyze_image",
    "analyze_paths",
    "default_palette", "iter_image_paths", "load_palette", "named_colors", "rgb_to_hex",
    "rgb_to_lab", "summarize",
]
