"""A fitted recommender: the candidate index, the two networks and the settings, in memory.

:func:`mltk.recommend.fit` returns one; :meth:`Recommender.save` writes it as a model folder
(every file atomically, ``config.yaml`` last, since it is what marks a model folder) and
:meth:`Recommender.load` reads one back, including folders written by earlier versions. A
query without a user id only needs the index; Keras is loaded for per-user queries only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mltk._json import read_or_none
from mltk.errors import InputError
from mltk.recommend.features import context_matrix, user_features
from mltk.recommend.index import CandidateIndex, Recommendation, check_k
from mltk.recommend.queries import QueryRow
from mltk.recommend.settings import ColumnSettings, RecommendSettings

log = logging.getLogger(__name__)

#: What fitting learns besides the networks, saved in config.yaml beside the settings.
FITTED_KEYS = ("n_meta", "context_stats", "user_stats", "item_stats")
MODEL_FILES = {"classifier": "classifier.keras", "ranknet": "ranknet.keras"}


class Recommender:
    """Similar items for a query item (and optionally a user), from a fitted model.

    ``fitted`` holds the numbers of :data:`FITTED_KEYS`; ``report`` the fit metrics
    (metrics.json); ``rules`` and ``meta`` the association rules and meta-categories. A
    recommender loaded from a folder reads its networks and users from there when needed.
    """

    def __init__(self, index: CandidateIndex, settings: RecommendSettings,
                 fitted: Mapping[str, Any] | None = None, *, classifier: Any = None,
                 ranknet: Any = None, users: Any = None, rules: Any = None, meta: Any = None,
                 report: Mapping[str, Any] | None = None,
                 folder: str | os.PathLike | None = None) -> None:
        self.index = index
        self.settings = settings
        self.fitted = {key: (fitted or {}).get(key) for key in FITTED_KEYS}
        self.report = dict(report or {})
        self.rules, self.meta = rules, meta
        self.folder = Path(folder) if folder is not None else None
        self._models = {"classifier": classifier, "ranknet": ranknet}
        self._users = users
        #: drops candidates that show the same product as the query or a better-ranked
        #: candidate (``split(query_id, items)``: :class:`mltk.similar.itemdups.DuplicateItems`)
        self.duplicates: Any = None

    # -- files --------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike) -> Recommender:
        """The recommender saved in ``folder`` (by :meth:`save` or ``mltk recommend fit``)."""
        from mltk import _config

        folder = Path(folder)
        cfg_file = folder / "config.yaml"
        if not cfg_file.exists():
            raise InputError(f"{folder}: not a recommend model folder (no config.yaml)")
        cfg = _config.load_yaml(cfg_file)
        settings = settings_of(cfg, str(cfg_file))
        index = CandidateIndex.load(folder, field_names(settings.columns))
        return cls(index, settings, cfg, report=read_or_none(folder / "metrics.json"),
                   folder=folder)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the model folder: rules.csv, meta_categories.csv, index.parquet, the networks
        (.keras), users.parquet (when fitted with users), metrics.json and config.yaml."""
        from mltk import _config
        from mltk._atomic import atomic_path, write_json
        from mltk.recommend.rules import write_rules
        from mltk.tracking.mlmodel import write_mlmodel

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        # config.yaml marks a complete folder: gone while the files change, written last, so an
        # interrupted save over an older model leaves a folder that does not load, not a mix.
        (out / "config.yaml").unlink(missing_ok=True)
        if self.meta is not None:
            write_rules(out, self.rules, self.meta)
        else:
            self._copy(out, "rules.csv", "meta_categories.csv")
        self.index.save(out)
        for name, file in MODEL_FILES.items():
            if self._models[name] is None:
                self._copy(out, file)
                continue
            with atomic_path(out / file) as tmp:
                self._models[name].save(tmp)
        if self._users is not None:
            with atomic_path(out / "users.parquet") as tmp:
                self._users.to_parquet(tmp, index=False)
        elif self.fitted["user_stats"] is not None:
            self._copy(out, "users.parquet")
        if self.report:
            write_json(out / "metrics.json", self.report)
        write_mlmodel(out, "recommender")  # mlflow.pyfunc.load_model(out) queries it
        _config.save(out / "config.yaml", {**self.settings.to_dict(), **self.fitted})
        return out

    def _copy(self, out: Path, *names: str) -> None:
        """Files not held in memory come from the folder this recommender was loaded from."""
        import shutil

        from mltk._atomic import atomic_path

        if self.folder is None or self.folder.resolve() == out.resolve():
            return
        for name in names:
            if (self.folder / name).exists():
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(self.folder / name, tmp)

    def model(self, name: str) -> Any:
        """The ``classifier`` or ``ranknet`` Keras model (read from the folder on first use)."""
        if self._models[name] is None:
            if self.folder is None or not (self.folder / MODEL_FILES[name]).exists():
                raise InputError(f"this recommender has no {name} model")
            from mltk._keras import import_keras

            self._models[name] = import_keras().models.load_model(
                self.folder / MODEL_FILES[name])
        return self._models[name]

    def users(self) -> Any:
        """The user features it was fitted with (read from the folder on first use)."""
        import pandas as pd

        if self.fitted["user_stats"] is None:
            raise InputError("this model was fitted without user features; queries with a "
                             "user id are not available")
        if self._users is None:
            self._users = pd.read_parquet(self.folder / "users.parquet")
        return self._users

    # -- queries ------------------------------------------------------------------------------
    def _user_metas(self, item_row: int, user_id: Any) -> Any:
        import numpy as np
        import pandas as pd

        users = self.users()
        clf = self.model("classifier")
        if user_id not in set(users["user_id"].tolist()):
            raise InputError(f"unknown user id {user_id!r}")
        ufeat, _ = user_features(users, np.array([user_id]), self.fitted["user_stats"])
        t = self.index.table.iloc[[item_row]]
        cols = self.settings.columns
        fake = pd.DataFrame({cols.price: t["price"].to_numpy()})
        for j, f in enumerate(cols.kind_flags):
            fake[f] = float(t["kind_code"].iloc[0] == j)
        sex = int(t["sex_code"].iloc[0])
        for j, f in enumerate(cols.sex_flags):
            fake[f] = float((sex >> (len(cols.sex_flags) - 1 - j)) & 1) if sex >= 0 else np.nan
        X, _ = context_matrix(t["meta_id"].to_numpy(), int(self.fitted["n_meta"]), fake,
                              self.settings, ufeat, self.fitted["context_stats"])
        proba = clf.predict(X, verbose=0)[0]
        return np.argsort(-proba)[: self.settings.top_meta]

    def check_k(self, k: Any) -> int:
        """``k`` as an int (None: the ``k`` setting), or an InputError naming it."""
        return check_k(self.settings.k if k is None else k)

    def query(self, item_id: Any, k: int | None = None, user_id: Any = None,
              explain: bool = False) -> Recommendation:
        """The k most similar items (``k``: a positive integer, default the ``k`` setting). A
        query item without a price or a kind/sex flag is an InputError naming both."""
        k = self.check_k(k)
        metas = None
        if user_id is not None:
            row = self.index.row(item_id)
            self.index.require_filter_fields(row)  # before the classifier is loaded
            metas = self._user_metas(row, user_id)
        if self.duplicates is not None:
            return self._distinct(item_id, k, metas, explain)
        return self.index.query(item_id, k, float(self.settings.price_band), metas, explain,
                                self.settings.relax_price_band)

    def _distinct(self, item_id: Any, k: int, metas: Any, explain: bool) -> Recommendation:
        """The k best candidates that are no duplicates (of the query item or of a better
        one): more are fetched until k remain or the candidates run out."""
        fetch = 2 * k
        while True:
            rec = self.index.query(item_id, fetch, float(self.settings.price_band), metas,
                                   explain, self.settings.relax_price_band)
            kept, dropped = self.duplicates.split(rec.item_id, rec.items)
            if len(kept) >= k or len(rec.items) < fetch:
                break
            fetch *= 4
        if len(kept) > k:  # what was dropped above the k-th result only
            last = next(i for i, it in enumerate(rec.items) if it is kept[k - 1])
            kept, dropped = self.duplicates.split(rec.item_id, rec.items[: last + 1])
        items = [{**it, "rank": r + 1} for r, it in enumerate(kept[:k])]
        note = rec.note if rec.note and not rec.note.startswith("only ") else None
        if len(items) < k:
            note = f"only {len(items)} of {k} candidates survive the filters" + (
                f" once {len(dropped)} duplicates are dropped" if dropped else "")
        info = {**rec.explain, "returned": len(items), "duplicates": dropped} if explain \
            and rec.explain else rec.explain
        return Recommendation(rec.item_id, items, info, note)

    def batch(self, rows: Iterable[Mapping[str, Any] | QueryRow], k: int | None = None,
              explain: bool = False) -> Iterator[dict[str, Any]]:
        """One record per input row (a mapping with item_id[, user_id], or a QueryRow from
        ``read_queries``); a bad row gives an error record and the rest go on. Records: row,
        item_id, user_id, recommendations, note, [explain], error, line (the row's line in its
        file, else None); errors of rows read from a file start with ``line N:``. ``k`` is
        checked at once, before the first row."""
        return self._batch(rows, self.check_k(k), explain)

    def _batch(self, rows: Iterable[Any], k: int, explain: bool) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            line, fields, error = _unpack(row)
            record = {"row": i, "item_id": fields.get("item_id"),
                      "user_id": fields.get("user_id"), "recommendations": [], "note": None,
                      **({"explain": None} if explain else {}), "error": None, "line": line}
            if error is None and record["item_id"] is None:
                error = "no item_id"
            if error is None:
                try:
                    rec = self.query(record["item_id"], k, record["user_id"], explain)
                    record.update(item_id=rec.item_id, recommendations=rec.items, note=rec.note,
                                  **({"explain": rec.explain} if explain else {}))
                except InputError as exc:
                    error = str(exc)
            if error is not None:
                record["error"] = error if line is None else f"line {line}: {error}"
            yield record


def settings_of(cfg: Mapping[str, Any], origin: str) -> RecommendSettings:
    """The settings saved in a model folder's config.yaml (its fitted numbers and keys this
    version does not know are left out); an error names the file."""
    known = set(RecommendSettings.field_names())
    unknown = sorted(set(cfg) - known - set(FITTED_KEYS))
    if unknown:
        log.debug(f"{origin}: ignoring unknown key(s) {', '.join(map(str, unknown))}")
    values = {key: value for key, value in cfg.items() if key in known}
    return RecommendSettings.from_config(values, origins=dict.fromkeys(values, origin))


def field_names(cols: ColumnSettings) -> dict[str, str]:
    """How query errors name the fields the filters compare: the configured columns."""
    return {"price": f"column {cols.price!r}", "kind": "columns " + ", ".join(cols.kind_flags),
            "sex": "columns " + ", ".join(cols.sex_flags)}


def _unpack(row: Any) -> tuple[int | None, Mapping[str, Any], str | None]:
    """(line, fields, error) of a batch row."""
    if isinstance(row, QueryRow):
        return row.line, row.fields, row.error
    if isinstance(row, Mapping):
        return None, row, None
    return None, {}, f"expected a mapping with an item_id, got {type(row).__name__}"
