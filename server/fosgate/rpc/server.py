"""Build and run the gRPC server: fosgate services + grpc.health.v1 + server reflection."""

from __future__ import annotations

import hmac
import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fosgate.app import App
from fosgate.config import ServerConfig
from fosgate.rpc.services import add_services

log = logging.getLogger("fosgate.server")

OPEN_METHODS = ("/grpc.health.v1.Health/",)  # load balancers and probes may check health without a token


class TokenAuth(grpc.ServerInterceptor):
    """Every call but health checks must carry ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, details):
        if details.method.startswith(OPEN_METHODS):
            return continuation(details)
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(sent.encode() if isinstance(sent, str) else bytes(sent), self._expected):
            return continuation(details)
        return _deny(continuation(details), "This fosgate server needs a token: pass --token-file (or set "
                     "FOSGATE_TOKEN) with the token its administrator gave you." if not sent else
                     "The token was not accepted by this fosgate server.")


def _deny(handler, message: str):
    def abort(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


@dataclass
class RunningServer:
    server: grpc.Server
    app: App
    port: int
    health: health.HealthServicer

    @property
    def address(self) -> str:
        return f"{self.app.config.host}:{self.port}"

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.app.close()


def start_server(config: ServerConfig, max_workers: int | None = None) -> RunningServer:
    """Start serving (non-blocking). ``config.port`` 0 picks a free port (see ``.port``).

    Threads: ``rpc_workers`` (or ``max_workers``) for short calls and health checks, plus one per allowed
    long stream (``max_watchers`` WatchJob streams, ``max_transfers`` uploads/downloads). Streams beyond
    their budget are refused at once (RESOURCE_EXHAUSTED), so open watchers never starve unary calls or
    ``Health.Check``."""
    config.check_security()
    app = App(config)
    unary = max_workers or config.rpc_workers
    threads = unary + config.max_watchers + config.max_transfers
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    interceptors = [TokenAuth(config.auth_token)] if config.auth_token else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fosgate-rpc"),
                         options=options, interceptors=interceptors, maximum_concurrent_rpcs=2 * threads)
    names = add_services(server, app)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{config.host}:{config.port}"
    if config.tls_cert:
        creds = grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        app.close()
        raise OSError(f"Cannot listen on {config.host}:{config.port} (is another server using it?).")
    server.start()
    log.info("fosgate serving on %s:%d (data in %s)", config.host, port, config.data_dir)
    return RunningServer(server, app, port, health_servicer)


def serve_forever(config: ServerConfig) -> None:
    running = start_server(config)
    print(f"fosgate serving on {config.host}:{running.port} (data: {config.data_dir.resolve()})", flush=True)
    done = threading.Event()

    def stop(*_):
        done.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    done.wait()
    running.stop()
