"""SIGINT and SIGTERM during `mltk train`: a checkpoint when a step has run, exit 130 or 143.

No test here waits a fixed time or depends on machine load: signals are sent when a condition
holds (a file appeared, a line reached stderr), or by the training process to itself at an exact
point of the run (the moment tests). Children get SIGINT's default disposition explicitly, since
the suite may run from a background shell where SIGINT is ignored.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import mltk_executable
from tests.test_classify import _wait_for

pytest.importorskip("tensorflow")

SMALL = ["--model", "small_cnn", "--image-size", "32", "--gpus", "0", "--seed", "1"]


@pytest.fixture(scope="module")
def shards(digit_shards):
    """The shared 1000-digit shards (tests/conftest.py)."""
    return digit_shards


def _default_sigint() -> None:
    """In the child before exec: SIGINT as an interactive shell gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignored_sigint() -> None:
    """In the child before exec: SIGINT ignored, as under nohup or in a background job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(args: list[str], preexec=_default_sigint) -> subprocess.Popen:

    return subprocess.Popen(mltk_executable() + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _read_until(proc: subprocess.Popen, text: str) -> str:
    """stderr up to and including the first line holding ``text`` (fails at its end)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    proc.wait()
    raise AssertionError(f"training ended (status {proc.returncode}) before {text!r}: "
                         f"{''.join(seen)[-2000:]}")


# --- the handler itself ------------------------------------------------------------------------

def test_stop_requests_raise_defer_and_restore():
    from mltk.classify.interrupts import Interrupted, StopRequests

    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stops:
        assert signal.getsignal(signal.SIGTERM) == stops.handle
        with pytest.raises(Interrupted) as info:  # before the first step: at once
            os.kill(os.getpid(), signal.SIGTERM)  # handled before os.kill returns
        assert info.value.signum == signal.SIGTERM and info.value.exit_status == 143
        stops.pending = None
        stops.defer()
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, raised only at a safe point
        assert stops.pending == signal.SIGTERM
        with pytest.raises(Interrupted):
            stops.check()
        stops.finish()
        stops.check()  # writing the last checkpoint: nothing raises any more
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_ignored_sigint_stays_ignored():
    from mltk.classify.interrupts import StopRequests

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopRequests():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# --- a signal at exact moments of a run ---------------------------------------------------------

_MOMENTS_PROBE = """
import json, os, signal, sys
from pathlib import Path

signal.signal(signal.SIGINT, signal.default_int_handler)  # as an interactive Python has it
import keras

from mltk import settings as mltk_settings
from mltk.classify import optimization, train
from mltk.classify.callbacks.checkpoint import Checkpointer
from mltk.classify.callbacks.history import History

shards, root, SIG = sys.argv[1], Path(sys.argv[2]), getattr(signal, sys.argv[3])
backend = sys.argv[4]
now = {"moment": None, "fired": False}


def fire(moment):
    if now["moment"] == moment and not now["fired"]:
        now["fired"] = True
        os.kill(os.getpid(), SIG)  # handled before the next Python instruction


compile_model = optimization.compile_model


def compile_and_hook(model, *args, **kwargs):
    compile_model(model, *args, **kwargs)
    train_step = model.train_step

    def traced_step(*a):  # runs while the first training step is traced and compiled
        fire("compilation")
        return train_step(*a)

    model.train_step = traced_step


optimization.compile_model = compile_and_hook
save_checkpoint, write_history = Checkpointer.save, History.write


def checkpoint_hook(self):
    fire("checkpoint")  # the first checkpoint (step 3): arrives while it is being written
    save_checkpoint(self)


def write_history_hook(self):
    fire("epoch_end")  # while the epoch's files are written
    write_history(self)


class AtValidation(keras.callbacks.Callback):
    def on_test_begin(self, logs=None):
        fire("validation")  # validation is about to run


Checkpointer.save, History.write = checkpoint_hook, write_history_hook
results = {}
for moment in ("compilation", "mid_epoch", "checkpoint", "validation", "epoch_end"):
    now.update(moment=moment, fired=False)
    out = root / moment
    cfg = mltk_settings.merged("train", {"backend": backend, "model": "small_cnn", "image_size": 32,
                                    "gpus": 0, "seed": 1, "epochs": 3,
                                    "checkpoint_every": 3 if moment == "checkpoint" else 0})
    summary = train(cfg, out, data=[shards], callbacks=[AtValidation()],
                    on_step=lambda step, total: fire("mid_epoch") if step == 5 else None)
    state = out / "checkpoint" / "state.json"
    results[moment] = {
        "fired": now["fired"], "signal": summary.signal, "steps": summary.steps,
        "interrupted": summary.interrupted, "checkpoint": summary.checkpoint,
        "state_step": json.loads(state.read_text())["step"] if state.exists() else None,
        "history": len(json.loads(state.read_text())["history"]) if state.exists() else None,
        "last_model": (out / "last.keras").exists()}
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
print(json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("signame", "backend", "busy"), [
    ("SIGTERM", "tensorflow", False), ("SIGINT", "tensorflow", False),
    ("SIGTERM", "tensorflow", True),  # the same moments with every core kept busy
    pytest.param("SIGTERM", "jax", False, marks=pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="JAX is not installed")),
])
def test_a_signal_at_each_moment_stops_with_a_checkpoint(signame, backend, busy, shards,
                                                         tmp_path):
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range((os.cpu_count() or 1) if busy else 0)]
    try:
        res = subprocess.run([sys.executable, "-c", _MOMENTS_PROBE, str(shards),
                              str(tmp_path), signame, backend], capture_output=True, text=True,
                             timeout=1800, env={**os.environ, "KERAS_BACKEND": backend})
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    for moment, r in got.items():
        assert r["fired"] and r["interrupted"] and r["signal"] == signame, (moment, r)
    # Before the first step: nothing to save, no checkpoint and no model.
    assert got["compilation"] == {**got["compilation"], "steps": 0, "checkpoint": False,
                                  "state_step": None, "last_model": False}
    # After: a checkpoint of exactly the step reached (21 steps per epoch).
    expected = {"mid_epoch": (5, 0), "checkpoint": (3, 0), "validation": (21, 0),
                "epoch_end": (21, 1)}
    for moment, (step, rows) in expected.items():
        r = got[moment]
        assert (r["steps"], r["state_step"], r["history"]) == (step, step, rows), (moment, r)
        assert r["checkpoint"] and r["last_model"], (moment, r)


# --- the command, signalled from outside ----------------------------------------------------------

@pytest.mark.slow
def test_sigterm_mid_epoch_saves_a_checkpoint_and_exits_143(shards, tmp_path):
    run = tmp_path / "t"
    proc = _start(["train", "--data", shards, "--out", run, *SMALL, "--epochs", "30",
                   "--checkpoint-every", "3"])
    _wait_for(run / "checkpoint" / "state.json", proc)  # steps have run
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM at step" in err and "--resume" in err
    summary = json.loads((run / "summary.json").read_text())
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert summary["interrupted"] and summary["stop_reason"] == "interrupted"
    assert state["step"] == summary["steps"] >= 3


@pytest.mark.slow
def test_sigterm_while_the_first_step_compiles_exits_143(shards, tmp_path):
    run = tmp_path / "c"
    proc = _start(["train", "--data", shards, "--out", run, *SMALL, "--epochs", "30"])
    _read_until(proc, "training small_cnn on")  # logged just before the first step
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    # Whether the first step had finished decides if there is something to resume.
    state = run / "checkpoint" / "state.json"
    if state.exists():
        assert json.loads(state.read_text())["step"] >= 1 and "--resume" in err
    else:
        assert "before the first training step" in err
        assert not (run / "last.keras").exists()


@pytest.mark.slow
def test_an_ignored_sigint_does_not_stop_training(shards, tmp_path):
    """nohup and background jobs ignore SIGINT; mltk keeps it that way."""
    run = tmp_path / "n"
    proc = _start(["train", "--data", shards, "--out", run, *SMALL, "--epochs", "2",
                   "--format", "json"], preexec=_ignored_sigint)
    _wait_for(run / "history.csv", proc)
    # Stopped, the process cannot end before the SIGINT reaches it.
    proc.send_signal(signal.SIGSTOP)
    try:
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    row = json.loads(out)[0]
    assert row["steps"] == 2 * 21 and row["stop_reason"] == "completed"
