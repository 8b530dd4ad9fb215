"""mltk train on one GPU beside a plain Keras 3 loop of the same model, in the same run.

The GPU check of `mltk train`: `mltk train --backend jax --synthetic --gpus 1 --model
inception_resnet_v2 --image-size 150 --batch-per-replica 256 --precision mixed_bfloat16
--steps 40` (target: >= 2,900 images/s on one H100, where a plain Keras 3/JAX loop gave 3,003).
The plain loop, run here on the same GPU: keras.applications' model (weights=None, its own
classifier head), SGD with Nesterov momentum, sparse cross-entropy, the same precision and XLA,
`Model.fit` on one random batch repeated, timed over --steps after a warm-up fit that compiles.
Each side runs in its own process; both feed float32 batches from numpy.

Run on a GPU host with Keras and JAX (TensorFlow not needed), from the repository root:
  KERAS_BACKEND=jax PYTHONPATH=. python3 benchmarks/bench_train_gpu.py [--steps 40]
  [--model inception_resnet_v2] [--image-size 150] [--batch 256] [--precision mixed_bfloat16]
On a CPU-only machine add --gpus 0 and small settings, e.g. --model small_cnn --batch 8.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def plain_loop(args: argparse.Namespace) -> dict:
    """The baseline, in this process: a textbook Keras 3 training loop."""
    import keras
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from mltk.classify.models import BACKBONES

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    size = args.image_size
    if args.model == "small_cnn":
        from mltk.classify.models import build_model

        model = build_model("small_cnn", args.classes, size, "none", 0.0, False, None)
    else:
        ctor = getattr(keras.applications, BACKBONES[args.model][0])
        model = ctor(weights=None, input_shape=(size, size, 3), classes=args.classes)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, args.classes, args.batch).astype(np.int64)

    def batches():
        while True:
            yield x, y

    model.fit(batches(), steps_per_epoch=3, epochs=1, verbose=0)  # compiles
    np.asarray(model.optimizer.iterations)
    t0 = time.perf_counter()
    model.fit(batches(), steps_per_epoch=args.steps, epochs=1, verbose=0)
    np.asarray(model.optimizer.iterations)  # waits for the last step
    seconds = time.perf_counter() - t0
    device = keras.backend.backend()
    if device == "jax":
        import jax

        device = jax.devices()[0].device_kind
    return {"images_per_second": args.steps * args.batch / seconds, "device": device}


def mltk_train(args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, "-m", "mltk", "train", "--backend", os.environ.get(
        "KERAS_BACKEND", "jax"), "--synthetic", "--gpus", str(args.gpus), "--model", args.model,
           "--recipe", "original",  # the plain loop it is compared with is SGD
           "--image-size", str(args.image_size), "--batch-per-replica", str(args.batch),
           "--precision", args.precision, "--steps", str(args.steps), "--num-classes",
           str(args.classes), "--seed", "0", "--out", str(out), "--format", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        sys.exit(f"mltk train failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads((out / "summary.json").read_text())


def parser_with_model_options(doc: str) -> argparse.ArgumentParser:
    """The options both GPU benchmarks share (the issue's check by default)."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="inception_resnet_v2")
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--gpus", type=int, default=1)
    return parser


def main() -> None:
    parser = parser_with_model_options(__doc__)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        print(json.dumps(plain_loop(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ours = mltk_train(args, Path(tmp) / "run")
        t_ours = time.perf_counter() - t0
    print(f"mltk train:  {ours['images_per_second']:8.1f} images/s ({args.model}, "
          f"{args.image_size} px, batch {args.batch}, {ours['precision']}, "
          f"{ours['backend']} on {', '.join(ours['devices'])}; {t_ours:.0f} s "
          "with start-up and compilation)", flush=True)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--plain", *sys.argv[1:]],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"plain loop failed ({res.returncode}):\n{res.stderr[-4000:]}")
    plain = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"plain Keras: {plain['images_per_second']:8.1f} images/s on {plain['device']} "
          f"({time.perf_counter() - t0:.0f} s with start-up and compilation)", flush=True)
    print(f"ratio mltk/plain: {ours['images_per_second'] / plain['images_per_second']:.3f} "
          "(target on one H100: 2,900 images/s, 0.966 of the plain loop's 3,003)", flush=True)


if __name__ == "__main__":
    main()
