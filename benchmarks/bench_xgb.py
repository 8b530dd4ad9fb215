"""xgb-analyze at scale: sampled tuning + full refit (the default) against tuning on all rows.

In the same run on a `purchases` set (default 300k rows, --max-evals 20): wall time and test
AUC of both; then, with --big N, the wall time of the default run on N rows (the original
analysis had 1.42M users).

Run: .venv/bin/python benchmarks/bench_xgb.py [--rows 300000] [--max-evals 20]
     [--booster dart] [--big 1420000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def run(df, tune_rows, args, out: Path) -> tuple[float, float, int]:
    """(wall seconds, test AUC, tuning rows); prints where the time went."""
    import mltk.settings
    from mltk.xgb import analyze

    settings = mltk.settings.load("xgb", max_evals=args.max_evals, tune_rows=tune_rows,
                                  booster=args.booster, seed=0)
    t0 = time.perf_counter()
    analysis = analyze(df, "group", settings, id_cols=["user_id"])
    analysis.save(out)  # timed too, as the command writes the folder
    report = analysis.report
    print(f"  ({len(df):,} rows, tune_rows={tune_rows}: tuning {report['tuning']['seconds']:.0f} s,"
          f" refit {report['fit_seconds']:.0f} s for {report['tuning']['rounds']} rounds)",
          flush=True)
    return time.perf_counter() - t0, report["metrics"]["roc_auc"], report["data"]["tune_rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--max-evals", type=int, default=20)
    parser.add_argument("--booster", default="dart")
    parser.add_argument("--big", type=int, default=0)
    parser.add_argument("--default-only", action="store_true",
                        help="skip tuning on all rows (hours with DART at this size)")
    args = parser.parse_args()
    from mltk.datasets.purchases import generate

    df = generate(args.rows, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t_def, auc_def, n_def = run(df, "auto", args, Path(tmp) / "default")
        print(f"default (tune on {n_def:,} sampled rows, refit on all): {t_def:8.1f} s, "
              f"test AUC {auc_def:.4f}", flush=True)
        if not args.default_only:
            t_all, auc_all, n_all = run(df, "all", args, Path(tmp) / "all")
            print(f"tune on all {n_all:,} training rows:                  {t_all:8.1f} s, "
                  f"test AUC {auc_all:.4f}", flush=True)
            print(f"time ratio default/all: {t_def / t_all:.2f}; AUC difference "
                  f"{auc_def - auc_all:+.4f} ({args.rows:,} rows, {args.booster}, "
                  f"{args.max_evals} evals)", flush=True)
        if args.big:
            big = generate(args.big, seed=1)
            t_big, auc_big, n_big = run(big, "auto", args, Path(tmp) / "big")
            print(f"default run on {args.big:,} rows: {t_big:.1f} s ({t_big / 60:.1f} min), "
                  f"test AUC {auc_big:.4f}")


if __name__ == "__main__":
    main()
