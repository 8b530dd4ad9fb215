"""XGBoost's C functions called directly: a server's few rows, scored without the wrappers.

Scoring one row through the Python package (``DMatrix(...)`` then ``Booster.predict``) spends
~150 us in Python around a handful of calls of the library's public C API (dispatch on the
input's type, array interfaces built through a class made per call, feature checks, the
output's wrapping): more than the trees of a small model take. :class:`DensePredictor` makes
those same C calls with the same arguments: a DMatrix of the float64 array (NaN missing, one
thread) with the model's feature names and types, the booster's predict of values from it,
every tree, then the DMatrix freed. The numbers are therefore those of the wrappers, for every
booster (``inplace_predict`` would be faster still, but sums DART's trees in another order:
1 ulp apart now and then). Anything unexpected (a library without these functions, an error,
an output that is not one value per row) is answered by the wrappers, and the direct calls are
not tried again.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from typing import Any

#: The wrappers' own arguments: DMatrix(data, missing=NaN, nthread=1) of a row-split matrix;
#: Booster.predict(dmatrix) (values, not training, every tree).
_DMATRIX_CONFIG = json.dumps({"missing": float("nan"), "nthread": 1,
                              "data_split_mode": 0}).encode()
_PREDICT_CONFIG = json.dumps({"type": 0, "training": False, "iteration_begin": 0,
                              "iteration_end": 0, "strict_shape": False}).encode()


class DensePredictor:
    """``predict(matrix)``: the booster's values (float32, one per row) for a 2-D float64
    array of the features in the model's order, as ``booster.predict(xgb.DMatrix(matrix,
    feature_names=names, feature_types=types, enable_categorical=True, nthread=1))``."""

    def __init__(self, booster: Any, names: Sequence[str], types: Sequence[str]) -> None:
        self.booster = booster
        self.names = list(names)
        self.types = list(types)
        self._lib = _library()
        self._names = _c_strings(self.names)
        self._types = _c_strings(self.types)

    @property
    def direct(self) -> bool:
        """Whether the C functions are called directly (else the wrappers are)."""
        return self._lib is not None

    def __call__(self, matrix: Any) -> Any:
        import numpy as np

        if self._lib is not None and matrix.dtype == np.float64 and matrix.ndim == 2 \
                and matrix.flags.c_contiguous and len(matrix) \
                and matrix.shape[1] == len(self.names):
            out = self._direct(matrix)
            if out is not None:
                return out
            self._lib = None  # not as expected: the wrappers from now on
        return self._wrapped(matrix)

    def _wrapped(self, matrix: Any) -> Any:
        import xgboost as xgb

        data = xgb.DMatrix(matrix, feature_names=self.names, feature_types=self.types,
                           enable_categorical=True, nthread=1)
        return self.booster.predict(data)

    def _direct(self, matrix: Any) -> Any:
        import numpy as np

        lib = self._lib
        rows, cols = matrix.shape
        interface = (f'{{"data": [{matrix.ctypes.data}, true], "shape": [{rows}, {cols}], '
                     f'"strides": null, "typestr": "<f8", "version": 3}}').encode()
        handle = ctypes.c_void_p()
        if lib.XGDMatrixCreateFromDense(interface, _DMATRIX_CONFIG, ctypes.byref(handle)):
            return None
        try:
            n = ctypes.c_uint64(cols)
            if lib.XGDMatrixSetStrFeatureInfo(handle, b"feature_name", self._names, n) \
                    or lib.XGDMatrixSetStrFeatureInfo(handle, b"feature_type", self._types, n):
                return None
            shape = ctypes.POINTER(ctypes.c_uint64)()
            dims = ctypes.c_uint64()
            out = ctypes.POINTER(ctypes.c_float)()
            if lib.XGBoosterPredictFromDMatrix(self.booster.handle, handle, _PREDICT_CONFIG,
                                               ctypes.byref(shape), ctypes.byref(dims),
                                               ctypes.byref(out)) \
                    or dims.value != 1 or shape[0] != rows:
                return None
            # the library's buffer is reused by the next call in this thread: copy it
            return np.frombuffer(ctypes.string_at(out, 4 * rows), dtype=np.float32).copy()
        finally:
            lib.XGDMatrixFree(handle)


def _c_strings(values: Sequence[str]) -> Any:
    return (ctypes.c_char_p * len(values))(*[v.encode() for v in values])


def _library() -> Any:
    """The loaded XGBoost library with the argument types of the functions used, or None."""
    try:
        from xgboost import libpath

        lib = ctypes.cdll.LoadLibrary(libpath.find_lib_path()[0])
        functions = {
            "XGDMatrixCreateFromDense": [ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.POINTER(ctypes.c_void_p)],
            "XGDMatrixSetStrFeatureInfo": [ctypes.c_void_p, ctypes.c_char_p,
                                           ctypes.POINTER(ctypes.c_char_p), ctypes.c_uint64],
            "XGBoosterPredictFromDMatrix": [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                ctypes.POINTER(ctypes.POINTER(ctypes.c_uint64)),
                ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.POINTER(ctypes.c_float))],
            "XGDMatrixFree": [ctypes.c_void_p]}
        for name, argtypes in functions.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
    except (ImportError, OSError, AttributeError, IndexError):
        return None
    return lib
