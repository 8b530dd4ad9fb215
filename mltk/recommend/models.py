"""The two learned parts of the recommender, in Keras: a meta-category classifier (an MLP with
softmax) and a pairwise RankNet; plus NDCG with scikit-learn's tie handling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mltk._keras import import_keras

if TYPE_CHECKING:
    from mltk.recommend.settings import RankNetSettings


def _keras(seed: int) -> Any:
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    return keras


def build_classifier(n_inputs: int, n_classes: int, layers: Sequence[int], dropout: float,
                     learning_rate: float, seed: int) -> Any:
    keras = _keras(seed)
    inputs = keras.Input((n_inputs,), name="context")
    x = inputs
    for i, units in enumerate(layers):
        x = keras.layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(float(dropout), seed=seed + i)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="meta")(x)
    model = keras.Model(inputs, outputs, name="meta_classifier")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseTopKCategoricalAccuracy(1, name="top1"),
                           keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")])
    return model


def build_ranknet(n_inputs: int, layers: Sequence[int], learning_rate: float, seed: int
                  ) -> tuple[Any, Any]:
    """(scorer, pair model). The pair model outputs sigmoid(s_i - s_j) and is trained with
    binary cross-entropy on "i ranks above j": RankNet's pairwise logistic loss."""
    keras = _keras(seed)
    item = keras.Input((n_inputs,), name="item")
    x = item
    for i, units in enumerate(layers):
        x = keras.layers.Dense(int(units), activation="relu", name=f"rank_{i}")(x)
    score = keras.layers.Dense(1, name="score")(x)
    scorer = keras.Model(item, score, name="ranknet_scorer")
    a = keras.Input((n_inputs,), name="item_i")
    b = keras.Input((n_inputs,), name="item_j")
    diff = keras.layers.Subtract()([scorer(a), scorer(b)])
    prob = keras.layers.Activation("sigmoid")(diff)
    pair = keras.Model([a, b], prob, name="ranknet_pairs")
    pair.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    return scorer, pair


def sample_pairs(groups: Any, labels: Any, per_group: int, seed: int) -> tuple[Any, Any]:
    """Index pairs (i, j) within each group with labels[i] != labels[j], ordered so that i is
    the better one. Only label *differences* matter: shifting a group's labels by a constant
    gives the same pairs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    first, second = [], []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        n = min(per_group, len(idx) * (len(idx) - 1) // 2)
        i = rng.choice(idx, n * 2)
        j = rng.choice(idx, n * 2)
        keep = labels[i] != labels[j]
        i, j = i[keep][:n], j[keep][:n]
        swap = labels[i] < labels[j]
        first.append(np.where(swap, j, i))
        second.append(np.where(swap, i, j))
    if not first:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(first), np.concatenate(second)


def train_ranknet(X: Any, labels: Any, groups: Any, settings: RankNetSettings, seed: int) -> Any:
    """Fit a RankNet on pairs within groups; returns the scorer model."""
    import numpy as np

    scorer, pair = build_ranknet(X.shape[1], settings.layers, settings.learning_rate, seed)
    i, j = sample_pairs(groups, labels, settings.pairs_per_query, seed)
    if len(i) == 0:
        return scorer
    # Each pair is shown in both orders (targets 1 and 0) so the scorer has no order bias.
    xa = np.concatenate([X[i], X[j]])
    xb = np.concatenate([X[j], X[i]])
    y = np.concatenate([np.ones(len(i)), np.zeros(len(i))]).astype("float32")
    pair.fit([xa, xb], y, epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True,
             verbose=0)
    return scorer


def ndcg(y_true: Sequence[Any], y_score: Sequence[Any], k: int | None = None,
         gain: str = "linear") -> float:
    """Mean NDCG@k over queries (lists of relevances and scores), ties in the scores averaged
    as scikit-learn does. ``gain``: ``linear`` (rel, equals sklearn.metrics.ndcg_score) or
    ``exponential`` (2^rel - 1)."""
    import numpy as np

    values = []
    for rel, score in zip(y_true, y_score, strict=True):
        rel = np.asarray(rel, float)
        score = np.asarray(score, float)
        g = rel if gain == "linear" else np.power(2.0, rel) - 1.0
        n = len(g)
        kk = n if k is None else min(k, n)
        disc = np.zeros(n)
        disc[:kk] = 1.0 / np.log2(np.arange(2, kk + 2))
        order = np.argsort(-score, kind="stable")
        s_sorted, g_sorted = score[order], g[order]
        dcg, start = 0.0, 0
        while start < n:  # tie groups share their positions' discounts equally
            end = start + 1
            while end < n and s_sorted[end] == s_sorted[start]:
                end += 1
            dcg += g_sorted[start:end].mean() * disc[start:end].sum()
            start = end
        ideal = (np.sort(g)[::-1] * disc).sum()
        values.append(dcg / ideal if ideal > 0 else 0.0)
    return float(np.mean(values)) if values else 0.0
