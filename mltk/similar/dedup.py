"""Near-duplicate photos without a model: hash candidates, verified by local features.

1. Each photo is decoded once, small (JPEGs straight from the DCT at 1/2, 1/4 or 1/8),
   greyscale, its longer side ``work_size``; from that one image come its 64-bit perceptual
   hashes (as is and central parts, and the same of the mirror image, which costs no second
   DCT: :mod:`mltk.similar.hashing`) and its ORB features (``features`` keypoints, ``levels``
   pyramid levels).
2. Candidates come from a faiss binary index (Hamming distance, no N x N matrix): for each photo
   the ``candidates`` nearest hashes within ``hash_radius`` bits.
3. Candidate pairs are verified nearest hashes first, and a pair whose photos are already
   joined through others is not matched again. A pair is a duplicate when one geometric
   transform (a RANSAC similarity: crop, scale, rotation; checked to be plausible) matches at
   least ``min_inliers`` ORB features and at least ``threshold`` of the features of the photo
   with fewer: the **score** is that share. A pair whose mirror hash is clearly the closer is
   matched against the mirror image too (from the working image kept in memory, up to
   :data:`KEEP_IMAGES_BYTES`; decoded again beyond).
   Crops, rotations of a few degrees, mirrors, watermarks, re-encoding and colour changes keep
   their features in place; different products that merely look alike do not. No pair is
   accepted on its hashes alone: tiles of one retina photo (different vessels, the same dark
   edge) hash as close as a re-encoded copy.
   With a trained model (``embedding``: ``mltk dedup --model RUN``), each photo's
   ``candidates`` nearest others by embedding (cosine) are candidates too, verified the same
   way (mirror included): look-alikes a hash misses (a heavy crop, a colour change) get a
   chance, and nothing is called a duplicate on its embedding alone.
4. Duplicates are grouped (connected pairs); each group's representative is its largest photo
   (by pixels; the first seen on a tie).

A file that cannot be read or decoded gets a record with ``error`` and the run goes on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mltk.errors import InputError, MltkError
from mltk.similar.hashing import photo_hashes
from mltk.similar.settings import SimilarSettings

COLUMNS = ["path", "group", "duplicate_of", "score", "error"]
#: Working images kept for mirrored matching (beyond this, such a photo is decoded again).
KEEP_IMAGES_BYTES = 256 * 2**20
#: FAST corner threshold of ORB (3 for a photo where it finds too few corners).
CORNER = 10


@dataclasses.dataclass
class PhotoFeatures:
    """What a photo contributes: size, hashes (rows of 8 bytes), ORB keypoints and
    descriptors, and its working image while it is kept (for mirrored matching)."""

    path: str
    pixels: int
    hashes: np.ndarray
    points: np.ndarray  # (n, 2) float32, in working-image coordinates
    descriptors: np.ndarray  # (n, 32) uint8
    shape: tuple[int, int]
    gray: np.ndarray | None = None


def load_gray(path: str, work_size: int) -> tuple[np.ndarray, int]:
    """(greyscale image with its longer side at most ``work_size``, pixels of the original)."""
    import cv2

    from mltk._imaging import check_pixels, read_image_bytes

    data, fmt = read_image_bytes(path)
    head = check_pixels(data)
    flag = cv2.IMREAD_GRAYSCALE
    if fmt == "jpeg":
        longer = max(head.width, head.height)
        # decoded straight from the DCT at the smallest scale that keeps 3/4 of work_size
        factor = next((f for f in (8, 4, 2) if longer // f >= work_size * 3 // 4), 1)
        flag = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
                4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[factor]
    gray = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if gray is None:
        raise InputError(f"cannot decode {fmt.upper()} (corrupt or unsupported data)")
    if gray.dtype != np.uint8:
        gray = (gray >> 8).astype(np.uint8) if gray.dtype == np.uint16 else cv2.convertScaleAbs(
            gray)
    scale = work_size / max(gray.shape[:2])
    if scale < 1:
        gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)),
                                 max(1, round(gray.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return gray, head.width * head.height


def orb_features(gray: np.ndarray, n_features: int, levels: int = 2
                 ) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoint positions (n x 2) and descriptors (n x 32 bytes), ``levels`` pyramid
    levels 1.2 apart; a low-contrast photo is searched again with a lower corner threshold."""
    keypoints, descriptors = _orb(n_features, levels, CORNER).detectAndCompute(gray, None)
    if len(keypoints) < n_features // 4:
        keypoints, descriptors = _orb(n_features, levels, 3).detectAndCompute(gray, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    import cv2

    return cv2.KeyPoint_convert(keypoints).reshape(-1, 2), descriptors


_detectors: dict[tuple[int, int, int], Any] = {}


def _orb(n_features: int, levels: int, corner: int) -> Any:
    """One ORB detector per setting in each process (made once, not per photo)."""
    key = (n_features, levels, corner)
    if key not in _detectors:
        import cv2

        _detectors[key] = cv2.ORB_create(nfeatures=n_features, fastThreshold=corner,
                                         nlevels=levels)
    return _detectors[key]


def extract(path: str, settings: SimilarSettings, mirror: bool = False) -> PhotoFeatures:
    """One decode (reduced) of ``path``: hashes and ORB features of it (of its mirror image
    with ``mirror``), the working image kept in ``gray``."""
    gray, pixels = load_gray(path, settings.work_size)
    hashes = photo_hashes(gray)
    if mirror:
        gray = np.ascontiguousarray(gray[:, ::-1])
    points, descriptors = orb_features(gray, settings.features, settings.levels)
    return PhotoFeatures(path, pixels, hashes, points, descriptors, gray.shape[:2], gray)


def mirrored(feat: PhotoFeatures, settings: SimilarSettings) -> PhotoFeatures:
    """ORB features of the mirror image of a photo: from its kept working image, else decoded
    again."""
    if feat.gray is None:
        return extract(feat.path, settings, mirror=True)
    gray = np.ascontiguousarray(feat.gray[:, ::-1])
    points, descriptors = orb_features(gray, settings.features, settings.levels)
    return PhotoFeatures(feat.path, feat.pixels, feat.hashes, points, descriptors,
                         feat.shape)


def match_score(a: PhotoFeatures, b: PhotoFeatures, settings: SimilarSettings) -> float:
    """The share of the smaller feature set that one plausible transform matches (0: none)."""
    import cv2

    fewer = min(len(a.descriptors), len(b.descriptors))
    if fewer < settings.min_inliers:
        return 0.0
    src, dst = matches(a.descriptors, b.descriptors)
    if len(src) < settings.min_inliers:
        return 0.0
    src, dst = a.points[src], b.points[dst]
    # A copy is a crop, a resize or a small rotation of the other: a similarity transform
    # (4 degrees of freedom: fewer than a homography, so chance alignments are rarer).
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                             ransacReprojThreshold=4.0, maxIters=500,
                                             confidence=0.99)
    if m is None or inliers is None:
        return 0.0
    n_in = int(inliers.sum())
    if n_in < settings.min_inliers or not plausible(m):
        return 0.0
    return min(1.0, n_in / fewer)


def matches(da: np.ndarray, db: np.ndarray, ratio: float = 0.8) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """(rows of ``da``, rows of ``db``) of the descriptor pairs that pass Lowe's ratio test:
    the nearest of ``db`` clearly nearer than the second (a faiss binary index: arrays in and
    out, no Python object per match)."""
    import faiss

    index = faiss.IndexBinaryFlat(8 * db.shape[1])
    index.add(np.ascontiguousarray(db))
    dist, found = index.search(np.ascontiguousarray(da), 2)
    good = (found[:, 1] >= 0) & (dist[:, 0] < ratio * dist[:, 1])
    return np.flatnonzero(good), found[good, 0]


def plausible(m: np.ndarray) -> bool:
    """A transform a copy of a photo could have: scale within 1/6..6 (the mirror image is
    tried separately, a similarity transform cannot mirror)."""
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    return 1 / 6 < scale < 6


def features_of(paths: Sequence[str], settings: SimilarSettings, jobs: int | None = None
                ) -> Iterator[PhotoFeatures | dict[str, Any]]:
    """Features of each path in order (an error record for a file that fails), ``jobs``
    processes (default: all cores)."""
    from mltk._parallel import process_context

    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(paths) <= 1:
        _init(settings)
        yield from map(_work, paths)
        return
    ctx = process_context(["mltk.similar.dedup"])
    chunk = max(1, min(16, len(paths) // (jobs * 8)))
    with ctx.Pool(min(jobs, len(paths)), initializer=_init, initargs=(settings,)) as pool:
        yield from pool.imap(_work, paths, chunksize=chunk)


_worker: dict[str, Any] = {}


def _init(settings: SimilarSettings) -> None:
    import cv2
    import faiss

    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    _worker["settings"] = settings


def _work(path: str) -> PhotoFeatures | dict[str, Any]:
    try:
        return extract(path, _worker["settings"])
    except InputError as exc:
        return error_record(path, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bad file must not stop the run
        return error_record(path, f"{type(exc).__name__}: {exc}")


def error_record(path: str, error: str) -> dict[str, Any]:
    return {"path": path, "group": None, "duplicate_of": None, "score": None, "error": error}


def candidate_pairs(feats: Sequence[PhotoFeatures], settings: SimilarSettings
                    ) -> dict[tuple[int, int], bool]:
    """(i, j) with i < j -> whether to match photo j mirrored too, nearest hashes first; from
    a faiss binary index of every photo's plain and central hashes, searched with all hashes
    of each photo (mirrored ones too): per photo the ``candidates`` nearest others within
    ``hash_radius`` bits. Mirrored matching only where the mirror hash is clearly the closer
    (4 bits nearer, and within half the radius)."""
    import faiss

    n = len(feats)
    if n < 2:
        return {}
    hashes = np.stack([f.hashes for f in feats])  # (n, h, 8): plain + centres, then mirrored
    per = hashes.shape[1]
    kept = per // 2  # the first half is stored; the mirrored half only asks
    index = faiss.IndexBinaryFlat(64)
    index.add(np.ascontiguousarray(hashes[:, :kept].reshape(-1, 8)))
    k = min(kept * (settings.candidates + 1), n * kept)
    dist, found = index.search(np.ascontiguousarray(hashes.reshape(-1, 8)), k)
    # one row per (photo, other photo, plain or mirror): the nearest of its hashes
    i = np.repeat(np.arange(n), per * k)
    j = found.reshape(-1) // kept
    mirror = np.tile(np.repeat(np.arange(per) >= kept, k), n)
    d = dist.reshape(-1)
    ok = (found.reshape(-1) >= 0) & (j != i) & (d <= settings.hash_radius)
    i, j, mirror, d = i[ok], j[ok], mirror[ok], d[ok]
    plain_d, mirror_d = _nearest(i * n + j, d, ~mirror), _nearest(i * n + j, d, mirror)
    keys = np.union1d(plain_d[0], mirror_d[0])
    near_plain = _lookup(keys, *plain_d)
    near_mirror = _lookup(keys, *mirror_d)
    nearest = np.minimum(near_plain, near_mirror)
    flip = (near_mirror + 4 < near_plain) & (near_mirror <= settings.hash_radius // 2)
    a, b = keys // n, keys % n
    order = np.lexsort((nearest, a))  # per photo, nearest first
    a, b, nearest, flip = a[order], b[order], nearest[order], flip[order]
    first = np.searchsorted(a, a)  # where each photo's rows start
    keep = np.arange(len(a)) - first < settings.candidates
    pairs: dict[tuple[int, int], tuple[int, bool]] = {}
    for x, y, dd, f in zip(a[keep].tolist(), b[keep].tolist(), nearest[keep].tolist(),
                           flip[keep].tolist(), strict=True):
        key = (min(x, y), max(x, y))
        old_d, old_f = pairs.get(key, (99, False))
        pairs[key] = (min(old_d, dd), old_f or f)
    return {key: f for key, (_, f) in sorted(pairs.items(), key=lambda kv: kv[1][0])}


def _nearest(keys: np.ndarray, dist: np.ndarray, mask: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, the least distance of each) among the rows where ``mask``."""
    keys, dist = keys[mask], dist[mask]
    order = np.lexsort((dist, keys))
    keys, dist = keys[order], dist[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first], dist[first]


def _lookup(keys: np.ndarray, known: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """The distance of each of ``keys`` in (``known``, ``dist``), 99 where absent."""
    at = np.searchsorted(known, keys)
    at = np.minimum(at, max(len(known) - 1, 0))
    hit = (known[at] == keys) if len(known) else np.zeros(len(keys), dtype=bool)
    return np.where(hit, dist[at] if len(known) else 99, 99)


def embedding_pairs(vectors: np.ndarray, candidates: int) -> dict[tuple[int, int], bool]:
    """(i, j) with i < j -> True (try the mirror too) for each photo's ``candidates`` nearest
    others by cosine of its (L2-normalised) embedding; exact search, in blocks."""
    import faiss

    n = len(vectors)
    if n < 2:
        return {}
    k = min(candidates + 1, n)
    _, found = faiss.knn(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(
        vectors, dtype=np.float32), k, metric=faiss.METRIC_INNER_PRODUCT)
    pairs: dict[tuple[int, int], bool] = {}
    for i, row in enumerate(found):
        for j in row[row != i][:candidates]:
            if j >= 0:
                pairs[(min(i, int(j)), max(i, int(j)))] = True
    return pairs


def verify(feats: Sequence[PhotoFeatures], pairs: dict[tuple[int, int], bool],
           settings: SimilarSettings) -> dict[tuple[int, int], float]:
    """The pairs that local features confirm, with their scores (mirrors tried when the pair
    came through the mirror hash and the photo as it is does not match); in the order of
    ``pairs`` (nearest first), and a pair already joined through others is not matched."""
    flipped: dict[int, PhotoFeatures] = {}
    found = {}
    groups = _Groups(len(feats))
    root = groups.root
    for (i, j), via_mirror in pairs.items():
        if root(i) == root(j):  # already joined through others: the group is the same
            continue
        score = match_score(feats[i], feats[j], settings)
        if score < settings.threshold and via_mirror:
            if j not in flipped:
                flipped[j] = mirrored(feats[j], settings)
            score = max(score, match_score(feats[i], flipped[j], settings))
        if score >= settings.threshold and score > 0:
            found[(i, j)] = round(score, 4)
            groups.join(i, j)
    return found


class _Groups:
    """Union-find over photo numbers: which photos are one group so far."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def root(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.root(i)] = self.root(j)


def group_records(feats: Sequence[PhotoFeatures], found: dict[tuple[int, int], float]
                  ) -> list[dict[str, Any]]:
    """One record per photo: group number (None when unique), representative, score."""
    groups = _Groups(len(feats))
    root = groups.root
    for i, j in found:
        groups.join(i, j)
    members: dict[int, list[int]] = {}
    for i in range(len(feats)):
        members.setdefault(root(i), []).append(i)
    best: dict[int, float] = {}
    for (i, j), s in found.items():
        best[i], best[j] = max(best.get(i, 0.0), s), max(best.get(j, 0.0), s)
    records: list[dict[str, Any]] = [{} for _ in feats]
    groups = sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
    for number, group in enumerate(groups, 1):
        rep = max(group, key=lambda i: (feats[i].pixels, -i))
        for i in group:
            direct = found.get((min(i, rep), max(i, rep)))
            records[i] = {"path": feats[i].path, "group": number,
                          "duplicate_of": None if i == rep else feats[rep].path,
                          "score": None if i == rep else (direct or best.get(i)),
                          "error": None}
    for i, f in enumerate(feats):
        if not records[i]:
            records[i] = {"path": f.path, "group": None, "duplicate_of": None, "score": None,
                          "error": None}
    return records


def find_duplicates(paths: Sequence[str | os.PathLike[str]], settings: SimilarSettings,
                    jobs: int | None = None, embedding: Any = None) -> list[dict[str, Any]]:
    """Records (``path, group, duplicate_of, score, error``) for ``paths``, in input order;
    ``embedding`` (a :class:`~mltk.classify.Classifier`) adds embedding candidates."""
    import faiss

    items = [os.fspath(p) for p in paths]
    if jobs is not None and jobs < 1:
        raise MltkError(f"jobs must be at least 1, got {jobs}")
    previous = faiss.omp_get_max_threads()
    # Thousands of tiny searches: OpenMP threads would spin more than they work.
    faiss.omp_set_num_threads(1)
    try:
        results = kept_images(features_of(items, settings, jobs))
        feats = [r for r in results if isinstance(r, PhotoFeatures)]
        pairs = candidate_pairs(feats, settings)
        if embedding is not None:
            for key, flip in _embedded_pairs(embedding, feats, settings).items():
                pairs[key] = pairs.get(key, False) or flip
        flips = {j for (_, j), flip in pairs.items() if flip}
        for j, f in enumerate(feats):  # only a photo matched mirrored needs its image
            if j not in flips:
                f.gray = None
        found = verify(feats, pairs, settings)
    finally:
        faiss.omp_set_num_threads(previous)
    by_path = iter(group_records(feats, found))
    return [r if isinstance(r, dict) else next(by_path) for r in results]


def kept_images(results: Iterator[PhotoFeatures | dict[str, Any]],
                budget: int = KEEP_IMAGES_BYTES) -> list[PhotoFeatures | dict[str, Any]]:
    """All ``results``, the working images of the first ones kept while they fit in
    ``budget`` bytes (a photo matched mirrored later is decoded again if its image is gone)."""
    out = []
    for r in results:
        if isinstance(r, PhotoFeatures) and r.gray is not None:
            if r.gray.nbytes <= budget:
                budget -= r.gray.nbytes
            else:
                r.gray = None
        out.append(r)
    return out


def _embedded_pairs(classifier: Any, feats: Sequence[PhotoFeatures],
                    settings: SimilarSettings) -> dict[tuple[int, int], bool]:
    """Embedding candidates among the photos that decoded (one that the model cannot read
    has none)."""
    from mltk.similar.embed import embed_images

    x, ids, _ = embed_images(classifier, [f.path for f in feats])
    rows = {p: i for i, p in enumerate(ids)}
    have = [i for i, f in enumerate(feats) if f.path in rows]
    if len(have) < 2:
        return {}
    near = embedding_pairs(x[[rows[feats[i].path] for i in have]], settings.candidates)
    return {(have[a], have[b]): flip for (a, b), flip in near.items()}
