"""Near-duplicate photos without a model: hash candidates, verified by local features.

1. Each photo is decoded small (JPEGs straight from the DCT at 1/2, 1/4 or 1/8), greyscale, its
   longer side ``work_size``; it gets three 64-bit perceptual hashes (as is, mirrored, central
   part: :mod:`mltk.similar.hashing`) and ORB features.
2. Candidates come from a faiss binary index (Hamming distance, no N x N matrix): for each photo
   the ``candidates`` nearest hashes within ``hash_radius`` bits.
3. A candidate pair is a duplicate when one geometric transform (a RANSAC similarity: crop,
   scale, rotation; checked to be plausible) matches at least ``min_inliers`` ORB features
   and at least ``threshold`` of the features of the photo with fewer: the **score** is that
   share. A pair whose mirror hash is clearly the closer is matched against the mirror image too.
   Crops, rotations of a few degrees, mirrors, watermarks, re-encoding and colour changes keep
   their features in place; different products that merely look alike do not.
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


@dataclasses.dataclass
class PhotoFeatures:
    """What a photo contributes: size, hashes (3 x 8 bytes), ORB keypoints and descriptors."""

    path: str
    pixels: int
    hashes: np.ndarray
    points: np.ndarray  # (n, 2) float32, in working-image coordinates
    descriptors: np.ndarray  # (n, 32) uint8
    shape: tuple[int, int]


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


def orb_features(gray: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoint positions (n x 2) and descriptors (n x 32 bytes); a low-contrast photo
    is searched again with a lower corner threshold."""
    import cv2

    keypoints, descriptors = cv2.ORB_create(nfeatures=n_features, fastThreshold=10, nlevels=4
                                            ).detectAndCompute(gray, None)
    if len(keypoints) < n_features // 4:
        keypoints, descriptors = cv2.ORB_create(nfeatures=n_features, fastThreshold=3, nlevels=4
                                                ).detectAndCompute(gray, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in keypoints], dtype=np.float32), descriptors


def extract(path: str, settings: SimilarSettings, mirror: bool = False) -> PhotoFeatures:
    gray, pixels = load_gray(path, settings.work_size)
    hashes = photo_hashes(gray)
    if mirror:
        gray = np.ascontiguousarray(gray[:, ::-1])
    points, descriptors = orb_features(gray, settings.features)
    return PhotoFeatures(path, pixels, hashes, points, descriptors, gray.shape[:2])


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
    """(i, j) with i < j -> whether to match photo j mirrored too; from a faiss binary index
    of every photo's plain and central hashes, searched with all hashes of each photo: per
    photo the ``candidates`` nearest others within ``hash_radius`` bits."""
    import faiss

    n = len(feats)
    if n < 2:
        return {}
    hashes = np.stack([f.hashes for f in feats])  # (n, h, 8): plain, mirrored, centres
    per = hashes.shape[1]
    stored_rows = [0, *range(2, per)]  # all but the mirror image
    stored = np.ascontiguousarray(hashes[:, stored_rows].reshape(-1, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(stored)
    k = min(len(stored_rows) * settings.candidates + len(stored_rows), len(stored))
    dist, found = index.search(np.ascontiguousarray(hashes.reshape(-1, 8)), k)
    dist = dist.reshape(n, per * k)
    found = found.reshape(n, per * k) // len(stored_rows)
    via_mirror = np.repeat([r == 1 for r in range(per)], k)
    pairs: dict[tuple[int, int], bool] = {}
    for i in range(n):
        plain: dict[int, int] = {}
        mirror: dict[int, int] = {}
        for d, j, m in zip(dist[i], found[i], via_mirror, strict=True):
            if j != i and j >= 0 and d <= settings.hash_radius:
                book = mirror if m else plain
                book[int(j)] = min(book.get(int(j), 99), int(d))
        nearest = sorted(set(plain) | set(mirror),
                         key=lambda j: min(plain.get(j, 99), mirror.get(j, 99)))
        for j in nearest[: settings.candidates]:
            # mirrored matching only where the mirror hash is clearly the closer one
            flip = (mirror.get(j, 99) + 4 < plain.get(j, 99)
                    and mirror[j] <= settings.hash_radius // 2)
            key = (min(i, j), max(i, j))
            pairs[key] = pairs.get(key, False) or flip
    return pairs


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
    came through the mirror hash and the photo as it is does not match)."""
    mirrored: dict[int, PhotoFeatures] = {}
    found = {}
    groups = _Groups(len(feats))
    root = groups.root
    for (i, j), via_mirror in sorted(pairs.items()):
        if root(i) == root(j):  # already joined through others: the group is the same
            continue
        score = match_score(feats[i], feats[j], settings)
        if score < settings.threshold and via_mirror:
            if j not in mirrored:
                mirrored[j] = extract(feats[j].path, settings, mirror=True)
            score = max(score, match_score(feats[i], mirrored[j], settings))
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
        results = list(features_of(items, settings, jobs))
        feats = [r for r in results if isinstance(r, PhotoFeatures)]
        pairs = candidate_pairs(feats, settings)
        if embedding is not None:
            for key, flip in _embedded_pairs(embedding, feats, settings).items():
                pairs[key] = pairs.get(key, False) or flip
        found = verify(feats, pairs, settings)
    finally:
        faiss.omp_set_num_threads(previous)
    by_path = iter(group_records(feats, found))
    return [r if isinstance(r, dict) else next(by_path) for r in results]


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
