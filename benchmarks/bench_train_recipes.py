"""mltk train: what the default recipe gives a keras.applications backbone from scratch.

Data: scikit-learn's handwritten digits (all 1,797 real scans, `mltk datasets make
labelled-images`), split 80/20 into training and validation shards. Model: mobilenet_v3_small
from random weights at 64 px (--model, --image-size). Each recipe trains the same model for the
same epochs with the same seed, in its own `mltk train` process: `default` (what a user gets
with no settings: the `scratch` recipe, AdamW with warm-up and cosine decay) and `original`
(the original 8-GPU run's SGD at 0.01 for 256 images, scaled linearly to this batch). Reported
per recipe: the optimizer and peak rate, the best validation accuracy and its epoch, the first
epoch reaching each of --targets, and the wall time. Prints a Markdown table (stdout).

Run: .venv/bin/python benchmarks/bench_train_recipes.py [--epochs 30] [--gpus 0]
     [--model mobilenet_v3_small] [--image-size 64] [--targets 0.9,0.95,0.98]
     [--recipes default,original]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_shards(root: Path, seed: int) -> Path:
    from mltk.datasets import make
    from mltk.tfrecords import BuildOptions, build

    make("labelled-images", root / "img", n=1797, seed=seed)
    build(root / "img", root / "shards",
          BuildOptions(split={"train": 0.8, "validation": 0.2}, shards=4, seed=seed))
    return root / "shards"


def mltk_command() -> list[str]:
    exe = Path(sys.executable).with_name("mltk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mltk"]


def train(shards: Path, out: Path, recipe: str, args: argparse.Namespace) -> dict:
    cmd = mltk_command() + [
        "train", "--data", str(shards), "--out", str(out), "--model", args.model,
        "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--seed",
        str(args.seed), "--recipe", recipe, "--format", "json", "--quiet"]
    if args.gpus is not None:
        cmd += ["--gpus", str(args.gpus)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{recipe}: mltk train failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    history = list(csv.DictReader((out / "history.csv").open()))
    vals = [float(r["val_accuracy"]) for r in history]
    reached = [next((i + 1 for i, v in enumerate(vals) if v >= t), None) for t in args.targets]
    return {"recipe": f"{recipe} ({summary['recipe']})", "optimizer": summary["optimizer"],
            "peak_lr": summary["learning_rate"], "best": max(vals),
            "best_epoch": vals.index(max(vals)) + 1, "final": vals[-1],
            "reached": reached, "seconds": seconds, "device": summary["accelerator"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=None, help="0: CPU (default: all visible)")
    ap.add_argument("--targets", type=lambda t: [float(x) for x in t.split(",")],
                    default=[0.9, 0.95, 0.98])
    ap.add_argument("--recipes", default="default,original")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = make_shards(root, args.seed)
        rows = [train(shards, root / name, name, args) for name in args.recipes.split(",")]
    print(f"{args.model} from scratch, digits at {args.image_size} px (1,437 training, 360 "
          f"validation), {args.epochs} epochs, seed {args.seed}, {rows[0]['device']}\n")
    targets = " | ".join(f"epochs to {t:.2f}" for t in args.targets)
    print(f"| recipe | optimizer | peak lr | best val accuracy (epoch) | final | {targets} "
          "| seconds |")
    print("|---" * (6 + len(args.targets)) + "|")
    for r in rows:
        reached = " | ".join(str(e) if e is not None else "-" for e in r["reached"])
        print(f"| {r['recipe']} | {r['optimizer']} | {r['peak_lr']:.3g} | {r['best']:.3f} "
              f"({r['best_epoch']}) | {r['final']:.3f} | {reached} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
