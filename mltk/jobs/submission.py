"""Submitting a job: plan it (or find it planned) and start what is left of it.

The one way a job is submitted, by ``mltk jobs submit`` and by ``POST /jobs``: it ties the
folder's plan (:mod:`mltk.jobs.core`) to the broker (:mod:`mltk.jobs.queue`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mltk.jobs import core, queue
from mltk.jobs.core import JobSettings
from mltk.jobs.folder import JobFolder


@dataclasses.dataclass
class Submission:
    """What :func:`submit` did: the job, its chunks without a trusted part, how many went to
    the broker (None: no broker, run them with :func:`~mltk.jobs.core.run_local`), whether it
    was cancelled before (a submission resumes a cancelled job)."""

    job: dict[str, Any]
    folder: JobFolder
    todo: list[int]
    enqueued: int | None
    resumed: bool


def submit(folder: JobFolder, kind: str, args: Sequence[str], options: Mapping[str, Any],
           settings: JobSettings = JobSettings(), broker: str | None = None,
           roots: Sequence[str] = ()) -> Submission:
    """Plan (or find) the job in ``folder`` and start what is left of it: with ``broker``,
    register it and enqueue every chunk without a trusted part (failures are cleared, a
    cancelled job resumes); without, leave them for :func:`~mltk.jobs.core.run_local`. The one
    way a job is submitted, by ``mltk jobs submit`` and by ``POST /jobs``. With ``roots`` (a
    server's job roots), the job folder, every link under it included, must be under them and
    the job is kept to them (:mod:`mltk.jobs.roots`)."""
    if broker:
        queue.check_broker(broker)
    if roots:
        from mltk.jobs.roots import check_tree, real_roots

        check_tree(folder.path, real_roots(roots))
    job = core.create(folder, kind, args, options, settings, broker, roots)
    resumed = folder.cancelled
    folder.uncancel()
    todo = core.pending_chunks(folder, job)
    enqueued = None
    if broker:
        queue.register_job(broker, job, folder)
        folder.clear_failures()
        enqueued = queue.enqueue(queue.app_for(broker), folder, todo,
                                 float(job.get("chunk_seconds") or core.DEFAULT_CHUNK_SECONDS))
    return Submission(job, folder, todo, enqueued, resumed)
