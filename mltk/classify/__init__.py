"""Image classifiers trained with Keras 3 from TFRecords: train, evaluate, predict.

Library API (Keras, TensorFlow and JAX are imported only when these run)::

    from mltk.classify import train, load, evaluate, Predictor
    summary = train(cfg, "runs/a", data=["shards/"])          # cfg: resolved configs/train.yaml
    lm = load("runs/a")
    report = evaluate(lm, ["test-shards/"])
    rows = list(Predictor(lm).predict([Path("photo.jpg")]))
"""

from mltk.classify.inference import (
    LoadedModel,
    Predictor,
    evaluate,
    load,
    metrics,
    write_evaluation,
)
from mltk.classify.train import train

__all__ = ["LoadedModel", "Predictor", "evaluate", "load", "metrics", "train", "write_evaluation"]
