"""``mltk index build|add|remove|query|info``: a faiss similarity index over your own ids."""

from __future__ import annotations

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
    load_settings,
)

index_app = typer.Typer(help="Similarity search over vectors: build an index, change it, "
                        "query it (faiss: exact for small collections, IVF for large).",
                        no_args_is_help=True, cls=MltkGroup)

IndexDir = Annotated[Path, typer.Argument(help="Index folder (from `mltk index build`).")]
IdsOption = Annotated[Path | None, typer.Option(
    "--ids", help="Ids of a .npy matrix's rows: CSV/Parquet with an `id` column (other "
    "columns become metadata) or text, one id a line (default: row numbers).")]
IdColumn = Annotated[str, typer.Option("--id-column", help="Id column of a Parquet source.")]
VectorColumn = Annotated[str, typer.Option("--vector-column",
                                           help="Vector (list) column of a Parquet source.")]


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")


def _is_images(source: Path) -> bool:
    from mltk._imaging import IMAGE_EXTENSIONS

    if source.is_dir():
        return not (source / "config.yaml").exists()
    return source.suffix.lower() in IMAGE_EXTENSIONS


def _source(source: Path, ids: Path | None, id_column: str, vector_column: str) -> Any:
    """The vectors of SOURCE; a folder of images is refused, saying what to give."""
    from mltk._imaging import IMAGE_EXTENSIONS
    from mltk.errors import InputError
    from mltk.similar import read_vectors

    if source.is_dir() and not (source / "config.yaml").exists() and any(
            p.suffix.lower() in IMAGE_EXTENSIONS for p in source.iterdir()):
        raise InputError(f"{source}: a folder of images; indexing images needs their vectors "
                         f"- give --model RUN (or `mltk embed` them first), a vectors folder, "
                         f"a .npy or a .parquet file")
    return read_vectors(source, ids, id_column=id_column, vector_column=vector_column)


def _embedded(ctx: typer.Context, sources: list[Path], model: Path, recursive: bool,
              seed: int | None) -> Any:
    """The vectors of image files and folders, embedded with the run ``model``."""
    from mltk.classify import Classifier
    from mltk.cli.embed import image_paths
    from mltk.errors import InputError
    from mltk.similar.embed import embed_paths

    output = get_output(ctx)
    classifier = Classifier.load(model, need_tf=False)
    result = embed_paths(classifier, image_paths([str(s) for s in sources], recursive),
                         seed=seed or 0, on_row=lambda path, error: error and output.warn(
                             f"{path}: {error}"))
    if not len(result):
        raise InputError(f"{sources[0]}: no image could be embedded")
    output.info(f"{len(result)} images embedded with {result.model}, "
                f"{len(result.errors)} failed")
    return result.vector_set()


@command(index_app, "build")
def build(
    ctx: typer.Context,
    source: Annotated[list[Path], typer.Argument(
        help="Vectors: a vectors folder, a float32 .npy matrix or a Parquet file with an id "
        "and a vector column; or image files and folders with --model.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder to write.")],
    model: Annotated[Path | None, typer.Option(
        "--model", help="Run folder that embeds SOURCE images (as `mltk embed`); the index "
        "remembers it for image queries.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="With --model: walk sub-folders.")] = False,
    ids: IdsOption = None,
    id_column: IdColumn = "id",
    vector_column: VectorColumn = "vector",
    dim: Annotated[int | None, typer.Option("--dim", min=1, help="Reduce to D dims by PCA "
                                            "first (saved; queries are projected too).")
                   ] = None,
    whiten: Annotated[bool, typer.Option("--whiten", help="Whiten the PCA components.")
                      ] = False,
    factory: Annotated[str | None, typer.Option(
        "--factory", help="faiss factory string instead of the automatic choice, e.g. "
        "IVF4096,PQ32, IVF1024,SQ8, HNSW32, Flat.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="cosine (default) or ip.")
                      ] = None,
    memory_mb: Annotated[float | None, typer.Option(
        "--memory-mb", help="Memory budget of an approximate index in MB (default 4096).")
    ] = None,
    target_recall: Annotated[float | None, typer.Option(
        "--target-recall", help="recall@10 the build tunes its search to reach (0.95).")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1,
                                                help="faiss threads (default all cores).")
                       ] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Build an index from vectors; prints its own recall@10 against exact search.

    Example: mltk index build vectors.npy --ids items.csv --out index/
    """
    from mltk import _config
    from mltk.errors import InputError
    from mltk.similar import PCA, SimilarityIndex

    settings = load_settings(ctx, "similar", {
        "factory": factory, "metric": metric, "memory_mb": memory_mb,
        "target_recall": target_recall, "threads": threads, "seed": seed}, config)
    if model is not None:
        bad = [s for s in source if not _is_images(s)]
        if bad:
            raise InputError(f"{bad[0]}: --model embeds images; give image files or folders "
                             f"(a vectors folder already names its model)")
        vs = _embedded(ctx, source, model, recursive, seed)
    elif len(source) > 1:
        raise typer.BadParameter("one vectors SOURCE (several only for images with --model)",
                                 param_hint="SOURCE")
    else:
        vs = _source(source[0], ids, id_column, vector_column)
    pca = PCA.load(Path(vs.source) / "pca.npz") if vs.info.get("pca") else None
    index, report = SimilarityIndex.build(vs, settings, dim=dim, whiten=whiten, pca=pca)
    report |= index.save(out)
    _config.save(out / "config.yaml", settings.to_dict())
    out_ = get_output(ctx)
    out_.emit([report], fmt)
    out_.info(f"index of {report['count']:,} vectors written to {out} ({report['factory']}); "
              f"recall@10 {report['recall@10']} against exact search on "
              f"{min(settings.recall_queries, report['count'])} sample queries")


@command(index_app, "add")
def add(
    ctx: typer.Context,
    index_dir: IndexDir,
    source: Annotated[Path, typer.Argument(help="Vectors to add (as for `build`); their ids "
                                           "must be new.")],
    ids: IdsOption = None,
    id_column: IdColumn = "id",
    vector_column: VectorColumn = "vector",
    fmt: FormatOption = Format.table,
) -> None:
    """Add items to an index without rebuilding it.

    Example: mltk index add index/ new_items.parquet
    """
    from mltk.similar import SimilarityIndex
    from mltk.similar.store import locked

    vs = _source(source, ids, id_column, vector_column)
    with locked(index_dir):
        index = SimilarityIndex.load(index_dir)
        added = index.add(vs)
        index.save(index_dir)
    get_output(ctx).emit([{"added": added, "count": len(index)}], fmt)


@command(index_app, "remove")
def remove(
    ctx: typer.Context,
    index_dir: IndexDir,
    ids: Annotated[list[str] | None, typer.Argument(help="Ids to remove.")] = None,
    ids_file: Annotated[Path | None, typer.Option(
        "--ids", help="More ids: CSV/Parquet with an `id` column, or one id a line.")] = None,
    missing_ok: Annotated[bool, typer.Option(
        "--missing-ok", help="Skip ids not in the index instead of failing.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Remove items by id without rebuilding the index.

    Example: mltk index remove index/ 123 456
    """
    from mltk.similar import SimilarityIndex
    from mltk.similar.store import locked
    from mltk.similar.vectors import ID, read_id_table

    wanted = list(ids or [])
    if ids_file is not None:
        wanted += [str(v) for v in read_id_table(ids_file)[ID]]
    if not wanted:
        raise typer.BadParameter("give ids to remove, or --ids FILE", param_hint="IDS")
    with locked(index_dir):
        index = SimilarityIndex.load(index_dir)
        removed = index.remove(wanted, missing_ok=missing_ok)
        if removed:
            index.save(index_dir)
    get_output(ctx).emit([{"removed": removed, "count": len(index)}], fmt)


@command(index_app, "query")
def query(
    ctx: typer.Context,
    index_dir: IndexDir,
    queries: Annotated[list[str] | None, typer.Argument(
        help="Image files (embedded with the index's model) or ids already in the index "
        "(\"more like item 123\": the item itself is left out).")] = None,
    vectors: Annotated[Path | None, typer.Option(
        "--vectors", help="Query vectors instead: a vectors folder, .npy or Parquet (as for "
        "`build`).")] = None,
    ids: IdsOption = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Run folder that embeds image queries (default: the index's own; "
        "another model is refused).")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Neighbours per query.")] = 10,
    where: Annotated[str | None, typer.Option(
        "--where", help="Metadata filter, e.g. \"category == 'bags' and price <= 5000\" "
        "(== != < <= > >= in, and, or, not).")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Nearest neighbours of images, ids or vectors: one record per query {query, neighbors}.

    Example: mltk index query index/ 123 photo.jpg -k 10 --where "price <= 5000" -f json
    """
    from mltk.similar import SimilarityIndex, query_records
    from mltk.similar.embed import load_index_model
    from mltk.similar.queries import by_texts, by_vectors, merge

    if not queries and vectors is None:
        raise typer.BadParameter("give images or ids to query, or --vectors FILE",
                                 param_hint="QUERIES")
    index = SimilarityIndex.load(index_dir)
    parts = [by_vectors(index, _source(vectors, ids, "id", "vector"))] if vectors else []
    if queries:
        parts.append(by_texts(index, queries, lambda: load_index_model(index.config, model)))
    get_output(ctx).emit(query_records(index, merge(parts), k, where), fmt,
                         flatten=_flat_neighbors)


def _flat_neighbors(rec: dict[str, Any]) -> dict[str, Any]:
    """csv/table: the neighbours as ``id (score)`` in one cell."""
    return {"query": rec["query"], "neighbors": ", ".join(
        f"{n['id']} ({n['score']:.4f})" for n in rec["neighbors"])}


@command(index_app, "info")
def info(
    ctx: typer.Context,
    index_dir: IndexDir,
    fmt: FormatOption = Format.table,
) -> None:
    """What an index holds: count, dimension, faiss factory, metric, model, recall@10.

    Example: mltk index info index/ -f json
    """
    from mltk.similar import SimilarityIndex
    from mltk.similar.store import read_manifest, size_of

    index = SimilarityIndex.load(index_dir)
    record = index.info() | {"bytes": size_of(index_dir, read_manifest(index_dir))}
    get_output(ctx).emit([record], fmt)
