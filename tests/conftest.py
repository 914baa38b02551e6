"""Shared fixtures: a real fosgate gRPC server on 127.0.0.1 (free port, temporary data folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def start_test_server(tmp_path: Path):
    """A real fosgate server on 127.0.0.1 (free port) with its data folder and one allowed root in ``tmp_path``."""
    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server

    roots = tmp_path / "roots"
    roots.mkdir()
    return start_server(ServerConfig(data_dir=tmp_path / "data", port=0, roots=[roots]))


@pytest.fixture
def server(tmp_path):
    running = start_test_server(tmp_path)
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


def register_untrained_model(server) -> str:
    """The id of a randomly initialised reference U-Net registered in ``server``'s store."""
    from fosgate.core.modelio import ModelMeta, save_model
    from fosgate.core.normalize import Normalization
    from fosgate.core.unet import build_unet, receptive_field_radius
    from fosgate.store.db import ModelRow, new_id, now

    store = server.app.store
    model = build_unet(1, seed=0)
    model_id = new_id("md")
    meta = ModelMeta(model_id, "random", 1, now(), 1, Normalization().to_json(), receptive_field_radius(model), 128)
    directory = save_model(model, meta, store.model_dir(model_id))
    store.add_model(ModelRow(model_id, "random", 1, str(directory), meta.to_dict(), meta.created, ""))
    return model_id


@pytest.fixture
def untrained_model(server):
    """The id of a randomly initialised reference U-Net registered in the server's store (no training:
    for tests of the service around prediction, not of what the model finds)."""
    return register_untrained_model(server)


def tree_snapshot(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, float]]:
    """Every file under ``folder`` (except under ``skip``) with its size and mtime, to prove a request changed
    nothing outside the data folder."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime)
    return out
