"""What a run trains on: :class:`TrainingData`, opened and checked by :func:`open_data`.

The training data comes from TFRecord folders, files or globs; validation data from ``val``,
else the validation split beside the training data. Before the first step every training and
validation record's CRCs are checked (``count --verify``'s check); a damaged file is read up
to its first bad record, with a warning naming the file and how many of its records are
skipped (``strict_data``: an error instead). No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from mltk.classify import data as data_mod
from mltk.classify.settings import TrainSettings
from mltk.errors import InputError

log = logging.getLogger("mltk.classify")


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What a run trains on: the training and validation sources (None for synthetic data) and
    the class names."""

    train: data_mod.DataSource | None
    validation: data_mod.DataSource | None
    classes: list[str]
    synthetic: bool = False

    @property
    def files(self) -> list[Path]:
        """Every file read (where to look for damage after a read error)."""
        if self.train is None:
            return []
        val = self.validation.files if self.validation is not None else []
        return list(dict.fromkeys([*self.train.files, *val]))


def open_data(settings: TrainSettings, data: Sequence[str] | None, val: Sequence[str] | None,
              split: str | None, synthetic: bool = False,
              strict_data: bool = False) -> TrainingData:
    """The training data of ``data`` (and ``val``, else the validation split beside it), its
    damaged records skipped with a warning (``strict_data``: an error)."""
    if synthetic:
        return TrainingData(None, None, [str(i) for i in range(settings.num_classes or 200)],
                            True)
    src = data_mod.resolve_source(data, split, prefer=data_mod.PREFERRED_TRAIN,
                                  num_classes=settings.num_classes, tolerate_damage=True)
    if val:
        val_src = data_mod.resolve_source(val, prefer=data_mod.PREFERRED_VAL,
                                          num_classes=len(src.classes), tolerate_damage=True)
    elif split is None:
        val_src = data_mod.resolve_source(data, prefer=data_mod.PREFERRED_VAL,
                                          required=False, num_classes=len(src.classes),
                                          tolerate_damage=True)
    else:
        val_src = None
    if val_src is not None and val_src.files == src.files:
        val_src = None
    src, val_src = _skip_damaged_records(src, val_src, strict_data)
    return TrainingData(src, val_src, src.classes)


def _skip_damaged_records(src: data_mod.DataSource, val_src: data_mod.DataSource | None,
                          strict: bool) -> tuple[data_mod.DataSource, data_mod.DataSource | None]:
    files = list(dict.fromkeys([*src.files, *(val_src.files if val_src else [])]))
    damage = data_mod.check_records(files)
    if damage and strict:
        more = f" (and {len(damage) - 1} more damaged file(s))" if len(damage) > 1 else ""
        raise InputError(f"{damage[0].describe()}{more}; `strict_data` refuses damaged data "
                         "(without it the records before the damage are used, with a warning)")
    for d in damage:
        log.warning("%s", d.skipped())
    src = data_mod.skip_damage(src, [d for d in damage if d.file in src.files])
    if val_src is not None:
        val_src = data_mod.skip_damage(val_src, [d for d in damage if d.file in val_src.files])
        if val_src.records == 0:
            raise InputError(f"{val_src.files[0]}: no readable validation records")
    return src, val_src
