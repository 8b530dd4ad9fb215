"""The typed settings of ``mltk recommend`` (defaults: configs/recommend.yaml).

:class:`RecommendSettings` holds the top-level settings and four nested ones: ``columns``
(:class:`ColumnSettings`), ``rules`` (:class:`RuleSettings`), ``classifier``
(:class:`ClassifierSettings`) and ``ranknet`` (:class:`RankNetSettings`); ``signals`` maps each
signal column to its weight. Every value is checked when the object is made, so a bad one fails
at once naming the setting (``rules.min_support must be ...``); :func:`mltk.settings.load` puts
where it came from in front (``MLTK_RECOMMEND_RULES: ...``).

    from mltk import settings
    s = settings.load("recommend", k=5)
    s.rules.min_support, s.columns.price   # 0.002, 'price'
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from mltk._settings import (
    Check,
    Settings,
    boolean,
    choice,
    fail,
    integer,
    is_int,
    is_number,
    mapping,
    number,
    optional,
    section,
    sequence,
    setting,
    text,
)

INF = float("inf")


def weight() -> Check:
    """A finite number, positive or negative (an int stays an int)."""
    def check(key: str, value: Any) -> Any:
        if not is_number(value) or value != value or value in (INF, -INF):
            raise fail(key, "a finite number", value)
        return int(value) if is_int(value) else float(value)
    return check


@dataclasses.dataclass(frozen=True)
class ColumnSettings(Settings):
    """Column names in the items table."""

    item_id: str = setting("item_id", text(), "the item id column")
    category_id: str = setting("category_id", text(), "the category id column")
    price: str = setting("price", text(), "the price column (the price-band filter)")
    product_id: str | None = setting(
        "product_id", optional(text()),
        "optional: listings of the same product are never recommended back")
    kind_flags: tuple[str, ...] = setting(
        ("model", "line", "series", "kigata"), sequence(text()),
        "0/1 columns, one set per item: a candidate's must match the query's")
    sex_flags: tuple[str, ...] = setting(
        ("man", "women"), sequence(text()),
        "0/1 columns, both set = unisex: a candidate's must match the query's")
    label: str | None = setting(None, optional(text()),
                                "a relevance column to learn instead of the rank score")


@dataclasses.dataclass(frozen=True)
class RuleSettings(Settings):
    """Association rules over category baskets, and the meta-categories made from them."""

    min_support: float = setting(0.002, number(0.0, 1.0, low_open=True),
                                 "smallest share of users whose baskets hold an itemset")
    min_confidence: float = setting(0.1, number(0.0, 1.0), "smallest confidence of a kept rule")
    min_lift: float = setting(1.5, number(0.0), "smallest lift of a kept rule")
    algorithm: str = setting("fpgrowth", choice("apriori", "fpgrowth"),
                             "apriori | fpgrowth (mlxtend)")
    max_len: int = setting(2, integer(1), "most categories in an itemset")
    max_group_size: int = setting(60, integer(1),
                                  "Louvain communities larger than this are split again")
    resolution: float = setting(1.0, number(0.0, low_open=True),
                                "Louvain resolution (higher: smaller groups)")


@dataclasses.dataclass(frozen=True)
class ClassifierSettings(Settings):
    """The Keras MLP that predicts the meta-categories of the next purchase."""

    layers: tuple[int, ...] = setting((2048, 1024, 512, 256), sequence(integer(1)),
                                      "units of each hidden layer")
    dropout: float = setting(0.2, number(0.0, 1.0, high_open=True),
                             "dropout after each hidden layer")
    epochs: int = setting(8, integer(1), "training epochs")
    batch_size: int = setting(256, integer(1), "training batch size")
    learning_rate: float = setting(0.001, number(0.0, INF, low_open=True), "Adam learning rate")
    val_fraction: float = setting(0.2, number(0.0, 1.0, high_open=True),
                                  "share of users held out to report accuracy")


@dataclasses.dataclass(frozen=True)
class RankNetSettings(Settings):
    """The pairwise RankNet that orders the candidates."""

    layers: tuple[int, ...] = setting((64, 32), sequence(integer(1)),
                                      "units of each hidden layer")
    epochs: int = setting(8, integer(1), "training epochs")
    pairs_per_query: int = setting(2000, integer(1),
                                   "training pairs sampled per meta-category")
    batch_size: int = setting(512, integer(1), "training batch size")
    learning_rate: float = setting(0.002, number(0.0, INF, low_open=True), "Adam learning rate")
    val_fraction: float = setting(0.2, number(0.0, 1.0, high_open=True),
                                  "share of items held out to report NDCG")
    ndcg_k: int = setting(10, integer(1), "cut-off of the reported NDCG")


_SIGNALS = {"rating": 0.01, "popularity_boost": 2, "minyuka_tag": 3, "teikei_cd": 3, "ps": 3,
            "add_fav": 4, "view_detail": 3, "buyer_rating_good": 3}


@dataclasses.dataclass(frozen=True)
class RecommendSettings(Settings):
    """Everything ``mltk recommend`` reads (configs/recommend.yaml); checked when made."""

    SECTION: ClassVar[str] = "recommend"

    columns: ColumnSettings = setting(ColumnSettings(), section(ColumnSettings),
                                      "column names in the items table")
    signals: dict[str, float] = setting(
        _SIGNALS, mapping(weight()),
        "the rank score: signal column -> weight (sum of signal x weight / signal_divisor)")
    signal_divisor: float = setting(8, number(0.0, low_open=True),
                                    "the rank score's divisor (the original's formula)")
    price_band: float = setting(2000, number(0.0),
                                "candidates within +/- this of the query item's price")
    relax_price_band: bool = setting(
        False, boolean(), "fewer than k survivors: double the band, up to 3 times")
    top_meta: int = setting(5, integer(1),
                            "meta-categories taken from the classifier per query")
    k: int = setting(10, integer(1), "results per query")
    seed: int = setting(0, integer(0, 2**32 - 1), "random seed: the same seed, the same model")
    rules: RuleSettings = setting(RuleSettings(), section(RuleSettings),
                                  "association rules and meta-categories")
    classifier: ClassifierSettings = setting(ClassifierSettings(), section(ClassifierSettings),
                                             "the meta-category classifier")
    ranknet: RankNetSettings = setting(RankNetSettings(), section(RankNetSettings),
                                       "the RankNet that orders candidates")
