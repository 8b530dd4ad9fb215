"""xgb-analyze in one process against `--dask local:N`, and `--external-memory`, same run.

On a generated `purchases` table (default 100k rows, a couple of minutes on 2 cores; the
issue's full run is --rows 5000000 --boosters dart,gbtree) written as Parquet parts: for each
booster, the wall time of each mode, the peak memory of each process (the one-process run;
the client and every worker of the Dask run; the external-memory run), the test AUC, and the
external-memory run's seconds per boosting round. Each run is the `mltk xgb-analyze` command
in a subprocess, its peak taken from the kernel (wait4) and the workers' from the report.

Run: .venv/bin/python benchmarks/bench_xgb_dask.py [--rows 100000] [--workers 2]
     [--boosters gbtree] [--max-evals 5] [--row-group 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024


def mltk() -> list[str]:
    exe = Path(sys.executable).with_name("mltk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mltk"]


def run(args: list[str], out: Path) -> dict:
    """Run `mltk xgb-analyze ... --out OUT -q`; wall seconds, peak RSS (bytes), report."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(mltk() + ["xgb-analyze", *args, "--out", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mltk xgb-analyze {' '.join(args)} failed:\n{err[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"wall": wall, "peak": usage.ru_maxrss * 1024, "report": report}


def write_table(rows: int, folder: Path, parts: int, row_group: int) -> None:
    """The table as one Parquet file (one process, external memory) and as parts (Dask)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mltk.datasets.purchases import generate

    df = generate(rows, seed=0)
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, folder / "users.parquet", row_group_size=row_group)
    (folder / "parts").mkdir()
    size = -(-rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * size, size), folder / "parts" / f"part-{i:05d}.parquet",
                       row_group_size=row_group)
    print(f"{rows:,} rows: {df.memory_usage(deep=True).sum() / MB:,.0f} MB in pandas; "
          f"{parts} parts, row groups of {row_group:,}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--boosters", default="gbtree", help="comma-separated: dart,gbtree")
    parser.add_argument("--max-evals", type=int, default=5)
    parser.add_argument("--row-group", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_table(args.rows, root, max(2 * args.workers, 4), args.row_group)
        for booster in args.boosters.split(","):
            common = ["--target", "group", "--id-cols", "user_id", "--booster", booster,
                      "--max-evals", str(args.max_evals), "--seed", "0"]
            one = run([str(root / "users.parquet"), *common], root / f"one-{booster}")
            dist = run([str(root / "parts"), *common, "--dask", f"local:{args.workers}"],
                       root / f"dask-{booster}")
            ext = run([str(root / "users.parquet"), *common, "--external-memory"],
                      root / f"ext-{booster}")
            report(booster, one, dist, ext)


def report(booster: str, one: dict, dist: dict, ext: dict) -> None:
    workers = dist["report"]["cluster"]["worker_peak_rss_bytes"]
    worst = max(workers.values())
    print(f"\n{booster}:")
    print(f"  one process       {one['wall']:7.1f} s  peak {one['peak'] / MB:6.0f} MB  "
          f"AUC {one['report']['metrics']['roc_auc']:.4f}")
    print(f"  --dask local:{len(workers)}    {dist['wall']:7.1f} s  client peak "
          f"{dist['peak'] / MB:6.0f} MB, workers "
          + ", ".join(f"{v / MB:.0f}" for v in workers.values())
          + f" MB  AUC {dist['report']['metrics']['roc_auc']:.4f}")
    print(f"  --external-memory {ext['wall']:7.1f} s  peak {ext['peak'] / MB:6.0f} MB  "
          f"AUC {ext['report']['metrics']['roc_auc']:.4f}  "
          f"{ext['report']['external_memory']['seconds_per_round']:.3f} s/round")
    print(f"  dask / one process: wall {dist['wall'] / one['wall']:.2f}x (target <= 1.2), "
          f"largest worker peak {worst / one['peak']:.2f}x (target <= 0.6)", flush=True)


if __name__ == "__main__":
    main()
