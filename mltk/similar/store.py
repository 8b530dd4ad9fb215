"""An index folder on disk: files of one generation, and a manifest that names them last.

Every save writes a new generation (``index-G.faiss`` with faiss's own ``write_index``,
``items-G.parquet``, ``pca-G.npz``), each atomically, then replaces ``manifest.json``, which
lists them with their sizes and CRC-32C checksums, and only then deletes the files of older
generations. A save interrupted anywhere leaves the previous generation loadable; a file that
is truncated or altered after the fact fails its checksum with an error naming it, before
faiss reads a byte of it. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mltk.errors import InputError

FORMAT = "mltk-index/1"
MANIFEST = "manifest.json"
LOCK = ".lock"
_GENERATION = re.compile(r"^(index|items|pca)-(\d+)\.(faiss|parquet|npz)$")


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the index folder's writer lock (an exclusive ``flock`` on ``FOLDER/.lock``): two
    ``add`` or ``remove`` runs at once take turns instead of one losing the other's change.
    Readers need no lock (they read whole generations)."""
    import fcntl

    if not folder.is_dir():  # nothing to guard: loading it says what is wrong
        yield
        return
    with open(folder / LOCK, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def checksum(path: Path) -> str:
    """CRC-32C of a file, as hex (hardware-accelerated: about memory speed)."""
    import google_crc32c

    crc = google_crc32c.Checksum()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc.update(chunk)
    return crc.hexdigest().decode()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an index folder; a missing or unreadable one is a clear error."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(f"{folder}: no such index folder")
    if not path.exists():
        raise InputError(f"{folder}: not an mltk index (no {MANIFEST}: not built, or its "
                         f"first save was interrupted)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("files"), dict) or not isinstance(manifest.get("config"), dict):
        raise InputError(f"{path}: not an {FORMAT} manifest; rebuild the index")
    return manifest


def verified(folder: Path, manifest: dict[str, Any], role: str) -> Path | None:
    """The path of the file ``role`` (index, items, pca) after checking its size and checksum
    against the manifest (None when the index has no such file)."""
    entry = manifest["files"].get(role)
    if entry is None:
        return None
    path = folder / str(entry.get("name"))
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError(f"{path}: missing from the index folder; rebuild the index") from None
    if size != entry.get("size"):
        raise InputError(f"{path}: truncated or corrupted ({size:,} bytes, the manifest says "
                         f"{entry.get('size'):,}); rebuild the index")
    if checksum(path) != entry.get("crc32c"):
        raise InputError(f"{path}: corrupted (checksum differs from the manifest); rebuild "
                         f"the index")
    return path


def next_generation(folder: Path) -> int:
    try:
        return int(read_manifest(folder).get("generation", 0)) + 1
    except InputError:
        return 1 + max((int(m.group(2)) for f in folder.glob("*-*.*")
                        if (m := _GENERATION.match(f.name))), default=0)


def commit(folder: Path, generation: int, written: dict[str, Path],
           config: dict[str, Any]) -> None:
    """Record ``written`` (role -> file) as the current generation, then delete older files."""
    from mltk._atomic import write_json

    files = {role: {"name": p.name, "size": p.stat().st_size, "crc32c": checksum(p)}
             for role, p in written.items()}
    write_json(folder / MANIFEST, {"format": FORMAT, "generation": generation,
                                   "files": files, "config": config})
    keep = {p.name for p in written.values()}
    for f in folder.iterdir():
        if _GENERATION.match(f.name) and f.name not in keep:
            try:
                f.unlink()
            except OSError:  # pragma: no cover - a reader on Windows; harmless leftover
                pass


def file_name(role: str, generation: int) -> str:
    return {"index": f"index-{generation}.faiss", "items": f"items-{generation}.parquet",
            "pca": f"pca-{generation}.npz"}[role]


def size_of(folder: Path, manifest: dict[str, Any]) -> int:
    return sum(int(e.get("size", 0)) for e in manifest["files"].values()) + os.path.getsize(
        folder / MANIFEST)
