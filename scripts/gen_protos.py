"""Regenerate the Python gRPC stubs in clients/python/fosgate_client/v1 from protos/fosgate/v1/*.proto.

The stubs belong to the light client distribution (``fosgate-client``) so that the server and every
client import one copy; ``fosgate.v1`` in the server package is an alias of ``fosgate_client.v1``.
protoc names the modules after the proto path (``fosgate.v1``); this script rewrites those module names
to ``fosgate_client.v1``. Run after editing a .proto: ``python scripts/gen_protos.py``.
tests/test_protos.py fails when the committed stubs differ from what this script produces.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "clients" / "python" / "fosgate_client" / "v1"


def generate(out_dir: Path) -> list[Path]:
    """Generate the stubs into ``out_dir`` (module names rewritten to ``fosgate_client.v1``) and return
    the written files."""
    import grpc_tools
    from grpc_tools import protoc

    out_root = Path(tempfile.mkdtemp())
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "fosgate" / "v1").glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted((out_root / "fosgate" / "v1").glob("*_pb2*.py*")):
        text = src.read_text()
        text = text.replace("from fosgate.v1 import", "from fosgate_client.v1 import")
        text = text.replace("'fosgate.v1.fosgate_pb2'", "'fosgate_client.v1.fosgate_pb2'")
        text = text.replace("fosgate/v1/fosgate_pb2_grpc.py", "fosgate_client/v1/fosgate_pb2_grpc.py")
        (out_dir / src.name).write_text(text)
        written.append(out_dir / src.name)
    shutil.rmtree(out_root, ignore_errors=True)
    return written


def main() -> None:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            stale = [p.name for p in fresh if not (OUT / p.name).exists() or (OUT / p.name).read_bytes() != p.read_bytes()]
        if stale:
            raise SystemExit(f"stubs out of date: {stale}; run python scripts/gen_protos.py")
        print("stubs up to date")
        return
    for p in generate(OUT):
        print("wrote", p.relative_to(ROOT))


if __name__ == "__main__":
    main()
