"""Build and run the gRPC server: fosgate services + grpc.health.v1 + server reflection."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fosgate.app import App
from fosgate.config import ServerConfig
from fosgate.rpc.services import add_services

log = logging.getLogger("fosgate.server")


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


def start_server(config: ServerConfig, max_workers: int = 16) -> RunningServer:
    """Start serving (non-blocking). ``config.port`` 0 picks a free port (see ``.port``)."""
    app = App(config)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fosgate-rpc"),
                         options=options)
    names = add_services(server, app)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
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
