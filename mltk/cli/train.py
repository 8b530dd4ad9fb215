"""``mltk train``, ``mltk evaluate`` and ``mltk predict``: image classifiers from TFRecords."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format
from mltk.cli._common import (
    ConfigOption,
    FormatOption,
    SeedOption,
    command,
    get_output,
    load_settings,
)
from mltk.cli._mlflow import (
    ExperimentOption,
    MlflowOption,
    RegisterOption,
    RunNameOption,
    make_tracker,
    run_tags,
)


def register(app: typer.Typer) -> None:
    command(app, "train", flags=FLAGS)(train)
    command(app, "evaluate", flags=FLAGS)(evaluate)
    command(app, "predict", flags=FLAGS)(predict)


BackendOption = Annotated[str | None, typer.Option(
    "--backend", help="Keras backend: tensorflow (default) or jax.")]
GpusOption = Annotated[int | None, typer.Option(
    "--gpus", min=0, help="GPUs to use (0 = CPU; default: all visible).")]


#: Settings and arguments whose option is not spelled ``--name-with-dashes``.
FLAGS = {"learning_rate": "--lr", "augment": "--no-augment"}


def _split_list(values: list[str] | None) -> list[str] | None:
    """Repeated options and comma-separated lists alike: --data a --data b, --data a,b."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for models, logs and "
                                      "checkpoints.")],
    data: Annotated[list[str] | None, typer.Option(
        "--data", help="Training TFRecords: folders, files or globs (repeatable). A folder "
        "with several splits gives its train split.")] = None,
    val: Annotated[list[str] | None, typer.Option(
        "--val", help="Validation TFRecords (default: the validation split beside --data).")
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="Train on this split of --data."
                                              )] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="inception_resnet_v2 (default), resnet50, efficientnetv2_b0, "
        "mobilenet_v3_small or small_cnn.")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="none (default), imagenet (downloads once) or a .keras/.weights.h5 "
        "file.")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", min=8,
                                                   help="Input side in pixels (150).")] = None,
    freeze_base: Annotated[bool | None, typer.Option(
        "--freeze-base/--no-freeze-base", help="Train only the new head (transfer learning).")
    ] = None,
    trainable_layers: Annotated[int | None, typer.Option(
        "--trainable-layers", min=0, help="With --freeze-base: fine-tune the base's last N "
        "layers.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (30).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Stop after N steps.")
                     ] = None,
    recipe: Annotated[str | None, typer.Option(
        "--recipe", help="Optimisation recipe (configs/train.yaml): default (picks finetune "
        "for pretrained weights, small_cnn for the small CNN, else scratch), scratch, small_cnn, "
        "finetune or original (the 8-GPU SGD run). The options below override it one by one.")
    ] = None,
    batch_per_replica: Annotated[int | None, typer.Option(
        "--batch-per-replica", min=1, help="Images per GPU per step (recipe: 32).")] = None,
    lr: Annotated[str | None, typer.Option(
        "--lr", help="Learning rate at the recipe's reference global batch, scaled to the real "
        "one by the recipe's rule; auto: run the learning-rate finder first.")] = None,
    lr_schedule: Annotated[str | None, typer.Option(
        "--lr-schedule", help="step (x0.5 every 8 epochs), cosine or constant (recipe).")
    ] = None,
    warmup_epochs: Annotated[float | None, typer.Option(
        "--warmup-epochs", min=0, help="Linear warm-up epochs (recipe).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(
        "--label-smoothing", min=0, max=0.5, help="Label smoothing (recipe).")] = None,
    weight_decay: Annotated[float | None, typer.Option(
        "--weight-decay", min=0, help="Decoupled weight decay (recipe).")] = None,
    optimizer: Annotated[str | None, typer.Option(
        "--optimizer", help="sgd (0.9 Nesterov), adamw or adam (weight decay decoupled as in "
        "adamw) (recipe).")] = None,
    early_stopping: Annotated[int | None, typer.Option(
        "--early-stopping", min=1, help="Stop after N epochs without a better validation "
        "accuracy (best.keras keeps the best).")] = None,
    class_weight: Annotated[str | None, typer.Option(
        "--class-weight", help="none (default), balanced (inverse class frequency) or a "
        "YAML/JSON file of class: weight.")] = None,
    find_lr: Annotated[bool, typer.Option(
        "--find-lr", help="Only run the learning-rate range test: write lr_find.csv and "
        "lr_find.png in --out and print the suggested rate (no model is trained).")] = False,
    no_augment: Annotated[bool, typer.Option(
        "--no-augment", help="No random flip, brightness or contrast.")] = False,
    gpus: GpusOption = None,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", help="auto (mirrored over several devices), mirrored, multi-worker "
        "(TF_CONFIG) or single.")] = None,
    cpu_replicas: Annotated[int | None, typer.Option(
        "--cpu-replicas", min=1, help="Split the CPU into N logical devices (tests "
        "distribution without GPUs).")] = None,
    backend: BackendOption = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="auto (bf16 on capable GPUs), float32, mixed_bfloat16 or "
        "mixed_float16.")] = None,
    jit: Annotated[bool | None, typer.Option("--jit/--no-jit", help="XLA compilation "
                                             "(default: Keras decides).")] = None,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="Random tensors instead of files: the model's own throughput.")
    ] = False,
    num_classes: Annotated[int | None, typer.Option(
        "--num-classes", min=2, help="Classes for --synthetic (200).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        "--checkpoint-every", min=0, help="Steps between checkpoints (500; 0: epochs only).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from "
                                         "its last checkpoint (an error if it has none).")
                      ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in a used --out "
                                            "(with --resume: only if it has no checkpoint)."
                                            )] = False,
    strict_data: Annotated[bool, typer.Option(
        "--strict-data", help="A damaged record (CRC error) is an error; by default its "
        "file's records before it are used, with a warning.")] = False,
    tensorboard: Annotated[bool | None, typer.Option("--tensorboard/--no-tensorboard",
                                                     help="TensorBoard logs in OUT/tensorboard."
                                                     )] = None,
    deterministic: Annotated[bool | None, typer.Option(
        "--deterministic/--no-deterministic", help="With --seed: identical runs (slower).")
    ] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    mlflow: MlflowOption = None,
    experiment: ExperimentOption = None,
    run_name: RunNameOption = None,
    register: RegisterOption = None,
) -> None:
    """Train an image classifier (Keras 3) from TFRecord shards, on one or many GPUs or the CPU.

    --mlflow: one MLflow run with the settings as params, loss, accuracy, learning rate and
    images/s per epoch, and the run folder as artifacts; --register NAME registers it.

    Example: mltk train --data shards/ --out runs/first --model small_cnn --image-size 64
    --epochs 5 --gpus 0
    """
    from mltk.classify.interrupts import Interrupted

    output = get_output(ctx)
    settings = load_settings(ctx, "train", {
        "model": model, "weights": weights, "image_size": image_size,
        "freeze_base": freeze_base, "trainable_layers": trainable_layers, "epochs": epochs,
        "steps": steps, "recipe": recipe, "batch_per_replica": batch_per_replica,
        "learning_rate": lr, "lr_schedule": lr_schedule,
        "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing,
        "weight_decay": weight_decay, "optimizer": optimizer, "early_stopping": early_stopping,
        "class_weight": class_weight, "augment": False if no_augment else None, "gpus": gpus,
        "strategy": strategy, "cpu_replicas": cpu_replicas, "backend": backend,
        "precision": precision, "jit": jit, "num_classes": num_classes,
        "checkpoint_every": checkpoint_every, "tensorboard": tensorboard,
        "deterministic": deterministic, "seed": seed}, config, flags=FLAGS)
    if synthetic and data:
        raise typer.BadParameter("give --data or --synthetic, not both", param_hint="--data")
    try:
        if find_lr:
            _find_lr(output, settings, out, data, val, split, synthetic, fmt, strict_data)
        else:
            tracker = make_tracker("train", mlflow, experiment, run_name, register)
            with tracker.start({**settings.to_dict(), "out": out, "resume": resume},
                               run_tags("train", data=_joined(data), val=_joined(val))):
                _train(output, settings, out, data, val, split, synthetic, resume, overwrite,
                       fmt, strict_data, tracker)
    except Interrupted as exc:
        output.error(f"interrupted by {exc.name} before the first training step")
        raise typer.Exit(exc.exit_status) from None


def _joined(paths: list[str] | None) -> str | None:
    """Repeated --data/--val as one tag value (None: not given)."""
    return ",".join(paths) if paths else None


def _find_lr(output: Any, settings: Any, out: Path, data: list[str] | None,
             val: list[str] | None, split: str | None, synthetic: bool, fmt: Format,
             strict_data: bool = False) -> None:
    from mltk.classify.lr_finder import find_lr

    result = find_lr(settings, out, data=_split_list(data), val=_split_list(val), split=split,
                     synthetic=synthetic, strict_data=strict_data)
    output.emit([{k: result[k] for k in ("suggested_lr", "learning_rate", "lr_reference_batch",
                                         "recipe", "steps", "diverged", "csv", "png")}],
                fmt, title="Learning-rate finder")
    output.info(f"suggested learning rate {result['suggested_lr']:.3g} for this global batch "
                f"(learning_rate {result['learning_rate']:.4g} at the reference batch of "
                f"{result['lr_reference_batch']}); curve in {result['png']}")


def _train(output: Any, settings: Any, out: Path, data: list[str] | None,
           val: list[str] | None, split: str | None, synthetic: bool, resume: bool,
           overwrite: bool, fmt: Format, strict_data: bool = False, tracker: Any = None
           ) -> None:
    from mltk.classify import train as train_run

    with output.progress(None, "training steps") as bar:
        def on_step(done: int, total: int) -> None:
            bar.update_total(total)
            bar.advance()

        def on_epoch(row: dict[str, Any]) -> None:
            parts = [f"{k} {row[k]:.4f}" for k in ("loss", "accuracy", "val_loss",
                                                   "val_accuracy") if k in row]
            output.info(f"epoch {row['epoch']} (step {row['step']}): {', '.join(parts)}; "
                        f"{row['images_per_second']} img/s")
            if tracker is not None:  # history.csv's row: loss, accuracy, lr, images/s, ...
                tracker.log_metrics(row, step=row["epoch"])

        summary = train_run(settings, out, data=_split_list(data), val=_split_list(val),
                            split=split, synthetic=synthetic, resume=resume,
                            overwrite=overwrite, on_step=on_step, on_epoch=on_epoch,
                            strict_data=strict_data).to_dict()
    final = summary["final"] or {}
    output.emit([{
        "run_dir": summary["run_dir"], "model": summary["model"],
        "backend": summary["backend"], "replicas": summary["replicas"],
        "precision": summary["precision"], "global_batch": summary["global_batch"],
        "steps": summary["steps"], "epochs": summary["epochs"],
        "images_per_second": summary["images_per_second"],
        "accuracy": final.get("accuracy"), "val_accuracy": final.get("val_accuracy"),
        "best": summary["best"], "stop_reason": summary["stop_reason"],
        "seconds": summary["seconds"]}], fmt, title="Training run")
    if summary["interrupted"]:
        sig = summary["signal"] or "SIGINT"
        if summary["checkpoint"]:
            output.error(f"interrupted by {sig} at step {summary['steps']}; checkpoint saved: "
                         f"continue with mltk train --out {out} --resume (same options)")
        else:
            output.error(f"interrupted by {sig} before the first training step")
        raise typer.Exit(143 if sig == "SIGTERM" else 130)
    if summary["stop_reason"] == "early_stopping":
        output.info(f"stopped early: no better {summary['best_metric']} for "
                    f"{summary['early_stopping']} epochs (best {summary['best']} at epoch "
                    f"{summary['best_epoch']})")
    if tracker is not None:
        tracker.log_model_folder(out, {f"final_{k}": v for k, v in final.items()})
    output.info(f"{summary['steps']} steps in {summary['seconds']:.0f} s; models in {out}")


def evaluate(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="A run folder (its best.keras) or a .keras "
                                           "model.")],
    data: Annotated[list[str], typer.Option("--data", help="Test TFRecords: folders, files or "
                                            "globs (repeatable).")],
    split: Annotated[str | None, typer.Option(
        "--split", help="Split of a multi-split folder (default: test, else validation).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="k for top-k accuracy.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per device "
                                            "per step.")] = 64,
    per_class: Annotated[bool, typer.Option("--per-class", help="Print the per-class report "
                                            "instead of the summary.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for metrics.json, predictions.csv, confusion.csv/png and "
        "report.html.")
    ] = None,
    gpus: GpusOption = None,
    cpu_replicas: Annotated[int, typer.Option(
        "--cpu-replicas", min=1, help="Split the CPU into N logical devices.")] = 1,
    backend: BackendOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Accuracy, top-k, per-class precision/recall/F1 and the confusion matrix, in one pass
    that sees every record exactly once.

    Example: mltk evaluate runs/first --data shards/ --split test --out runs/first/test
    """
    from mltk.classify import Classifier
    from mltk.classify import evaluate as run_eval

    output = get_output(ctx)
    classifier = Classifier.load(target, backend=backend, gpus=gpus, cpu_replicas=cpu_replicas)
    evaluation = run_eval(classifier, _split_list(data), split=split, top_k=top_k,
                          batch_size=batch_size, with_predictions=out is not None)
    result = evaluation.metrics
    for w in evaluation.warnings:
        output.warn(w)
    if out is not None:
        evaluation.save(out)
    if per_class:
        output.emit(({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                     for r in result["per_class"]), fmt, title="Per-class report")
    else:
        keys = ("records", "accuracy", f"top{top_k}_accuracy", "macro_f1", "weighted_f1",
                "log_loss")
        output.emit([{k: round(result[k], 4) if isinstance(result[k], float) else result[k]
                      for k in keys}], fmt, title=f"Evaluation of {classifier.path}")
    output.info(f"{result['records']} records: accuracy {result['accuracy']:.4f}, "
                f"top-{top_k} {result[f'top{top_k}_accuracy']:.4f}"
                + (f"; reports in {out} (open {out / 'report.html'})" if out else ""))


def predict(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="A run folder or a .keras model.")],
    images: Annotated[list[str], typer.Argument(help="Image files or folders; '-' reads "
                                                "paths from stdin.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per image.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")
                          ] = 64,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk sub-folders.")
                         ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image failed.")
                      ] = False,
    backend: BackendOption = None,
    gpus: GpusOption = None,
    fmt: FormatOption = Format.ndjson,
) -> None:
    """Top-k labels with probabilities per image, streamed in batches; an image that cannot be
    read gets an error row (and a warning) and the rest go on.

    Example: find photos/ -name '*.jpg' | mltk predict runs/first - --format csv
    """
    from mltk.classify import Classifier

    output = get_output(ctx)
    if "-" in images:  # the paths from stdin take the place of the "-"
        stdin = [ln.strip() for ln in sys.stdin if ln.strip()]
        images = [q for p in images for q in (stdin if p == "-" else [p])]
    classifier = Classifier.load(target, backend=backend, gpus=gpus, need_tf=False)
    failed = total = 0

    def rows():
        nonlocal failed, total
        with output.progress(None, "images") as bar:
            for row in classifier.predict_paths(_image_paths(images, recursive), top_k=top_k,
                                                batch_size=batch_size):
                total += 1
                if row["error"]:
                    failed += 1
                    output.warn(f"{row['path']}: {row['error']}")
                bar.advance()
                yield row

    output.emit(rows(), fmt, title="Predictions")
    output.info(f"{total} images, {failed} failed")
    if strict and failed:
        output.error(f"{failed} of {total} images failed")
        raise typer.Exit(1)


def _image_paths(items: list[str], recursive: bool) -> Any:
    """Folders expanded; a file that does not exist is passed on, to get its own error row."""
    from mltk._imaging import iter_image_paths

    for item in items:
        path = Path(item)
        if path.is_dir():
            yield from iter_image_paths([path], recursive=recursive)
        else:
            yield path
