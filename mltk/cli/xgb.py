"""``mltk xgb-analyze`` and ``mltk xgb-predict``: which features separate two groups."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

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


class UnknownCategories(enum.StrEnum):
    error = "error"
    missing = "missing"


def register(app: typer.Typer) -> None:
    command(app, "xgb-analyze")(xgb_analyze)
    command(app, "xgb-predict")(xgb_predict)


def xgb_analyze(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="CSV or Parquet file; '-' reads CSV from stdin.")],
    target: Annotated[str, typer.Option("--target", help="The two-group column.")],
    id_cols: Annotated[str | None, typer.Option("--id-cols", help="Comma-separated id columns "
                                                "to drop.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report and model.")
                   ] = Path("xgb-analysis"),
    positive: Annotated[str | None, typer.Option(
        "--positive", help="The positive class value (default: the minority class).")] = None,
    booster: Annotated[str | None, typer.Option("--booster", help="dart (default) or gbtree.")
                       ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu (default) or cuda.")
                      ] = None,
    test_size: Annotated[float | None, typer.Option("--test-size", help="Hold-out share (0.2)."
                                                    )] = None,
    folds: Annotated[int | None, typer.Option("--folds", help="CV folds (5).")] = None,
    max_evals: Annotated[int | None, typer.Option("--max-evals", help="Tuning trials (20).")
                         ] = None,
    max_rounds: Annotated[int | None, typer.Option("--max-rounds", help="Rounds cap (1000).")
                          ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds for the search.")
                       ] = None,
    tune_rows: Annotated[str | None, typer.Option(
        "--tune-rows", help="Rows to tune on: auto (default), all, or a number.")] = None,
    categorical: Annotated[str | None, typer.Option(
        "--categorical", help="native (default) or onehot.")] = None,
    tune_on: Annotated[str | None, typer.Option(
        "--tune-on", help="With a Dask cluster: sample (default: tune on a stratified sample "
        "pulled here) or cluster (every trial trained by the workers).")] = None,
    scale_pos_weight: Annotated[float | None, typer.Option(
        "--scale-pos-weight", help="Default: negatives / positives.")] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    mlflow: MlflowOption = None,
    experiment: ExperimentOption = None,
    run_name: RunNameOption = None,
    register: RegisterOption = None,
    dask: Annotated[str | None, typer.Option(
        "--dask", help="Run on a Dask cluster: local:N (N worker processes started here) "
        "or tcp://HOST:PORT. DATA may then be a glob or a folder of parts.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", envvar="MLTK_DASK_SCHEDULER",
        help="A running Dask scheduler, tcp://HOST:PORT (same as --dask tcp://...).")] = None,
    external_memory: Annotated[bool, typer.Option(
        "--external-memory", help="One machine, a Parquet table larger than memory: stream "
        "it in batches of batch_mb (setting, 64 MB) through XGBoost's external memory.")
    ] = False,
) -> None:
    """Tune XGBoost (DART) with hyperopt over stratified CV, and explain what separates the
    two groups: report.html (one file to open or mail), report.md/json, plots, model.ubj,
    data_profile.json (for --drift), trials.csv, test_predictions.csv.

    --mlflow: one MLflow run with the settings as params, CV AUC and rounds per trial, the
    test metrics and the folder as artifacts; --register NAME makes it a registered version.

    Example: mltk xgb-analyze users.csv --target group --id-cols user_id --out analysis/

    On a cluster: mltk xgb-analyze 'users/*.parquet' --target group --dask local:2
    """
    output = get_output(ctx)
    cluster = _cluster(dask, scheduler, external_memory)
    settings = load_settings(ctx, "xgb", {
        "booster": booster, "device": device, "test_size": test_size, "folds": folds,
        "max_evals": max_evals, "max_rounds": max_rounds, "timeout": timeout,
        "tune_rows": tune_rows, "categorical": categorical,
        "scale_pos_weight": scale_pos_weight, "seed": seed, "tune_on": tune_on}, config)
    if settings.tune_on == "cluster" and not cluster:
        raise typer.BadParameter("tuning on the cluster needs one: give --dask or --scheduler "
                                 "(or tune_on: sample)", param_hint="--tune-on")
    tracker = make_tracker("xgb-analyze", mlflow, experiment, run_name, register)
    df = None if cluster or external_memory else _load_table(data)
    ids = [c.strip() for c in id_cols.split(",") if c.strip()] if id_cols else []
    with tracker.start({**settings.to_dict(), "target": target, "id_cols": ids,
                        "positive": positive, "out": out}, run_tags(
                            "xgb-analyze", data=(data, None if df is None else len(df)))):
        with output.progress(settings.max_evals, "tuning") as bar:
            def on_trial(t):
                output.debug(f"trial {t['trial']}: CV AUC {t['cv_auc_mean']:.4f} ± "
                             f"{t['cv_auc_std']:.4f}, {t['rounds']} rounds, "
                             f"{t['seconds']:.1f} s")
                tracker.log_metrics({k: t[k] for k in ("cv_auc_mean", "cv_auc_std", "rounds",
                                                       "seconds")}, step=t["trial"])
                bar.advance()

            analysis = _run_analysis(data, df, target, settings, ids, positive, on_trial,
                                     cluster, external_memory)
        analysis.save(out)
        tracker.log_model_folder(out, {f"test_{k}": v for k, v in analysis.metrics.items()})
    report = analysis.report
    output.emit(({"rank": f["consensus_rank"], "feature": f["feature"],
                  "gain": _round(f["gain"]), "mean_abs_shap": _round(f["mean_abs_shap"]),
                  "permutation_auc_drop": _round(f["permutation_auc_drop"]),
                  "smd": _smd(report, f["feature"])}
                 for f in report["importance"]), fmt, title="Features by consensus rank")
    m = report["metrics"]
    output.info(f"test ROC AUC {m['roc_auc']:.4f}, PR AUC {m['pr_auc']:.4f}, best MCC "
                f"{m['best_mcc']:.4f} at threshold {m['best_threshold']:.3f}; "
                f"report: {out / 'report.html'} ({report['seconds']:.0f} s)")


def _cluster(dask: str | None, scheduler: str | None, external_memory: bool) -> str | None:
    """The cluster named by --dask or --scheduler (one of them), checked before any work."""
    from mltk.errors import InputError
    from mltk.xgb.cluster import parse_cluster

    if dask and scheduler:
        raise typer.BadParameter("give --dask or --scheduler, not both", param_hint="--dask")
    cluster = (dask or scheduler or "").strip() or None
    if cluster and external_memory:
        raise typer.BadParameter("--external-memory is for one machine; a Dask cluster spreads "
                                 "the rows over its workers instead", param_hint="--dask")
    if cluster:
        try:
            parse_cluster(cluster)
        except InputError as exc:
            raise typer.BadParameter(str(exc), param_hint="--dask") from None
    return cluster


def _load_table(data: Path):
    from mltk._tables import load_table

    return load_table(data)


def _run_analysis(data, df, target, settings, ids, positive, on_trial, cluster, external_memory):
    """The analysis where it was asked to run: one process (``df``, the table read), a Dask
    cluster or external memory."""
    if cluster:
        from mltk.xgb.distributed import analyze_on_cluster

        return analyze_on_cluster(data, cluster, target, settings, id_cols=ids,
                                  positive=positive, on_trial=on_trial)
    if external_memory:
        from mltk.xgb.external import analyze_external

        return analyze_external(data, target, settings, id_cols=ids, positive=positive,
                                on_trial=on_trial)
    from mltk.xgb import analyze

    return analyze(df, target, settings, id_cols=ids, positive=positive, on_trial=on_trial)


def _round(value: float | None) -> float | None:
    """Four decimals; None for a measure that could not be computed (see the report)."""
    return None if value is None else round(value, 4)


def _smd(report: dict, feature: str) -> float | None:
    row = next((p for p in report["profile"] if p["feature"] == feature), None)
    return round(row["smd"], 4) if row else None


def xgb_predict(
    ctx: typer.Context,
    model_dir: Annotated[Path, typer.Argument(help="An xgb-analyze --out folder.")],
    data: Annotated[str, typer.Argument(help="CSV or Parquet of new rows; '-' for stdin.")],
    unknown_categories: Annotated[UnknownCategories, typer.Option(
        "--unknown-categories", case_sensitive=False, envvar="MLTK_XGB_UNKNOWN_CATEGORIES",
        help="A category not seen in training: error (default) names the rows; missing "
             "scores it as a missing value and counts it in a warning.")
    ] = UnknownCategories.error,
    drift: Annotated[bool, typer.Option(
        "--drift", help="Also compare the rows with the training data (PSI per feature, "
        "missing rates, new categories): a table and a summary on stderr.")] = False,
    drift_report: Annotated[Path | None, typer.Option(
        "--drift-report", help="With --drift: also write report.html and drift.csv to this "
        "folder.")] = None,
    fmt: FormatOption = Format.csv,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Score a table in parts (a file, glob or folder) into this "
        "folder, one Parquet part per input part; a rerun skips the parts already done.")
    ] = None,
    dask: Annotated[str | None, typer.Option(
        "--dask", help="With --out: score the parts on a Dask cluster, local:N or "
        "tcp://HOST:PORT.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", envvar="MLTK_DASK_SCHEDULER",
        help="With --out: a running Dask scheduler, tcp://HOST:PORT.")] = None,
) -> None:
    """Score new rows: probability of the positive group and the label at the tuned threshold.

    Columns are matched by name (extra ones ignored). Text in a number column or an unseen
    category is an error naming the rows; empty values are scored as missing, as in training.
    --drift compares the rows with the training data's profile (thresholds: PSI 0.1 watch,
    0.25 drift).

    Example: mltk xgb-predict analysis/ new_users.csv --format ndjson --drift

    In parts: mltk xgb-predict analysis/ 'users/*.parquet' --dask local:2 --out scores/
    """
    from mltk._tables import load_table
    from mltk.predictors.two_group import TwoGroupPredictor

    output = get_output(ctx)
    if out is not None or dask or scheduler:
        if out is None:
            raise typer.BadParameter("a cluster scores a table in parts: give --out FOLDER",
                                     param_hint="--out")
        if drift or drift_report is not None:
            raise typer.BadParameter("--drift reads the rows here; not with --out",
                                     param_hint="--drift")
        _score_parts(output, model_dir, data, out, _cluster(dask, scheduler, False),
                     unknown_categories.value, fmt)
        return
    predictor = TwoGroupPredictor.open(model_dir)  # the predictor mltk serve uses too
    profile = None
    if drift or drift_report is not None:
        from mltk.drift import load_reference

        profile = load_reference(model_dir)  # before scoring: an old folder fails fast
    df = load_table(data)
    scored = predictor.score_frame(df, unknown_categories.value)
    output.emit(scored.to_dict("records"), fmt)
    if profile is not None:
        _drift(output, profile, df, model_dir, data, drift_report)


def _score_parts(output, model_dir: Path, data: str, out: Path, cluster: str | None,
                 unknown_categories: str, fmt: Format) -> None:
    """One record per input part (part, output, rows, scored|skipped), then a summary."""
    from mltk.xgb.scoring import score_parts

    results = []

    def records():
        for r in score_parts(model_dir, data, out, cluster, unknown_categories):
            results.append(r)
            yield r.as_record()

    output.emit(records(), fmt)
    scored = [r for r in results if r.status == "scored"]
    output.info(f"{len(scored)} part(s) scored ({sum(r.rows or 0 for r in scored):,} rows), "
                f"{len(results) - len(scored)} already done; in {out}")


def _drift(output, profile, df, model_dir: Path, data: str, report: Path | None) -> None:
    """The drift table on stderr (data stays alone on stdout), then the summary line."""
    import sys

    from mltk.cli.drift import render_summary
    from mltk.drift import compare

    result = compare(profile, df)
    if output.verbosity >= 0:
        output.print_table(result.records(), title="Drift against the training data",
                           stream=sys.stderr)
    render_summary(output, result, str(model_dir), data, report)
