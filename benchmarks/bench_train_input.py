"""mltk train: input-pipeline throughput beside the model's own throughput, on this machine.

Shards: photos cut from scikit-image's sample images (random crops, longer side --side px,
JPEG quality 90, kept as-is by `mltk tfrecord build`). The pipeline is the training one:
shuffled shards, interleave, record shuffle, JPEG decode, resize to 150 px, random flip /
brightness / contrast, batch, scale to [-1, 1]. It is timed on one thread (images/s per core)
and on all cores. In the same run, `mltk train --synthetic` measures the model alone (random
tensors, no input pipeline) for small_cnn and inception_resnet_v2 at 150 px on this CPU.
Target: >= 600 images/s per core, so that 16 cores feed one H100 (about 3,000 images/s for
InceptionResNetV2 at 150 px).

Run: .venv/bin/python benchmarks/bench_train_input.py [--images 2000] [--side 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_photos(folder: Path, n: int, side: int, seed: int = 0) -> None:
    import cv2
    import numpy as np
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
               "rocket": data.rocket()}
    for i in range(n):
        name = list(sources)[i % len(sources)]
        img = sources[name]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[y:y + ch, x:x + cw]
        scale = side / max(ch, cw)
        crop = cv2.resize(crop, (round(cw * scale), round(ch * scale)),
                          interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / f"{i:05d}.jpg").write_bytes(buf.tobytes())


def pipeline_rate(src, threads: int | None, images: int) -> float:
    from mltk.classify.data import Augment, train_dataset

    batch = 64
    ds = train_dataset(src, 150, batch, Augment(), seed=0, shuffle_buffer=2000, threads=threads)
    it = iter(ds)
    for _ in range(5):  # fill the shuffle buffer and start the workers
        next(it)
    steps = max(1, images // batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, _ = next(it)
    x.numpy()
    return steps * batch / (time.perf_counter() - t0)


def model_rate(model: str, batch: int, steps: int, out: Path) -> float:
    from mltk import settings
    from mltk.classify import train

    cfg = settings.load("train", model=model, image_size=150, gpus=0, batch_per_replica=batch,
                        steps=steps, seed=0, num_classes=200)
    return train(cfg, out, synthetic=True, overwrite=True).images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=300)
    args = parser.parse_args()
    from mltk.classify.data import resolve_source
    from mltk.tfrecords import BuildOptions, build

    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_photos(tmp / "photos", args.images, args.side)
        build(tmp / "photos", tmp / "shards", BuildOptions(shards=8, seed=0))
        src = resolve_source([tmp / "shards"])
        one = pipeline_rate(src, 1, min(args.images, 3000))
        print(f"input pipeline, 1 thread:   {one:7.0f} images/s per core "
              f"(target >= 600; {args.side} px JPEGs -> 150 px)", flush=True)
        every = pipeline_rate(src, None, 3 * args.images)
        print(f"input pipeline, {cores} cores:    {every:7.0f} images/s "
              f"({every / cores:.0f} per core)", flush=True)
        for model, batch, steps in (("small_cnn", 32, 30), ("inception_resnet_v2", 8, 8)):
            rate = model_rate(model, batch, steps, tmp / model)
            print(f"model alone (--synthetic, CPU): {model:20s} {rate:7.1f} images/s; "
                  f"pipeline on all cores / model: {every / rate:5.1f}x", flush=True)
        print(f"feeding {3000:,} images/s (InceptionResNetV2 on one H100) at {one:.0f} per core "
              f"needs {3000 / one:.1f} cores")


if __name__ == "__main__":
    main()
