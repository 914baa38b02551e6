"""Load: 16 clients making mixed calls while 64 WatchJob streams stay open; unary and health latency.

A real server on loopback (``start_server``, default thread budgets). 64 WatchJob streams are opened first
and held on 8 jobs that stay queued for the whole run (rows the runner never starts; cancelled at the end,
which every stream must report). Then 16 client threads, each on its own channel, make ``--calls`` mixed
calls (GetSlide, ListSlides, GetJob, ListJobs, ListLabels, ListModels, ListProposals, a Predict submit that
is refused with NOT_FOUND for an unknown model, i.e. the full validation path) and one ``Health.Check``
after each. Reports p50/p99/max latency of the unary calls and of the health checks, throughput, and the
number of unexpected errors (target 0; target unary p99 < 1 s and health SERVING throughout).

    .venv/bin/python bench/bench_load.py [--calls 200] [--watchers 64] [--clients 16] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import RESULTS, save


def _q(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) >= 2 else (values[0] if values else 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200, help="calls per client")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--watchers", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="25 calls per client")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.calls = 25
    import grpc
    import tifffile
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server
    from fosgate.v1 import fosgate_pb2 as pb
    from fosgate.v1 import fosgate_pb2_grpc as pbg
    from fosgate_client.client import FosgateClient

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tifffile.imwrite(tmp / "s.tif", np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8))
        server = start_server(ServerConfig(data_dir=tmp / "data", port=0, dask_scheduler="off"))
        address = f"127.0.0.1:{server.port}"
        try:
            with FosgateClient(address) as fg:
                slide = fg.upload_slide(tmp / "s.tif")
            jobs = [server.app.store.add_job("predict", {"slide_id": slide.slide_id}).id for _ in range(8)]
            channels = [grpc.insecure_channel(address) for _ in range(8)]
            streams, stream_events = [], [0] * args.watchers
            t_open = time.perf_counter()
            for i in range(args.watchers):
                call = pbg.JobServiceStub(channels[i % 8]).WatchJob(pb.WatchJobRequest(job_id=jobs[i % 8]),
                                                                      timeout=3600)
                next(call)
                streams.append(call)
            open_s = time.perf_counter() - t_open
            unary, health, errors = [], [], []
            lock = threading.Lock()

            def client(seed: int) -> None:
                rng = np.random.default_rng(seed)
                with grpc.insecure_channel(address) as ch:
                    s, j = pbg.SlideServiceStub(ch), pbg.JobServiceStub(ch)
                    lab, m, ll = pbg.LabelServiceStub(ch), pbg.ModelServiceStub(ch), pbg.LabellingServiceStub(ch)
                    h = health_pb2_grpc.HealthStub(ch)
                    calls = [
                        lambda: s.GetSlide(pb.GetSlideRequest(slide_id=slide.slide_id), timeout=30),
                        lambda: s.ListSlides(pb.ListSlidesRequest(), timeout=30),
                        lambda: j.GetJob(pb.GetJobRequest(job_id=jobs[0]), timeout=30),
                        lambda: j.ListJobs(pb.ListJobsRequest(page_size=50), timeout=30),
                        lambda: lab.ListLabels(pb.ListLabelsRequest(), timeout=30),
                        lambda: m.ListModels(pb.ListModelsRequest(), timeout=30),
                        lambda: ll.ListProposals(pb.ListProposalsRequest(), timeout=30),
                        lambda: pbg.PredictionServiceStub(ch).Predict(pb.PredictRequest(
                            slide_id=slide.slide_id, model_id="md_unknown"), timeout=30),
                    ]
                    for _ in range(args.calls):
                        k = int(rng.integers(len(calls)))
                        t0 = time.perf_counter()
                        try:
                            calls[k]()
                        except grpc.RpcError as err:
                            if not (k == len(calls) - 1 and err.code() == grpc.StatusCode.NOT_FOUND):
                                with lock:
                                    errors.append(f"{err.code()}: {err.details()}")
                        dt = time.perf_counter() - t0
                        t1 = time.perf_counter()
                        try:
                            status = h.Check(health_pb2.HealthCheckRequest(), timeout=30).status
                        except grpc.RpcError as err:
                            status = -1
                            with lock:
                                errors.append(f"health {err.code()}")
                        dh = time.perf_counter() - t1
                        with lock:
                            unary.append(dt)
                            health.append(dh)
                            if status not in (-1, health_pb2.HealthCheckResponse.SERVING):
                                errors.append(f"health status {status}")

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            for job_id in jobs:
                server.app.runner.cancel(job_id)
            ended = 0
            for i, call in enumerate(streams):
                events = list(call)
                stream_events[i] = len(events)
                ended += bool(events) and events[-1].job.state == pb.JOB_STATE_CANCELLED
            for ch in channels:
                ch.close()
        finally:
            server.stop(grace=0.5)
    n = len(unary)
    result = {
        "clients": args.clients, "calls_per_client": args.calls, "watchers": args.watchers, "calls": n,
        "seconds": wall, "calls_per_s": n / wall, "watchers_open_s": open_s,
        "unary_p50_ms": _q(unary, 50) * 1e3, "unary_p99_ms": _q(unary, 99) * 1e3, "unary_max_ms": max(unary) * 1e3,
        "health_p50_ms": _q(health, 50) * 1e3, "health_p99_ms": _q(health, 99) * 1e3,
        "health_max_ms": max(health) * 1e3, "errors": len(errors), "error_samples": errors[:5],
        "watchers_ended_cancelled": ended, "mode": "quick" if args.quick else "full",
    }
    save(args.out, "load", result)
    print("| what | p50 ms | p99 ms | max ms |\n|---|---|---|---|")
    print(f"| unary calls ({n}) | {result['unary_p50_ms']:.1f} | {result['unary_p99_ms']:.1f} | "
          f"{result['unary_max_ms']:.1f} |")
    print(f"| Health.Check ({n}) | {result['health_p50_ms']:.1f} | {result['health_p99_ms']:.1f} | "
          f"{result['health_max_ms']:.1f} |")
    print(f"{args.watchers} watchers open ({ended} ended with the cancelled state), {len(errors)} unexpected errors, "
          f"{n / wall:.0f} calls/s")
    return 1 if errors or ended != args.watchers else 0


if __name__ == "__main__":
    sys.exit(main())
