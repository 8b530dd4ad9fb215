"""Models from where they are kept: object stores, web servers and archives, made local folders.

Every command that opens a model folder can be given instead

- ``s3://bucket/key``, ``gs://bucket/key`` (with ``gcsfs``), ``http(s)://...``: a model folder
  under that prefix, or a ``model.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` of one;
- a local archive of a model folder, or a folder holding only such an archive (SageMaker's
  ``/opt/ml/model`` after a training job).

:func:`localize` turns such a spec into a local folder. Remote objects are downloaded once into
a cache keyed by the object's identity (ETag, version, size), verified against the size (and
the MD5 where the ETag is one) and unpacked safely (:mod:`mltk.storage.archives`: no entry
outside the folder, no link leaving it, no devices, a size and a file-count limit); a download
or unpacking that stops halfway leaves nothing that is ever used.

Modules:

- :mod:`~mltk.storage.settings` -- :class:`StorageSettings` (``configs/storage.yaml``).
- :mod:`~mltk.storage.archives` -- safe unpacking of tar and zip archives.
- :mod:`~mltk.storage.fetch` -- :func:`localize`, the cache, fsspec.

Example::

    from mltk.storage import localize
    folder = localize("s3://models/churn/model.tar.gz")   # a local folder with config.yaml
"""

from __future__ import annotations

from mltk.storage.archives import UnsafeArchive, is_archive, unpack
from mltk.storage.fetch import is_remote, list_models, localize, model_name
from mltk.storage.settings import StorageSettings

__all__ = ["StorageSettings", "UnsafeArchive", "is_archive", "is_remote", "list_models",
           "localize", "model_name", "unpack"]
