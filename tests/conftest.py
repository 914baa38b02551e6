"""Shared fixtures: a real fosgate gRPC server on 127.0.0.1 (free port, temporary data folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``scripts/test.sh`` runs ``-n 2 --dist loadgroup``) every ImageJ (under
    ``xvfb-run -a``, whose display choice races when two start at once) and Java client test runs on one
    worker, which also trains the session's :func:`discs_model_dir` only once. The quick run of every
    benchmark (about 14 minutes) is put first so that it starts at once beside the rest."""
    items.sort(key=lambda item: "test_bench_smoke.py" not in item.nodeid)  # stable: the rest keep their order
    for item in items:
        if item.get_closest_marker("imagej") or item.get_closest_marker("java"):
            item.add_marker(pytest.mark.xdist_group("desktop"))


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


def register_model(server, directory: Path, name: str = "discs") -> str:
    """Register a copy of the saved ``FosgateModel`` at ``directory`` in ``server``'s store (a new id and
    version, as a training job would) and return its id."""
    from fosgate.core.model import FosgateModel
    from fosgate.store.db import ModelRow, new_id, now

    store = server.app.store
    model = FosgateModel.load(directory)
    model.model_id, model.name, model.created = new_id("md"), name, now()
    model.version = store.next_model_version(name)
    saved = model.save(store.model_dir(model.model_id))
    store.add_model(ModelRow(model.model_id, name, model.version, str(saved), model.meta_dict(), model.created, ""))
    return model.model_id


@pytest.fixture(scope="session")
def discs_model_dir(tmp_path_factory) -> Path:
    """A model trained once per test session on two synthetic disc images, with the settings a server
    train job gets from ``TrainSpec(epochs=4, tile_size=64, batch_size=8, seed=0)`` (the training
    itself is tested over gRPC in test_end_to_end). The Fiji, ImageJ-bridge and QuPath tests need *a*
    trained model, not their own: each trained one before, about 90 s apiece in CI."""
    from test_end_to_end import discs

    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainingPair, train_model
    from fosgate.specs import TrainSpec

    pairs = [TrainingPair(*discs((192, 192), 20, seed=10 + i), name=f"t{i}") for i in range(2)]
    config = TrainSpec(epochs=4, tile_size=64, batch_size=8, seed=0).validate().train_config()
    directory = tmp_path_factory.mktemp("discs_model") / "model"
    train_model(pairs, config, normalization=Normalization(), name="discs").save(directory)
    return directory


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
