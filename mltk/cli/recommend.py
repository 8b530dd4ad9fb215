"""``mltk recommend rules|fit|query|evaluate``: similar items without ratings."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format
from mltk.cli._common import (
    ConfigOption,
    FormatOption,
    MltkGroup,
    SeedOption,
    command,
    get_output,
)
from mltk.cli._mlflow import (
    ExperimentOption,
    MlflowOption,
    RegisterOption,
    RunNameOption,
    make_tracker,
    run_tags,
)

recommend_app = typer.Typer(help="Similar-item recommendation: rules, meta-categories, "
                            "filters, RankNet.", no_args_is_help=True,
                            cls=MltkGroup)
Transactions = Annotated[Path, typer.Option("--transactions", "-t",
                                            help="CSV/Parquet: user_id, item_id[, timestamp].")]
Items = Annotated[Path, typer.Option("--items", "-i", help="CSV/Parquet of the catalogue.")]


def register(app: typer.Typer) -> None:
    app.add_typer(recommend_app, name="recommend")


#: The `rules` options that set a value of the ``rules`` settings section.
RULE_OPTIONS = {"min_support": "--min-support", "min_confidence": "--min-confidence",
                "min_lift": "--min-lift", "algorithm": "--algorithm", "max_len": "--max-len"}


def _settings(ctx: typer.Context, config: Path | None, seed: int | None,
              rules: dict[str, Any] | None = None) -> Any:
    """The recommend settings (command line > MLTK_RECOMMEND_* > --config > defaults); the
    ``rules`` options change single keys of the ``rules`` section, the rest kept."""
    from mltk._settings import SettingError
    from mltk.cli._common import load_settings

    settings = load_settings(ctx, "recommend", {"seed": seed}, config)
    given = {k: v for k, v in (rules or {}).items() if v is not None}
    if not given:
        return settings
    try:
        return settings.replace(rules=settings.rules.replace(**given))
    except SettingError as exc:
        raise typer.BadParameter(f"rules.{exc.problem}", param_hint=RULE_OPTIONS.get(
            exc.key, "--" + exc.key.replace("_", "-"))) from None


@command(recommend_app, "rules")
def rules(
    ctx: typer.Context,
    transactions: Transactions,
    items: Items,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for rules.csv and "
                                      "meta_categories.csv.")] = Path("recommend-rules"),
    min_support: Annotated[float | None, typer.Option(
        "--min-support", help="Smallest share of users whose baskets hold an itemset "
        "(default 0.002).")] = None,
    min_confidence: Annotated[float | None, typer.Option(
        "--min-confidence", help="Smallest confidence of a kept rule (default 0.1).")] = None,
    min_lift: Annotated[float | None, typer.Option(
        "--min-lift", help="Smallest lift of a kept rule (default 1.5).")] = None,
    algorithm: Annotated[str | None, typer.Option(
        "--algorithm", help="Frequent-itemset miner: apriori or fpgrowth (default fpgrowth).")
    ] = None,
    max_len: Annotated[int | None, typer.Option(
        "--max-len", help="Most categories in an itemset (default 2).")] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Association rules over per-user category baskets, and meta-categories from them.

    Example: mltk recommend rules -t transactions.csv -i items.csv --min-lift 2 --out rules/
    """
    from mltk import _config
    from mltk.recommend import mine_rules, write_rules
    from mltk.recommend.data import load_items, load_transactions

    settings = _settings(ctx, config, seed, {
        "min_support": min_support, "min_confidence": min_confidence, "min_lift": min_lift,
        "algorithm": algorithm, "max_len": max_len})
    item_df = load_items(items, settings, step="rules")  # rules need no price
    found, meta, summary = mine_rules(load_transactions(transactions, item_df, settings),
                                      item_df, settings)
    write_rules(out, found, meta)
    _config.save(out / "config.yaml", settings.to_dict())
    get_output(ctx).emit([summary], fmt)
    get_output(ctx).info(f"wrote {out / 'rules.csv'} and {out / 'meta_categories.csv'}")


@command(recommend_app, "fit")
def fit(
    ctx: typer.Context,
    transactions: Transactions,
    items: Items,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder.")] = Path(
        "recommend-model"),
    users: Annotated[Path | None, typer.Option("--users", "-u", help="CSV/Parquet of user "
                                               "features (user_id + numeric columns).")] = None,
    meta: Annotated[Path | None, typer.Option(
        "--meta-categories", help="meta_categories.csv from `rules` (else rules run first).")
    ] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
    mlflow: MlflowOption = None,
    experiment: ExperimentOption = None,
    run_name: RunNameOption = None,
    register: RegisterOption = None,
) -> None:
    """Train the meta-category classifier and the RankNet; build the candidate index.

    --mlflow: one MLflow run with the settings as params, the fit metrics and the model folder
    as artifacts; --register NAME makes it a registered version.

    Example: mltk recommend fit -t transactions.csv -i items.csv -u users.csv --out model/
    """
    from mltk._tables import load_table
    from mltk.recommend import fit as fit_model

    settings = _settings(ctx, config, seed)
    tables = {"items": items, "transactions": transactions, "users": users, "meta": meta}
    frames = {name: None if path is None else load_table(path) for name, path in tables.items()}
    tracker = make_tracker("recommend-fit", mlflow, experiment, run_name, register)
    with tracker.start({**settings.to_dict(), "out": out}, run_tags("recommend-fit", **{
            name: (path, len(frames[name])) for name, path in tables.items()
            if path is not None})):
        rec = fit_model(frames["items"], frames["transactions"], settings, frames["users"],
                        frames["meta"], sources={k: v for k, v in tables.items()
                                                 if v is not None})
        rec.save(out)
        tracker.log_model_folder(out, {f"{part}_{k}": v for part, d in rec.report.items()
                                       for k, v in d.items()})
    rows = [{"part": part, "metric": k, "value": v} for part, d in rec.report.items()
            for k, v in d.items()]
    get_output(ctx).emit(rows, fmt)
    get_output(ctx).info(f"model written to {out}")


@command(recommend_app, "query")
def query(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="Model folder from `fit`.")],
    item: Annotated[str | None, typer.Option("--item", help="Query item id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="User id (uses user features).")
                    ] = None,
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="CSV or NDJSON with item_id[,user_id] per line ('-' for stdin); a "
        "bad line gets an error record naming it, and the rest go on.")
    ] = None,
    k: Annotated[int | None, typer.Option("-k", min=1, help="Results per query (10).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Survivors per filter and the "
                                          "scores of each result.")] = False,
    dedup: Annotated[Path | None, typer.Option(
        "--dedup", help="Drop candidates whose photo duplicates the query item's or a better "
        "candidate's: a `mltk dedup` result (CSV/JSON/NDJSON) or an index folder over the "
        "photos (needs --catalogue).")] = None,
    catalogue: Annotated[Path | None, typer.Option(
        "--catalogue", help="With --dedup: the items table with a photo column.")] = None,
    photo_column: Annotated[str, typer.Option(
        "--photo-column", help="With --dedup: the catalogue's column of photo paths.")
    ] = "photo",
    duplicate_score: Annotated[float, typer.Option(
        "--duplicate-score", min=-1.0, max=1.0, help="With an index for --dedup: the cosine "
        "at or above which two photos are duplicates.")] = 0.95,
    fmt: FormatOption = Format.table,
) -> None:
    """Similar items: top meta-categories -> candidates -> filters -> RankNet order.

    Example: mltk recommend query model/ --item 1234 -k 10 --explain

    Example: mltk recommend query model/ --item 1234 --dedup dups.csv --catalogue items.csv
    """
    from mltk.predictors.recommender import RecommenderPredictor

    out = get_output(ctx)
    if (dedup is None) != (catalogue is None):
        raise typer.BadParameter("--dedup and --catalogue go together", param_hint="--dedup")
    predictor = RecommenderPredictor.open(model)  # the predictor mltk serve uses too
    rec = predictor.recommender
    if (item is None) == (queries is None):
        raise typer.BadParameter("give --item ID or --queries FILE", param_hint="--item")
    if dedup is not None:
        from mltk.similar.itemdups import DuplicateItems

        rec.duplicates = DuplicateItems.load(catalogue, dedup,
                                             id_column=rec.settings.columns.item_id,
                                             photo_column=photo_column,
                                             min_score=duplicate_score)
    if item is not None:
        result = rec.query(_id(item), k, _id(user) if user is not None else None, explain)
        if result.note:
            out.warn(result.note)
        if explain and result.explain:
            out.info("filters: " + json.dumps(result.explain["filters"]))
        if fmt in (Format.json, Format.ndjson) and explain:
            out.emit([{"item_id": result.item_id, "recommendations": result.items,
                       "note": result.note, "explain": result.explain}], fmt)
        else:
            out.emit(result.items, fmt)
        return
    failed = 0

    def stream(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal failed
        for row in rows:
            if row["error"]:
                failed += 1
                out.warn(row["error"] if row["line"] else f"row {row['row']}: {row['error']}")
            yield row

    from mltk.recommend import read_queries

    with _open_lines(queries) as lines:
        out.emit(stream(predictor.query_records(read_queries(lines, str(queries)), k,
                                                explain)), fmt)
    if failed:
        out.info(f"{failed} queries failed")


def _id(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        return value


@contextmanager
def _open_lines(path: Path) -> Iterator[Any]:
    """The lines of ``path`` ('-': stdin), read as they are needed."""
    if str(path) == "-":
        yield sys.stdin
        return
    with Path(path).open(encoding="utf-8-sig", newline="") as f:
        yield f


@command(recommend_app, "evaluate")
def evaluate(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="Model folder from `fit`.")],
    transactions: Transactions,
    k: Annotated[int | None, typer.Option("-k", min=1, help="Cut-off (10).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random baseline.")] = 0,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write report.html and evaluation.csv to this folder.")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Leave-last-purchase-out hit rate@k, NDCG@k and coverage, against two baselines.

    Example: mltk recommend evaluate model/ -t heldout.csv -k 10 --report evaluation/
    """
    from mltk._tables import load_table
    from mltk.recommend import Recommender
    from mltk.recommend import evaluate as run_eval

    rec = Recommender.load(model)
    rows = run_eval(rec, load_table(transactions), k, seed, source=transactions)
    get_output(ctx).emit(rows, fmt)
    if report is not None:
        from mltk.recommend.report import write_report

        written = write_report(report, rows, {"model": str(model),
                                              "transactions": str(transactions),
                                              "k": rows[0]["k"], "seed": seed})
        get_output(ctx).info(f"report: {written}")
