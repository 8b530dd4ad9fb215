"""Job roots: the folders a job may read and write under, checked by real path (links resolved).

A server that takes jobs over HTTP (``mltk serve``'s ``job_roots``) names its roots, and so does
a worker that runs their chunks (``mltk worker --job-roots``, env ``MLTK_JOB_ROOTS``): a job then
reads and writes only where the *real* path (:func:`os.path.realpath`: every link resolved, at
any depth) lies under one of them. The roots a worker enforces are its own, never the job's
(job.json lives in the job folder, which whoever can plant a link there can also edit). A link
that leads outside the roots, to a file or a folder, is refused with one line naming the path
and the root (never where the link leads: that line goes back over HTTP):

- an input file listed from a folder (colors, predict, embed) is refused on its own when its
  chunk runs (the check is made again there, so a link made after the plan counts too): its
  record gets the error, as an unreadable image does, and the rest of the chunk goes on;
- the data file of xgb-predict and recommend, and the files a tfrecord-build shard reads, fail
  the chunk when they lead outside; at submission they refuse the whole job;
- a link at the top of the job folder (parts/, stats/, leases/...), and a link anywhere under a
  folder the job writes (``vectors``, the tfrecord ``OUT``), refuse the job at submission, and
  the chunk (or last step) at run time, before anything is written.

What passes a check is then opened by its real path, which shrinks the window between the check
and the use to the time between two system calls; a link swapped in inside that window (by
someone who can write under a root) is not caught: only ``openat2(RESOLVE_BENEATH)`` would.

Without roots (``mltk jobs`` on one's own machine) nothing here applies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from mltk.errors import InputError

ROOTS_ENV = "MLTK_JOB_ROOTS"
log = logging.getLogger(__name__)


class OutsideRoots(InputError):
    """A path whose real path is not under the job roots (or that could not be checked)."""


def parse_roots(key: str, value: Any) -> tuple[str, ...]:
    """Job roots as given (text ``DIR[,DIR]``, or a list): absolute folders, as a job request's
    paths are; a setting error naming ``key`` otherwise (serve's ``job_roots``, the worker's
    ``--job-roots`` and ``MLTK_JOB_ROOTS``)."""
    from mltk._settings import fail, sequence, text

    if isinstance(value, (str, os.PathLike)):
        value = [v for v in os.fspath(value).split(",") if v.strip()]
    roots = sequence(text())(key, [os.fspath(v).strip() for v in value or ()])
    for i, root in enumerate(roots):
        if not os.path.isabs(root):
            raise fail(f"{key}[{i}]", "an absolute folder", root)
    return roots


def real_roots(roots: Sequence[str]) -> list[str]:
    """The roots as real paths (a root that is itself a link counts where it points)."""
    return [os.path.realpath(r) for r in roots]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def taken_under(path: str | os.PathLike[str], roots: Sequence[str]) -> list[str]:
    """The roots that ``path`` lies under as written (links not resolved)."""
    nominal = os.path.abspath(path)
    return [r for r in roots if _under(nominal, r)]


def problem(path: str | os.PathLike[str], roots: Sequence[str]) -> str | None:
    """Why ``path`` may not be used (None: its real path is under one of ``roots``, which are
    real paths already): the path and the root it was taken under, never where it leads (the
    line may go back to an HTTP client; the log says where)."""
    path = os.fspath(path)
    real = os.path.realpath(path)
    if any(_under(real, r) for r in roots):
        return None
    named = taken_under(path, roots)
    if not named:
        return f"{path}: not under the job roots {', '.join(roots)} (refused)"
    log.warning("%s leads to %s, outside the job roots", path, real)
    return f"{path}: leads outside the job roots (taken under {', '.join(named)}; refused)"


def check(path: str | os.PathLike[str], roots: Sequence[str]) -> None:
    """Raise :class:`OutsideRoots` naming ``path`` and the root when it leaves the roots."""
    why = problem(path, roots)
    if why:
        raise OutsideRoots(why)


def resolved(path: str | os.PathLike[str], roots: Sequence[str]) -> str:
    """The real path of ``path``, to open instead of it, once checked to be under ``roots``."""
    check(path, roots)
    return os.path.realpath(path)


def check_entries(folder: str | os.PathLike[str], roots: Sequence[str]) -> None:
    """Refuse a job folder when it, or an entry at its top (parts/, leases/...), leads outside
    the roots: its files are written into those folders (replaced atomically, so a link to a
    file deeper down is replaced, never written through)."""
    check(folder, roots)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutsideRoots(f"{folder}: cannot be listed to check its links "
                           f"({exc.strerror or exc}); refused") from None
    for name in names:
        check(os.path.join(folder, name), roots)


def check_tree(folder: str | os.PathLike[str], roots: Sequence[str]) -> None:
    """Refuse a folder a job writes when it, or any link at any depth under it, leads outside
    the roots (links are checked, never walked into); a folder under it that cannot be read
    refuses it too (its links could not be checked)."""
    check(folder, roots)

    def unreadable(exc: OSError) -> None:
        raise OutsideRoots(f"{exc.filename or folder}: cannot be read to check its links "
                           f"({exc.strerror or exc}); refused")

    top_missing = not os.path.lexists(folder)
    for top, dirs, files in os.walk(folder, onerror=None if top_missing else unreadable):
        for name in dirs + files:
            entry = os.path.join(top, name)
            if os.path.islink(entry):
                check(entry, roots)
