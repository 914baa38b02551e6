"""Regenerate the Python gRPC stubs in server/fosgate/v1 from protos/fosgate/v1/*.proto.

Run after editing a .proto: ``python scripts/gen_protos.py``. tests/test_protos.py fails when the
committed stubs differ from what this script produces.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "server"


def generate(out_root: Path) -> list[Path]:
    """Generate stubs under ``out_root/fosgate/v1`` and return the written files."""
    import grpc_tools
    from grpc_tools import protoc

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
    return sorted((out_root / "fosgate" / "v1").glob("*_pb2*.py*"))


def main() -> None:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            stale = [p.name for p in fresh if (OUT / "fosgate" / "v1" / p.name).read_bytes() != p.read_bytes()]
        if stale:
            raise SystemExit(f"stubs out of date: {stale}; run python scripts/gen_protos.py")
        print("stubs up to date")
        return
    for p in generate(OUT):
        print("wrote", p.relative_to(ROOT))


if __name__ == "__main__":
    main()
