"""The committed gRPC stubs match protos/fosgate/v1 (regenerate with scripts/gen_protos.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stubs_match_protos():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_service_has_a_servicer():
    from fosgate.rpc import services
    from fosgate.v1 import fosgate_pb2 as pb

    for name in pb.DESCRIPTOR.services_by_name:
        assert hasattr(services, name), f"no servicer for {name}"


def test_one_copy_of_the_stubs():
    """The stubs live in the client distribution; fosgate.v1 is the same modules under the older name."""
    import fosgate.v1.fosgate_pb2 as old
    from fosgate.v1 import fosgate_pb2_grpc as old_grpc
    from fosgate_client.v1 import fosgate_pb2, fosgate_pb2_grpc

    assert old is fosgate_pb2 and old_grpc is fosgate_pb2_grpc
    assert fosgate_pb2.Proposal.__module__ == "fosgate_client.v1.fosgate_pb2"
    assert not (ROOT / "server" / "fosgate" / "v1" / "fosgate_pb2.py").exists()
