"""Speed of `mltk colors` against colorthief and the original pipeline, in one run.

Photos: 1024x768 JPEGs (quality 90) made from scikit-image's bundled photos and the
product-images generator. Prints images/s on one core for each method, the ratios, the
scaling of `mltk colors` from -j 1 to -j 2, and how close `mltk colors -j 1` comes to the decode
limit: the rate of decoding the same files at 1/4 resolution alone (cv2.imread), per core.

The decode limit and `mltk colors -j 1` are measured ``--repeat`` times, alternating, and the
median of the per-pair ratios is printed, so that a busy machine moves both sides of each pair.

Run: .venv/bin/python benchmarks/bench_colors.py [--n 600] [--repeat 3] [--photos DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_photos(folder: Path, n: int) -> list[Path]:
    import cv2
    import numpy as np
    from skimage import data

    from mltk.datasets.products import BASE_SHADES, render_product

    rng = np.random.default_rng(0)
    sources = [getattr(data, name)() for name in ("coffee", "chelsea", "astronaut", "rocket")]
    paths = []
    names = sorted(BASE_SHADES)
    for i in range(n):
        if i % 2:
            rgb = cv2.resize(sources[i // 2 % len(sources)], (1024, 768),
                             interpolation=cv2.INTER_CUBIC)
        else:
            rgb = render_product(rng, names[i // 2 % len(names)], None, 1024, 768)
        path = folder / f"photo_{i:04d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def rate(fn, paths, limit=None) -> float:
    return rates(fn, paths, limit)[0]


def rates(fn, paths, limit=None) -> tuple[float, float]:
    """(img/s of wall-clock time, img/s of this process's CPU time)."""
    items = paths[:limit] if limit else paths
    t0, c0 = time.perf_counter(), time.process_time()
    fn(items)
    return len(items) / (time.perf_counter() - t0), len(items) / (time.process_time() - c0)


def mltk_colors(jobs: int, folder: Path) -> tuple[float, float, float]:
    """(img/s overall, img/s after the first result, img/s of CPU time in the main process)
    for analyze_paths in a fresh interpreter, as the CLI runs it (OpenCV not yet loaded in the
    parent, so workers are forked)."""
    out = subprocess.run([sys.executable, __file__, "--worker", str(jobs), str(folder)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def worker(jobs: int, folder: str) -> None:
    from mltk.colors import ColorSettings, analyze_paths

    settings = ColorSettings.from_config({})
    paths = sorted(Path(folder).glob("photo_*.jpg"))
    if jobs == 1:  # warm up in-process decoding (imports) outside the timing
        list(analyze_paths(paths[:5], settings, jobs=1))
    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    for rec in analyze_paths(paths, settings, jobs=jobs):
        assert rec["error"] is None, rec
        first = first or time.perf_counter()
    t1, c1 = time.perf_counter(), time.process_time()
    print(len(paths) / (t1 - t0), (len(paths) - 1) / (t1 - first), len(paths) / (c1 - c0))


def colorthief(paths):
    from colorthief import ColorThief

    for p in paths:
        ColorThief(str(p)).get_palette(color_count=5, quality=10)


def original_pipeline(paths):
    """Full decode, resize to 150x150, crop 0.1..0.7, scikit-learn KMeans(5, n_init=10)."""
    import cv2
    from sklearn.cluster import KMeans

    for p in paths:
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (150, 150))[15:105, 15:105].reshape(-1, 3)
        KMeans(n_clusters=5, n_init=10, random_state=0).fit(rgb)


def decode(flag_name: str):
    def run(paths):
        import cv2

        flag = getattr(cv2, flag_name)
        for p in paths:
            cv2.imread(str(p), flag)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating runs of mltk -j 1 and the 1/4 decode (median ratio)")
    parser.add_argument("--photos", type=Path,
                        help="keep the photos in this folder (made once, reused if there)")
    parser.add_argument("--limit-only", action="store_true",
                        help="only mltk -j 1 against the decode limit (no peers, no -j 2)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(int(args.worker[0]), args.worker[1])
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        folder = args.photos or Path(tmp)
        paths = sorted(folder.glob("photo_*.jpg"))
        if len(paths) != args.n:
            folder.mkdir(parents=True, exist_ok=True)
            for p in paths:
                p.unlink()
            paths = make_photos(folder, args.n)
        results, ratios = decode_limit(folder, paths, args.repeat)
        if not args.limit_only:
            results.update(peers(folder, paths))
    report(args.n, results, ratios)


def decode_limit(folder: Path, paths: list[Path], repeat: int,
                 ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median rates of mltk -j 1 and the 1/4 decode (by the clock and by CPU time), and the
    ratios of each alternating pair."""
    import statistics

    runs = []
    for _ in range(max(1, repeat)):
        wall, _, cpu = mltk_colors(1, folder)
        runs.append((wall, cpu, *rates(decode("IMREAD_REDUCED_COLOR_4"), paths)))
    mltk, mltk_cpu, dec, dec_cpu = (statistics.median(col) for col in zip(*runs, strict=True))
    ratios = {"wall": [r[0] / r[2] for r in runs], "cpu": [r[1] / r[3] for r in runs]}
    return {"mltk colors -j 1": mltk, "1/4-resolution JPEG decode alone": dec,
            "mltk colors -j 1, per second of CPU": mltk_cpu,
            "1/4-resolution JPEG decode, per second of CPU": dec_cpu}, ratios


def peers(folder: Path, paths: list[Path]) -> dict[str, float]:
    results = {
        "colorthief get_palette(5, quality=10)": rate(colorthief, paths, 30),
        "original pipeline (sklearn KMeans n_init=10)": rate(original_pipeline, paths, 60),
        "full-resolution JPEG decode alone": rate(decode("IMREAD_COLOR"), paths),
    }
    if (os.cpu_count() or 1) >= 2:
        j2, j2_steady, _ = mltk_colors(2, folder)
        results["mltk colors -j 2 (two cores)"] = j2
        results["mltk colors -j 2, after pool start-up"] = j2_steady
    return results


def report(n: int, results: dict[str, float], ratios: dict[str, list[float]]) -> None:
    import statistics

    print(f"{n} JPEG photos 1024x768 q90, one core unless noted (median of the runs)")
    for name, r in results.items():
        print(f"  {name:46s} {r:8.1f} img/s")
    base = results["mltk colors -j 1"]
    for kind, label in (("wall", "by the clock"), ("cpu", "by CPU time")):
        print(f"mltk -j 1 / 1/4 decode:   {statistics.median(ratios[kind]):.2f} of the decode "
              f"limit {label} (runs: {', '.join(f'{r:.2f}' for r in ratios[kind])})")
    if "colorthief get_palette(5, quality=10)" in results:
        print(f"mltk / colorthief:        "
              f"{base / results['colorthief get_palette(5, quality=10)']:.1f}x")
        print(f"mltk / original pipeline: "
              f"{base / results['original pipeline (sklearn KMeans n_init=10)']:.1f}x")
    if "mltk colors -j 2 (two cores)" in results:
        print(f"-j 2 / -j 1:              {results['mltk colors -j 2 (two cores)'] / base:.2f}x"
              f" (after pool start-up: "
              f"{results['mltk colors -j 2, after pool start-up'] / base:.2f}x)")


if __name__ == "__main__":
    main()
