"""xgb-analyze --external-memory: a Parquet table in many row groups analysed one row group at
a time, the process's peak memory measured (resource, in a subprocess) against the table's
size in memory."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from mltk.errors import InputError

FAST = {"booster": "gbtree", "max_evals": 1, "folds": 2, "max_rounds": 30, "tune_rows": 3000,
        "explain_rows": 1000, "permutation_repeats": 1, "seed": 0}

# A first analysis of a small table (one of the parts) loads every library and warms the
# allocators, so that the growth of the peak over it is what the big table costs.
MEASURE = """
import json, resource, sys
import mltk.settings
from mltk.xgb.external import analyze_external

settings = mltk.settings.load("xgb", **json.loads(sys.argv[3]))
analyze_external(sys.argv[2], "group", settings, id_cols=["user_id"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
a = analyze_external(sys.argv[1], "group", settings, id_cols=["user_id"])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "after": after, "auc": a.metrics["roc_auc"],
                  "report": a.report, "top": [f["feature"] for f in a.report["importance"]]}))
"""


@pytest.mark.slow
def test_external_memory_streams_row_groups_with_its_peak_measured(tmp_path):
    """300k users with 30 extra columns (98 MB in pandas) in 3 files of 5 row groups. The
    peak's growth over a warm-up run is bounded by the table's size: nothing holds the table
    in pandas, let alone the several copies an in-memory run makes. (It is not far below it:
    XGBoost's own ExtMemQuantileDMatrix grows with the rows; see the notes of issue 24.)"""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mltk.datasets.purchases import generate

    folder = tmp_path / "table"
    folder.mkdir()
    table_bytes = rows = 0
    for i in range(3):
        df = generate(100_000, seed=i)
        df["user_id"] += i * 100_000
        rng = np.random.default_rng(i)
        for j in range(30):
            df[f"extra_{j:02d}"] = rng.standard_normal(len(df))
        table_bytes += int(df.memory_usage(deep=True).sum())
        rows += len(df)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False),
                       folder / f"part-{i}.parquet", row_group_size=20_000)
    result = subprocess.run([sys.executable, "-c", MEASURE, str(folder),
                             str(folder / "part-0.parquet"), json.dumps(FAST)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cache file" not in result.stderr  # the cache outlives no DMatrix
    got = json.loads(result.stdout)
    growth = got["after"] - got["before"]
    print(f"peak growth {growth / 2**20:.0f} MB for a {table_bytes / 2**20:.0f} MB table")
    assert growth < 1.5 * table_bytes, (growth, table_bytes)
    ext = got["report"]["external_memory"]
    assert ext["row_groups"] == 15 and ext["rows_read"] == rows == got["report"]["data"]["rows"]
    assert ext["seconds_per_round"] > 0
    assert got["auc"] > 0.8
    assert {"coupon_first_order", "sessions_30d"} <= set(got["top"][:4])


def test_external_memory_reads_parquet_only(tmp_path, cli):
    from mltk.xgb.external import analyze_external

    pd.DataFrame({"a": [1, 2], "g": ["x", "y"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="reads Parquet"):
        analyze_external(tmp_path / "t.csv", "g")
    pd.DataFrame({"a": [1.0, 2.0], "g": ["x", "y"]}).to_parquet(tmp_path / "t.parquet")
    result = cli("xgb-analyze", tmp_path / "t.parquet", "--target", "nope",
                 "--external-memory", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "target column 'nope' not found" in result.stderr
