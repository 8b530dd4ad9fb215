"""mltk._imaging's decode budget: the pixels decoded at once by all threads of a process.
(Through the server's ``decode_budget_pixels`` setting: tests/test_serve_limits.py, slow.)"""

from __future__ import annotations

import threading
import time

from mltk._imaging import PixelBudget
from mltk.errors import BusyError


def test_pixel_budget_queues_then_refuses():
    """The budget itself, with threads: one decode holds it all; the next waits its turn (then
    runs), a third finds the queue full (BusyError at once); a wait that runs out refuses."""
    budget = PixelBudget()
    budget.configure(100, wait=600)
    order: list[str] = []
    errors: list[Exception] = []

    def decode(pixels: int, name: str) -> None:  # one thread per decode, as in the server
        try:
            with budget.hold(pixels):
                order.append(name)
        except BusyError as exc:
            errors.append(exc)

    with budget.hold(100):
        second = threading.Thread(target=decode, args=(60, "second"))
        second.start()
        while budget.waiting != 60:  # condition: the second decode is waiting its turn
            time.sleep(0.001)
        third = threading.Thread(target=decode, args=(50, "third"))
        third.start()
        third.join(60)
        assert order == [] and len(errors) == 1
        assert "decode budget" in str(errors[0]) and "waiting" in str(errors[0])
        order.append("first")
    second.join(60)
    assert order == ["first", "second"] and budget.in_flight == 0
    budget.configure(100, wait=0.01)
    with budget.hold(100):
        late = threading.Thread(target=decode, args=(50, "late"))
        late.start()
        late.join(60)
    assert "none freed" in str(errors[-1]) and "late" not in order
    assert budget.peak == 100 and budget.waiting == 0 and budget.in_flight == 0
    with budget.hold(100), budget.hold(100):  # nested in one thread: reserved once
        assert budget.in_flight == 100
