"""Where `mltk train`'s GPU time goes: one process, one compilation, several timed fits.

mltk's own model, optimizer (SGD, step schedule) and metrics are built and compiled once and
warmed up with a 3-step fit; then --steps-long fits are timed: without callbacks, with an empty
batch-begin callback, with an empty batch-end callback (Keras then waits for every step's logs),
and twice with mltk's own step bookkeeping (the figure `mltk train` reports is printed beside
the wall-clock one). Compare with `bench_train_gpu.py`, whose `mltk train` figure comes from the
first fit of a fresh process.

Run on a GPU host with Keras and JAX, from the repository root:
  KERAS_BACKEND=jax PYTHONPATH=. python3 benchmarks/bench_train_gpu_breakdown.py
  [--model inception_resnet_v2] [--image-size 150] [--batch 256] [--steps 40]
  [--precision mixed_bfloat16] [--gpus 1]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]


def main() -> None:
    from bench_train_gpu import parser_with_model_options

    args = parser_with_model_options(__doc__).parse_args()
    import numpy as np

    from mltk import settings
    from mltk.classify import Trainer

    steps, batch, classes = args.steps, args.batch, args.classes
    cfg = settings.load(
        "train", backend=os.environ["KERAS_BACKEND"], model=args.model,
        image_size=args.image_size, batch_per_replica=batch, steps=steps, num_classes=classes,
        seed=0, gpus=args.gpus, precision=args.precision, checkpoint_every=0, recipe="original",
        learning_rate=0.01, lr_reference_batch=batch, lr_scaling="none", warmup_epochs=0.0,
        label_smoothing=0.0, dropout=0.2)  # SGD on a step schedule, peak 0.01
    trainer = Trainer.prepare(cfg, synthetic=True)
    import keras  # the backend Trainer.prepare set up (KERAS_BACKEND)

    model = trainer.compile()
    batches, _ = trainer.datasets()
    t0 = time.perf_counter()
    model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
    np.asarray(model.optimizer.iterations)
    print(f"compilation and 3 steps: {time.perf_counter() - t0:.1f} s", flush=True)

    def timed(label: str, callbacks: list) -> None:
        t = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks,
                  shuffle=False)
        np.asarray(model.optimizer.iterations)
        print(f"{label:40s} {steps * batch / (time.perf_counter() - t):8.1f} images/s",
              flush=True)

    class BeginHook(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: object = None) -> None:
            pass

    class EndHook(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            pass

    timed("no callbacks", [])
    timed("empty batch-begin callback", [BeginHook()])
    timed("empty batch-end callback (waits)", [EndHook()])
    from mltk.classify.callbacks.progress import Progress, SafePoint
    from mltk.classify.callbacks.steps import StepCounter
    from mltk.classify.callbacks.throughput import Throughput
    from mltk.classify.interrupts import StopRequests

    stops = StopRequests()
    counter, throughput = StepCounter(0, stops), Throughput(trainer.global_batch)
    bookkeeping = [counter, throughput, Progress(counter, 10**9, None), SafePoint(stops)]
    for i in range(2):
        t = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=bookkeeping,
                  shuffle=False)
        wall = steps * batch / (time.perf_counter() - t)
        print(f"{f'mltk step bookkeeping, fit {i + 1}':40s} {wall:8.1f} images/s "
              f"(mltk's figure so far: {throughput.images_per_second:.1f})", flush=True)
    timed("no callbacks, again", [])


if __name__ == "__main__":
    main()
