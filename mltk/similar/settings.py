"""Typed settings of ``mltk index`` and ``mltk dedup`` (configs/similar.yaml, MLTK_SIMILAR_*)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from mltk._settings import (
    Settings,
    choice,
    integer,
    number,
    optional,
    setting,
    text,
)


@dataclasses.dataclass(frozen=True)
class SimilarSettings(Settings):
    """How indexes are built and searched and how duplicates are found; checked when made."""

    SECTION: ClassVar[str] = "similar"

    # -- index ---------------------------------------------------------------------------------
    metric: str = setting("cosine", choice("cosine", "ip"),
                          "cosine (vectors L2-normalised, then inner product) | ip")
    exact_max: int = setting(50_000, integer(0), "collections up to this size get exact search")
    memory_mb: float = setting(4096.0, number(0.0, low_open=True),
                               "memory budget of an approximate index: the most accurate kind "
                               "that fits (IVF,SQfp16 > IVF,SQ8 > IVF,PQ)")
    factory: str | None = setting(None, optional(text()),
                                  "a faiss factory string overriding the choice (IVF4096,PQ32)")
    target_recall: float = setting(0.95, number(0.0, 1.0, low_open=True),
                                   "recall@10 the build tunes nprobe / efSearch to reach")
    recall_queries: int = setting(500, integer(1), "sample queries for the build's recall check")
    filter_exact_max: int = setting(20_000, integer(0),
                                    "filtered queries allowing at most this many items are "
                                    "searched exactly inside the allowed set")
    threads: int | None = setting(None, optional(integer(1)), "faiss threads (None: all cores)")
    seed: int = setting(0, integer(0, 2**31 - 1), "sampling and k-means seed")
    # -- dedup ---------------------------------------------------------------------------------
    threshold: float = setting(0.05, number(0.0, 1.0),
                               "dedup: least share of the smaller photo's local features that "
                               "one geometric transform must match")
    min_inliers: int = setting(12, integer(4), "dedup: least matched features (RANSAC inliers)")
    hash_radius: int = setting(22, integer(0, 64), "dedup: largest Hamming distance of 64-bit "
                               "hashes that makes a candidate pair")
    candidates: int = setting(8, integer(1), "dedup: most candidates verified per photo")
    features: int = setting(200, integer(16), "dedup: ORB features per photo")
    work_size: int = setting(256, integer(64), "dedup: longer side of the working image")
    levels: int = setting(2, integer(1, 8), "dedup: ORB pyramid levels (scales 1.2 apart)")
