"""The one way mltk imports Keras and TensorFlow: once, quietly, with one narrow warning filter.

Keras' TensorFlow backend converts NumPy arrays through ``__array__`` without the ``copy``
keyword, which NumPy 2 reports as a DeprecationWarning on every call; that one message, and
only when Keras raises it, is ignored so that warnings on stderr stay worth reading.
"""

from __future__ import annotations

import warnings
from typing import Any

from mltk._quiet import import_quietly
from mltk.errors import MltkError

_NUMPY_COPY_MESSAGE = r".*__array__ implementation doesn't accept a copy keyword"


def import_keras() -> Any:
    """Keras 3, imported with the native start-up chatter of its backend muted."""
    warnings.filterwarnings("ignore", message=_NUMPY_COPY_MESSAGE, category=DeprecationWarning,
                            module=r"keras(\.|$)")
    return import_quietly("keras")


def import_tf() -> Any:
    """TensorFlow, or a clear error saying what needs it."""
    try:
        return import_quietly("tensorflow")
    except ImportError:
        raise MltkError("this needs TensorFlow (the tf.data input pipeline, or the tensorflow "
                        "backend): pip install tensorflow; synthetic data with the jax backend "
                        "runs without it") from None
