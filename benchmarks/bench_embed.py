"""mltk embed against the model's own batched predict, on the same images in the same run.

Both read, decode and preprocess the same JPEG files in the same threads and run the same model
in batches of the same size; embed stops at the pooled features (and L2-normalises them),
predict runs the head too. Two figures each, best of ``--repeats``:

- files: ``embed_paths`` vs ``Classifier.predict_paths`` (decode + model), images/s;
- model only: ``embed_batch`` vs ``predict_batch`` on already-preprocessed arrays.

Target (issue 21): embed >= 80% of the model's own batched predict throughput.

The run is ``--run RUN`` or, by default, a small_cnn trained here for a few steps on digit
photos (``--image-size``). For a real figure give a real run (e.g. efficientnetv2_b0 at 224 px).

Run: .venv/bin/python benchmarks/bench_embed.py [--images 2000] [--run RUN] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def train_run(root: Path, image_size: int) -> Path:
    from mltk.datasets import make
    from mltk.tfrecords import BuildOptions, build

    make("labelled-images", root / "train-img", n=300, seed=0)
    build(root / "train-img", root / "shards", BuildOptions(split={"train": 1.0}, shards=2))
    exe = Path(sys.executable).with_name("mltk")
    subprocess.run([str(exe), "train", "--data", str(root / "shards"), "--out",
                    str(root / "run"), "--model", "small_cnn", "--image-size", str(image_size),
                    "--gpus", "0", "--steps", "3", "-q"], check=True, capture_output=True)
    return root / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: train "
                        "a small_cnn here)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mltk.classify import Classifier
    from mltk.datasets import make
    from mltk.similar import embed_paths

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = args.run or train_run(root, args.image_size)
        make("labelled-images", root / "img", n=args.images, seed=1)
        paths = sorted((root / "img").rglob("*.jpg"))
        clf = Classifier.load(run, need_tf=False)
        bs = args.batch_size
        arrays = [clf.preprocess(p.read_bytes()) for p in paths]

        def predict_files():
            for _ in clf.predict_paths(paths, batch_size=bs):
                pass

        def embed_files():
            embed_paths(clf, paths, batch_size=bs)

        def predict_model():
            for i in range(0, len(arrays), bs):
                clf.predict_batch(arrays[i:i + bs])

        def embed_model():
            for i in range(0, len(arrays), bs):
                clf.embed_batch(arrays[i:i + bs])

        for fn in (predict_files, embed_files, predict_model, embed_model):  # warm up
            fn()
        n = len(paths)
        rows = []
        for label, pred, emb in (("files (decode + model)", predict_files, embed_files),
                                 ("model only", predict_model, embed_model)):
            tp, te = best(pred, args.repeats), best(emb, args.repeats)
            rows.append((label, n / tp, n / te, tp / te))
        print(f"{n} images, {clf.image_size} px, batch {bs}, model {clf.config.get('model')}, "
              f"run {run if args.run else '(small_cnn trained here)'}")
        print(f"{'':24} {'predict img/s':>14} {'embed img/s':>12} {'embed/predict':>14}")
        for label, p, e, ratio in rows:
            ok = "ok" if ratio >= 0.8 else "BELOW TARGET"
            print(f"{label:24} {p:14.0f} {e:12.0f} {ratio:13.0%}  {ok} (target >= 80%)")


if __name__ == "__main__":
    main()
