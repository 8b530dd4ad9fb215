"""Process pools that are safe with OpenCV.

Forking a process whose OpenCV thread pool has already run can deadlock the child, so a pool
forks only when this process has not loaded OpenCV (the CLI case: the cheapest start) and uses
a fork server otherwise.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections.abc import Sequence
from typing import Any


def process_context(preload: Sequence[str] = ()) -> Any:
    methods = mp.get_all_start_methods()
    if "fork" in methods and "cv2" not in sys.modules:
        return mp.get_context("fork")
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["cv2", *preload])
        return ctx
    return mp.get_context("spawn")
