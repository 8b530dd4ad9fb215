"""xgb-analyze in one process against `--dask local:N`, and `--external-memory`, same run.

On a generated `purchases` table (default 100k rows, a couple of minutes on 2 cores; the
issue's full run is --rows 5000000 --boosters dart,gbtree) written as Parquet parts: for each
booster, the wall time of each mode, the peak memory of each process (the one-process run;
the client and every worker of the Dask run; the external-memory run), the test AUC, and the
external-memory run's seconds per boosting round. Each run is the `mltk xgb-analyze` command
in a subprocess, its peak taken from the kernel (wait4) and the workers' from the report.

Run: .venv/bin/python benchmarks/bench_xgb_dask.py [--rows 100000] [--workers 2]
     [--boosters gbtree] [--max-evals 5] [--row-group 50000] [--modes one,dask,external]
     [--tune-on sample]

The load average is printed beside each run: on a shared machine, wall times say little
without it.

With --external ROWS, only the external-memory comparison the issue asks for: a wide table
(`purchases` and --extra-cols float columns, written in row groups) of ROWS rows, analysed
with --external-memory, against the in-memory run on a --sample of it that fits: the table's
size in pandas against the external run's peak, both AUCs and the seconds per round.
     .venv/bin/python benchmarks/bench_xgb_dask.py --external 3000000 [--sample 400000]
     [--extra-cols 80] [--max-rounds 40] [--batch-mb 64] [--fresh 200000]
The runs' own test splits differ (and so does their noise): the models are also scored on the
same --fresh rows, drawn with seeds the table never used; and --external-memory is also run on
the sample itself, so that external memory and in memory are compared on the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1024 * 1024


def mltk() -> list[str]:
    exe = Path(sys.executable).with_name("mltk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mltk"]


def run(args: list[str], out: Path, env: dict | None = None) -> dict:
    """Run `mltk xgb-analyze ... --out OUT -q`; wall seconds, peak RSS (bytes), peak own memory
    (RssAnon), report, and the load average over the run's last minute."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(mltk() + ["xgb-analyze", *args, "--out", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    anon = [0]

    def sample() -> None:  # the process's own memory: its peak RSS counts mapped files too
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    kb = next(int(x.split()[1]) for x in f if x.startswith("RssAnon"))
                anon[0] = max(anon[0], kb * 1024)
            except (OSError, StopIteration):
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mltk xgb-analyze {' '.join(args)} failed:\n{err[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"wall": wall, "peak": usage.ru_maxrss * 1024, "anon": anon[0], "report": report,
            "load": os.getloadavg()[0]}


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
    parser.add_argument("--modes", default="one,dask,external",
                        help="comma-separated: one (one process), dask, external")
    parser.add_argument("--tune-on", default="sample", choices=("sample", "cluster"),
                        help="where the Dask run's tuning trials train")
    parser.add_argument("--external", type=int, metavar="ROWS",
                        help="only the external-memory comparison, on a table of ROWS rows")
    parser.add_argument("--sample", type=int, default=400_000)
    parser.add_argument("--extra-cols", type=int, default=80)
    parser.add_argument("--max-rounds", type=int, default=40)
    parser.add_argument("--batch-mb", type=int, default=64)
    parser.add_argument("--fresh", type=int, default=200_000,
                        help="--external: fresh rows both models are scored on")
    parser.add_argument("--no-sample-run", action="store_true",
                        help="--external: skip the in-memory run on the sample")
    args = parser.parse_args()
    if args.external:
        external(args)
        return
    modes = set(args.modes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_table(args.rows, root, max(2 * args.workers, 4), args.row_group)
        for booster in args.boosters.split(","):
            common = ["--target", "group", "--id-cols", "user_id", "--booster", booster,
                      "--max-evals", str(args.max_evals), "--seed", "0"]
            one = dist = ext = None
            if "one" in modes:
                one = run([str(root / "users.parquet"), *common], root / f"one-{booster}")
            if "dask" in modes:
                dist = run([str(root / "parts"), *common, "--dask", f"local:{args.workers}",
                            "--tune-on", args.tune_on], root / f"dask-{booster}")
            if "external" in modes:
                ext = run([str(root / "users.parquet"), *common, "--external-memory"],
                          root / f"ext-{booster}")
            report(booster, one, dist, ext)


def tuned(run_: dict) -> str:
    """What the tuning chose that sets the refit's cost (DART's grows with rounds squared)."""
    t = run_["report"]["tuning"]
    return f"[{t['rounds']} rounds, depth {t['params'].get('max_depth', '-')}]"


def report(booster: str, one: dict | None, dist: dict | None, ext: dict | None) -> None:
    print(f"\n{booster}:")
    if one:
        print(f"  one process       {one['wall']:7.1f} s  peak {one['peak'] / MB:6.0f} MB  "
              f"AUC {one['report']['metrics']['roc_auc']:.4f}  tuning "
              f"{one['report']['tuning']['seconds']:.0f} s, refit "
              f"{one['report']['fit_seconds']:.0f} s  {tuned(one)}  (load {one['load']:.1f})")
    if dist:
        workers = dist["report"]["cluster"]["worker_peak_rss_bytes"]
        print(f"  --dask local:{len(workers)}    {dist['wall']:7.1f} s  client peak "
              f"{dist['peak'] / MB:6.0f} MB, workers "
              + ", ".join(f"{v / MB:.0f}" for v in workers.values())
              + f" MB  AUC {dist['report']['metrics']['roc_auc']:.4f}  tuning "
              f"{dist['report']['tuning']['seconds']:.0f} s "
              f"({dist['report']['cluster']['tuning']['on']}), refit "
              f"{dist['report']['fit_seconds']:.0f} s  {tuned(dist)}  (load {dist['load']:.1f})")
    if ext:
        print(f"  --external-memory {ext['wall']:7.1f} s  peak {ext['peak'] / MB:6.0f} MB  "
              f"AUC {ext['report']['metrics']['roc_auc']:.4f}  "
              f"{ext['report']['external_memory']['seconds_per_round']:.3f} s/round  "
              f"(load {ext['load']:.1f})")
    if one and dist:
        worst = max(dist["report"]["cluster"]["worker_peak_rss_bytes"].values())
        print(f"  dask / one process: wall {dist['wall'] / one['wall']:.2f}x (target <= 1.2), "
              f"largest worker peak {worst / one['peak']:.2f}x (target <= 0.6)", flush=True)


def write_wide(path: Path, rows: int, extra: int, row_group: int, sample: Path,
               sample_rows: int) -> int:
    """`purchases` with ``extra`` noise columns, written 100k rows at a time in row groups;
    its first ``sample_rows`` rows (a random sample: the rows are independent) also to
    ``sample``. Its size in pandas (deep), bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mltk.datasets.purchases import generate_wide

    size, writer, head = 0, None, []
    for start, df in zip(range(0, rows, 100_000), generate_wide(rows, extra), strict=True):
        size += int(df.memory_usage(deep=True, index=False).sum())
        table = pa.Table.from_pandas(df, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=row_group)
        if start < sample_rows:
            head.append(table.slice(0, sample_rows - start))
    writer.close()
    pq.write_table(pa.concat_tables(head), sample)
    return size


def external(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        size = write_wide(root / "wide.parquet", args.external, args.extra_cols,
                          args.row_group, root / "sample.parquet", args.sample)
        disk = (root / "wide.parquet").stat().st_size
        print(f"{args.external:,} rows x {11 + args.extra_cols} columns: {size / MB:,.0f} MB "
              f"in pandas, {disk / MB:,.0f} MB of Parquet, row groups of {args.row_group:,} "
              f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
        common = ["--target", "group", "--id-cols", "user_id", "--booster", "gbtree",
                  "--max-evals", str(args.max_evals), "--max-rounds", str(args.max_rounds),
                  "--seed", "0"]
        ext = run([str(root / "wide.parquet"), *common, "--external-memory"], root / "ext",
                  {"MLTK_XGB_BATCH_MB": str(args.batch_mb)})
        one = None if args.no_sample_run else run([str(root / "sample.parquet"), *common],
                                                  root / "one")
        same = None if one is None else run(
            [str(root / "sample.parquet"), *common, "--external-memory"], root / "same",
            {"MLTK_XGB_BATCH_MB": str(args.batch_mb)})
        fresh = None if one is None else same_rows_auc(
            [root / "ext", root / "one", root / "same"], args.extra_cols, args.fresh)
    e = ext["report"]
    em = e["external_memory"]
    print(f"  --external-memory {ext['wall']:7.1f} s  peak {ext['peak'] / MB:6.0f} MB "
          f"(own memory {ext['anon'] / MB:.0f} MB)  AUC {e['metrics']['roc_auc']:.4f}  "
          f"{em['seconds_per_round']:.3f} s/round ({e['tuning']['rounds']} rounds, "
          f"{e['data']['train_rows']:,} training rows, {em['batches']} batches of "
          f"{em['batch_rows']:,} rows)")
    load = open("/proc/loadavg").read().split()[0]
    print(f"  table / external peak: {size / ext['peak']:.1f}x, / its own memory "
          f"{size / ext['anon']:.1f}x (target >= 3); load average {load}", flush=True)
    if one is None:
        return
    o = one["report"]
    print(f"  in memory, {args.sample:,}-row sample {one['wall']:7.1f} s  peak "
          f"{one['peak'] / MB:6.0f} MB  AUC {o['metrics']['roc_auc']:.4f}")
    print(f"  AUC difference {e['metrics']['roc_auc'] - o['metrics']['roc_auc']:+.4f} on "
          "each run's own test split", flush=True)
    print(f"  --external-memory on the same {args.sample:,}-row sample {same['wall']:7.1f} s  "
          f"peak {same['peak'] / MB:6.0f} MB  AUC {same['report']['metrics']['roc_auc']:.4f}")
    print(f"  on the same {args.fresh:,} fresh rows: in memory on the sample {fresh[1]:.4f}; "
          f"external memory on the sample {fresh[2]:.4f} (difference {fresh[2] - fresh[1]:+.4f}, "
          f"target within 0.005); on the whole table {fresh[0]:.4f} "
          f"({fresh[0] - fresh[1]:+.4f}: the rows the sample leaves out)", flush=True)


def same_rows_auc(models: list[Path], extra: int, rows: int) -> list[float]:
    """Each saved model's AUC on the same ``rows`` fresh rows (seeds the table never used):
    the two runs' own test splits differ, and so does their noise."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from mltk.datasets.purchases import generate_wide
    from mltk.xgb import TwoGroupModel

    fresh = pd.concat(generate_wide(rows, extra, first_seed=1_000_000), ignore_index=True)
    y = fresh["group"] == "one_time"
    return [float(roc_auc_score(y, TwoGroupModel(m).score(fresh)["probability"]))
            for m in models]

if __name__ == "__main__":
    main()
