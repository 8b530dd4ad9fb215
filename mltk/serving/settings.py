"""Typed settings of ``mltk serve``: defaults < config file < environment < explicit values."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from mltk._settings import (
    SettingError,
    Settings,
    boolean,
    integer,
    number,
    optional,
    sequence,
    setting,
    text,
)
from mltk.errors import ConfigError

#: SageMaker's own variables, read when neither an option nor MLTK_SERVE_* sets the value.
SAGEMAKER_ENV = {"port": "SAGEMAKER_BIND_TO_PORT", "workers": "SAGEMAKER_MODEL_SERVER_WORKERS",
                 "timeout": "SAGEMAKER_MODEL_SERVER_TIMEOUT"}
SAGEMAKER_MODEL_DIR = "/opt/ml/model"


def _models(key: str, value: Any) -> tuple[str, ...]:
    """MODEL specs (PATH, NAME=PATH or colors): one, or a list of at least one."""
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    return sequence(text())(key, [os.fspath(v) for v in value])


def _roots(key: str, value: Any) -> tuple[str, ...]:
    """Folders (text DIR[,DIR], or a list): absolute paths, as a job request's paths are (the
    parsing of ``mltk worker --job-roots`` too)."""
    from mltk.jobs.roots import parse_roots

    return parse_roots(key, value)


@dataclasses.dataclass(frozen=True)
class ServeSettings(Settings):
    """How ``mltk serve`` serves (configs/serve.yaml); checked when made, frozen."""

    SECTION: ClassVar[str] = "serve"

    models: tuple[str, ...] = setting((), _models, "MODEL specs: PATH, NAME=PATH or colors")
    host: str = setting("127.0.0.1", text(), "the address to bind")
    port: int = setting(8080, integer(0), "the port (0: any free one)")
    workers: int = setting(1, integer(1), "server processes; each loads every model")
    max_batch_size: int = setting(32, integer(1), "adaptive batching: inputs per model call")
    max_latency_ms: float = setting(5.0, number(0.0),
                                    "how long the first input of a batch waits for others")
    max_queue: int = setting(256, integer(1), "inputs waiting per model; more get 503 at once")
    max_body_mb: float = setting(6.0, number(0.0, low_open=True), "request body limit")
    timeout: float = setting(60.0, number(0.0, low_open=True), "seconds per request, then 504")
    max_pixels: int | None = setting(None, optional(integer(1)),
                                     "None: the imaging limit (configs/imaging.yaml)")
    top_k: int = setting(3, integer(1), "labels per image for image classifiers")
    token: str | None = setting(None, optional(lambda key, value: str(value)),
                                "bearer token on every route but /ping and health")
    token_file: str | None = setting(None, optional(text()),
                                     "a file holding the token (trailing newline ignored)")
    graceful_timeout: float = setting(25.0, number(0.0, low_open=True),
                                      "seconds to finish in-flight requests after SIGTERM")
    access_log: bool = setting(False, boolean(), "one log line per request")
    header_timeout: float = setting(10.0, number(0.0, low_open=True),
                                    "seconds to receive a request line and headers, then 408")
    body_timeout: float = setting(60.0, number(0.0, low_open=True),
                                  "seconds to receive a request body, then 408")
    keep_alive_timeout: float = setting(5.0, number(0.0, low_open=True),
                                        "idle seconds before a keep-alive connection is closed")
    max_connections: int = setting(1000, integer(1),
                                   "open connections per worker; more get 503 and are closed")
    max_header_kb: float = setting(16.0, number(0.0, low_open=True),
                                   "request line and headers; larger get 431")
    decode_budget_pixels: int | None = setting(
        None, optional(integer(1)), "pixels decoded at once per worker, all requests together "
        "(more wait, then 503); None: 2 x max_pixels")
    broker: str | None = setting(None, optional(text()),
                                 "Redis URL of mltk jobs: enables POST /jobs, GET /jobs/{id}")
    job_roots: tuple[str, ...] = setting((), _roots,
                                         "folders under which POST /jobs may read inputs and "
                                         "write job folders (none: no paths at all)")
    model_repository: str | None = setting(None, optional(text()),
                                           "a folder or URL whose sub-folders and archives are "
                                           "models named after them (Triton's layout)")
    load_on_request: bool = setting(False, boolean(), "repository models load only when asked "
                                    "(POST /v2/repository/models/NAME/load), not at start")
    multi_model: bool = setting(False, boolean(), "SageMaker multi-model endpoint: POST /models "
                                "loads models by URL at run time (env SAGEMAKER_MULTI_MODEL)")
    memory_budget_mb: float | None = setting(None, optional(number(0.0, low_open=True)),
                                             "live-loaded models' size per worker, their files "
                                             "counted; more get 507 (None: no limit)")
    lru_unload: bool = setting(False, boolean(), "over the memory budget, unload the least "
                               "recently used models to make room instead of 507")
    drift_window: int = setting(1000, integer(0),
                                "recent rows per two-group model compared with its training "
                                "data on GET /drift/{name} and /metrics; 0: off")
    grpc_port: int | None = setting(None, optional(integer(0)),
                                    "also serve the Open Inference Protocol over gRPC on this "
                                    "port (0: any free one); None: no gRPC")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models and not (self.model_repository or self.multi_model):
            raise SettingError("models", "no model to serve")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)

    @property
    def decode_budget(self) -> int:
        """Pixels being decoded at once in one worker: the setting, else two images of the
        largest size allowed (with 2 workers in 4 GiB, two 100-megapixel decodes of ~550 MB
        each per worker leave room for the models)."""
        if self.decode_budget_pixels:
            return self.decode_budget_pixels
        from mltk._imaging import default_max_pixels

        return 2 * (self.max_pixels or default_max_pixels())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))


def resolve_settings(models: tuple[str, ...] | list[str] = (), explicit: Mapping[str, Any] | None
                     = None, config_file: str | os.PathLike | None = None,
                     environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Settings from every layer; no MODEL means $MLTK_MODEL_DIR, else /opt/ml/model."""
    from mltk import _config, settings

    environ = os.environ if environ is None else environ
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    for key, var in SAGEMAKER_ENV.items():
        if key not in explicit and _config.env_var("serve", key) not in environ \
                and environ.get(var, "").strip():
            try:
                explicit[key] = int(environ[var])
            except ValueError:
                raise ConfigError(f"{var}: expected a whole number, got {environ[var]!r}") \
                    from None
    if "token" not in explicit and "token_file" not in explicit \
            and environ.get("MLTK_SERVE_TOKEN"):
        explicit["token"] = environ["MLTK_SERVE_TOKEN"]
    explicit["models"] = tuple(models) or (environ.get("MLTK_MODEL_DIR") or SAGEMAKER_MODEL_DIR,)
    _sagemaker_multi_model(explicit, environ)
    loaded = settings.load("serve", config_file, environ=environ, **explicit)
    if not models and loaded.models == explicit["models"]:
        loaded = _live_models_only(loaded)
    if loaded.token_file and "token" not in explicit:
        loaded = dataclasses.replace(loaded, token=read_token(loaded.token_file))
    return loaded


def _sagemaker_multi_model(explicit: dict[str, Any], environ: Mapping[str, str]) -> None:
    """SAGEMAKER_MULTI_MODEL=true (a multi-model endpoint) sets multi_model, unless set."""
    from mltk import _config

    if "multi_model" not in explicit and _config.env_var("serve", "multi_model") not in environ \
            and environ.get("SAGEMAKER_MULTI_MODEL", "").strip().lower() == "true":
        explicit["multi_model"] = True


def _live_models_only(loaded: ServeSettings) -> ServeSettings:
    """No default MODEL where models come from a repository or the multi-model API."""
    if loaded.model_repository or loaded.multi_model:
        return dataclasses.replace(loaded, models=())
    return loaded


def read_token(path: str | os.PathLike) -> str:
    """The bearer token in a file (a Kubernetes or Docker secret): its text without the
    trailing newline; a file that cannot be read or holds no token is a ConfigError naming it."""
    try:
        token = open(path, encoding="utf-8").read().rstrip("\r\n")  # noqa: SIM115
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"token file {os.fspath(path)}: cannot read it ({reason})") from None
    if not token.strip():
        raise ConfigError(f"token file {os.fspath(path)}: it is empty")
    if any(c.isspace() for c in token):
        raise ConfigError(f"token file {os.fspath(path)}: the token has spaces or several "
                          "lines")
    return token
