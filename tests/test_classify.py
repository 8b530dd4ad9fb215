"""mltk train / evaluate / predict: real training runs on CPU (digits), distribution, resume."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mltk.errors import ConfigError, InputError, MltkError

tf = pytest.importorskip("tensorflow")

HAS_JAX = importlib.util.find_spec("jax") is not None
# No tuning settings: the default recipe (configs/train.yaml) must train well on its own.
SMALL = ["--model", "small_cnn", "--image-size", "32", "--gpus", "0", "--seed", "1"]
# The original run's SGD recipe, at lr 0.4 for the reference batch of 256: 0.05 at batch 32.
ORIGINAL = [*SMALL, "--recipe", "original", "--lr", "0.4"]


@pytest.fixture(scope="module")
def shards(digit_shards):
    """The shared 1000-digit shards (tests/conftest.py)."""
    return digit_shards


def split_sizes(shards: Path) -> dict[str, int]:
    manifest = json.loads((shards / "manifest.json").read_text())
    return {name: s["records"] for name, s in manifest["splits"].items()}


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    """One small_cnn run (the installed command) with no tuning settings: 10 epochs of the
    default recipe. Shared by the evaluate/predict tests."""
    from tests.conftest import mltk_executable

    run = tmp_path_factory.mktemp("run") / "digits"
    proc = subprocess.run(mltk_executable() + [
        "train", "--data", str(shards), "--out", str(run), *SMALL, "--epochs", "10",
        "--format", "json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, json.loads(proc.stdout)[0], proc.stderr


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# --- training ------------------------------------------------------------------------------

@pytest.mark.slow
def test_small_cnn_learns_digits(trained, shards):
    """The target of issue 16: 0.95 on digits within 10 epochs, with no tuning settings."""
    run, row, stderr = trained
    assert row["val_accuracy"] >= 0.95, stderr[-2000:]
    assert row["best"] >= row["val_accuracy"] - 1e-9
    for name in ("best.keras", "last.keras", "labels.txt", "config.yaml", "history.csv",
                 "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint").exists()  # removed once the run is complete
    assert (run / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    history = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in history] == list(range(1, 11))
    summary = _summary(run)
    # 700 training records, global batch 32: 21 steps per epoch, last partial batch dropped.
    sizes = split_sizes(shards)
    assert sizes["train"] == 700
    assert summary["steps_per_epoch"] == 21 and summary["steps"] == 10 * 21
    assert summary["train_records"] == 700 and summary["val_records"] == sizes["validation"]
    assert summary["images_per_second"] > 0
    # The small_cnn recipe: AdamW at 0.005 for a batch of 32, cosine decay.
    assert summary["recipe"] == "small_cnn" and summary["learning_rate"] == pytest.approx(0.005)
    assert summary["stop_reason"] == "completed"
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "small_cnn" and cfg["seed"] == 1 and cfg["lr_schedule"] == "cosine"
    assert cfg["recipe"] == "small_cnn" and cfg["optimizer"] == "adamw"
    assert "recipes" not in cfg  # the resolved values, not the recipe table


@pytest.mark.slow
def test_used_run_folder_needs_resume_or_overwrite(trained, cli, shards):
    run, _, _ = trained
    res = cli("train", "--data", shards, "--out", run, *SMALL, "--epochs", "1")
    assert res.exit_code == 1
    assert "already holds a training run" in res.stderr


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(shards, mltk_proc, tmp_path):
    res = mltk_proc("train", "--data", shards, "--out", tmp_path / "m", *SMALL, "--epochs", "2",
                    "--cpu-replicas", "2", "--batch-per-replica", "16", "--tensorboard",
                    "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout)[0]
    assert row["replicas"] == 2 and row["global_batch"] == 32
    assert any((tmp_path / "m" / "tensorboard").rglob("events.out.tfevents.*"))
    summary = _summary(tmp_path / "m")
    assert summary["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert summary["steps"] == 2 * (700 // 32)
    assert summary["final"]["loss"] < 2.0  # it learned something (chance is ln 10 = 2.30)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {path.name}: "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"no {path} after {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_checkpoint(shards, mltk_proc, tmp_path):
    from tests.conftest import mltk_executable

    run = tmp_path / "r"
    args = ["train", "--data", str(shards), "--out", str(run), *ORIGINAL, "--epochs", "3",
            "--checkpoint-every", "5", "--format", "json"]
    proc = subprocess.Popen(mltk_executable() + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = run / "checkpoint" / "state.json"
    _wait_for(state, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    saved = json.loads(state.read_text())
    assert saved["step"] >= 5 and saved["steps_per_epoch"] == 21
    res = mltk_proc(*args[:-2], "--resume", "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = _summary(run)
    # It started from the checkpoint (a later one may have landed before the kill), not step 0.
    assert summary["resumed_from_step"] >= saved["step"] > 0
    assert summary["steps"] == 3 * 21
    assert summary["final"]["epoch"] == 3
    # The learning-rate schedule (step decay on the optimizer's step count) is intact.
    assert summary["final"]["lr"] == pytest.approx(0.05)
    assert not (run / "checkpoint").exists()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(shards, tmp_path, mltk_proc):
    from tests.conftest import mltk_executable

    run = tmp_path / "i"
    args = ["train", "--data", str(shards), "--out", str(run), *SMALL, "--epochs", "30",
            "--checkpoint-every", "0"]
    # SIGINT's default disposition, explicitly: started from a background shell, the suite
    # and its children would otherwise ignore it (as mltk then does, for nohup's sake).
    proc = subprocess.Popen(mltk_executable() + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(run / "history.csv", proc)  # the first epoch is done
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted by SIGINT" in err and "--resume" in err
    assert json.loads((run / "summary.json").read_text())["signal"] == "SIGINT"
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["step"] >= 21
    assert (run / "last.keras").is_file()
    res = mltk_proc("train", "--data", shards, "--out", run, *SMALL, "--epochs", "31",
                    "--resume")
    assert res.returncode == 1 and "epochs is 31" in res.stderr  # settings must match


@pytest.mark.slow
def test_legacy_raw_layout_trains(digits_dir, mltk_proc, tmp_path):
    from mltk.tfrecords import BuildOptions, build

    raw = tmp_path / "raw"
    build(digits_dir, raw, BuildOptions(layout="raw", size=32, shards=2, seed=0))
    # Legacy files: no labels.txt or manifest; classes come from the records' labels.
    (raw / "labels.txt").unlink()
    (raw / "manifest.json").unlink()
    res = mltk_proc("train", "--data", raw, "--out", tmp_path / "run", *SMALL, "--epochs", "2",
                    "--precision", "mixed_bfloat16", "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = _summary(tmp_path / "run")
    assert summary["precision"] == "mixed_bfloat16"
    assert summary["classes"] == 10 and summary["train_records"] == 300
    assert summary["steps"] == 2 * (300 // 32)


@pytest.mark.slow
def test_default_model_trains_a_step_on_synthetic_data(mltk_proc, tmp_path):
    res = mltk_proc("train", "--synthetic", "--gpus", "0", "--image-size", "75",
                    "--batch-per-replica", "2", "--steps", "4", "--num-classes", "5",
                    "--out", tmp_path / "s", "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout)[0]
    assert row["model"] == "inception_resnet_v2" and row["steps"] == 4
    assert row["images_per_second"] > 0
    assert not (tmp_path / "s" / "best.keras").exists()  # synthetic runs keep last.keras only
    assert (tmp_path / "s" / "last.keras").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_workers(shards, tmp_path):
    from tests.conftest import mltk_executable

    workers = f"localhost:{_free_port()},localhost:{_free_port()}"
    procs = []
    for i in range(2):
        env = {**os.environ, "MLTK_WORKERS": workers, "MLTK_WORKER_INDEX": str(i)}
        procs.append(subprocess.Popen(
            mltk_executable() + ["train", "--data", str(shards), "--out", str(tmp_path / f"w{i}"),
                                 "--strategy", "multi-worker", *SMALL, "--epochs", "1",
                                 "--batch-per-replica", "16", "--format", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    rows = [json.loads(out)[0] for out, _ in outs]
    assert all(r["replicas"] == 2 and r["global_batch"] == 32 for r in rows)
    assert rows[0]["accuracy"] == rows[1]["accuracy"]  # one model, trained together
    assert (tmp_path / "w0" / "last.keras").is_file()  # the chief writes the run
    assert not (tmp_path / "w1" / "last.keras").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed (pip install 'jax[cpu]')")
def test_jax_backend_trains_and_evaluates(shards, mltk_proc, tmp_path):
    res = mltk_proc("train", "--backend", "jax", "--data", shards, "--out", tmp_path / "j",
                    *SMALL, "--epochs", "4", "--lr-schedule", "cosine", "--format", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout)[0]
    assert row["backend"] == "jax" and row["val_accuracy"] > 0.5
    ev = mltk_proc("evaluate", tmp_path / "j", "--data", shards, "--format", "json")
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout)[0]["records"] == split_sizes(shards)["test"]
    # predict needs Keras and JAX only: it runs with TensorFlow absent.
    image = next((shards.parent / "img" / "4").glob("*.jpg"))
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from mltk.cli import main\n"
            f"sys.argv = ['mltk', 'predict', {str(tmp_path / 'j')!r}, {str(image)!r},"
            " '--format', 'json']\n"
            "main()\n")
    pr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300)
    assert pr.returncode == 0, pr.stderr[-3000:]
    row = json.loads(pr.stdout)[0]
    assert row["path"] == str(image) and row["error"] is None
    assert row["label"] in [str(i) for i in range(10)]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed (pip install 'jax[cpu]')")
def test_jax_synthetic_runs_without_tensorflow(tmp_path):
    """The GPU-host case: Keras and JAX present, TensorFlow absent (imports of it fail)."""
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from mltk.cli import main\n"
            f"sys.argv = ['mltk', 'train', '--backend', 'jax', '--synthetic', '--gpus', '0',"
            f" '--model', 'small_cnn', '--image-size', '32', '--batch-per-replica', '8',"
            f" '--steps', '4', '--num-classes', '3', '--out', {str(tmp_path / 'j')!r},"
            f" '--format', 'json']\n"
            "main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout)[0]
    assert row["backend"] == "jax" and row["steps"] == 4
    assert "tensorflow" not in (tmp_path / "j" / "config.yaml").read_text().split(
        "backend:")[1].split("\n")[0]


_CHECKPOINT_PROBE = """
import json, sys
from pathlib import Path
from mltk import settings as mltk_settings
from mltk.classify import train

out = Path(sys.argv[2])
seen = {}

def on_step(step, total):
    state = out / "checkpoint" / "state.json"
    if step in (3, 6):
        seen[step] = json.loads(state.read_text())["step"]

cfg = mltk_settings.merged("train", {"backend": sys.argv[1], "model": "small_cnn", "gpus": 0,
                                "image_size": 32, "batch_per_replica": 8, "steps": 8,
                                "num_classes": 3, "checkpoint_every": 3, "seed": 0})
summary = train(cfg, out, synthetic=True, on_step=on_step)
print(json.dumps({"seen": seen, "steps": summary.steps,
                  "images_per_second": summary.images_per_second}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    "tensorflow",
    pytest.param("jax", marks=pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")),
])
def test_checkpoints_hold_the_step_they_are_taken_at(backend, tmp_path):
    """Mid-epoch checkpoints carry the current weights, also where JAX's trainer keeps them
    apart from the model during fit; steps are counted without waiting on each one."""
    res = subprocess.run([sys.executable, "-c", _CHECKPOINT_PROBE, backend, str(tmp_path / "c")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KERAS_BACKEND": backend})
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["seen"] == {"3": 3, "6": 6}
    assert row["steps"] == 8 and row["images_per_second"] > 0


# --- evaluate and predict --------------------------------------------------------------------

@pytest.mark.slow
def test_evaluate_sees_every_record_once(trained, shards, cli, tmp_path):
    run, _, _ = trained
    from mltk.tfrecords import count_paths

    test_files = sorted(str(p) for p in shards.glob("test-*.tfrecord"))
    n = sum(r["records"] for r in count_paths(test_files))
    assert n == split_sizes(shards)["test"] and n % 32  # the last batch is partial
    res = cli("evaluate", run, "--data", shards, "--split", "test", "--out", tmp_path / "ev",
              "--format", "json", "--batch-size", "32")
    assert res.exit_code == 0, res.stderr
    row = json.loads(res.stdout)[0]
    assert row["records"] == n
    preds = list(csv.DictReader((tmp_path / "ev" / "predictions.csv").open()))
    assert len(preds) == n
    assert len({p["file"] for p in preds}) == n  # every record once, none repeated
    from sklearn.metrics import accuracy_score, f1_score

    true = [p["true"] for p in preds]
    pred = [p["predicted"] for p in preds]
    assert row["accuracy"] == pytest.approx(accuracy_score(true, pred), abs=1e-4)
    assert row["macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"), abs=1e-4)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert np.asarray(metrics["confusion"]).sum() == n
    assert len(metrics["per_class"]) == 10
    for name in ("confusion.csv", "confusion.png", "per_class.csv"):
        assert (tmp_path / "ev" / name).stat().st_size > 0


@pytest.mark.slow
def test_evaluate_on_two_devices_sees_every_record_once(trained, shards, mltk_proc, tmp_path):
    run, _, _ = trained
    res = mltk_proc("evaluate", run, "--data", shards, "--split", "test", "--cpu-replicas", "2",
                    "--gpus", "0", "--batch-size", "16", "--out", tmp_path / "ev", "--format",
                    "json")
    assert res.returncode == 0, res.stderr[-3000:]
    row = json.loads(res.stdout)[0]
    n = split_sizes(shards)["test"]
    assert row["records"] == n and n % 32  # global batch 2 x 16: the last one is partial
    preds = list(csv.DictReader((tmp_path / "ev" / "predictions.csv").open()))
    assert len({p["file"] for p in preds}) == n
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["replicas"] == 2
    from sklearn.metrics import accuracy_score

    assert row["accuracy"] == pytest.approx(
        accuracy_score([p["true"] for p in preds], [p["predicted"] for p in preds]), abs=1e-4)


@pytest.mark.slow
def test_evaluate_per_class_and_multi_split_folder(trained, shards, cli):
    run, _, _ = trained
    # A folder with train, validation and test splits: evaluate takes test by default.
    res = cli("evaluate", run, "--data", shards, "--per-class", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert [r["class"] for r in rows] == [str(i) for i in range(10)]
    assert sum(int(r["support"]) for r in rows) == split_sizes(shards)["test"]
    bad = cli("evaluate", run, "--data", shards, "--split", "nope")
    assert bad.exit_code == 1 and "no split named 'nope'" in bad.stderr


@pytest.mark.slow
def test_evaluate_bad_inputs(trained, cli, tmp_path, digits_dir):
    run, _, _ = trained
    res = cli("evaluate", tmp_path / "missing", "--data", tmp_path)
    assert res.exit_code == 1 and "no such run folder" in res.stderr
    res = cli("evaluate", tmp_path, "--data", tmp_path)
    assert res.exit_code == 1 and "no best.keras" in res.stderr
    from mltk.tfrecords import BuildOptions, build

    # Shards of 3 classes against a 10-class model.
    sub = tmp_path / "three"
    for label in ("0", "1", "2"):
        (sub / label).mkdir(parents=True)
        for f in sorted((digits_dir / label).glob("*.jpg"))[:5]:
            (sub / label / f.name).write_bytes(f.read_bytes())
    build(sub, tmp_path / "s3", BuildOptions(shards=1))
    res = cli("evaluate", run, "--data", tmp_path / "s3")
    assert res.exit_code == 1 and "3 classes, the model 10" in res.stderr


@pytest.mark.slow
def test_predict_streams_rows_and_reports_bad_files(trained, cli, digits_dir, tmp_path):
    run, _, _ = trained
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    files = sorted((digits_dir / "7").glob("*.jpg"))[:5]
    stdin = "\n".join([str(files[0]), str(bad), str(tmp_path / "gone.jpg")]) + "\n"
    res = cli("predict", run, "-", str(digits_dir / "7"), "--format", "ndjson", "--top-k", "2",
              input=stdin)
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    n7 = len(list((digits_dir / "7").glob("*.jpg")))
    assert len(rows) == 3 + n7
    assert set(rows[0]) == {"path", "label", "probability", "label_2", "probability_2", "error"}
    assert rows[1]["path"] == str(bad) and rows[1]["error"] and rows[1]["label"] is None
    assert rows[2]["error"] == "file not found"
    assert f"{bad}:" in res.stderr and "gone.jpg" in res.stderr
    sevens = rows[3:]
    assert sum(r["label"] == "7" for r in sevens) >= 0.8 * len(sevens)
    assert all(r["probability"] >= r["probability_2"] for r in sevens)
    strict = cli("predict", run, str(bad), "--strict", "--format", "csv")
    assert strict.exit_code == 1


# --- bad training input ----------------------------------------------------------------------

@pytest.mark.slow
def test_training_input_errors(cli, shards, tmp_path):
    res = cli("train", "--out", tmp_path / "x", "--gpus", "0")
    assert res.exit_code == 1 and "no training data" in res.stderr
    res = cli("train", "--data", tmp_path / "nothing", "--out", tmp_path / "x", "--gpus", "0")
    assert res.exit_code == 1 and "nothing: no such file or directory" in res.stderr
    res = cli("train", "--data", shards, "--synthetic", "--out", tmp_path / "x")
    assert res.exit_code == 2
    res = cli("train", "--data", shards, "--out", tmp_path / "x", "--gpus", "0",
              "--batch-per-replica", "5000", "--model", "small_cnn")
    assert res.exit_code == 1 and "fewer than one global batch" in res.stderr
    res = cli("train", "--data", shards, "--out", tmp_path / "x", "--gpus", "0",
              "--model", "inception_resnet_v2", "--image-size", "32")
    assert res.exit_code == 1 and "--image-size of at least 75" in res.stderr


# --- settings ------------------------------------------------------------------------------

def test_train_settings_defaults_are_configs_train_yaml():
    from mltk import settings
    from mltk.classify import TrainSettings

    loaded = settings.load("train", environ={})
    assert isinstance(loaded, TrainSettings) and loaded == TrainSettings()
    assert set(TrainSettings.field_names()) == set(_config_default())
    assert all(TrainSettings.docs().values())  # every setting says what it is
    assert loaded.learning_rate is None and loaded.recipe == "default"
    assert settings.load("train", learning_rate="AUTO", environ={}).learning_rate == "auto"
    assert settings.load("train", learning_rate="1e-3", environ={}).learning_rate == 0.001


def _config_default() -> dict:
    from mltk import settings as mltk_settings

    return mltk_settings.defaults("train")


def test_bad_train_settings_name_the_setting_and_where_it_came_from(cli, tmp_path):
    from mltk import settings
    from mltk.settings import SettingError

    with pytest.raises(SettingError, match="epochs must be a positive integer, got 0") as err:
        settings.load("train", epochs=0, environ={})
    assert err.value.key == "epochs"
    with pytest.raises(SettingError, match="^MLTK_TRAIN_EPOCHS: epochs must be") as err:
        settings.load("train", environ={"MLTK_TRAIN_EPOCHS": "0"})
    assert err.value.key == "epochs"
    with pytest.raises(SettingError, match="learning_rate must be a positive number or auto"):
        settings.load("train", learning_rate="fast", environ={})
    with pytest.raises(SettingError, match="unknown recipe 'fast'"):
        settings.load("train", recipe="fast", environ={})
    # The library takes a plain mapping too, checked the same way (nothing is trained).
    from mltk.classify import train

    with pytest.raises(SettingError, match="contrast must be a range"):
        train({"contrast": [1.5, 0.5]}, tmp_path / "x", synthetic=True)
    # On the command line a bad value is a usage error (exit 2) naming the option.
    res = cli("train", "--synthetic", "--out", tmp_path / "x", "--epochs", "0")
    assert res.exit_code == 2 and "--epochs" in res.stderr
    res = cli("train", "--synthetic", "--out", tmp_path / "x", "--lr", "fast")
    assert res.exit_code == 2 and "--lr" in res.stderr and "positive number or auto" in res.stderr
    res = cli("train", "--synthetic", "--out", tmp_path / "x", "--model", "vgg99")
    assert res.exit_code == 2 and "--model" in res.stderr and "vgg99" in res.stderr
    res = cli("train", "--synthetic", "--out", tmp_path / "x", env={"MLTK_TRAIN_EPOCHS": "0"})
    assert res.exit_code == 1 and "MLTK_TRAIN_EPOCHS: epochs must be" in res.stderr
    assert not (tmp_path / "x").exists()


def test_adam_and_adamw_are_what_they_say_with_the_same_decoupled_decay():
    import keras

    from mltk import settings
    from mltk.classify.optimization import make_optimizer

    def trained(name: str) -> tuple:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        cfg = settings.load("train", optimizer=name, weight_decay=0.1, environ={})
        opt = make_optimizer(cfg, 0.01)
        model.compile(optimizer=opt, loss="mse")
        x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        model.fit(x, np.zeros((16, 3), np.float32), epochs=3, batch_size=4, verbose=0)
        return opt, model.get_weights()

    adam, adam_weights = trained("adam")
    adamw, adamw_weights = trained("adamw")
    assert type(adam) is keras.optimizers.Adam and type(adamw) is keras.optimizers.AdamW
    assert adam.weight_decay == adamw.weight_decay == pytest.approx(0.1)
    for a, b in zip(adam_weights, adamw_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_the_multi_worker_patch_refuses_a_keras_it_was_not_checked_against(monkeypatch):
    import types

    import keras

    from mltk.classify import keras_patches
    from mltk.classify.keras_patches import check_keras

    check_keras()  # the installed Keras: checked
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    with pytest.raises(MltkError, match=r"checked against Keras 3\.15.*installed Keras 3\.99"
                       ) as err:
        check_keras()
    assert "reduce_per_replica" in str(err.value) and "20585" in str(err.value)
    monkeypatch.undo()
    from keras.src.backend.tensorflow import trainer

    changed = types.SimpleNamespace(**{k: getattr(trainer, k) for k in (
        "_collective_all_reduce_multi_worker", "TensorFlowTrainer")})
    changed.reduce_per_replica = lambda values, strategy, reduction, axis=0: values
    with pytest.raises(MltkError, match=r"expects reduce_per_replica\(values, strategy, "
                       r"reduction\), found \(values, strategy, reduction, axis\)"):
        check_keras(trainer_module=changed)
    del changed._collective_all_reduce_multi_worker
    changed.reduce_per_replica = trainer.reduce_per_replica
    with pytest.raises(MltkError, match="_collective_all_reduce_multi_worker.*missing"):
        check_keras(trainer_module=changed)
    assert keras_patches.CHECKED_VERSIONS


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
def test_imagenet_download_failure_is_explained(monkeypatch):
    import keras

    from mltk.classify.models import build_model

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(MltkError, match="needs network access"):
        build_model("mobilenet_v3_small", 3, 32, weights="imagenet")


# --- parts -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_resnet50_input_conversion_matches_keras_preprocessing():
    import keras

    from mltk.classify.models import convert_input

    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, convert_input(inp, "caffe"))
    ours = model.predict(rgb / 127.5 - 1.0, verbose=0)
    ref = keras.applications.resnet50.preprocess_input(rgb.copy())
    np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "efficientnetv2_b0", "mobilenet_v3_small"])
def test_backbones_build_and_predict(name):
    from mltk.classify.models import build_model

    model = build_model(name, 4, 64, freeze_base=True, trainable_layers=3)
    out = model.predict(np.zeros((1, 64, 64, 3), np.float32), verbose=0)
    assert out.shape == (1, 4) and out.sum() == pytest.approx(1, abs=1e-4)
    base = model.get_layer("backbone")
    trainable = [layer for layer in base.layers if layer.trainable]
    assert 0 < len(trainable) <= 3


def test_learning_rate_schedules():
    from mltk.classify.optimization import lr_schedule

    step = lr_schedule("step", 0.01, steps_per_epoch=10, total_steps=300)
    assert float(step(0)) == pytest.approx(0.01)
    assert float(step(79)) == pytest.approx(0.01)
    assert float(step(80)) == pytest.approx(0.005)   # halved every 8 epochs
    assert float(step(160)) == pytest.approx(0.0025)
    warm = lr_schedule("step", 0.01, steps_per_epoch=10, total_steps=300, warmup_epochs=1)
    assert float(warm(5)) == pytest.approx(0.005)
    assert float(warm(10)) == pytest.approx(0.01)
    cos = lr_schedule("cosine", 0.01, steps_per_epoch=10, total_steps=100)
    assert float(cos(50)) == pytest.approx(0.005, abs=1e-6)
    with pytest.raises(InputError):
        lr_schedule("linear", 0.01, 10, 100)


def test_augmentation_is_seeded_and_stays_in_range():
    from mltk.classify.data import Augment, augment_batch, to_unit_range

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (16, 8, 8, 3)), tf.float32)
    seed = tf.constant([3, 7], tf.int64)
    a = augment_batch(x, seed, Augment()).numpy()
    b = augment_batch(x, seed, Augment()).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and not np.allclose(a, to_unit_range(x).numpy())
    # The folded multiply-add equals contrast, then brightness, clip to 0..255, then scaling.
    none = augment_batch(x, seed, Augment(brightness=0, contrast=None)).numpy()
    np.testing.assert_allclose(none, to_unit_range(x).numpy(), atol=1e-6)
    c = augment_batch(x, seed, Augment(brightness=0, contrast=(0.5, 0.5))).numpy()
    mean = x.numpy().mean(axis=(1, 2), keepdims=True)
    ref = np.clip((x.numpy() - mean) * 0.5 + mean, 0, 255) / 127.5 - 1
    np.testing.assert_allclose(c, ref, atol=1e-5)


@pytest.mark.slow
def test_training_pipeline_flips_per_image_and_scales(shards):
    from mltk.classify.data import Augment, resolve_source, train_dataset

    src = resolve_source([shards], prefer=["train"])
    plain = train_dataset(src, 32, 16, None, seed=5, deterministic=True)
    flipped = train_dataset(src, 32, 16, Augment(brightness=0, contrast=None), seed=5,
                            deterministic=True)
    (x0, y0), (x1, y1) = next(iter(plain)), next(iter(flipped))
    np.testing.assert_array_equal(y0.numpy(), y1.numpy())  # same order with the same seed
    x0, x1 = x0.numpy(), x1.numpy()
    assert x0.shape == (16, 32, 32, 3) and x0.min() >= -1 and x0.max() <= 1
    same = [np.allclose(x0[i], x1[i], atol=1e-5) for i in range(16)]
    mirrored = [np.allclose(x0[i, :, ::-1], x1[i], atol=1e-5) for i in range(16)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 0 < sum(mirrored) < 16


def test_worker_settings_from_the_environment():
    from mltk.classify.runtime import tf_config_from_env

    cfg = tf_config_from_env({"MLTK_WORKERS": "a:1,b:1", "JOB_COMPLETION_INDEX": "1"})
    assert cfg == {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    assert tf_config_from_env({}) is None
    with pytest.raises(ConfigError, match="MLTK_WORKER_INDEX"):
        tf_config_from_env({"MLTK_WORKERS": "a:1,b:1"})
    with pytest.raises(ConfigError, match="not valid JSON"):
        tf_config_from_env({"TF_CONFIG": "{"})


def test_backend_cannot_change_once_keras_is_loaded():
    import keras  # noqa: F401  (loaded with the tensorflow backend in this process)

    from mltk.classify.runtime import select_backend

    select_backend("tensorflow")
    with pytest.raises(MltkError, match="already loaded with the tensorflow backend"):
        select_backend("jax")
    with pytest.raises(ConfigError, match="unknown backend"):
        select_backend("theano")


def test_reduced_jpeg_decode_keeps_at_least_the_training_size():
    import cv2

    from mltk.classify.data import decode_reduced

    img = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    png = cv2.imencode(".png", img)[1].tobytes()
    assert tuple(decode_reduced(tf.constant(jpeg), 100).shape) == (150, 200, 3)  # 1/2 scale
    assert tuple(decode_reduced(tf.constant(jpeg), 40).shape) == (75, 100, 3)    # 1/4 scale
    assert tuple(decode_reduced(tf.constant(jpeg), 151).shape) == (300, 400, 3)  # full size
    assert tuple(decode_reduced(tf.constant(png), 40).shape) == (300, 400, 3)    # not a JPEG


@pytest.mark.slow
def test_weights_from_an_earlier_run(trained):
    import keras

    from mltk.classify.models import build_model

    run, _, _ = trained
    saved = keras.models.load_model(run / "best.keras", compile=False)
    model = build_model("small_cnn", 10, 32, weights=str(run / "best.keras"))
    for a, b in zip(model.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="no such weights file"):
        build_model("small_cnn", 10, 32, weights=str(run / "nope.keras"))
