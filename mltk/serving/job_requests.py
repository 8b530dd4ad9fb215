"""``POST /jobs`` as the server takes it: a job request checked whole before anything runs.

The server runs jobs for whoever holds its bearer token only (without a token configured,
``POST /jobs`` and ``GET /jobs/{id}`` answer 403), reads and writes only under the folders of
its ``job_roots`` setting (none by default: no paths at all), and loads models only by the name
it serves them under, never from a path in a request. Options and chunking are checked before
the 202, and an error names the field at fault, never a file's content.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from mltk.serving.codecs import CodecError

#: Job kinds whose first argument is a model: a name the server serves, never a path.
MODEL_KINDS = ("predict", "xgb-predict", "recommend", "embed")
#: Options that name a file the job reads (config, palette) or a folder it writes (vectors).
PATH_OPTIONS = ("config", "palette", "vectors")


@dataclasses.dataclass(frozen=True)
class JobRequest:
    kind: str
    args: list[str]
    out: str
    options: dict[str, Any]
    settings: Any  # mltk.jobs.JobSettings


def forbidden(message: str) -> CodecError:
    return CodecError(403, message)


def bad(message: str) -> CodecError:
    return CodecError(400, message)


def check_allowed(token: str | None) -> None:
    """Jobs over HTTP read and write files: only with a bearer token configured."""
    if not token:
        raise forbidden("jobs over HTTP need a bearer token: start mltk serve with a token "
                        "(setting token, env MLTK_SERVE_TOKEN) to enable POST /jobs")


def parse(body: Any, models: Sequence[str], roots: Sequence[str]) -> JobRequest:
    """The job request in ``body``, every field checked; CodecError (400/403) otherwise."""
    from mltk.errors import InputError
    from mltk.jobs import JobSettings, kinds

    if not isinstance(body, dict):
        raise bad("expected a JSON object with kind, args and out")
    kind, args, out = body.get("kind"), body.get("args"), body.get("out")
    if not isinstance(kind, str) or not isinstance(out, str) or not isinstance(args, list) \
            or not all(isinstance(a, str) for a in args):
        raise bad("expected kind (text), args (a list of text) and out (text)")
    if kind not in kinds.KINDS:
        raise bad(f"unknown job kind {kind!r} (kinds: {', '.join(kinds.KINDS)})")
    unknown = sorted(set(body) - {"kind", "args", "out", "options", "chunk_size",
                                  "chunk_seconds"})
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)} (fields: kind, args, out, options, "
                  "chunk_size, chunk_seconds)")
    options = body.get("options")
    options = {} if options is None else options  # an empty list or text is not "no options"
    if not isinstance(options, dict):
        raise bad("options must be an object")
    try:
        options = kinds.check_options(kind, options)
        settings = JobSettings(body.get("chunk_size"),
                               chunk_seconds=body.get("chunk_seconds",
                                                      JobSettings.chunk_seconds))
    except InputError as exc:
        raise bad(str(exc)) from None
    args = list(args)
    if kind in MODEL_KINDS:
        args[:1] = [_served_model(kind, args[0] if args else None, models)]
    paths = _Roots(roots)
    for i in range(1 if kind in MODEL_KINDS else 0, len(args)):
        args[i] = paths.check(args[i], f"args[{i}]")
    for key in PATH_OPTIONS:
        if key in options:
            options[key] = paths.check(options[key], f"options.{key}")
    return JobRequest(kind, args, paths.check(out, "out"), options, settings)


def _served_model(kind: str, name: str | None, models: Sequence[str]) -> str:
    """The folder of the model served as ``name``."""
    from mltk.predictors import parse_model_spec

    served = dict(parse_model_spec(spec) for spec in models)
    served.pop("colors", None)
    if name not in served:
        raise bad(f"{kind} jobs take a model by the name this server serves it under "
                  f"(served: {', '.join(sorted(served)) or 'none'}), not {name!r}; models are "
                  "never loaded from a path in a request")
    return served[name]


class _Roots:
    """Paths of a request: absolute, and under one of the configured roots once resolved; the
    job is given their real paths (a link swapped in after this check is not followed; one
    swapped in before the job is planned is caught there, and again when its chunks run)."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = [os.path.realpath(r) for r in roots]

    def check(self, path: str, field: str) -> str:
        if not isinstance(path, str) or not path:
            raise bad(f"{field} must be a path (text)")
        if not self.roots:
            raise forbidden("this server takes no paths in job requests: set its job_roots "
                            "(the folders jobs may read and write under) to allow some")
        if not os.path.isabs(path):
            raise bad(f"{field} must be an absolute path, got {path!r}")
        from mltk.jobs.roots import problem, taken_under

        if problem(path, self.roots):  # logs where a link leads; the client is not told
            named = taken_under(path, self.roots)
            if named:
                raise forbidden(f"{field}: {path!r} leads outside the job roots (taken under "
                                f"{', '.join(named)})")
            raise forbidden(f"{field}: {path!r} is not under the server's job_roots")
        return os.path.realpath(path)


def submit(req: JobRequest, broker: str, roots: Sequence[str] = ()) -> Any:
    """:func:`mltk.jobs.submit` of the request, kept to ``roots`` by real path (a link inside
    a root that leads out of it: 403 naming it and the root; an input file listed from a
    folder is refused on its own when its chunk runs). A config file that cannot be used is
    named, not quoted: its error would show the file's lines."""
    from mltk.errors import ConfigError
    from mltk.jobs import JobFolder, submit
    from mltk.jobs.roots import OutsideRoots

    try:
        return submit(JobFolder(req.out), req.kind, req.args, req.options, req.settings, broker,
                      roots)
    except OutsideRoots as exc:
        raise forbidden(str(exc)) from None
    except ConfigError:
        given = [k for k in PATH_OPTIONS if k in req.options]
        if not given:
            raise
        raise bad(f"options.{given[0]}: {req.options[given[0]]!r} is not a valid {req.kind} "
                  f"{given[0]} file (run the job's command with it to see why)") from None


def submission_doc(sub: Any) -> dict[str, Any]:
    """The 202 body: the job's id and folder, its chunks and how many were enqueued."""
    return {"id": sub.job["id"], "out": str(sub.folder.path), "chunks": len(sub.job["chunks"]),
            "enqueued": sub.enqueued, "resumed": sub.resumed}


