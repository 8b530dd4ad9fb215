"""The hold-out split and the samples, keyed by row position and seed: the same rows chosen
in one process, on any Dask partitioning and through external memory.

Each row gets a 64-bit key, a bijective mix (splitmix64's finaliser) of its position in the
table (rows dropped for a missing target counted) and of the seed and a *stream* (one for the
test split, one for the tuning sample, one for the explained rows). For a fixed seed and
stream the key is a bijection of the position, so keys never tie. A selection takes, of each
class c with n_c eligible rows, the k_c = round(n_c * share) rows with the smallest keys:
exactly stratified, and membership is ``key <= threshold[c]`` once the k_c-th smallest key of
each class is known.

In memory that threshold is a partition of the keys (:func:`thresholds_in_memory`). Over
batches of (rows, y) it takes two passes of tiny results, never the rows themselves
(:func:`thresholds_over`, or the steps one by one where the batches are a cluster's
partitions): pass 1 (:func:`key_histogram`) counts each class's keys by their top 12 bits;
summed, the counts name the bin that holds the k_c-th key and its rank in that bin
(:func:`locate`); pass 2 (:func:`keys_in_bin`) returns the keys of each class in its bin
(about n_c / 4,096 of them), sorted here for the exact threshold (:func:`exact_thresholds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The streams: one selection each, drawn independently of the others (VALID_STREAM: the
#: validation rows of trials tuned on a cluster).
TEST_STREAM, TUNE_STREAM, EXPLAIN_STREAM, VALID_STREAM = 1, 2, 3, 4
BIN_BITS = 12  # 4,096 bins: a 64 KB histogram a partition
BINS = 1 << BIN_BITS
CLASSES = (0, 1)
ALL = (1 << 64) - 1  # the threshold that takes every row of a class
NONE = -1  # the threshold that takes none

Thresholds = Mapping[int, int]  # class -> the largest key taken (NONE: none)
Located = Mapping[int, tuple[int, int, int]]  # class -> (bin, rank in it, quota)


def _mix(z: Any) -> Any:
    """splitmix64's finaliser on uint64 arrays (wrapping): a bijection of 64-bit integers."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _offset(seed: int, stream: int) -> Any:
    """The (seed, stream) part of the keys, one uint64."""
    import numpy as np

    s = _mix(np.array([seed % (1 << 64)], dtype=np.uint64))
    return _mix(s ^ np.uint64(stream % (1 << 64)))[0]


def row_keys(rows: Any, seed: int, stream: int) -> Any:
    """The keys (uint64) of the rows at table positions ``rows``: no two alike."""
    import numpy as np

    r = np.asarray(rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(r * np.uint64(0x9E3779B97F4A7C15) + _offset(seed, stream))


def quotas(counts: Mapping[int, int], share: float) -> dict[int, int]:
    """Rows taken of each class: round(n_c * share), share capped at 1."""
    share = max(0.0, min(1.0, share))
    return {c: int(round(n * share)) for c, n in counts.items()}


def thresholds_in_memory(rows: Any, y: Any, seed: int, stream: int, share: float
                         ) -> dict[int, int]:
    """Each class's threshold, all its rows' keys in hand."""
    import numpy as np

    return _thresholds(row_keys(rows, seed, stream), np.asarray(y), share)


def member(rows: Any, y: Any, seed: int, stream: int, thresholds: Thresholds) -> Any:
    """Whether each row is taken (a bool array): its key at most its class's threshold."""
    import numpy as np

    return _taken(row_keys(rows, seed, stream), np.asarray(y), thresholds)


def select(rows: Any, y: Any, seed: int, stream: int, share: float) -> Any:
    """The positions (sorted) in ``rows`` of the rows taken, all of them in memory."""
    import numpy as np

    keys, y = row_keys(rows, seed, stream), np.asarray(y)
    return np.flatnonzero(_taken(keys, y, _thresholds(keys, y, share)))


def _thresholds(keys: Any, y: Any, share: float) -> dict[int, int]:
    import numpy as np

    out = {}
    for c in CLASSES:
        k = keys[y == c]
        take = quotas({c: len(k)}, share)[c]
        out[c] = NONE if take == 0 else ALL if take == len(k) else int(
            np.partition(k, take - 1)[take - 1])
    return out


def _taken(keys: Any, y: Any, thresholds: Thresholds) -> Any:
    import numpy as np

    taken = np.zeros(len(keys), dtype=bool)
    for c, t in thresholds.items():
        if t != NONE:
            at = y == c
            taken[at] = keys[at] <= np.uint64(t)
    return taken


# -- over batches: two passes of tiny results -------------------------------------------------


def key_histogram(rows: Any, y: Any, seed: int, stream: int) -> Any:
    """Pass 1 on one batch: each class's keys counted by their top 12 bits, an int64 array
    of shape (2, 4,096); batches' histograms add up."""
    import numpy as np

    y = np.asarray(y).astype(np.int64)
    bins = (row_keys(rows, seed, stream) >> np.uint64(64 - BIN_BITS)).astype(np.int64)
    return np.bincount(y * BINS + bins, minlength=len(CLASSES) * BINS).reshape(
        len(CLASSES), BINS).astype(np.int64)


def counts_of(histogram: Any) -> dict[int, int]:
    """Rows of each class the summed histogram counted."""
    return {c: int(histogram[c].sum()) for c in CLASSES}


def locate(histogram: Any, share: float) -> dict[int, tuple[int, int, int]]:
    """From the summed histogram: per class (the bin holding the k_c-th smallest key, its
    rank among the bin's keys from 0, k_c); bin -1 where k_c is 0 or every row."""
    import numpy as np

    out = {}
    for c, take in quotas(counts_of(histogram), share).items():
        if take == 0 or take == int(histogram[c].sum()):
            out[c] = (-1, 0, take)
            continue
        cumulative = np.cumsum(histogram[c])
        b = int(np.searchsorted(cumulative, take))  # the first bin reaching take rows
        before = int(cumulative[b - 1]) if b else 0
        out[c] = (b, take - 1 - before, take)
    return out


def keys_in_bin(rows: Any, y: Any, seed: int, stream: int, located: Located
                ) -> dict[int, Any]:
    """Pass 2 on one batch: each class's keys inside its located bin."""
    import numpy as np

    keys, y = row_keys(rows, seed, stream), np.asarray(y)
    bins = keys >> np.uint64(64 - BIN_BITS)
    return {c: keys[(y == c) & (bins == np.uint64(b))] for c, (b, _, _) in located.items()
            if b >= 0}


def exact_thresholds(located: Located, found: Iterable[Mapping[int, Any]]) -> dict[int, int]:
    """The thresholds, from the located bins and the batches' pass-2 keys."""
    import numpy as np

    found = list(found)
    out = {}
    for c, (b, rank, take) in located.items():
        if b < 0:
            out[c] = NONE if take == 0 else ALL
            continue
        keys = np.sort(np.concatenate([f[c] for f in found if c in f]))
        out[c] = int(keys[rank])
    return out


def thresholds_over(batches: Callable[[], Iterable[tuple[Any, Any]]], seed: int, stream: int,
                    share: float) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """(thresholds, eligible rows per class, rows taken per class) over ``batches()``, an
    iterable of (rows, y) read twice, one batch in memory at a time."""
    histogram = None
    for rows, y in batches():
        h = key_histogram(rows, y, seed, stream)
        histogram = h if histogram is None else histogram + h
    if histogram is None:
        return {c: NONE for c in CLASSES}, {c: 0 for c in CLASSES}, {c: 0 for c in CLASSES}
    located = locate(histogram, share)
    counts = counts_of(histogram)
    needed = any(b >= 0 for b, _, _ in located.values())
    found = ([keys_in_bin(rows, y, seed, stream, located) for rows, y in batches()]
             if needed else [])
    return (exact_thresholds(located, found), counts,
            {c: take for c, (_, _, take) in located.items()})
