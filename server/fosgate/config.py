"""Server configuration (command-line flags map one-to-one onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


@dataclass
class ServerConfig:
    data_dir: Path = Path("fosgate-data")
    host: str = "127.0.0.1"
    port: int = 50051
    #: server-side folders under which RegisterSlide may read files (nothing else is reachable)
    roots: list[Path] = field(default_factory=list)
    max_upload_bytes: int = 64 * GiB
    #: decompression-bomb guard: largest width * height accepted for any image
    max_pixels: int = 100_000 * 100_000
    #: largest mask (label) accepted in one AddLabel, in pixels
    max_label_pixels: int = 64_000_000
    #: largest single gRPC message (uploads are streamed in chunks far below this)
    max_message_bytes: int = 16 * MiB
    job_workers: int = 1
    #: jobs that may be queued or running at once; one more is refused (RESOURCE_EXHAUSTED)
    max_queued_jobs: int = 64
    #: threads for short (unary) calls and health checks; long streams have their own budgets below,
    #: so open WatchJob streams never starve them
    rpc_workers: int = 16
    #: WatchJob streams open at once; one more is refused (RESOURCE_EXHAUSTED) instead of queueing
    max_watchers: int = 256
    #: uploads and artifact downloads streaming at once
    max_transfers: int = 16
    #: memory budget for a prediction tile's activations (chooses the tile size when not given)
    predict_memory_bytes: int = int(1.5 * GiB)
    #: Segment Anything checkpoint on this machine (never downloaded) and its architecture
    sam_checkpoint: Path | None = None
    sam_model_type: str = "vit_b"
    #: Dask: "" = in-process LocalCluster, "off" = no Dask, or a scheduler address (tcp://host:8786)
    dask_scheduler: str = ""
    dask_workers: int = 1
    #: local worker processes instead of threads in the server process
    dask_processes: bool = False
    #: shared secret clients send as ``authorization: Bearer <token>``; required off loopback
    auth_token: str | None = None
    #: PEM files for TLS (both or neither)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.roots = [Path(r).resolve() for r in self.roots]

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1", "[::1]")

    def check_security(self) -> None:
        """Refuse configurations that would expose an open server: any other address needs a token."""
        if not self.loopback and not self.auth_token:
            raise ValueError(f"Serving on {self.host} makes fosgate reachable from other machines: give a token "
                             "(--token-file FILE or FOSGATE_TOKEN) and preferably TLS (--tls-cert/--tls-key).")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key.")
        if self.auth_token is not None and len(self.auth_token) < 16:
            raise ValueError("The token is too short; use at least 16 random characters (e.g. `openssl rand -hex 24`).")
