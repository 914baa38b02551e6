"""A hostile but honest client over the real gRPC API (issue: harden the service).

Every test runs a real server on 127.0.0.1 with its data folder inside ``tmp_path`` and checks that
nothing outside the data folder changes, whatever the client sends.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc
import numpy as np
import pytest
import tifffile

from conftest import tree_snapshot
from fosgate.v1 import fosgate_pb2 as pb
from fosgate_client.client import FosgateClientError

HOSTILE_STEMS = [
    "/tmp/x/escape",
    "../../../../tmp/x/escape",
    "/../../tmp/x/victim/precious",
    "..",
    ".",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "x" * 5000,
    "line\nbreak",
    ".hidden",
    "..\u2215..\u2215etc",  # unicode division slash is no separator, but not a plain name either
]


@pytest.mark.parametrize("stem", HOSTILE_STEMS, ids=lambda s: repr(s[:20]))
def test_prediction_stem_cannot_escape_the_job_folder(server, client, untrained_model, tmp_path, stem):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    (victim / "escape.mask.ome.tif").write_text("keep me too")
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((64, 64), np.uint8))
    slide = client.upload_slide(tmp_path / "s.tif")
    data_dir = server.app.config.data_dir.resolve()
    before = tree_snapshot(tmp_path, skip=data_dir)
    with pytest.raises(FosgateClientError) as err:
        client.predict(slide.slide_id, untrained_model, stem=stem)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, str(err.value)
    assert "name" in str(err.value)
    assert tree_snapshot(tmp_path, skip=data_dir) == before
    assert (victim / "precious").read_text() == "keep me"


@pytest.mark.parametrize("stem", ["Gehirn_Schnitt-3 (rechts)", "切片_7", "slide.v2"])
def test_plain_stems_name_the_outputs(server, client, untrained_model, tmp_path, stem):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((48, 40), np.uint8))
    slide = client.upload_slide(tmp_path / "s.tif")
    job = client.wait(client.predict(slide.slide_id, untrained_model, stem=stem).job_id, timeout=300)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.message
    names = sorted(a.name for a in job.artifacts)
    assert names and all(n.startswith(stem + ".") for n in names)
    job_dir = server.app.store.job_dir(job.job_id).resolve()
    for a in job.artifacts:
        assert job_dir in Path(server.app.store.get_artifact(a.artifact_id).path).resolve().parents


def test_uploaded_names_are_sanitised(server, client, tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((16, 16), np.uint8))
    data_dir = server.app.config.data_dir.resolve()
    before = tree_snapshot(tmp_path, skip=data_dir)
    for name in ["../../../../tmp/evil.tif", "/etc/passwd.tif", "a\\..\\..\\b.tif", "ü" * 3000 + ".tif"]:
        slide = client.upload_slide(tmp_path / "s.tif", name=name)
        assert "/" not in slide.name and "\\" not in slide.name and len(slide.name) <= 120
        assert slide.name.endswith(".tif")
    assert tree_snapshot(tmp_path, skip=data_dir) == before


def test_the_default_server_listens_on_loopback_only(server, client, untrained_model, tmp_path):
    """Dask's scheduler and workers start HTTP servers (/health, /metrics) even without a dashboard; before this
    was fixed they listened on 0.0.0.0:8787. After a prediction (Dask started), every listening socket of the
    server process is on loopback."""
    import psutil

    tifffile.imwrite(tmp_path / "s.tif", np.zeros((40, 40), np.uint8))
    slide = client.upload_slide(tmp_path / "s.tif")
    job = client.wait(client.predict(slide.slide_id, untrained_model).job_id, timeout=300)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.message
    assert server.app.executor is not None and server.app.executor.client  # Dask is up
    listening = [c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening
    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return addr.is_loopback or bool(getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback)

    assert all(loopback(a.ip) for a in listening), listening
