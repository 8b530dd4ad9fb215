"""Reading image files for every capability: format sniffing, truncation checks, header sizes,
and decoding to 8-bit RGB (grayscale, CMYK, 16-bit and alpha images included).

JPEGs can be decoded at 1/2, 1/4 or 1/8 resolution straight from the DCT (OpenCV's
``IMREAD_REDUCED_COLOR_*``), chosen from the header size so that the decoded image is still at
least as large as the caller needs: much faster than decoding everything and resizing.
Failures raise :class:`~mltk.errors.InputError` with a reason a person can act on.

:data:`decode_budget` bounds the pixels being decoded at once by all threads of a process
(the server configures it; commands leave it off): the pixel limit bounds one image, the
budget all of them together.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import io
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mltk.errors import BusyError, InputError, PixelLimitError

# Images announcing more pixels than configs/imaging.yaml's max_pixels are refused from their
# header, before decoding; this is only the fallback when that file cannot be read.
_FALLBACK_MAX_PIXELS = 100_000_000
_max_pixels: dict[str | None, int] = {}  # by the value of MLTK_IMAGING_MAX_PIXELS


def default_max_pixels() -> int:
    """The configured pixel limit (configs/imaging.yaml, MLTK_IMAGING_MAX_PIXELS)."""
    key = os.environ.get("MLTK_IMAGING_MAX_PIXELS")
    if key not in _max_pixels:
        from mltk import _config
        from mltk.errors import ConfigError

        value = _config.resolve("imaging").get("max_pixels", _FALLBACK_MAX_PIXELS)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"imaging max_pixels (MLTK_IMAGING_MAX_PIXELS) must be a positive "
                              f"whole number, got {value!r}")
        _max_pixels[key] = value
    return _max_pixels[key]


class PixelBudget:
    """Pixels being decoded at once in this process, all threads together.

    A decode that fits starts at once; one that does not waits its turn (first come, first
    served) while at most ``capacity`` pixels are waiting, for ``wait`` seconds at most; beyond
    either it is refused with :class:`~mltk.errors.BusyError`. An image larger than the whole
    budget decodes alone. ``capacity`` None (the default): no budget.
    """

    def __init__(self) -> None:
        self.capacity: int | None = None
        self.wait = 0.0
        self.in_flight = 0  # pixels being decoded
        self.waiting = 0  # pixels waiting for their turn
        self.peak = 0  # most pixels ever decoded at once
        self.on_change: Callable[[PixelBudget], None] | None = None
        self._turns: collections.deque[object] = collections.deque()
        self._cond = threading.Condition()
        self._holding = threading.local()  # a thread holding pixels holds for what it calls

    def configure(self, capacity: int | None, wait: float = 0.0,
                  on_change: Callable[[PixelBudget], None] | None = None) -> None:
        with self._cond:
            self.capacity, self.wait, self.on_change = capacity, wait, on_change

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Reserve ``pixels`` for the block (waiting or refusing as above); a block inside
        another of the same thread reserves nothing more."""
        if not self.capacity or pixels <= 0 or getattr(self._holding, "on", False):
            yield
            return
        self._acquire(pixels)
        self._holding.on = True
        try:
            yield
        finally:
            self._holding.on = False
            with self._cond:
                self.in_flight -= pixels
                self._cond.notify_all()
                self._changed()

    def _fits(self, pixels: int) -> bool:
        return self.in_flight == 0 or self.in_flight + pixels <= (self.capacity or 0)

    def _acquire(self, pixels: int) -> None:
        with self._cond:
            if not self._turns and self._fits(pixels):
                self._take(pixels)
                return
            if self.waiting + pixels > (self.capacity or 0):
                raise BusyError(self._busy(f"{self.waiting:,} more are waiting"))
            turn = object()
            self._turns.append(turn)
            self.waiting += pixels
            deadline = time.monotonic() + self.wait
            try:
                while not (self._turns[0] is turn and self._fits(pixels)):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BusyError(self._busy(f"none freed in {self.wait:g} s"))
                    self._cond.wait(left)
                self._take(pixels)
            finally:
                self._turns.remove(turn)
                self.waiting -= pixels
                self._cond.notify_all()
                self._changed()

    def _take(self, pixels: int) -> None:
        self.in_flight += pixels
        self.peak = max(self.peak, self.in_flight)
        self._changed()

    def _busy(self, why: str) -> str:
        return (f"too many image pixels being decoded: {self.in_flight:,} of the decode budget "
                f"of {self.capacity:,}, and {why}; retry later")

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)


#: The process's decode budget (off unless configured; mltk serve sets it in each worker).
decode_budget = PixelBudget()

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff"})

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format from the file's first bytes, or None if it is not one we read."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def read_image_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """Read a file and check that it is a complete image; returns (bytes, format)."""
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except IsADirectoryError:
        raise InputError("is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})") from None
    return data, check_image_bytes(data)


def read_regular_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path``; InputError when it is not a regular file (a FIFO, a device such
    as /dev/zero, a socket: reading those can block or never end). Opened without blocking,
    so a FIFO with no writer is refused, not waited on."""
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise InputError("not a regular file (a FIFO, device or socket)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def check_image_bytes(data: bytes) -> str:
    """Format of ``data``; raises InputError for empty, non-image and truncated data."""
    if not data:
        raise InputError("empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise InputError("not an image (unrecognised format)")
    if fmt == "jpeg" and data.rstrip(b"\x00\r\n ")[-2:] != b"\xff\xd9":
        raise InputError("truncated JPEG (no end-of-image marker)")
    if fmt == "png" and b"IEND" not in data[-12:]:
        raise InputError("truncated PNG (no IEND chunk)")
    return fmt


@dataclasses.dataclass(frozen=True)
class HeaderInfo:
    width: int
    height: int
    mode: str  # PIL's mode: "RGB", "L", "CMYK", "RGBA", "I;16", ...


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_size(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's start-of-frame marker, or None.

    Walks the marker segments by their lengths: a few microseconds, no decoding.
    """
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _SOF:
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return width, height, data[i + 9]
        i += 2 + length
    return None


def header_info(data: bytes) -> HeaderInfo:
    """Width, height and colour mode from the header alone (no pixel decoding)."""
    if data[:2] == b"\xff\xd8":
        size = jpeg_size(data)
        if size and size[0] and size[1]:
            mode = {1: "L", 3: "RGB", 4: "CMYK"}.get(size[2], "RGB")
            return HeaderInfo(size[0], size[1], mode)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        mode = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}.get(data[25], "RGB")
        if data[24] == 16 and mode in ("L", "LA"):
            mode = "I;16"
        return HeaderInfo(width, height, mode)
    # Only the header is read here; callers enforce their own pixel limit (max_pixels) next.
    # Pillow's own guard stays on: past it, the image is refused as too large.
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return HeaderInfo(int(im.width), int(im.height), str(im.mode))
    except Image.DecompressionBombError as exc:
        raise PixelLimitError(f"image too large to decode safely ({exc})".replace(
            ", could be decompression bomb DOS attack.", "")) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"unreadable image header ({exc})") from None


def jpeg_reduction(width: int, height: int, min_side: int | None) -> int:
    """Largest of 8, 4, 2 (else 1) that keeps both sides >= ``min_side`` after decoding."""
    if not min_side:
        return 1
    for factor in (8, 4, 2):
        if width // factor >= min_side and height // factor >= min_side:
            return factor
    return 1


@dataclasses.dataclass
class DecodedImage:
    rgb: Any  # uint8 array (H, W, 3)
    alpha: Any | None  # uint8 array (H, W) or None
    width: int  # size of the stored image (before any reduced decoding)
    height: int
    format: str
    reduction: int = 1


def decode_image(data: bytes, fmt: str | None = None, *, min_side: int | None = None,
                 max_pixels: int | None = -1, keep_alpha: bool = True,
                 ) -> DecodedImage:
    """Decode image bytes to 8-bit RGB (and alpha).

    ``min_side``: a JPEG may be decoded at reduced resolution as long as both sides stay at
    least this large. ``max_pixels``: refuse images whose decoded size would be larger (the
    default, -1, is the configured limit; None: no limit of ours).
    """
    import cv2
    import numpy as np

    fmt = fmt or check_image_bytes(data)
    if max_pixels == -1:
        max_pixels = default_max_pixels()
    buf = np.frombuffer(data, dtype=np.uint8)
    if fmt == "jpeg":
        head = header_info(data)
        factor = jpeg_reduction(head.width, head.height, min_side)
        _check_pixels(head.width // factor, head.height // factor, max_pixels, head)
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        with decode_budget.hold((head.width // factor) * (head.height // factor)):
            # Straight to RGB: libjpeg writes the channels in that order, no BGR pass to swap.
            rgb = cv2.imdecode(buf, (flag & ~cv2.IMREAD_COLOR_BGR) | cv2.IMREAD_COLOR_RGB)
            if rgb is None:
                raise InputError("cannot decode JPEG (corrupt data)")
            return DecodedImage(rgb, None, head.width, head.height, fmt, factor)
    pixels = 0
    if max_pixels or decode_budget.capacity:
        head = header_info(data)
        _check_pixels(head.width, head.height, max_pixels, head)
        pixels = head.width * head.height
    with decode_budget.hold(pixels):
        return _decode_any(buf, fmt, keep_alpha)


def _decode_any(buf: Any, fmt: str, keep_alpha: bool) -> DecodedImage:
    """Decode a PNG, WebP, BMP or TIFF (any depth, grey or colour, alpha or not) to RGB."""
    import cv2
    import numpy as np

    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot decode {fmt.upper()} (corrupt or unsupported data)")
    height, width = img.shape[:2]
    img = _to_uint8(img)
    alpha = None
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 1:
        rgb = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 2:  # grey + alpha
        rgb = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
        alpha = img[:, :, 1]
    elif img.shape[2] == 3:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
        alpha = img[:, :, 3]
    if alpha is not None and not keep_alpha:
        alpha = None
    return DecodedImage(np.ascontiguousarray(rgb), alpha, width, height, fmt)


def _to_uint8(img: Any) -> Any:
    import numpy as np

    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype.kind == "f":
        return (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    info = np.iinfo(img.dtype)
    scaled = (img.astype(np.float64) - info.min) / (info.max - info.min) * 255.0
    return (scaled + 0.5).astype(np.uint8)


def check_pixels(data: bytes, max_pixels: int | None = None) -> HeaderInfo:
    """The header of image ``data``; raises PixelLimitError when it has more pixels than
    ``max_pixels`` (default: the configured limit)."""
    head = header_info(data)
    max_pixels = max_pixels or default_max_pixels()
    _check_pixels(head.width, head.height, max_pixels, head)
    return head


def check_decode_pixels(data: bytes, fmt: str, min_side: int | None,
                        max_pixels: int | None = None) -> None:
    """Raise PixelLimitError when :func:`decode_image` with ``min_side`` would refuse ``data``:
    the same check, from the header, without decoding."""
    head = header_info(data)
    factor = jpeg_reduction(head.width, head.height, min_side) if fmt == "jpeg" else 1
    _check_pixels(head.width // factor, head.height // factor,
                  max_pixels or default_max_pixels(), head)


def decoded_pixels(data: bytes, fmt: str, min_side: int | None = None) -> int:
    """Pixels that :func:`decode_image` with ``min_side`` makes of ``data`` (from its header)."""
    head = header_info(data)
    factor = jpeg_reduction(head.width, head.height, min_side) if fmt == "jpeg" else 1
    return (head.width // factor) * (head.height // factor)


def _check_pixels(width: int, height: int, max_pixels: int | None, head: HeaderInfo) -> None:
    if max_pixels and width * height > max_pixels:
        raise PixelLimitError(f"image is {head.width}x{head.height}: more than the max_pixels "
                              f"limit of {max_pixels:,} pixels to decode")


def iter_image_paths(paths: Iterable[str | os.PathLike], recursive: bool = False,
                     ) -> Iterator[Path]:
    """Files as given; folders expanded to their image files (sorted; ``recursive`` walks).

    A path that does not exist raises InputError naming it.
    """
    for p in paths:
        path = Path(p)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.iterdir()
            yield from sorted(f for f in walker
                              if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif path.exists():
            yield path
        else:
            raise InputError(f"{path}: no such file or directory")
