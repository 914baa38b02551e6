"""kill -9 of the server process: nothing acknowledged is lost, jobs end in a defined state."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

from fosgate.v1 import fosgate_pb2 as pb
from fosgate_client.client import FosgateClient, FosgateClientError

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data, port) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "fosgate.cli", "serve", "--port", str(port), "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "serving" in proc.stdout.readline()
    return proc


def test_acknowledged_labels_survive_kill_9_and_jobs_end_defined(tmp_path):
    data, port = tmp_path / "data", free_port()
    addr = f"127.0.0.1:{port}"
    img = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", img)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 10:20] = 255
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    proc = start(data, port)
    with FosgateClient(addr, timeout=20) as fg:
        slide = fg.upload_slide(tmp_path / "img.tif")
        m = fg.upload_slide(tmp_path / "mask.tif", role="mask")
        first = fg.add_label(slide.slide_id, m.slide_id).label_id
        train = fg.train([first], epochs=50, tile_size=32, batch_size=4)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer():
        with FosgateClient(addr, timeout=5) as c:
            while not stop.is_set():
                try:
                    acknowledged.append(c.add_label(slide.slide_id, m.slide_id, reviewer="stress").label_id)
                except FosgateClientError:
                    return  # the server died mid-call: that label was never acknowledged

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(3.0)  # labels are being written and the training job is running
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    t.join(timeout=30)
    assert len(acknowledged) > 3

    proc = start(data, port)
    try:
        with FosgateClient(addr, timeout=20) as fg:
            stored = {lb.label_id: lb for lb in fg.list_labels()}
            missing = [lid for lid in [first, *acknowledged] if lid not in stored]
            assert not missing, f"acknowledged labels lost: {missing}"
            job = fg.get_job(train.job_id)
            assert job.state in (pb.JOB_STATE_FAILED, pb.JOB_STATE_SUCCEEDED)
            if job.state == pb.JOB_STATE_FAILED:
                assert "stopped before this job finished" in job.message
            # every stored label's file is complete: export them all
            export = fg.wait(fg.export_dataset().job_id, timeout=300)
            assert export.state == pb.JOB_STATE_SUCCEEDED
        for lb in stored.values():
            assert lb.objects == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
