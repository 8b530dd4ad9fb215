"""Typed settings of ``mltk serve``: defaults < config file < environment < explicit values."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from mltk.errors import ConfigError

#: SageMaker's own variables, read when neither an option nor MLTK_SERVE_* sets the value.
SAGEMAKER_ENV = {"port": "SAGEMAKER_BIND_TO_PORT", "workers": "SAGEMAKER_MODEL_SERVER_WORKERS",
                 "timeout": "SAGEMAKER_MODEL_SERVER_TIMEOUT"}
SAGEMAKER_MODEL_DIR = "/opt/ml/model"


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    models: tuple[str, ...] = ()  # MODEL specs: PATH, NAME=PATH or colors
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_batch_size: int = 32
    max_latency_ms: float = 5.0
    max_queue: int = 256
    max_body_mb: float = 6.0
    timeout: float = 60.0
    max_pixels: int | None = None  # None: the imaging limit (configs/imaging.yaml)
    top_k: int = 3
    token: str | None = None
    graceful_timeout: float = 25.0
    access_log: bool = False
    broker: str | None = None  # with a broker: POST /jobs and GET /jobs/{id}

    def __post_init__(self) -> None:
        for key in ("port", "workers", "max_batch_size", "max_queue", "max_pixels", "top_k"):
            value = getattr(self, key)
            if key == "max_pixels" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < (
                    0 if key == "port" else 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        for key in ("max_latency_ms", "max_body_mb", "timeout", "graceful_timeout"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value < 0 or (
                    key != "max_latency_ms" and value == 0):
                raise ConfigError(f"{key} must be a positive number, got {value!r}")
        if not self.models:
            raise ConfigError("no model to serve")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], origins: Mapping[str, str] | None = None,
                    ) -> ServeSettings:
        """Settings from resolved values (configs/serve.yaml plus ``models``)."""
        from mltk._settings import check_known

        values = dict(cfg)
        check_known("serve", values, [f.name for f in dataclasses.fields(cls)])
        if isinstance(values.get("models"), str):
            values["models"] = (values["models"],)
        values["models"] = tuple(values.get("models") or ())
        if values.get("token") is not None:
            values["token"] = str(values["token"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        data = json.loads(text)
        data["models"] = tuple(data["models"])
        return cls(**data)


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
    if "token" not in explicit and environ.get("MLTK_SERVE_TOKEN"):
        explicit["token"] = environ["MLTK_SERVE_TOKEN"]
    explicit["models"] = tuple(models) or (environ.get("MLTK_MODEL_DIR") or SAGEMAKER_MODEL_DIR,)
    return settings.load("serve", config_file, environ=environ, **explicit)
