"""Perceptual hashes of photos, 64 bits each, and their Hamming distances.

:func:`phash` is the DCT hash (as the ``imagehash`` package computes it): the image shrunk to
32 x 32 greys, its 8 x 8 lowest frequencies compared with their median. Re-encoding, resizing,
brightness and colour changes flip few bits; crops and mirrors flip many, which is why
:func:`photo_hashes` also hashes central parts and the mirror images. A mirror image's hash
needs no second shrink and DCT: mirroring left to right only flips the sign of the odd
horizontal frequencies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HASH_BYTES = 8
#: Shares of each side kept by the central hashes of :func:`photo_hashes`.
CENTRES = (0.85, 0.7)
#: Horizontal frequencies 0..7 of a mirror image: the odd ones change sign.
_MIRROR = np.where(np.arange(8) % 2, -1.0, 1.0).astype(np.float32)


def low_frequencies(gray: Any) -> np.ndarray:
    """The 8 x 8 lowest DCT frequencies of a greyscale image shrunk to 32 x 32."""
    import cv2

    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.dct(small)[:8, :8]


def phash(gray: Any) -> np.ndarray:
    """The 64-bit DCT hash of a greyscale image as 8 packed bytes (uint8)."""
    low = low_frequencies(gray)
    return np.packbits((low > np.median(low)).ravel())


def photo_hashes(gray: Any, centres: tuple[float, ...] = CENTRES) -> np.ndarray:
    """Hashes of one photo (rows of 8 bytes): as it is, its central parts (shares ``centres``
    of each side, so a cropped copy lands near one of the original's central hashes), then
    the same of the mirror image: ``2 * (1 + len(centres))`` rows, the mirrored half last.
    The photo is shrunk to 64 x 64 once; the parts are cut from that."""
    import cv2

    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    lows = [low_frequencies(small)]
    for share in centres:
        cut = int(round(64 * (1 - share) / 2))
        lows.append(low_frequencies(small[cut: 64 - cut, cut: 64 - cut]))
    low = np.stack(lows)
    low = np.concatenate([low, low * _MIRROR]).reshape(len(lows) * 2, 64)
    return np.packbits(low > np.median(low, axis=1, keepdims=True), axis=1)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Bits that differ between two packed hashes."""
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())
