"""Safe unpacking of a model archive (tar, tar.gz, tar.bz2, tar.xz, zip) into a new folder.

An archive comes from wherever a model is kept, so it is read as hostile: an entry with an
absolute path or ``..`` (path traversal), a link that points outside the folder, a device or
FIFO, more bytes than ``max_bytes`` once unpacked (a bomb: the sizes are the archive's own
headers, which tarfile and zipfile never read past) or more files than ``max_files`` is refused
with :class:`UnsafeArchive` naming the archive and the entry. Unpacking writes a hidden sibling
folder and renames it when every entry is in, so a stopped run leaves no folder that looks whole.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from mltk.errors import InputError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


class UnsafeArchive(InputError):
    """An archive that would write outside its folder, or more than the limits allow."""


def is_archive(name: str | os.PathLike[str]) -> bool:
    """Whether a file name ends like an archive mltk unpacks."""
    return str(name).lower().endswith(ARCHIVE_SUFFIXES)


def strip_archive_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
           max_bytes: int, max_files: int) -> Path:
    """Unpack ``archive`` into the new folder ``dest``; returns ``dest``.

    If ``dest`` appears meanwhile (another process unpacked the same archive), that folder is
    kept and this copy dropped.
    """
    archive, dest = Path(archive), Path(dest)
    tmp = dest.with_name(f".{dest.name}.unpack-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _unpack_zip(archive, tmp, max_bytes, max_files)
        else:
            _unpack_tar(archive, tmp, max_bytes, max_files)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _safe_name(archive: Path, name: str) -> str:
    """The entry's path inside the folder; refuses absolute paths and ``..``."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise UnsafeArchive(f"{archive}: entry {name!r} has an absolute path (refused: an "
                            "archive may only write inside its own folder)")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: entry {name!r} leaves the folder with '..' (path "
                            "traversal, refused)")
    return "/".join(parts)


def _check_link(archive: Path, name: str, target: str) -> None:
    """A link may point only at something inside the folder."""
    where = posixpath.normpath(posixpath.join(posixpath.dirname(name), target.replace("\\", "/")))
    if target.startswith("/") or where == ".." or where.startswith("../"):
        raise UnsafeArchive(f"{archive}: entry {name!r} is a link to {target!r}, outside the "
                            "folder (refused)")


class _Budget:
    def __init__(self, archive: Path, max_bytes: int, max_files: int) -> None:
        self.archive, self.max_bytes, self.max_files = archive, max_bytes, max_files
        self.bytes = self.files = 0

    def take(self, size: int) -> None:
        self.files += 1
        self.bytes += max(size, 0)
        if self.files > self.max_files:
            raise UnsafeArchive(f"{self.archive}: more than {self.max_files:,} entries (the "
                                "limit: storage `max_files`)")
        if self.bytes > self.max_bytes:
            raise UnsafeArchive(f"{self.archive}: unpacks to more than "
                                f"{self.max_bytes / 2**20:,.0f} MB (the limit: storage "
                                "`max_mb`); refused as a possible archive bomb")


def _unpack_tar(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    budget = _Budget(archive, max_bytes, max_files)
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:  # one pass: headers are checked before each entry is written
                name = _safe_name(archive, member.name)
                if member.issym() or member.islnk():
                    target = member.linkname if member.issym() else posixpath.relpath(
                        _safe_name(archive, member.linkname), posixpath.dirname(name) or ".")
                    _check_link(archive, name, target)
                elif not (member.isfile() or member.isdir()):
                    raise UnsafeArchive(f"{archive}: entry {member.name!r} is a device or FIFO "
                                        "(refused)")
                budget.take(member.size)
                if name:
                    tf.extract(member, dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, tarfile.FilterError):
            raise UnsafeArchive(f"{archive}: {exc} (refused)") from None
        raise InputError(f"{archive}: not a readable tar archive ({exc})") from None


def _unpack_zip(archive: Path, dest: Path, max_bytes: int, max_files: int) -> None:
    budget = _Budget(archive, max_bytes, max_files)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # the central directory first: nothing is written if one fails
                name = _safe_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    _check_link(archive, name, zf.read(info).decode("utf-8", "replace"))
                elif stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise UnsafeArchive(f"{archive}: entry {info.filename!r} is a device or "
                                        "FIFO (refused)")
                budget.take(info.file_size)
            for info in infos:
                name = _safe_name(archive, info.filename)
                target = dest / name
                if info.is_dir() or not name:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # zipfile stops at each entry's declared size and checks its CRC at the end
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc})") from None


def model_root(folder: Path, origin: str) -> Path:
    """The model folder inside an unpacked archive: its top, or its one top-level folder."""
    if (folder / "config.yaml").is_file():
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "config.yaml").is_file():
        return entries[0]
    raise InputError(f"{origin}: no config.yaml at the top of the archive or in its one "
                     "folder (not an mltk model folder)")
