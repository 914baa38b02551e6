"""Transport: gRPC upload / download throughput on loopback vs a raw TCP socket, in one run.

Uploads a random (incompressible) file of ``--mb`` MiB with ``FosgateClient.upload_slide`` (client
streaming, 1 MiB chunks, SHA-256 on both sides, fsync on the server) and downloads an artifact of the
same size with ``download_artifact`` (server streaming, SHA-256 checked); the floor is the same bytes
sent through a plain loopback socket (no hashing, no disk). Reports MB/s and ratios.

    .venv/bin/python bench/bench_transport.py [--mb 256] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import RESULTS, save

ROOT = Path(__file__).resolve().parents[1]


def raw_socket_mb_s(data: bytes) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    received = [0]

    def sink():
        conn, _ = srv.accept()
        while chunk := conn.recv(1 << 20):
            received[0] += len(chunk)
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as c:
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            c.sendall(view[i:i + (1 << 20)])
    t.join()
    dt = time.perf_counter() - t0
    srv.close()
    assert received[0] == len(data)
    return len(data) / dt / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="16 MB")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.mb = 16
    import tifffile

    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server
    from fosgate_client.client import FosgateClient

    side = int(np.sqrt(args.mb * (1 << 20)))
    pixels = np.random.default_rng(0).integers(0, 255, (side, side), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "slide.tif"
        tifffile.imwrite(path, pixels)  # uncompressed: the file is the bytes
        size = path.stat().st_size
        raw = raw_socket_mb_s(path.read_bytes())
        server = start_server(ServerConfig(data_dir=tmp / "data", port=0, dask_scheduler="off"))
        try:
            with FosgateClient(f"127.0.0.1:{server.port}", timeout=600) as fg:
                t0 = time.perf_counter()
                slide = fg.upload_slide(path)
                up = size / (time.perf_counter() - t0) / 1e6
                job = fg.wait(fg.export_tiles(slide.slide_id, tile_size=4096, margin=0, fmt="tif").job_id)
                art = job.artifacts[0]
                t0 = time.perf_counter()
                fg.download_artifact(art, tmp / "dl.zip")
                down = art.size_bytes / (time.perf_counter() - t0) / 1e6
        finally:
            server.stop()
    result = {"file_mb": size / 1e6, "download_mb": art.size_bytes / 1e6, "raw_socket_mb_s": raw,
              "grpc_upload_mb_s": up, "grpc_download_mb_s": down, "upload_vs_raw": up / raw,
              "download_vs_raw": down / raw, "mode": "quick" if args.quick else "full"}
    save(args.out, "transport", result)
    print("| path | MB/s | vs raw socket |\n|---|---|---|")
    print(f"| raw loopback socket | {raw:.0f} | 1.00 |")
    print(f"| gRPC upload (stream + SHA-256 + fsync) | {up:.0f} | {up / raw:.2f} |")
    print(f"| gRPC download (stream + SHA-256) | {down:.0f} | {down / raw:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
