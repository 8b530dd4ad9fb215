"""Generating the Python modules of ``grpc_predict_v2.proto`` (a development step).

The generated ``grpc_predict_v2_pb2.py`` and ``grpc_predict_v2_pb2_grpc.py`` are committed, so
an install needs only grpcio and protobuf; ``python -m mltk.serving.grpc_codegen`` rewrites them
with grpcio-tools (the version pinned in the ``dev`` extra) after a change to the ``.proto``,
and a test checks that doing so gives the same files.

One change is made to what protoc writes: the messages are built in a descriptor pool of their
own instead of protobuf's default one. Every implementation of the protocol declares the same
``inference.*`` messages (tritonclient.grpc, MLServer, KServe), and two declarations of one
name in the default pool are an error at import: with a pool of its own, mltk's server and any
of those clients can live in one process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PROTO = "grpc_predict_v2.proto"
MODULES = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py")
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


class CodegenError(RuntimeError):
    """protoc failed, or wrote something unexpected."""


def generate(out_dir: str | os.PathLike) -> list[Path]:
    """Write the two modules generated from the ``.proto`` beside this file into ``out_dir``."""
    from grpc_tools import protoc  # grpcio-tools: the dev extra

    here = Path(__file__).resolve().parent
    root = here.parent.parent  # imports in the generated code read ``from mltk.serving ...``
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["protoc", f"-I{root}", f"-I{include}", f"--python_out={tmp}",
                          f"--grpc_python_out={tmp}",
                          str((here / PROTO).relative_to(root))])
        if rc != 0:
            raise CodegenError(f"protoc failed on {PROTO} (exit {rc})")
        made = Path(tmp) / "mltk" / "serving"
        pb2 = (made / MODULES[0]).read_text()
        if pb2.count(_DEFAULT_POOL) != 1:
            raise CodegenError(f"{MODULES[0]}: protoc no longer writes {_DEFAULT_POOL!r}")
        (made / MODULES[0]).write_text(pb2.replace(_DEFAULT_POOL, _OWN_POOL))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in MODULES:
            shutil.copyfile(made / name, out / name)
            written.append(out / name)
        return written


if __name__ == "__main__":  # python -m mltk.serving.grpc_codegen [OUT_DIR]
    import sys

    generate(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent)
