"""``mltk jobs`` and ``mltk worker``: per-item batch work on Celery workers, or a local pool."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mltk._output import Format
from mltk.cli._common import (
    ConfigOption,
    FormatOption,
    MltkGroup,
    command,
    get_output,
    parse_floats,
)

jobs_app = typer.Typer(help="Batch jobs: colours, predictions, scoring, queries and TFRecord "
                       "shards in chunks on Celery workers (or locally), resumable, each item "
                       "exactly once.",
                       no_args_is_help=True, cls=MltkGroup)

BrokerOption = Annotated[str | None, typer.Option(
    "--broker", envvar="MLTK_BROKER_URL", help="Redis URL, e.g. redis://host:6379/0 (env "
    "MLTK_BROKER_URL). None: run locally.")]
JobDir = Annotated[Path, typer.Argument(help="The job folder (--out of submit).")]


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    command(app, "worker")(worker)


@command(jobs_app, "submit")
def submit(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(
        help="colors | predict | xgb-predict | recommend | tfrecord-build | embed.")],
    args: Annotated[list[str], typer.Argument(
        help="The command's arguments: colors PATH...; predict RUN_DIR PATH...; xgb-predict "
        "MODEL_DIR DATA.csv; recommend MODEL_DIR QUERIES.csv; tfrecord-build SRC OUT (one "
        "chunk per shard); embed RUN_DIR PATH... --vectors DIR. '-' reads paths from stdin.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The job folder.")],
    chunk_size: Annotated[int | None, typer.Option(
        "--chunk-size", min=1, help="Items per chunk (256; a job submitted again: its plan's; "
        "tfrecord-build: always one shard).")] = None,
    broker: BrokerOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")
                    ] = False,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, help="Local runs: worker processes (default: all cores).")
    ] = None,
    lease: Annotated[float, typer.Option(
        "--lease", min=0.1, help="Seconds without a heartbeat after which a chunk's worker is "
        "taken for dead and the chunk is run again.")] = 60.0,
    chunk_seconds: Annotated[float, typer.Option(
        "--chunk-seconds", min=0.001, help="Time limit of one chunk: a chunk running longer "
        "fails, naming the limit.")] = 3600.0,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk sub-folders.")
                         ] = False,
    k: Annotated[int | None, typer.Option(
        "-k", min=1, help="colors: clusters per image; recommend: results per query.")] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="colors: names per image.")
                   ] = None,
    palette: Annotated[Path | None, typer.Option("--palette", help="colors: palette YAML.")
                       ] = None,
    crop: Annotated[str | None, typer.Option("--crop", help="colors: x0,y0,x1,y1 fractions.")
                    ] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="colors: k-means seed; tfrecord-build: split and shuffle seed; "
        "embed: PCA seed.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="predict: labels per "
                                              "image.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="predict, embed: "
                                                   "images per batch.")] = None,
    unknown_categories: Annotated[str | None, typer.Option(
        "--unknown-categories", help="xgb-predict: error (default) or missing.")] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="tfrecord-build: stratified splits, e.g. train=0.9,validation=0.1.")
    ] = None,
    shards: Annotated[int | None, typer.Option("--shards", min=1, help="tfrecord-build: "
                                               "number of shards.")] = None,
    shard_size: Annotated[str | None, typer.Option(
        "--shard-size", help="tfrecord-build: target shard size, e.g. 128MB (default).")
    ] = None,
    shard_by_label: Annotated[bool, typer.Option(
        "--shard-by-label", help="tfrecord-build: one shard per class.")] = False,
    layout: Annotated[str | None, typer.Option(
        "--layout", help="tfrecord-build: standard (default) or raw.")] = None,
    size: Annotated[int | None, typer.Option("--size", help="tfrecord-build: raw layout "
                                             "image side (150).")] = None,
    quality: Annotated[int | None, typer.Option("--quality", help="tfrecord-build: JPEG "
                                                "quality (95).")] = None,
    max_side: Annotated[int | None, typer.Option(
        "--max-side", help="tfrecord-build: downscale so the longer side is at most this.")
    ] = None,
    reencode: Annotated[bool, typer.Option("--reencode", help="tfrecord-build: re-encode "
                                           "JPEGs too.")] = False,
    verify_images: Annotated[bool, typer.Option(
        "--verify-images", help="tfrecord-build: decode every kept JPEG.")] = False,
    vectors: Annotated[Path | None, typer.Option(
        "--vectors", help="embed: the vectors folder to write (as `mltk embed --out`).")
    ] = None,
    dim: Annotated[int | None, typer.Option("--dim", min=1, help="embed: PCA to D dims, "
                                            "fitted on every vector of the job.")] = None,
    whiten: Annotated[bool, typer.Option("--whiten", help="embed: whiten the PCA.")] = False,
    config: ConfigOption = None,
) -> None:
    """Plan a job into a folder and run it: on Celery workers with --broker (prints the job id
    and returns, or follows with --wait), else in a local process pool. Submitting the same job
    again redoes nothing and re-enqueues exactly the chunks without a sound part (a cancelled job
    resumes; another --chunk-size is refused). The broker's password is never shown nor stored.

    Example: mltk jobs submit colors photos/ -r --out jobs/photos --broker redis://localhost:6379/0

    Example: mltk jobs submit tfrecord-build images/ shards/ --shards 8 --out jobs/shards
    """
    from mltk.jobs import JobFolder, JobSettings, core, queue
    from mltk.jobs import submit as submit_job

    output = get_output(ctx)
    if "-" in args:
        stdin = [ln.strip() for ln in sys.stdin if ln.strip()]
        args = [q for a in args for q in (stdin if a == "-" else [a])]
    options = _kind_options(kind, recursive=recursive, k=k, top=top, palette=palette,
                            crop=crop, seed=seed, top_k=top_k, batch_size=batch_size,
                            unknown_categories=unknown_categories, split=split,
                            shards=shards, shard_size=shard_size, shard_by_label=shard_by_label,
                            layout=layout, size=size, quality=quality, max_side=max_side,
                            reencode=reencode, verify_images=verify_images, config=config,
                            vectors=vectors, dim=dim, whiten=whiten)
    folder = JobFolder(out)
    url = queue.broker_url(broker)
    sub = submit_job(folder, kind, args, options,
                      JobSettings(chunk_size, lease, chunk_seconds=chunk_seconds), url)
    job, todo = sub.job, sub.todo
    if sub.resumed:
        output.info(f"job {job['id']} was cancelled: resuming it")
    output.info(f"job {job['id']}: {job['kind']}, {job['items']} items in "
                f"{len(job['chunks'])} chunks, {len(job['chunks']) - len(todo)} done already")
    typer.echo(job["id"])
    if url:
        output.info(f"enqueued {sub.enqueued} chunks on {queue.redact(url)}")
        if wait:
            _wait(output, folder, None, url)
        return
    import os

    with output.progress(len(todo), "chunks") as bar:
        core.run_local(folder, jobs or os.cpu_count() or 1, lambda i, s: bar.advance())
    _finish(output, folder)


def _kind_options(kind: str, **given: Any) -> dict[str, Any]:
    """The options that apply to ``kind``; an option of another kind is a usage error."""
    from mltk.errors import InputError
    from mltk.jobs.kinds import check_options

    def flag(name: str) -> str:
        return "-k" if name == "k" else "--" + name.replace("_", "-")

    try:
        opts = check_options(kind, given, flag)
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None
    if "crop" in opts:
        opts["crop"] = list(parse_floats(opts["crop"], 4, "--crop"))
    for key in ("palette", "config", "vectors"):
        if key in opts:
            opts[key] = str(opts[key])
    return opts


def _finish(output: Any, folder: Any) -> None:
    from mltk.jobs import core

    _report_final_step(output, folder, core.finalize(folder))
    st = core.status(folder)
    output.info(f"{st['done']}/{st['chunks']} chunks done, {st['items_done']} items, "
                f"{st['errors']} with errors")
    _warn_chunks(output, st)
    if st["failed"] or not st["complete"]:
        raise typer.Exit(1)


def _warn_chunks(output: Any, st: dict[str, Any]) -> None:
    """One line per failed chunk and per part that failed its check (to be run again)."""
    for f in st["failures"]:
        output.warn(f"chunk {f['chunk']} failed: {f['reason']}")
    for d in st["damaged"]:
        output.warn(f"chunk {d['chunk']} is not done: {d['reason']} (it is run again when "
                    "the job is submitted again)")


def _report_final_step(output: Any, folder: Any, result: Any) -> None:
    """One line on what the job's last step wrote (tfrecord-build: the dataset)."""
    if result is None:
        return
    job = folder.load()
    if job["kind"] == "embed":
        output.info(f"wrote {result['embedded']} vectors ({result['dim']} dims) to "
                    f"{result['out']} ({result['failed']} images failed)")
    if job["kind"] == "tfrecord-build":
        total = sum(s["records"] for s in result["splits"].values())
        output.info(f"wrote {total} records in {len(result['shards'])} shards to "
                    f"{job['inputs']['out']} ({len(result['skipped'])} files skipped)")


def _wait(output: Any, folder: Any, timeout: float | None, broker: str | None) -> None:
    from mltk.errors import MltkError
    from mltk.jobs import core, queue

    job = folder.load()
    url = broker or job.get("broker")  # job.json's has no password: --broker / env give it
    supervisor = None
    if url:
        queue.check_broker(url)
        supervisor = queue.Supervisor(folder, job, url)
    end = None if timeout is None else time.monotonic() + timeout
    idle_since, lease = time.monotonic(), float(job.get("lease_seconds") or 60.0)
    with output.progress(len(job["chunks"]), "chunks") as bar:
        seen = 0
        while True:
            st = core.status(folder)
            bar.advance(st["done"] - seen)
            seen = st["done"]
            if st["complete"] or (st["failed"] and not st["running"] and not st["pending"]):
                break
            if st["cancelled"]:
                raise MltkError(f"job {job['id']} was cancelled ({st['done']} of "
                                f"{st['chunks']} chunks done); submit it again to resume it")
            idle_since = time.monotonic() if st["running"] else idle_since
            if supervisor is None and time.monotonic() - idle_since > lease:
                raise MltkError(f"job {job['id']} has {st['pending']} chunk(s) not done and "
                                "nothing running them (no broker); submit it again to run them")
            if supervisor is not None:
                lost = supervisor.tick()
                if lost:
                    output.warn(f"re-enqueued chunk(s) {lost}: no live worker had them")
            if end is not None and time.monotonic() > end:
                raise MltkError(f"timed out after {timeout:g} s: {st['done']} of "
                                f"{st['chunks']} chunks done")
            time.sleep(0.5)
    _finish(output, folder)


@command(jobs_app, "status")
def status(ctx: typer.Context, job_dir: JobDir, fmt: FormatOption = Format.table) -> None:
    """Chunks done/running/failed/pending, items, errors, rate and ETA.

    Example: mltk jobs status jobs/photos --format json
    """
    from mltk.jobs import JobFolder, core

    st = core.status(JobFolder(job_dir))
    get_output(ctx).emit([{k: v for k, v in st.items() if k not in ("failures", "damaged")}],
                         fmt, title=f"Job {st['id']}")
    _warn_chunks(get_output(ctx), st)


@command(jobs_app, "wait")
def wait_cmd(
    ctx: typer.Context, job_dir: JobDir,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="Give up after this "
                                                  "many seconds (exit 1).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", envvar="MLTK_BROKER_URL", help="Redis URL with its password, if it has "
        "one (env MLTK_BROKER_URL). None: the job's (job.json keeps no password).")] = None,
) -> None:
    """Follow a job until every chunk is done (exit 0) or some failed for good (exit 1);
    re-enqueues the chunks of workers that died.

    Example: mltk jobs wait jobs/photos --timeout 3600
    """
    from mltk.jobs import JobFolder

    _wait(get_output(ctx), JobFolder(job_dir), timeout, broker)


@command(jobs_app, "results")
def results(ctx: typer.Context, job_dir: JobDir, fmt: FormatOption = Format.ndjson) -> None:
    """The merged output in input order: the records the one-machine command prints.

    Example: mltk jobs results jobs/photos --format csv > colors.csv
    """
    from mltk.jobs import JobFolder, core

    get_output(ctx).emit(core.results(JobFolder(job_dir)), fmt)


@command(jobs_app, "cancel")
def cancel(ctx: typer.Context, job_dir: JobDir) -> None:
    """Cancel a job: chunks not yet started are skipped (finished parts are kept).

    Example: mltk jobs cancel jobs/photos
    """
    from mltk.jobs import JobFolder

    folder = JobFolder(job_dir)
    job = folder.load()
    folder.cancel()
    get_output(ctx).info(f"job {job['id']} cancelled")


@command(jobs_app, "list")
def list_jobs(ctx: typer.Context, broker: BrokerOption = None,
              fmt: FormatOption = Format.table) -> None:
    """The jobs submitted to a broker, with their progress.

    Example: mltk jobs list --broker redis://localhost:6379/0
    """
    from mltk.errors import MltkError
    from mltk.jobs import JobFolder, core, queue

    url = queue.broker_url(broker)
    if not url:
        raise typer.BadParameter("give --broker URL (or MLTK_BROKER_URL)", param_hint="--broker")
    queue.check_broker(url)
    rows = []
    for jid, path in sorted(queue.registered_jobs(url).items()):
        try:
            st = core.status(JobFolder(path))
            rows.append({"id": jid, "folder": path, "kind": st["kind"], "chunks": st["chunks"],
                         "done": st["done"], "failed": st["failed"],
                         "complete": st["complete"], "cancelled": st["cancelled"]})
        except MltkError as exc:
            rows.append({"id": jid, "folder": path, "kind": None, "chunks": None,
                         "done": None, "failed": None, "complete": None, "cancelled": None,
                         "error": str(exc)})
    get_output(ctx).emit(rows, fmt, title="Jobs")


def worker(
    ctx: typer.Context,
    broker: BrokerOption = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1,
                                             help="Worker processes (1).")] = 1,
    queues: Annotated[str, typer.Option("--queues", "-Q", help="Queues to consume.")
                      ] = "mltk",
    job_roots: Annotated[str | None, typer.Option(
        "--job-roots", envvar="MLTK_JOB_ROOTS", metavar="DIR[,DIR]",
        help="Keep every chunk to these folders, by real path (links resolved): inputs read "
             "and folders written must lie under them, whatever job.json says. Give the "
             "server's job_roots to workers of jobs taken over HTTP.")] = None,
) -> None:
    """A Celery worker for mltk jobs: models are loaded once per worker process and kept.
    SIGTERM: finish the running chunk, then exit.

    Example: MLTK_BROKER_URL=redis://redis:6379/0 mltk worker --concurrency 2
    """
    from mltk._settings import SettingError
    from mltk.jobs import queue
    from mltk.jobs.roots import parse_roots

    url = queue.broker_url(broker)
    if not url:
        raise typer.BadParameter("give --broker URL (or MLTK_BROKER_URL)", param_hint="--broker")
    try:
        roots = parse_roots("--job-roots", job_roots or "")
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--job-roots") from None
    queue.check_broker(url)
    output = get_output(ctx)
    output.info(f"mltk worker on {queue.redact(url)}, queues {queues}, concurrency "
                f"{concurrency}" + (f", job roots {', '.join(roots)}" if roots else ""))
    queue.run_worker(url, concurrency, queues,
                     "DEBUG" if output.verbosity > 0 else "INFO" if output.verbosity == 0
                     else "WARNING", roots)
