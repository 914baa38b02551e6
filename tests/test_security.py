"""Token auth, TLS and the refusal to serve an open port off loopback."""

from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest

from fosgate.config import ServerConfig
from fosgate.rpc.server import start_server
from fosgate_client.client import FosgateClient, FosgateClientError

TOKEN = "s3cret-token-0123456789abcdef"


def test_off_loopback_needs_a_token(tmp_path):
    with pytest.raises(ValueError, match="token"):
        start_server(ServerConfig(data_dir=tmp_path, host="0.0.0.0", port=0))
    with pytest.raises(ValueError, match="too short"):
        start_server(ServerConfig(data_dir=tmp_path, port=0, auth_token="short"))


@pytest.fixture
def locked(tmp_path):
    running = start_server(ServerConfig(data_dir=tmp_path / "d", host="0.0.0.0", port=0, auth_token=TOKEN,
                                        insecure_token=True))
    yield f"127.0.0.1:{running.port}"
    running.stop(grace=0.2)


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", TOKEN[:-1]])
def test_missing_or_wrong_token_is_unauthenticated(locked, token, monkeypatch):
    monkeypatch.delenv("FOSGATE_TOKEN", raising=False)
    with FosgateClient(locked, token=token) as fg, pytest.raises(FosgateClientError) as err:
        fg.list_models()
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "token" in str(err.value)


def test_right_token_works_and_health_is_open(locked, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with FosgateClient(locked, token=TOKEN) as fg:
        assert fg.list_models() == []
        import numpy as np
        import tifffile

        tifffile.imwrite(tmp_path / "a.tif", np.zeros((20, 20), np.uint8))
        assert fg.upload_slide(tmp_path / "a.tif").width == 20  # client streaming carries the token too
    with grpc.insecure_channel(locked) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a test certificate")
def test_tls(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    running = start_server(ServerConfig(data_dir=tmp_path / "d", port=0, auth_token=TOKEN, tls_cert=cert,
                                        tls_key=key))
    try:
        with FosgateClient(f"localhost:{running.port}", token=TOKEN, tls_ca=cert) as fg:
            assert fg.list_models() == []
        with FosgateClient(f"localhost:{running.port}", token=TOKEN) as fg, pytest.raises(FosgateClientError):
            fg.list_models()  # plaintext against a TLS port fails
    finally:
        running.stop(grace=0.2)
