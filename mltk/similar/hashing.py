"""Perceptual hashes of photos, 64 bits each, and their Hamming distances.

:func:`phash` is the DCT hash (as the ``imagehash`` package computes it): the image shrunk to
32 x 32 greys, its 8 x 8 lowest frequencies compared with their median. Re-encoding, resizing,
brightness and colour changes flip few bits; crops and mirrors flip many, which is why
:func:`photo_hashes` also hashes the mirror image and central parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HASH_BYTES = 8


def phash(gray: Any) -> np.ndarray:
    """The 64-bit DCT hash of a greyscale image as 8 packed bytes (uint8)."""
    import cv2

    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    return np.packbits((low > np.median(low)).ravel())


def photo_hashes(gray: Any, centres: tuple[float, ...] = (0.85, 0.7)) -> np.ndarray:
    """Hashes of one photo (rows of 8 bytes): as it is, mirrored left to right, and its
    central parts (shares ``centres`` of each side), so a cropped copy lands near one of the
    original's central hashes."""
    h, w = gray.shape[:2]
    rows = [phash(gray), phash(gray[:, ::-1])]
    for share in centres:
        dy, dx = int(h * (1 - share) / 2), int(w * (1 - share) / 2)
        rows.append(phash(gray[dy: h - dy, dx: w - dx]))
    return np.stack(rows)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Bits that differ between two packed hashes."""
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())
