"""Self-contained HTML reports: one shared layout (Jinja2), images embedded as data URIs.

Every report is a single ``report.html`` that opens offline and can be mailed: plots and
thumbnails are ``data:`` URIs, the style and the small sorting script are inline, no font or
file is fetched (a Content-Security-Policy in the page forbids it), and it reads without
JavaScript. The layout puts what a reader needs first: the question, the answer in a sentence
or two with its numbers, the evidence (plots, tables), then the details and settings.

    from mltk import _report

    html = _report.render("xgb.html.j2", title=..., question=..., answer=..., ...)
    _report.write(folder / "report.html", html)

Large tables are cut to :data:`MAX_TABLE_ROWS` rows with a note naming the full CSV beside the
report (:func:`table`); photos go in as small JPEG thumbnails (:func:`thumbnail_uri`).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mltk import __version__
from mltk._atomic import write_text

#: Rows of a table shown in a report; the rest are in the CSV beside it.
MAX_TABLE_ROWS = 200
#: A report at the default settings stays under this size (a test checks it).
SIZE_LIMIT = 2 * 1024 * 1024
THUMB_SIDE = 160
#: A plot heavier than this is scaled down (longest side MAX_IMAGE_SIDE pixels) when embedded.
MAX_IMAGE_BYTES = 350_000
MAX_IMAGE_SIDE = 1400

_env: Any = None


def environment() -> Any:
    """The shared Jinja2 environment (templates shipped in ``mltk/_report/templates``)."""
    global _env
    if _env is None:
        import jinja2

        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.fspath(Path(__file__).parent / "templates")),
            autoescape=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.StrictUndefined)
        _env.filters["num"] = number
        _env.filters["code"] = inline_code
    return _env


def render(template: str, **context: Any) -> str:
    """The page of ``template`` (which extends ``base.html.j2``) filled with ``context``."""
    context.setdefault("mltk_version", __version__)
    return environment().get_template(template).render(**context)


def write(path: str | os.PathLike, html: str) -> Path:
    """Write ``html`` atomically to ``path`` (folders made as needed)."""
    return write_text(Path(path), html)


def number(value: Any, spec: str = ".4g") -> str:
    """A cell's text: numbers formatted with ``spec``, None and NaN as empty."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:{spec}}"
    return str(value)


def inline_code(text: str) -> Any:
    """``text`` escaped, with `backticked` spans (as in the Markdown summaries) as <code>."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


# -- images ---------------------------------------------------------------------------------


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def file_uri(path: str | os.PathLike, max_side: int = MAX_IMAGE_SIDE,
             max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """A PNG or JPEG file as a data URI; None when the file does not exist (a plot that was
    not drawn). A plot larger than ``max_side`` pixels or ``max_bytes`` (a correlation matrix
    of hundreds of features) is scaled down, then made a JPEG if still too heavy, so that the
    report stays small enough to mail; the file beside the report keeps every pixel."""
    p = Path(path)
    if not p.is_file():
        return None
    data = p.read_bytes()
    mime = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
    if len(data) <= max_bytes:
        return data_uri(data, mime)
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    side = max_side
    while True:  # smaller until it fits (noise-like plots do not compress)
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        for fmt, options in (("PNG", {"optimize": True}), ("JPEG", {"quality": 80})):
            buf = io.BytesIO()
            img.save(buf, format=fmt, **options)
            if buf.tell() <= max_bytes or side <= 400 and fmt == "JPEG":
                return data_uri(buf.getvalue(), f"image/{fmt.lower()}")
        side = int(side * 0.7)


def figure_uri(fig: Any, dpi: int = 96) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    from mltk._plotting import pyplot

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return data_uri(buf.getvalue(), "image/png")


def thumbnail_uri(path: str | os.PathLike, side: int = THUMB_SIDE, quality: int = 80
                  ) -> str | None:
    """A photo as a small JPEG data URI (longest side ``side`` pixels); None when it cannot be
    read, so that one bad file leaves a gap rather than failing the report."""
    from PIL import Image

    from mltk._imaging import decode_image, read_image_bytes
    from mltk.errors import InputError

    try:
        data, fmt = read_image_bytes(path)
        rgb = decode_image(data, fmt, min_side=side).rgb
    except (InputError, OSError, ValueError):
        return None
    return _thumbnail(Image.fromarray(rgb), side, quality)


def thumbnail_bytes_uri(data: bytes, side: int = THUMB_SIDE, quality: int = 80) -> str | None:
    """Encoded image bytes (a TFRecord's ``image/encoded``) as a small JPEG data URI; None
    when they cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (side, side))  # JPEG: decoded straight at a smaller scale
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return _thumbnail(img, side, quality)


def thumbnail_array_uri(rgb: Any, side: int = THUMB_SIDE, quality: int = 80) -> str:
    """An RGB array (height x width x 3, uint8) as a small JPEG data URI."""
    from PIL import Image

    return _thumbnail(Image.fromarray(rgb), side, quality)


def _thumbnail(img: Any, side: int, quality: int) -> str:
    from PIL import Image

    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return data_uri(buf.getvalue(), "image/jpeg")


# -- tables ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Table:
    """A table as the layout shows it: header, formatted cells (numbers right-aligned and
    sortable by value), and a note when rows were left out."""

    columns: list[str]
    rows: list[list[tuple[str, Any]]]  # (text, sort key or None) per cell
    numeric: list[bool]
    total: int
    note: str | None = None
    caption: str | None = None


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
          limit: int = MAX_TABLE_ROWS, full_csv: str | None = None,
          caption: str | None = None, formats: Mapping[str, str] | None = None) -> Table:
    """``rows`` (records) as a :class:`Table` of at most ``limit`` rows; when longer, a note says
    how many are shown and names ``full_csv`` (the file beside the report with all of them)."""
    cols = list(columns or (rows[0].keys() if rows else []))
    formats = formats or {}
    shown = list(rows[:limit])
    numeric = [bool(shown) and all(_is_number(r.get(c)) or r.get(c) is None for r in shown)
               and any(_is_number(r.get(c)) for r in shown) for c in cols]
    cells = [[(_cell(r.get(c), formats.get(c)), r.get(c) if num and r.get(c) is not None
               else None) for c, num in zip(cols, numeric, strict=True)] for r in shown]
    note = None
    if len(rows) > limit:
        where = f"; all {len(rows):,} are in {full_csv}" if full_csv else ""
        note = f"The first {limit:,} of {len(rows):,} rows are shown{where}."
    return Table(cols, cells, numeric, len(rows), note, caption)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any, spec: str | None) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(number(v) for v in value)
    return number(value, spec or ".4g")
