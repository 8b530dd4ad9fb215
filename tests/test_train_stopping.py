"""Early stopping (--early-stopping N) and class weights (--class-weight balanced|none|FILE)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mltk.errors import ConfigError

tf = pytest.importorskip("tensorflow")

SMALL = ["--model", "small_cnn", "--image-size", "32", "--gpus", "0", "--seed", "1"]


@pytest.fixture(scope="module")
def shards(digit_shards):
    """The shared 1000-digit shards (tests/conftest.py)."""
    return digit_shards


@pytest.mark.slow
def test_early_stopping_keeps_the_best_and_says_why(shards, tmp_path):
    """Validation accuracy made up per epoch by a callback that runs before mltk's own (the
    real loop, models and files otherwise): the best is at epoch 2, so with a patience of 2 the
    run ends after epoch 4, with best.keras holding epoch 2's weights and last.keras epoch 4's."""
    import keras

    from mltk import settings
    from mltk.classify import train

    made_up = [0.5, 0.7, 0.6, 0.65, 0.9, 0.95, 0.99, 0.99]
    weights = {}

    class MadeUpAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = made_up[epoch]
            weights[epoch + 1] = self.model.get_weights()

    run = tmp_path / "e"
    cfg = settings.load("train", model="small_cnn", image_size=32, gpus=0, seed=1, epochs=8,
                        early_stopping=2, class_weight="balanced", environ={})
    summary = train(cfg, run, data=[str(shards)], callbacks=[MadeUpAccuracy()])
    assert summary.stop_reason == "early_stopping" and summary.steps == 4 * 21
    assert summary.best == 0.7 and summary.best_epoch == 2
    assert summary.early_stopping == 2 and not summary.interrupted
    assert json.loads((run / "summary.json").read_text()) == summary.to_dict()
    for name, epoch in (("best.keras", 2), ("last.keras", 4)):
        saved = keras.models.load_model(run / name, compile=False).get_weights()
        for a, b in zip(saved, weights[epoch], strict=True):
            np.testing.assert_array_equal(a, b)
    assert not (run / "checkpoint").exists()  # the run is complete
    # The weights of class_weight balanced are recorded, by class name.
    saved_cfg = yaml.safe_load((run / "config.yaml").read_text())
    from mltk.classify import class_weights

    counts = class_weights.train_counts(sorted(shards.glob("train-*")), [str(i) for i in
                                                                         range(10)])
    assert sum(counts.values()) == 700
    assert saved_cfg["class_weight"] == class_weights.balanced(counts)
    assert saved_cfg["early_stopping"] == 2


def test_early_stopping_needs_validation_data(shards, cli, tmp_path):
    res = cli("train", "--data", shards, "--split", "train", "--out", tmp_path / "x", *SMALL,
              "--early-stopping", "2")
    assert res.exit_code == 1 and "early_stopping needs validation data" in res.stderr


def test_balanced_weights_are_inverse_frequencies():
    from mltk.classify.class_weights import balanced

    assert balanced({"a": 10, "b": 30}) == {"a": 2.0, "b": pytest.approx(0.666667)}
    assert balanced({"a": 10, "b": 0}) == {"a": 1.0 * 10 / (2 * 10), "b": 0.0}


def test_class_counts_from_the_manifest_match_the_records(shards):
    from mltk.classify.class_weights import counts_from_manifests, train_counts
    from mltk.tfrecords.read import count_by_label

    files = sorted(shards.glob("train-*"))
    classes = [str(i) for i in range(10)]
    from_records = {classes[r["label"]]: r["records"] for r in count_by_label(files)}
    assert counts_from_manifests(files, classes) == from_records
    assert train_counts(files, classes) == from_records


def test_class_weight_from_a_file_and_bad_settings(shards, tmp_path):
    from mltk.classify.class_weights import resolve

    files, classes = sorted(shards.glob("train-*")), [str(i) for i in range(10)]
    good = tmp_path / "w.yaml"
    good.write_text("'3': 2.5\n'7': 0.5\n")
    weights = resolve(str(good), files, classes)
    assert weights == {**{c: 1.0 for c in classes}, "3": 2.5, "7": 0.5}
    assert resolve("none", files, classes) is None
    assert resolve({"1": 3}, files, classes)["1"] == 3.0  # a mapping (a saved config.yaml)
    bad = tmp_path / "bad.json"
    bad.write_text('{"cat": 2}')
    with pytest.raises(ConfigError, match="no class named 'cat'"):
        resolve(str(bad), files, classes)
    with pytest.raises(ConfigError, match="negative"):
        resolve({"1": -1}, files, classes)
    with pytest.raises(ConfigError, match="none, balanced or a YAML/JSON file"):
        resolve("heavy", files, classes)


@pytest.mark.slow
def test_class_weights_become_per_image_sample_weights(shards):
    from mltk import settings
    from mltk.classify import Trainer

    weights = {str(i): float(i + 1) for i in range(10)}
    cfg = settings.load("train", model="small_cnn", image_size=32, gpus=0, seed=0,
                        class_weight=weights, environ={})
    trainer = Trainer.prepare(cfg, data=[str(shards)])
    assert trainer.settings.label_smoothing > 0  # one-hot targets: the weights follow anyway
    train_ds, val_ds = trainer.datasets()
    x, y, w = next(iter(train_ds))
    labels = np.argmax(y.numpy(), axis=1)
    np.testing.assert_allclose(w.numpy(), labels + 1.0)
    assert len(next(iter(val_ds))) == 2  # validation: no weights
