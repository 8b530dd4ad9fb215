"""Speed of `mltk colors` against colorthief and the original pipeline, in one run.

Photos: 1024x768 JPEGs (quality 90) made from scikit-image's bundled photos and the
product-images generator. Prints images/s on one core for each method, the ratios, and the
scaling of `mltk colors` from -j 1 to -j 2.

Run: .venv/bin/python benchmarks/bench_colors.py [--n 600]
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
    items = paths[:limit] if limit else paths
    t0 = time.perf_counter()
    fn(items)
    return len(items) / (time.perf_counter() - t0)


def mltk_colors(jobs: int, folder: Path) -> tuple[float, float]:
    """(img/s overall, img/s after the first result) for analyze_paths in a fresh interpreter,
    as the CLI runs it (OpenCV not yet loaded in the parent, so workers are forked)."""
    out = subprocess.run([sys.executable, __file__, "--worker", str(jobs), str(folder)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def worker(jobs: int, folder: str) -> None:
    from mltk.colors import ColorSettings, analyze_paths

    settings = ColorSettings.from_config({})
    paths = sorted(Path(folder).glob("*.jpg"))
    if jobs == 1:  # warm up in-process decoding (imports) outside the timing
        list(analyze_paths(paths[:5], settings, jobs=1))
    t0 = time.perf_counter()
    first = None
    for rec in analyze_paths(paths, settings, jobs=jobs):
        assert rec["error"] is None, rec
        first = first or time.perf_counter()
    t1 = time.perf_counter()
    print(len(paths) / (t1 - t0), (len(paths) - 1) / (t1 - first))


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
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(int(args.worker[0]), args.worker[1])
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        paths = make_photos(Path(tmp), args.n)
        j1, _ = mltk_colors(1, Path(tmp))
        results = {
            "mltk colors -j 1": j1,
            "colorthief get_palette(5, quality=10)": rate(colorthief, paths, 30),
            "original pipeline (sklearn KMeans n_init=10)": rate(original_pipeline, paths, 60),
            "full-resolution JPEG decode alone": rate(decode("IMREAD_COLOR"), paths),
            "1/4-resolution JPEG decode alone": rate(decode("IMREAD_REDUCED_COLOR_4"), paths),
        }
        if (os.cpu_count() or 1) >= 2:
            j2, j2_steady = mltk_colors(2, Path(tmp))
            results["mltk colors -j 2 (two cores)"] = j2
            results["mltk colors -j 2, after pool start-up"] = j2_steady
    print(f"{args.n} JPEG photos 1024x768 q90, one core unless noted")
    for name, r in results.items():
        print(f"  {name:46s} {r:8.1f} img/s")
    base = results["mltk colors -j 1"]
    colorthief_rate = results["colorthief get_palette(5, quality=10)"]
    print(f"mltk / colorthief:        {base / colorthief_rate:.1f}x")
    print(f"mltk / original pipeline: "
          f"{base / results['original pipeline (sklearn KMeans n_init=10)']:.1f}x")
    if "mltk colors -j 2 (two cores)" in results:
        print(f"-j 2 / -j 1:              {results['mltk colors -j 2 (two cores)'] / base:.2f}x"
              f" (after pool start-up: "
              f"{results['mltk colors -j 2, after pool start-up'] / base:.2f}x)")


if __name__ == "__main__":
    main()
