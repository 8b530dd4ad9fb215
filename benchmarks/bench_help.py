"""Wall time of `mltk --help` beside `python -c "import tensorflow"` (the cost it avoids).

Run: .venv/bin/python benchmarks/bench_help.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    mltk = str(Path(sys.executable).with_name("mltk"))
    help_s = wall([mltk, "--help"], args.repeat)
    cmd_help_s = wall([mltk, "datasets", "make", "--help"], args.repeat)
    tf_s = wall([sys.executable, "-c", "import tensorflow"], max(1, args.repeat // 2))
    print(f"mltk --help                 {help_s * 1000:8.0f} ms")
    print(f"mltk datasets make --help   {cmd_help_s * 1000:8.0f} ms")
    print(f"python -c 'import tensorflow' {tf_s * 1000:6.0f} ms")
    print(f"ratio import-tensorflow / mltk --help: {tf_s / help_s:.1f}x")


if __name__ == "__main__":
    main()
