"""The one interface every servable mltk model has: kind, schema, ``predict`` on a batch.

A predictor is opened from a folder mltk wrote (or the word ``colors``), loads its model once,
and scores in-memory inputs: image bytes, table rows or queries. Work is split in two stages so
that a server can spread them: :meth:`Predictor.prepare` turns one raw input into what the
model needs (decoding, checking; it raises :class:`~mltk.errors.InputError` for a bad input) and
:meth:`Predictor.predict_prepared` scores a list of prepared inputs in one call.
:meth:`Predictor.predict` does both and returns one :data:`Outcome` per input, in order, so a
bad input never takes the rest of the batch down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from mltk.errors import InputError

#: One input's result: its record, or the error that made it unusable.
Outcome = dict[str, Any] | InputError


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named input or output, as the Open Inference Protocol describes it.

    For an output, ``fields`` are the record's keys that fill it, one per position of its last
    dimension (``label``, ``label_2``, ``label_3`` for a ``[-1, 3]`` tensor); by default the
    key of its name. The V2 metadata and the V2 responses are both made from these
    declarations, so a response holds exactly the outputs the metadata lists.
    """

    name: str
    datatype: str  # BYTES, FP32, FP64, INT64, BOOL
    shape: tuple[int, ...]  # -1 for a variable dimension
    fields: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Predictor:
    """Base class: subclasses set the class attributes and implement the two stages."""

    #: ``image-classifier``, ``two-group``, ``recommender`` or ``colors``
    kind: ClassVar[str] = ""
    #: what one input is: ``image`` (bytes), ``row`` (a mapping of column -> value) or
    #: ``query`` (a mapping with item_id, optional user_id and k)
    input_kind: ClassVar[str] = ""
    #: whether concurrent requests gain from being scored together (adaptive batching)
    batchable: ClassVar[bool] = False
    #: a server scores a request of at most this many inputs on its event loop, without a
    #: thread hop, when no batching applies: for a model that scores that many in well under a
    #: millisecond, safely from any thread (0: never)
    inline_inputs: ClassVar[int] = 0

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source

    # -- schema ------------------------------------------------------------------------------
    def inputs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def outputs(self) -> list[TensorSpec]:
        """The V2 output tensors, made from each record (see :class:`TensorSpec`)."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata: name, platform, inputs, outputs (and mltk's kind)."""
        return {"name": self.name, "versions": ["1"], "platform": f"mltk-{self.kind}",
                "inputs": [t.to_dict() for t in self.inputs()],
                "outputs": [t.to_dict() for t in self.outputs()],
                "parameters": {"kind": self.kind, "source": self.source}}

    # -- work --------------------------------------------------------------------------------
    def prepare(self, item: Any) -> Any:
        """Check and decode one input; raise InputError when it cannot be used."""
        return item

    def predict_prepared(self, prepared: Sequence[Any]) -> list[Outcome]:
        raise NotImplementedError

    def prepare_all(self, items: Sequence[Any]) -> list[tuple[bool, Any]]:
        """``(True, prepared)`` or ``(False, InputError)`` per input, in order."""
        staged: list[tuple[bool, Any]] = []
        for item in items:
            try:
                staged.append((True, self.prepare(item)))
            except InputError as exc:
                staged.append((False, exc))
        return staged

    def predict(self, items: Sequence[Any]) -> list[Outcome]:
        """One outcome per input, in order: a record, or the InputError for a bad input."""
        staged = self.prepare_all(items)
        good = prepared_inputs(staged)
        return merge_outcomes(staged, self.predict_prepared(good) if good else [])

    def limit_threads(self, n: int) -> None:
        """Use at most ``n`` threads per call (a server runs many calls side by side)."""

    def warmup(self) -> None:
        """One real prediction, so the first request does not pay for compilation."""
        outcome = self.predict([self.example()])[0]
        if isinstance(outcome, InputError):
            raise InputError(f"model {self.name!r}: warm-up prediction failed ({outcome})")

    def example(self) -> Any:
        """An input this model accepts (used for the warm-up)."""
        raise NotImplementedError


def prepared_inputs(staged: Sequence[tuple[bool, Any]]) -> list[Any]:
    """The inputs of :meth:`Predictor.prepare_all` that were prepared, in order."""
    return [x for ok, x in staged if ok]


def merge_outcomes(staged: Sequence[tuple[bool, Any]], scored: Sequence[Outcome]) -> list[Outcome]:
    """One outcome per input, in order: the scores of the prepared inputs (``scored``, in their
    order) with the InputError of each input that could not be prepared."""
    it = iter(scored)
    return [next(it) if ok else x for ok, x in staged]

