"""Shared fixtures: a real fosgate gRPC server on 127.0.0.1 (free port, temporary data folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def server(tmp_path):
    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server

    roots = tmp_path / "roots"
    roots.mkdir()
    running = start_server(ServerConfig(data_dir=tmp_path / "data", port=0, roots=[roots]))
    try:
        yield running
    finally:
        running.stop(grace=0.5)


@pytest.fixture
def client(server):
    from fosgate_client.client import FosgateClient

    with FosgateClient(f"127.0.0.1:{server.port}", timeout=30) as c:
        yield c


def shared_data(*parts: str) -> Path:
    """A path in ../shared/data; the test is skipped when that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
