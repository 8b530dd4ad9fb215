"""Job roots: the folders a job may read and write under, checked by real path (links resolved).

A server that takes jobs over HTTP (``mltk serve``'s ``job_roots``) names its roots; a job then
reads and writes only where the *real* path (:func:`os.path.realpath`: every link resolved, at
any depth) lies under one of them. A link inside a root that points outside it, to a file or a
folder, is refused with one line naming the path and the root:

- an input file listed from a folder (colors, predict, embed) is refused on its own when its
  chunk runs (the check is made again there, so a link made after the plan counts too): its
  record gets the error, as an unreadable image does, and the rest of the chunk goes on;
- a file a tfrecord-build would read, and a link anywhere under a folder the job writes (the
  job folder, ``vectors``, the tfrecord ``OUT``), refuse the whole job before it is planned.

Without roots (``mltk jobs`` on one's own machine) nothing here applies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mltk.errors import InputError


class OutsideRoots(InputError):
    """A path whose real path is not under the job roots."""


def real_roots(roots: Sequence[str]) -> list[str]:
    """The roots as real paths (a root that is itself a link counts where it points)."""
    return [os.path.realpath(r) for r in roots]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def problem(path: str | os.PathLike[str], roots: Sequence[str]) -> str | None:
    """Why ``path`` may not be used (None: its real path is under one of ``roots``, which are
    real paths already): the path, where it really leads, and the root it was taken under."""
    path = os.fspath(path)
    real = os.path.realpath(path)
    if any(_under(real, r) for r in roots):
        return None
    nominal = os.path.abspath(path)
    named = [r for r in roots if _under(nominal, r)] or list(roots)
    where = named[0] if len(named) == 1 else ", ".join(named)
    return (f"{path}: a link to {real}, outside the job root {where} (refused)"
            if real != nominal else f"{path}: not under the job root {where} (refused)")


def check(path: str | os.PathLike[str], roots: Sequence[str]) -> None:
    """Raise :class:`OutsideRoots` naming ``path`` and the root when it leaves the roots."""
    why = problem(path, roots)
    if why:
        raise OutsideRoots(why)


def check_tree(folder: str | os.PathLike[str], roots: Sequence[str]) -> None:
    """Refuse a folder a job writes when it, or any link at any depth under it, leads outside
    the roots (links are checked, never walked into)."""
    check(folder, roots)
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            entry = os.path.join(top, name)
            if os.path.islink(entry):
                check(entry, roots)
