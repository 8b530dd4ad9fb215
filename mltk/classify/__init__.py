"""Image classifiers trained with Keras 3 from TFRecords (``mltk train``, ``evaluate``,
``predict``), built around two objects: :class:`Trainer` and :class:`Classifier`.

Keras, TensorFlow and JAX are imported only when these run::

    from mltk import settings
    from mltk.classify import Classifier, evaluate, train

    cfg = settings.load("train", model="small_cnn", epochs=5)   # a checked TrainSettings
    summary = train(cfg, "runs/a", data=["shards/"])            # a TrainingSummary
    clf = Classifier.load("runs/a")                             # classes, image_size
    evaluate(clf, ["test-shards/"]).save("runs/a/test")         # an Evaluation
    rows = list(clf.predict_paths(["photo.jpg"]))               # top-k labels per file
    features = clf.embed_batch([clf.preprocess(data)])          # pooled features

``train`` is ``Trainer.prepare(settings, data=...)`` then ``.fit(out)``, with the run folder
checked first and the learning-rate finder run when ``learning_rate`` is ``auto``.

Modules, one idea each:

- settings: ``settings`` (:class:`TrainSettings`, the keys of configs/train.yaml), ``recipes``
  (named sets of optimisation settings);
- the model: ``models`` (architectures, model files), ``optimization`` (optimizer,
  learning-rate schedule, loss), ``runtime`` (backend, devices, precision), ``keras_patches``;
- data: ``data`` (TFRecord sources, tf.data pipelines), ``training_data`` (a run's data,
  checked), ``class_weights``;
- training: ``trainer`` (:class:`Trainer`), ``callbacks/`` (one Keras callback per concern:
  steps, throughput, history, best model and early stopping, checkpoints, progress),
  ``run_folder`` (the run folder's files, resume checks), ``summary``
  (:class:`TrainingSummary`), ``training`` (``train``), ``lr_finder``, ``interrupts``
  (SIGINT and SIGTERM), ``plots``;
- using a model: ``classifier`` (:class:`Classifier`), ``evaluation`` (``evaluate``,
  :class:`Evaluation`), ``report`` (the evaluation's report.html).
"""

from mltk.classify.classifier import Classifier
from mltk.classify.evaluation import Evaluation, evaluate, metrics
from mltk.classify.lr_finder import find_lr
from mltk.classify.settings import TrainSettings
from mltk.classify.summary import TrainingSummary
from mltk.classify.trainer import Trainer
from mltk.classify.training import train

__all__ = ["Classifier", "Evaluation", "Trainer", "TrainSettings", "TrainingSummary",
           "evaluate", "find_lr", "metrics", "train"]
