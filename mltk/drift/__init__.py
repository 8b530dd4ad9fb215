"""Drift: are the rows being scored like the rows a model learned from?

A :class:`DataProfile` is a compact summary of a table (per numeric feature, the shares of
rows in its training quantile bins; per categorical feature, the share of each level; and
every feature's missing-value rate). ``xgb-analyze`` saves one of its training rows as
``data_profile.json`` in the model folder. :func:`compare` measures new rows against it: the
population stability index (PSI) per feature, the share of missing values and the categories
never seen in training, with a status from the usual thresholds (:data:`WATCH` 0.1,
:data:`DRIFT` 0.25).

    from mltk.drift import DataProfile, compare, load_reference

    profile = DataProfile.from_frame(train_df)          # or load_reference("analysis/")
    result = compare(profile, new_df)
    result.records()                                    # feature, psi, missing_rate, ...

Modules: ``profile`` (building, saving and loading profiles), ``comparison`` (PSI and the
result), ``report`` (the HTML report).
"""

from mltk.drift.comparison import DRIFT, WATCH, DriftResult, FeatureDrift, compare
from mltk.drift.profile import PROFILE_FILE, DataProfile, load_reference

__all__ = ["DRIFT", "PROFILE_FILE", "WATCH", "DataProfile", "DriftResult", "FeatureDrift",
           "compare", "load_reference"]
