"""Classifier models: a keras.applications backbone (or a small CNN) with a new softmax head.

Every model takes images in [-1, 1]. Backbones that expect another range get a fixed
conversion inside the model (so a saved ``.keras`` file needs no preprocessing code beside it):
InceptionResNetV2 uses [-1, 1] itself; EfficientNetV2 and MobileNetV3 have their own rescaling
from 0..255; ResNet50 expects Caffe-style BGR minus the ImageNet mean, done by a frozen 1x1
convolution. The head's softmax runs in float32 under mixed precision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mltk._keras import import_keras
from mltk.errors import InputError, MltkError, describe

# name -> (keras.applications constructor name, input conversion, smallest input side)
BACKBONES: dict[str, tuple[str, str, int]] = {
    "inception_resnet_v2": ("InceptionResNetV2", "unit", 75),
    "resnet50": ("ResNet50", "caffe", 32),
    "efficientnetv2_b0": ("EfficientNetV2B0", "to255", 32),
    "mobilenet_v3_small": ("MobileNetV3Small", "to255", 32),
}
MODELS = (*BACKBONES, "small_cnn")
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def convert_input(x: Any, mode: str) -> Any:
    keras = import_keras()
    layers = keras.layers
    if mode == "to255":
        return layers.Rescaling(127.5, offset=127.5, name="to_0_255")(x)
    if mode == "caffe":
        import numpy as np

        # out[c] = 127.5 * (x[2 - c] + 1) - mean[c]: RGB in [-1, 1] -> BGR 0..255 minus mean.
        kernel = np.zeros((1, 1, 3, 3), np.float32)
        for c in range(3):
            kernel[0, 0, 2 - c, c] = 127.5
        bias = np.array([127.5 - m for m in IMAGENET_BGR_MEAN], np.float32)
        conv = layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
        y = conv(x)
        conv.set_weights([kernel, bias])
        return y
    return x


def small_cnn(x: Any) -> Any:
    """Four conv blocks with batch norm: fast on a CPU, enough for digits or a smoke test."""
    layers = import_keras().layers
    for i, width in enumerate((32, 64, 128, 128)):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # Momentum 0.9, not Keras' 0.99: see _track_batch_statistics.
        x = layers.BatchNormalization(momentum=FROM_SCRATCH_BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    return x


def build_model(name: str, num_classes: int, image_size: int, weights: str = "none",
                dropout: float = 0.2, freeze_base: bool = False,
                trainable_layers: int | None = None) -> Any:
    """An uncompiled Keras model: [-1, 1] images -> class probabilities."""
    keras = import_keras()
    layers = keras.layers
    if name not in MODELS:
        raise InputError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    if num_classes < 2:
        raise InputError(f"a classifier needs at least 2 classes, got {num_classes}")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    weights_file = None if weights in ("none", "imagenet", None) else Path(weights)
    if weights_file is not None and not weights_file.exists():
        raise InputError(f"{weights_file}: no such weights file")
    if name == "small_cnn":
        if weights == "imagenet":
            raise InputError("small_cnn has no ImageNet weights (`weights` none, or a file)")
        features = small_cnn(inputs)
        base = None
    else:
        cls_name, mode, min_side = BACKBONES[name]
        if image_size < min_side:
            raise InputError(f"{name} needs an `image_size` of at least {min_side}")
        ctor = getattr(keras.applications, cls_name)
        kwargs: dict[str, Any] = {"include_top": False,
                                  "weights": "imagenet" if weights == "imagenet" else None,
                                  "input_shape": (image_size, image_size, 3)}
        if mode == "to255":
            kwargs["include_preprocessing"] = True
        try:
            base = ctor(**kwargs)
        except Exception as exc:
            if weights == "imagenet" and _looks_like_download_error(exc):
                raise MltkError(f"could not download the ImageNet weights for {name} ({exc}); "
                                "`weights` imagenet needs network access once (they are "
                                "cached in ~/.keras/models), or use `weights` none or a "
                                "file") from None
            raise
        # Not the constructors' name= argument: EfficientNetV2 uses it to pick its blocks.
        base.name = "backbone"
        if weights in ("none", None):
            _track_batch_statistics(base)
        if freeze_base:
            _freeze(base, trainable_layers)
        x = convert_input(inputs, mode)
        # A frozen base runs in inference mode, so its batch-norm statistics stay as trained.
        features = base(x, training=False) if freeze_base else base(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"mltk_{name}")
    if weights_file is not None:
        load_initial_weights(model, weights_file)
    return model


FROM_SCRATCH_BN_MOMENTUM = 0.9


def _track_batch_statistics(base: Any) -> None:
    """Batch norm that follows the weights of a model trained from random weights.

    keras.applications set their batch norms' momentum for long ImageNet runs (MobileNetV3
    0.999, ResNet50 and InceptionResNetV2 0.99): over the few hundred steps of a small run from
    scratch, the moving statistics used at inference never catch up with the weights
    (MobileNetV3 on digits: 0.99 training accuracy, chance on validation). Pretrained bases keep
    their own, which match their trained statistics.
    """
    keras = import_keras()
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, FROM_SCRATCH_BN_MOMENTUM)


def _freeze(base: Any, trainable_layers: int | None) -> None:
    base.trainable = True
    keras = import_keras()
    cut = len(base.layers) - (trainable_layers or 0)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    if not trainable_layers:
        base.trainable = False


def _looks_like_download_error(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("url", "http", "download", "connection", "resolve",
                                   "network", "urlopen", "fetch"))


def load_initial_weights(model: Any, path: Path) -> None:
    """Start from PATH: a ``.keras`` model (same classes: all weights; other classes: its
    backbone) or a ``.weights.h5`` file of this architecture (or of its backbone)."""
    if path.suffix == ".keras":
        src = load_model(path)
        if src.output_shape[-1] == model.output_shape[-1]:
            try:
                model.set_weights(src.get_weights())
                return
            except ValueError:
                pass
        try:
            model.get_layer("backbone").set_weights(src.get_layer("backbone").get_weights())
        except ValueError as exc:
            raise InputError(f"{path}: its weights do not fit this model ({exc})") from None
        return
    if path.name.endswith(".weights.h5"):
        check_weights_file(path)
        for target in (model, _maybe_layer(model, "backbone")):
            if target is None:
                continue
            try:
                target.load_weights(os.fspath(path))
                return
            except ValueError:
                continue
            except Exception as exc:  # h5py: OSError for a truncated file, KeyError...
                raise InputError(f"{path}: cannot read the weights ({describe(exc)})"
                                 ) from None
        raise InputError(f"{path}: weights do not fit this model or its backbone")
    raise InputError(f"{path}: weights must be a .keras model or a .weights.h5 file")


def _maybe_layer(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def check_weights_file(path: Path) -> None:
    """An HDF5 file, or an :class:`InputError` naming it (before h5py's own words)."""
    import h5py

    if not h5py.is_hdf5(os.fspath(path)):
        raise InputError(f"{path}: not a Keras .weights.h5 file (no HDF5 signature: damaged, "
                         "or another format)")


def load_model(path: str | os.PathLike) -> Any:
    """A saved mltk ``.keras`` model, for inference (no optimizer)."""
    import zipfile

    keras = import_keras()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such model file")
    if not zipfile.is_zipfile(p):  # Keras would answer "File not found"
        raise InputError(f"{p}: not a Keras model file (a .keras file is a zip archive; this "
                         "one is damaged, or another format)")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:
        raise InputError(f"{p}: cannot load the model ({describe(exc)})") from None
