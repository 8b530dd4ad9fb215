"""``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and ``models:/NAME/latest``: a model version
of an MLflow model registry, made a local folder in the storage cache.

The registry is the one of the tracking URI (``MLFLOW_TRACKING_URI``, or
``MLFLOW_REGISTRY_URI`` where it differs). An alias is resolved to its version first and the
cache is keyed by the version (and its run and source), so moving an alias to another version
fetches that one the next time, and an unchanged version is never fetched twice. The download
goes to a hidden folder that gets its final name only once complete (see
:mod:`mltk.storage.fetch`). MLflow (``pip install 'mltk[mlflow]'``) is imported only here.

The storage limits apply as to an object store's folder: the version's files are listed with
their sizes first, and more than ``max_files`` files or ``max_mb`` MB in all is refused before
anything is downloaded (:func:`check_listing`); what was downloaded is counted again before it
is kept (:func:`check_folder`), in case the listing left sizes out or the artifacts changed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mltk.errors import InputError

if TYPE_CHECKING:
    from mltk.storage.settings import StorageSettings

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))/?$")


class ModelUri(NamedTuple):
    name: str
    version: str | None
    alias: str | None


def is_model_uri(spec: str | os.PathLike) -> bool:
    """Whether a spec names a registered model version (``models:/...``)."""
    return os.fspath(spec).startswith("models:/")


def parse_model_uri(spec: str) -> ModelUri:
    """``models:/churn/3`` -> ModelUri("churn", "3", None); ``models:/churn@prod`` ->
    ModelUri("churn", None, "prod"). Raises InputError for any other form."""
    m = _MODEL_URI.match(spec)
    if not m:
        raise InputError(f"{spec}: expected models:/NAME/VERSION, models:/NAME@ALIAS or "
                         "models:/NAME/latest")
    return ModelUri(m["name"], m["version"], m["alias"])


def _registry_uri() -> str:
    import mlflow

    return str(mlflow.get_registry_uri())


def resolve_version(spec: str) -> Any:
    """The registry's ModelVersion that ``spec`` names (alias and ``latest`` resolved)."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InputError(f"{spec}: models:/ URIs need MLflow (pip install 'mltk[mlflow]')"
                         ) from None
    uri = parse_model_uri(spec)
    client = MlflowClient()
    try:
        if uri.alias:
            return client.get_model_version_by_alias(uri.name, uri.alias)
        if uri.version == "latest":
            found = client.search_model_versions(f"name = '{uri.name}'")
            if not found:
                raise InputError(f"{spec}: the registered model {uri.name!r} has no version")
            return max(found, key=lambda v: int(v.version))
        return client.get_model_version(uri.name, uri.version)
    except MlflowException as exc:
        raise InputError(f"{spec}: {_first_line(exc.message)} (registry "
                         f"{_redacted(_registry_uri())})") from None
    except InputError:
        raise
    except Exception as exc:  # the registry unreachable, credentials refused, ...
        raise InputError(f"{spec}: the MLflow registry at {_redacted(_registry_uri())} could "
                         f"not be read ({type(exc).__name__}: {_first_line(str(exc))})"
                         ) from None


def cache_identity(version: Any) -> tuple[str, dict[str, str]]:
    """(origin, identity) of a model version for the storage cache's key: the registry, the
    name and the number, and the run and source the version was made from."""
    return (f"{_registry_uri()}|models:/{version.name}/{version.version}",
            {"run_id": version.run_id or "", "source": version.source or ""})


def _version_uri(version: Any) -> str:
    return f"models:/{version.name}/{version.version}"


def check_listing(spec: str, version: Any, settings: StorageSettings) -> None:
    """Refuse the version, before it is downloaded, when its artifacts as the registry lists
    them are more entries (files and folders) than ``settings.max_files`` or more bytes than
    ``settings.max_bytes`` (the walk stops once there are too many entries)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repo = get_artifact_repository(_version_uri(version))
        files = total = 0
        folders: list[str | None] = [None]
        while folders:
            for info in repo.list_artifacts(folders.pop()):
                files += 1  # folders count too: each costs a listing call
                settings.check_files(spec, files)
                if info.is_dir:
                    folders.append(info.path)
                    continue
                # A store that lists no size: counted after the download (check_folder).
                total += int(info.file_size or 0)
        settings.check_bytes(spec, total)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{spec}: the files of version {version.version} could not be listed "
                         f"({type(exc).__name__}: {_first_line(str(exc))})") from None


def check_folder(spec: str, folder: str | os.PathLike[str], settings: StorageSettings) -> None:
    """Refuse a downloaded folder of more files or bytes than the limits (links are counted,
    never followed)."""
    files = total = 0
    for top, dirs, names in os.walk(folder):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            files += 1
            total += os.lstat(os.path.join(top, name)).st_size
            settings.check_files(spec, files)
    settings.check_bytes(spec, total)


def download(spec: str, version: Any, dest: Path, settings: StorageSettings) -> None:
    """Download the model version's files into the folder ``dest`` (made here, whole or not
    at all: the files go to a hidden folder renamed when complete). The version is refused
    before the download when its listing is over the storage limits of ``settings``, and
    after it when what came is."""
    import mlflow.artifacts

    # MLflow draws a progress bar per download, even into a log file; mltk says one line.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    part = dest.with_name(f".{dest.name}.download-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        check_listing(spec, version, settings)
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=_version_uri(version), dst_path=str(part))
        except Exception as exc:
            raise InputError(f"{spec}: version {version.version} could not be downloaded "
                             f"({type(exc).__name__}: {_first_line(str(exc))})") from None
        check_folder(spec, local, settings)
        os.rename(local, dest)
    finally:
        shutil.rmtree(part, ignore_errors=True)


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _redacted(uri: str) -> str:
    from mltk.tracking import redact

    return redact(uri)
