"""Batch jobs: the per-item work of mltk in chunks, on Celery workers or a local pool.

A job is a folder (:class:`JobFolder`): planned once by :func:`core.create` from a kind
(``colors``, ``predict``, ``xgb-predict``, ``recommend``,
``tfrecord-build``, ``embed``) and the command's arguments, then run
chunk by chunk (:func:`core.run_chunk`) anywhere that sees the folder, and merged in input order
(:func:`core.results`). :func:`submit` plans (or finds) a job and starts what is left of it, for
``mltk jobs submit`` and ``POST /jobs`` alike. :mod:`mltk.jobs.queue` puts chunks on Celery with
a Redis broker.

Example::

    from mltk.jobs import JobFolder, core
    folder = JobFolder("jobs/photos")
    core.create(folder, "colors", ["photos/"], {"recursive": True})
    core.run_local(folder, jobs=2)
    records = list(core.results(folder))
"""

from mltk.jobs import core
from mltk.jobs.core import JobSettings
from mltk.jobs.folder import JobFolder
from mltk.jobs.submission import Submission, submit

__all__ = ["JobFolder", "JobSettings", "Submission", "core", "submit"]
