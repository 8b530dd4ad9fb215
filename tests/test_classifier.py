"""mltk.classify's two public objects without training: Trainer's set-up and a Classifier
loaded from a run folder (a model saved untrained; its numbers are not what is checked)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mltk.errors import ConfigError, InputError

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as mltk train leaves it: best.keras, labels.txt, config.yaml."""
    from mltk.classify.models import build_model

    run = tmp_path_factory.mktemp("run")
    build_model("small_cnn", 3, 32).save(run / "best.keras")
    (run / "labels.txt").write_text("cat\ndog\nfox\n")
    (run / "config.yaml").write_text("model: small_cnn\nimage_size: 32\nbackend: tensorflow\n")
    return run


def _png(h: int, w: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (h, w, 3),
                                                                     dtype=np.uint8))
    return buf.tobytes()


def test_classifier_knows_its_classes_size_and_features(run_dir):
    from mltk.classify import Classifier

    clf = Classifier.load(run_dir, gpus=0, need_tf=False)
    assert clf.classes == ["cat", "dog", "fox"] and clf.image_size == 32
    assert clf.path == run_dir / "best.keras" and clf.config["model"] == "small_cnn"
    x = clf.preprocess(_png(50, 70))
    assert x.shape == (32, 32, 3) and x.dtype == np.float32 and -1 <= x.min() <= x.max() <= 1
    probs = clf.predict_batch([x, x])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    features = clf.embed_batch([x, x, x])
    assert features.shape == (3, 128)  # small_cnn's last block, pooled
    np.testing.assert_allclose(features[0], features[2])
    row = clf.top_labels(probs[0], 2)
    assert list(row) == ["label", "probability", "label_2", "probability_2"]
    assert row["label"] == clf.classes[int(np.argmax(probs[0]))]
    with pytest.raises(InputError, match="not an image"):
        clf.preprocess(b"not an image")


def test_classifier_predicts_files_in_order_with_error_rows(run_dir, tmp_path):
    from mltk.classify import Classifier

    clf = Classifier.load(run_dir, gpus=0, need_tf=False)
    good = tmp_path / "a.png"
    good.write_bytes(_png(40, 40))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"garbage")
    rows = list(clf.predict_paths([good, bad, tmp_path / "missing.png", good], top_k=5,
                                  batch_size=3))
    assert [r["path"] for r in rows] == [str(good), str(bad), str(tmp_path / "missing.png"),
                                         str(good)]
    assert rows[0]["error"] is None and rows[0]["label_3"] and "label_4" not in rows[0]
    assert rows[1]["label"] is None and rows[1]["error"]
    assert rows[2]["error"] == "file not found"
    assert rows[3] == rows[0] | {"path": str(good)}


def test_classifier_refuses_what_is_not_a_run(tmp_path):
    from mltk.classify import Classifier

    with pytest.raises(InputError, match="no best.keras or last.keras"):
        Classifier.load(tmp_path)
    (tmp_path / "x.keras").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a Keras model file"):
        Classifier.load(tmp_path / "x.keras", gpus=0)


def test_image_predictor_wraps_the_classifier(run_dir):
    from mltk.predictors import open_predictor

    p = open_predictor(str(run_dir), "pets", top_k=2)
    assert p.kind == "image-classifier" and p.image_size == 32
    (out, err) = p.predict([_png(32, 32), b"nope"])
    assert out["label"] in ("cat", "dog", "fox") and isinstance(err, InputError)
    assert p.predict([_png(32, 32)])[0] == p.classifier.top_labels(
        p.classifier.predict_batch([p.classifier.preprocess(_png(32, 32))])[0], 2)


def test_trainer_prepares_steps_batches_and_rates(tmp_path):
    from mltk import settings
    from mltk.classify import Trainer, TrainingSummary

    cfg = settings.load("train", model="small_cnn", image_size=16, gpus=0, num_classes=3,
                        steps=7, batch_per_replica=4, lr_scaling="linear", environ={})
    trainer = Trainer.prepare(cfg, synthetic=True)
    assert trainer.settings.optimizer == "adamw" and trainer.settings.seed is not None
    assert (trainer.global_batch, trainer.steps_per_epoch, trainer.total_steps) == (4, 7, 7)
    assert trainer.data.classes == ["0", "1", "2"] and trainer.best_metric == "accuracy"
    assert trainer.learning_rate == pytest.approx(
        trainer.settings.learning_rate * 4 / trainer.settings.lr_reference_batch)
    faster = trainer.with_learning_rate(0.5)
    assert faster.settings.learning_rate == 0.5 and faster.total_steps == 7
    train_ds, val_ds = trainer.datasets()
    x, y = next(iter(train_ds))
    assert tuple(x.shape) == (4, 16, 16, 3) and tuple(y.shape) == (4, 3) and val_ds is None
    with pytest.raises(ConfigError, match="early_stopping needs validation data"):
        Trainer.prepare(cfg.replace(early_stopping=2), synthetic=True)
    with pytest.raises(InputError, match="no training data"):
        Trainer.prepare(cfg)
    # The summary's keys are summary.json's (and the CLI's), in their order.
    keys = [f for f in TrainingSummary.__dataclass_fields__]
    assert keys == json.loads(json.dumps(keys)) and keys[:3] == ["run_dir", "model", "classes"]
