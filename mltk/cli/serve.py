"""``mltk serve``: every model mltk writes behind the SageMaker contract and the V2 protocol."""

from __future__ import annotations

from typing import Annotated

import typer

from mltk.cli._common import ConfigOption, command, get_output


def register(app: typer.Typer) -> None:
    command(app, "serve")(serve)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(
    ctx: typer.Context,
    models: Annotated[list[str] | None, typer.Argument(
        help="Model folders (mltk train, xgb-analyze, recommend fit, index build), NAME=PATH, "
        "colors or "
        "colors:CONFIG.yaml (a colors config, e.g. with a palette). A PATH may be an archive "
        "(model.tar.gz, .zip) or a URL (s3://, gs://, https://) of a folder or an archive: "
        "fetched once into the cache. None: $MLTK_MODEL_DIR, else /opt/ml/model.",
        show_default=False)] = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to bind (127.0.0.1; env MLTK_SERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", help="Port (8080; env SAGEMAKER_BIND_TO_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Server processes (1; env SAGEMAKER_MODEL_SERVER_WORKERS).")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(
        "--max-batch-size", min=1, help="Adaptive batching: inputs per model call (32).")
    ] = None,
    max_latency_ms: Annotated[float | None, typer.Option(
        "--max-latency-ms", min=0, help="Adaptive batching: longest wait for more inputs (5).")
    ] = None,
    max_body_mb: Annotated[float | None, typer.Option(
        "--max-body-mb", min=0.001, help="Largest request body; larger get 413 (6).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.001, help="Seconds per request, then 504 (60; env "
        "SAGEMAKER_MODEL_SERVER_TIMEOUT).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", envvar="MLTK_BROKER_URL", help="Redis URL of mltk jobs: adds POST /jobs "
        "and GET /jobs/{id} (env MLTK_BROKER_URL).")] = None,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", help="Require this file's text (a mounted secret; trailing newline "
        "ignored) as bearer token (env MLTK_SERVE_TOKEN_FILE; or the token itself in "
        "MLTK_SERVE_TOKEN).", show_default=False)] = None,
    model_repository: Annotated[str | None, typer.Option(
        "--model-repository", help="A folder or URL (s3://, gs://) whose sub-folders and "
        "archives are models named after them, as Triton's; adds the V2 repository API "
        "(POST /v2/repository/index, .../models/NAME/load, .../unload) and POST /models.",
        show_default=False)] = None,
    load_on_request: Annotated[bool | None, typer.Option(
        "--load-on-request", help="Load repository models only when asked, not at start.",
        show_default=False)] = None,
    multi_model: Annotated[bool | None, typer.Option(
        "--multi-model", help="SageMaker multi-model endpoint: POST /models loads a model by "
        "URL at run time, DELETE /models/NAME unloads it (env SAGEMAKER_MULTI_MODEL=true).",
        show_default=False)] = None,
    drift_window: Annotated[int | None, typer.Option(
        "--drift-window", min=0, help="Recent rows kept per two-group model and compared with "
        "its training data on GET /drift/NAME and /metrics (1000; 0: off).")] = None,
    grpc_port: Annotated[int | None, typer.Option(
        "--grpc-port", min=0, help="Also serve the Open Inference Protocol over gRPC "
        "(inference.GRPCInferenceService) on this port (none; env MLTK_SERVE_GRPC_PORT).",
        show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Serve models over HTTP: SageMaker's /ping and /invocations, the Open Inference Protocol
    (V2) under /v2, Prometheus /metrics; with --grpc-port, V2 over gRPC too (the same models
    and limits). SIGTERM finishes the requests in flight and exits 0.
    A model that fails to load stops the server: Error naming it, exit 1.

    Auth: none by default (the server binds 127.0.0.1). With a token (--token-file,
    MLTK_SERVE_TOKEN or token: in --config) every route but /ping, /v2/health/live and
    /v2/health/ready needs the header "Authorization: Bearer TOKEN" (else 401).

    Example: mltk serve analysis/ runs/first colors --port 8080
    """
    import dataclasses
    import signal

    from mltk.predictors import detect_kind, parse_model_spec
    from mltk.storage import is_remote, localize

    # Stopped before the server is up (uvicorn installs its own handlers): still a clean stop.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    from mltk.serving.server import run
    from mltk.serving.settings import resolve_settings

    output = get_output(ctx)
    settings = resolve_settings(tuple(models or ()), {
        "host": host, "port": port, "workers": workers, "max_batch_size": max_batch_size,
        "max_latency_ms": max_latency_ms, "max_body_mb": max_body_mb, "timeout": timeout,
        "broker": broker, "token_file": token_file, "drift_window": drift_window,
        "grpc_port": grpc_port, "access_log": True if output.verbosity > 0 else None,
        "model_repository": model_repository, "load_on_request": load_on_request,
        "multi_model": multi_model}, config)
    from mltk.serving.repository import startup_models

    described, local = [], []
    for spec in startup_models(settings):
        name, path = parse_model_spec(spec)
        if path.split(":")[0] == "colors":
            described.append(f"{name} (colors)")
            local.append(spec)
            continue
        if is_remote(path):  # fetched once here (cached): the workers get the local folder
            output.info(f"fetching model {name} from {path} ...")
        folder = localize(path)
        described.append(f"{name} ({detect_kind(folder)})")
        local.append(f"{name}={folder}")
    settings = dataclasses.replace(settings, models=tuple(local))
    output.info(f"mltk serve: http://{settings.host}:{settings.port} with "
                f"{settings.workers} worker(s); models: {', '.join(described) or 'none yet'}")
    if settings.grpc_port is not None:
        output.info(f"mltk serve: gRPC (Open Inference Protocol) on {settings.host}:"
                    f"{settings.grpc_port}")
    run(settings)
