"""Image classifiers trained with Keras 3 from TFRecords: train, evaluate, predict.

Library API (Keras, TensorFlow and JAX are imported only when these run)::

    from mltk import settings
    from mltk.classify import Predictor, evaluate, load, train

    cfg = settings.load("train", model="small_cnn", epochs=5)   # a checked TrainSettings
    summary = train(cfg, "runs/a", data=["shards/"])
    lm = load("runs/a")
    report = evaluate(lm, ["test-shards/"])
    rows = list(Predictor(lm).predict([Path("photo.jpg")]))

:class:`TrainSettings` holds every setting of ``configs/train.yaml`` (``settings.load`` merges
that file, a config file, ``MLTK_TRAIN_*`` variables and keyword values, lowest first); a bad
value raises :class:`~mltk._settings.SettingError` naming it. ``train`` also takes a plain
mapping of settings (checked into a ``TrainSettings``; missing keys keep their defaults).
The training loop lives in :mod:`mltk.classify.training`.
"""

from mltk.classify.inference import (
    LoadedModel,
    Predictor,
    evaluate,
    load,
    metrics,
    write_evaluation,
)
from mltk.classify.settings import TrainSettings
from mltk.classify.training import train

__all__ = ["LoadedModel", "Predictor", "TrainSettings", "evaluate", "load", "metrics", "train",
           "write_evaluation"]
