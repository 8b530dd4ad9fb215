"""mltk train / evaluate on damaged or missing inputs: shards with CRC errors, run folders
without a checkpoint, damaged checkpoints and model files (issue 15: points 3, 6, 8, 10)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mltk.tfrecords.format import scan

SMALL = ["--model", "small_cnn", "--image-size", "32", "--gpus", "0", "--seed", "0"]
TINY = [*SMALL, "--epochs", "1", "--batch-per-replica", "16", "--checkpoint-every", "0"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """300 digit scans as mltk shards: train 240 in 2 shards, validation 60 in 2."""
    from mltk.datasets import make
    from mltk.tfrecords import BuildOptions, build

    root = tmp_path_factory.mktemp("inputs")
    make("labelled-images", root / "img", n=300, seed=0)
    build(root / "img", root / "shards",
          BuildOptions(split={"train": 0.8, "validation": 0.2}, shards=2, seed=0))
    return root / "shards"


def record_offsets(path: Path) -> list[int]:
    """Byte offset of each record (from the headers)."""
    data = path.read_bytes()
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += 16 + int.from_bytes(data[at:at + 8], "little")
    return offsets


def damaged_copy(shards: Path, dest: Path, split: str, record: int) -> tuple[Path, str, int]:
    """A copy of ``shards`` whose first ``split`` shard has one payload byte of ``record``
    flipped: (that file, count --verify's words for it, its record count)."""
    shutil.copytree(shards, dest)
    bad = sorted(dest.glob(f"{split}-*.tfrecord"))[0]
    total = len(record_offsets(bad))
    data = bytearray(bad.read_bytes())
    data[record_offsets(bad)[record] + 12 + 40] ^= 0xFF
    bad.write_bytes(bytes(data))
    res = scan(bad, verify=True)
    assert not res.ok and f"record {record}" in res.error
    return bad, res.error, total


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# --- --resume without a checkpoint (fast: refused before any TensorFlow work) -------------

def test_resume_needs_a_checkpoint(shards, cli, tmp_path):
    missing = tmp_path / "nowhere"
    res = cli("train", "--data", shards, "--out", missing, *TINY, "--resume")
    assert res.exit_code == 1
    assert f"{missing}: no such run folder to resume" in res.stderr
    assert not missing.exists()  # nothing was started

    done = tmp_path / "done"  # a finished run: no checkpoint, a complete summary
    done.mkdir()
    (done / "config.yaml").write_text("model: small_cnn\n")
    (done / "summary.json").write_text(json.dumps({"steps": 15, "interrupted": False}))
    (done / "last.keras").write_bytes(b"model")
    res = cli("train", "--data", shards, "--out", done, *TINY, "--resume")
    assert res.exit_code == 1
    assert "already complete (15 steps)" in res.stderr and "--overwrite" in res.stderr
    assert (done / "last.keras").read_bytes() == b"model"  # not overwritten

    (done / "summary.json").unlink()  # a run whose checkpoint/state.json was deleted
    (done / "checkpoint").mkdir()
    (done / "checkpoint" / "latest.weights.h5").write_bytes(b"w")
    res = cli("train", "--data", shards, "--out", done, *TINY, "--resume")
    assert res.exit_code == 1
    assert f"{done / 'checkpoint' / 'state.json'} is missing" in res.stderr
    assert "--overwrite starts the run over" in res.stderr

    (done / "checkpoint" / "latest.weights.h5").unlink()
    (done / "checkpoint" / "state.json").write_text("{}")
    res = cli("train", "--data", shards, "--out", done, *TINY, "--resume")
    assert res.exit_code == 1 and "latest.weights.h5 is missing" in res.stderr
    assert (done / "last.keras").read_bytes() == b"model"


def test_damaged_run_summary_is_named(shards, cli, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "summary.json").write_bytes(b"\xff\xfe garbage")
    res = cli("train", "--data", shards, "--out", run, *TINY, "--resume")
    assert res.exit_code == 1
    assert f"{run / 'summary.json'}: damaged run summary" in res.stderr


# --- damaged checkpoints and model files ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("state", "weights", "expected"), [
    (b"\xff\xfe\x00garbage", None, "state.json: damaged checkpoint state"),
    (b"[1, 2, 3]", None, "state.json: damaged checkpoint state (a JSON list"),
    (b'{"global_batch": 16, "history": "x"}', None, "history is not a list"),
    (None, b"not hdf5 at all", "latest.weights.h5: not a Keras .weights.h5 file"),
    (None, "truncated", "latest.weights.h5: damaged checkpoint weights"),
])
def test_damaged_checkpoint_is_named(state, weights, expected, shards, cli, tmp_path):
    # A real checkpoint first (an interrupted run keeps it), then damage one of its files.
    from mltk import settings as mltk_settings
    from mltk.classify import train

    run = tmp_path / "r"
    cfg = mltk_settings.merged("train", {"model": "small_cnn", "image_size": 32, "gpus": 0,
                                    "seed": 0, "epochs": 2, "batch_per_replica": 16,
                                    "checkpoint_every": 0})
    train(cfg, run, data=[str(shards)], on_epoch=_interrupt_after_first_epoch)
    ckpt = run / "checkpoint"
    assert (ckpt / "state.json").is_file() and (ckpt / "latest.weights.h5").is_file()
    if state is not None:
        (ckpt / "state.json").write_bytes(state)
    if weights == "truncated":
        data = (ckpt / "latest.weights.h5").read_bytes()
        (ckpt / "latest.weights.h5").write_bytes(data[: len(data) // 2])
    elif weights is not None:
        (ckpt / "latest.weights.h5").write_bytes(weights)
    res = cli("train", "--data", shards, "--out", run, *TINY[:-4], "--epochs", "2",
              "--batch-per-replica", "16", "--checkpoint-every", "0", "--resume")
    assert res.exit_code == 1, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and expected in lines[0], res.stderr[-2000:]
    assert str(ckpt) in lines[0] and "Traceback" not in res.stderr


def _interrupt_after_first_epoch(row):
    import signal

    from mltk.classify.interrupts import Interrupted

    raise Interrupted(signal.SIGTERM)


@pytest.mark.slow
def test_fake_model_and_weights_files_are_named(shards, cli, tmp_path):
    fake_keras = tmp_path / "model.keras"
    fake_keras.write_bytes(b"this is not a zip archive")
    res = cli("evaluate", fake_keras, "--data", shards, "--gpus", "0")
    assert res.exit_code == 1
    assert f"{fake_keras}: not a Keras model file" in res.stderr
    assert "File not found" not in res.stderr
    for name, content in (("w.weights.h5", b"garbage bytes"), ("x.keras", b"PK garbage")):
        fake = tmp_path / name
        fake.write_bytes(content)
        res = cli("train", "--data", shards, "--out", tmp_path / name.split(".")[0], *TINY,
                  "--weights", fake)
        assert res.exit_code == 1, res.stderr[-2000:]
        assert f"{fake}: not a Keras" in res.stderr and "Traceback" not in res.stderr


# --- damaged shards ------------------------------------------------------------------------

@pytest.mark.slow
def test_damaged_training_shard_is_reported_per_file(shards, mltk_proc, tmp_path):
    data = tmp_path / "data"
    bad, words, total = damaged_copy(shards, data, "train", record=30)
    res = mltk_proc("train", "--data", data, "--out", tmp_path / "run", *TINY, "--steps", "3",
                    "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    lost = total - 30
    assert f"{bad}: {words}: {lost} of its {total} records skipped" in res.stderr
    summary = _summary(tmp_path / "run")
    assert summary["train_records"] == 240 - lost
    assert summary["steps_per_epoch"] == (240 - lost) // 16
    # --strict-data: the same damage, in count --verify's words, is an error.
    strict = mltk_proc("train", "--data", data, "--out", tmp_path / "strict", *TINY,
                       "--strict-data")
    assert strict.returncode == 1
    assert f"Error: {bad}: {words}" in strict.stderr and "--strict-data" in strict.stderr
    verify = mltk_proc("tfrecord", "count", bad, "--verify")
    assert words in verify.stderr


@pytest.mark.slow
def test_damaged_validation_shard_is_skipped_with_a_warning(shards, mltk_proc, tmp_path):
    data = tmp_path / "data"
    bad, words, total = damaged_copy(shards, data, "validation", record=5)
    res = mltk_proc("train", "--data", data, "--out", tmp_path / "run", *TINY, "--format",
                    "json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{bad}: {words}: {total - 5} of its {total} records skipped" in res.stderr
    summary = _summary(tmp_path / "run")
    assert summary["val_records"] == 60 - (total - 5)
    assert summary["final"]["val_accuracy"] >= 0


@pytest.mark.slow
def test_a_shard_damaged_during_the_run_stops_it_with_a_checkpoint(shards, tmp_path,
                                                                     monkeypatch):
    """The check at the start found nothing (the file went bad later): the first validation
    fails, the epoch's training is kept in a checkpoint, and the error names the file."""
    from mltk import settings as mltk_settings
    from mltk.classify import data as data_mod
    from mltk.classify import train
    from mltk.errors import InputError

    data = tmp_path / "data"
    bad, words, _ = damaged_copy(shards, data, "validation", record=5)
    real_check = data_mod.check_records
    calls = []

    def clean_at_start(files, threads=8):
        calls.append(files)
        return [] if len(calls) == 1 else real_check(files, threads)

    monkeypatch.setattr(data_mod, "check_records", clean_at_start)
    cfg = mltk_settings.merged("train", {"model": "small_cnn", "image_size": 32, "gpus": 0,
                                    "seed": 0, "epochs": 2, "batch_per_replica": 16,
                                    "checkpoint_every": 0})
    run = tmp_path / "run"
    with pytest.raises(InputError) as err:
        train(cfg, run, data=[str(data)])
    message = str(err.value)
    assert message.startswith(f"{bad}: {words}") and "\n" not in message
    assert "checkpoint" in message and "`resume`" in message  # the CLI says --resume
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["step"] == 240 // 16  # the first epoch's training was kept
    assert (run / "last.keras").is_file()


@pytest.mark.slow
def test_evaluate_names_the_damaged_shard_as_count_verify_does(shards, cli, tmp_path):
    from mltk.classify.models import build_model

    data = tmp_path / "data"
    bad, words, _ = damaged_copy(shards, data, "validation", record=7)
    model = build_model("small_cnn", 10, 32)
    model.save(tmp_path / "m.keras")
    res = cli("evaluate", tmp_path / "m.keras", "--data", data, "--split", "validation",
              "--gpus", "0")
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"Error: {bad}: {words}"), res.stderr[-2000:]
    assert "function_node" not in res.stderr
