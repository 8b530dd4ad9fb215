"""A local folder for a model spec: URLs fetched with fsspec, archives unpacked, both cached.

The cache (:class:`~mltk.storage.settings.StorageSettings`) holds one folder per object
version, named by a hash of the URL and the object's identity (ETag, version id, size, time),
so a changed object is fetched again and an unchanged one never is. A lock file serialises
processes fetching the same object (the workers of ``mltk serve`` start together). Downloads go
to a hidden name and are checked against the size the store announced (and the MD5 where the
ETag is one) before they are unpacked; only a complete folder ever gets its final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from mltk._atomic import write_json
from mltk.errors import InputError
from mltk.storage.archives import is_archive, model_root, strip_archive_suffix, unpack
from mltk.storage.settings import StorageSettings

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_IDENTITY_KEYS = ("ETag", "etag", "VersionId", "version_id", "generation", "md5Hash",
                  "Content-MD5", "LastModified", "Last-Modified", "updated", "mtime", "size")
_EXTRAS = {"s3": "s3fs (pip install 'mltk[storage]')", "s3a": "s3fs (pip install 'mltk[storage]')",
           "gs": "gcsfs (pip install gcsfs)", "gcs": "gcsfs (pip install gcsfs)",
           "http": "aiohttp (pip install aiohttp)", "https": "aiohttp (pip install aiohttp)"}


def is_remote(spec: str | os.PathLike[str]) -> bool:
    """Whether a spec is a URL (``s3://``, ``gs://``, ``https://``, ..., and an MLflow
    registry's ``models:/``)."""
    return bool(_URL.match(os.fspath(spec))) or os.fspath(spec).startswith("models:/")


def model_name(spec: str) -> str:
    """The name a model is served under when none is given: the last part of its path without
    an archive suffix; a generic ``model.tar.gz`` takes its folder's name (as SageMaker and
    Triton name models after their folder); ``models:/NAME/...`` is NAME."""
    if spec.startswith("models:/"):
        return spec[len("models:/"):].split("/", 1)[0].split("@", 1)[0] or spec
    path = spec.split("?", 1)[0].split("#", 1)[0] if is_remote(spec) else spec
    if is_remote(path):
        parts = [p for p in PurePosixPath(_URL.sub("", path)).parts if p not in ("/", "")]
    else:
        parts = [p for p in Path(path).resolve().parts if p != "/"]
    if not parts:
        return spec
    last = strip_archive_suffix(parts[-1])
    if last == "model" and len(parts) > 1 and is_archive(parts[-1]):
        return parts[-2]
    return last or parts[-1]


def localize(spec: str | os.PathLike[str], settings: StorageSettings | None = None) -> str:
    """A local model folder for ``spec``: a URL (or ``models:/``) is fetched and unpacked, a
    local archive (or a
    folder holding only one, as SageMaker's ``/opt/ml/model``) unpacked, anything else
    returned unchanged. Raises :class:`~mltk.errors.InputError` naming the spec."""
    spec = os.fspath(spec)
    if spec.startswith("models:/"):  # a registered model version (mltk.storage.registry)
        from mltk.storage import registry

        version = registry.resolve_version(spec)  # an alias: the version it names now
        key = _key(*registry.cache_identity(version))
        settings = settings or _settings()
        return str(_cached(key, settings, spec,
                           lambda dest: registry.download(spec, version, dest, settings)))
    if not is_remote(spec):
        archive = _local_archive(Path(spec))
        if archive is None:
            return spec
        settings = settings or _settings()
        st = archive.stat()
        key = _key(str(archive.resolve()), {"size": st.st_size, "mtime": st.st_mtime_ns})
        return str(_cached(key, settings, spec, lambda dest: _unpack_to(archive, dest, settings)))
    settings = settings or _settings()
    fs, path = _filesystem(spec)
    info = _call(spec, fs.info, path)
    key = _key(spec, _identity(info))
    if info.get("type") == "directory":
        fetch = _folder_fetcher(spec, fs, path, settings)
    elif is_archive(path) or is_archive(spec):
        fetch = _archive_fetcher(spec, fs, path, info, settings)
    else:
        raise InputError(f"{spec}: neither a model folder nor an archive (.tar.gz, .tgz, .tar, "
                         ".zip)")
    return str(_cached(key, settings, spec, fetch))


def _settings() -> StorageSettings:
    from mltk import settings

    return settings.load("storage")


def _local_archive(path: Path) -> Path | None:
    if path.is_file() and is_archive(path):
        return path
    if path.is_dir() and not (path / "config.yaml").exists():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_file() and is_archive(entries[0]):
            return entries[0]
    return None


def _key(origin: str, identity: Mapping[str, Any]) -> str:
    text = json.dumps([origin, sorted((k, str(v)) for k, v in identity.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _identity(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in _IDENTITY_KEYS if info.get(k) not in (None, "")}


def _filesystem(spec: str) -> tuple[Any, str]:
    import fsspec

    scheme = spec.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(spec)
    except (ImportError, ValueError) as exc:
        need = _EXTRAS.get(scheme)
        hint = f"; {scheme}:// needs {need}" if need else ""
        raise InputError(f"{spec}: cannot open {scheme}:// URLs ({exc}){hint}") from None


def _call(spec: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except FileNotFoundError:
        raise InputError(f"{spec}: no such object or folder") from None
    except PermissionError as exc:
        raise InputError(f"{spec}: access denied ({_first_line(exc)})") from None
    except Exception as exc:  # network, credentials, the store's own errors
        raise InputError(f"{spec}: could not be fetched ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from None


def _redacted(spec: str) -> str:
    """A URL without its query (pre-signed URLs carry their credentials there)."""
    return spec.split("?", 1)[0] if is_remote(spec) else spec


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(key: str, settings: StorageSettings, spec: str, fetch: Any) -> Path:
    """The cache folder ``key``, made by ``fetch(dest)`` under a lock when it is not there."""
    cache = settings.cache
    final = cache / key
    if not final.is_dir():
        with _locked(cache / f"{key}.lock"):
            if not final.is_dir():
                fetch(final)
                write_json(cache / f"{key}.source.json", {"spec": _redacted(spec), "folder": key})
    return model_root(final, spec)


def _unpack_to(archive: Path, dest: Path, settings: StorageSettings) -> None:
    unpack(archive, dest, max_bytes=settings.max_bytes, max_files=settings.max_files)


def _archive_fetcher(spec: str, fs: Any, path: str, info: Mapping[str, Any],
                     settings: StorageSettings) -> Any:
    size = info.get("size")
    if size is not None:
        settings.check_bytes(spec, size)

    def fetch(dest: Path) -> None:
        name = PurePosixPath(path).name if is_archive(path) else "model.tar.gz"
        part = dest.with_name(f".{dest.name}.download-{os.getpid()}")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        try:
            local = part / name
            _call(spec, fs.get_file, path, str(local))
            _verify(spec, local, info)
            try:
                _unpack_to(local, dest, settings)
            except InputError as exc:  # named by its URL, not by the download's local name
                raise type(exc)(str(exc).replace(str(local), spec)) from None
        finally:
            shutil.rmtree(part, ignore_errors=True)

    return fetch


def _folder_fetcher(spec: str, fs: Any, path: str, settings: StorageSettings) -> Any:
    found = _call(spec, fs.find, path, None, False, True)  # maxdepth, withdirs, detail
    files = {name: info for name, info in found.items() if info.get("type") != "directory"}
    if not files:
        raise InputError(f"{spec}: an empty folder (no model files)")
    settings.check_files(spec, len(files))
    settings.check_bytes(spec, sum(int(i.get("size") or 0) for i in files.values()))
    root = path.rstrip("/")

    def fetch(dest: Path) -> None:
        part = dest.with_name(f".{dest.name}.download-{os.getpid()}")
        shutil.rmtree(part, ignore_errors=True)
        try:
            for name, info in files.items():
                rel = PurePosixPath(name[len(root):].lstrip("/"))
                if not rel.parts or ".." in rel.parts:
                    raise InputError(f"{spec}: object {name!r} is not inside the folder")
                local = part.joinpath(*rel.parts)
                local.parent.mkdir(parents=True, exist_ok=True)
                _call(spec, fs.get_file, name, str(local))
                _verify(f"{spec} ({rel})", local, info)
            os.rename(part, dest)
        finally:
            shutil.rmtree(part, ignore_errors=True)

    return fetch


def _verify(spec: str, local: Path, info: Mapping[str, Any]) -> None:
    """The downloaded file has the announced size, and the MD5 a single-part S3 ETag names."""
    size = info.get("size")
    got = local.stat().st_size
    if size is not None and got != int(size):
        raise InputError(f"{spec}: downloaded {got:,} bytes of {int(size):,} (the object changed "
                         "or the transfer broke; nothing was kept: try again)")
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if re.fullmatch(r"[0-9a-f]{32}", etag):
        md5 = hashlib.md5(usedforsecurity=False)
        with open(local, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                md5.update(block)
        if md5.hexdigest() != etag:
            raise InputError(f"{spec}: the download's MD5 is not the object's ETag (the object "
                             "changed or the transfer broke; nothing was kept: try again)")


def list_models(spec: str | os.PathLike[str]) -> dict[str, str]:
    """The models of a repository (a folder, or a URL of a prefix): each sub-folder or archive
    under it, by the name it is served under -> its spec (a local path or a URL), as Triton's
    and MLServer's model repositories are laid out. Hidden entries are skipped."""
    spec = os.fspath(spec)
    if not is_remote(spec):
        root = Path(spec)
        if not root.is_dir():
            raise InputError(f"{spec}: no such model repository folder")
        entries = [(p.name, str(p), p.is_dir()) for p in sorted(root.iterdir())]
    else:
        fs, path = _filesystem(spec)
        found = _call(spec, fs.ls, path, True)
        base = spec.rstrip("/")
        entries = []
        for info in sorted(found, key=lambda i: i["name"]):
            full = str(info["name"]).rstrip("/")
            if full != path.rstrip("/"):
                name = PurePosixPath(full).name
                entries.append((name, f"{base}/{name}", info.get("type") == "directory"))
    return {strip_archive_suffix(name): child for name, child, is_dir in entries
            if not name.startswith(".") and (is_dir or is_archive(name))}
