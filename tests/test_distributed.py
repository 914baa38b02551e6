"""Prediction fanned out over a Dask LocalCluster of 2 worker processes, one killed mid-job."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
import tifffile

from fosgate.core.model import FosgateModel, PredictOptions
from fosgate.core.normalize import Normalization
from fosgate.core.slides import open_slide
from fosgate.core.synthetic import generate_cfos
from fosgate.distributed import DaskExecutor

pytestmark = pytest.mark.slow


def test_killed_worker_still_gives_the_same_mask(tmp_path):
    image, _, _ = generate_cfos(768, 640, seed=3)
    tifffile.imwrite(tmp_path / "s.tif", image, tile=(256, 256))
    model = FosgateModel.create("unet2", 1, Normalization(), seed=1)  # two maps: mask and centre travel back
    model.save(tmp_path / "model")
    opts = PredictOptions(tile=128, threshold=0.5)
    with open_slide(tmp_path / "s.tif") as slide:
        ref = model.predict_slide(slide, tmp_path / "ref", "s", opts)
    executor = DaskExecutor(workers=2, processes=True, retries=3)
    try:
        client = executor.client
        pids = client.run(os.getpid)
        assert len(pids) == 2
        killed = threading.Event()

        def progress(fraction, message):
            if fraction > 0.05 and not killed.is_set():  # the first rows are done: kill a worker mid-job
                killed.set()
                os.kill(next(iter(pids.values())), signal.SIGKILL)

        with open_slide(tmp_path / "s.tif") as slide:
            out = model.predict_slide(slide, tmp_path / "dask", "s", opts, backend=executor, progress=progress)
        assert killed.is_set()
    finally:
        executor.close()
    a = tifffile.imread(ref.paths["mask"])
    b = tifffile.imread(out.paths["mask"])
    assert a.shape == b.shape == image.shape
    # the same model on the same windows: identical masks (float noise could only flip pixels at p == 0.5)
    assert np.mean(a != b) < 1e-5
    assert out.count == ref.count
    np.testing.assert_array_equal(tifffile.imread(ref.paths["labels"]), tifffile.imread(out.paths["labels"]))


def test_server_on_an_existing_scheduler(tmp_path):
    """`fosgate serve --dask-scheduler tcp://...`: clustering, proposals and prediction on that cluster."""
    from distributed import LocalCluster

    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server
    from fosgate_client.client import FosgateClient

    image, truth, _ = generate_cfos(512, 512, seed=5)
    tifffile.imwrite(tmp_path / "s.tif", image)
    tifffile.imwrite(tmp_path / "m.tif", (truth > 0).astype(np.uint8) * 255)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        server = start_server(ServerConfig(data_dir=tmp_path / "d", port=0, dask_scheduler=cluster.scheduler_address))
        try:
            with FosgateClient(f"127.0.0.1:{server.port}") as fg:
                s = fg.upload_slide(tmp_path / "s.tif")
                m = fg.upload_slide(tmp_path / "m.tif", role="mask")
                fg.add_label(s.slide_id, m.slide_id)
                cl = fg.wait(fg.cluster_tiles(s.slide_id, k=3, epochs=1).job_id, timeout=600)
                assert sum(fg.get_clustering(cl.result_id).cluster_sizes) == 25
                model = fg.wait(fg.train([], epochs=1, tile_size=64, batch_size=8).job_id, timeout=600).result_id
                job = fg.wait(fg.autolabel(s.slide_id, [(0, 0, 128, 128), (128, 0, 128, 128)], "model",
                                           model_id=model).job_id, timeout=600)
                assert len(fg.list_proposals(job_id=job.job_id)) == 2
                pred = fg.wait(fg.predict(s.slide_id, model, tile_size=128).job_id, timeout=600)
                assert pred.metrics["count"] >= 0
            ran = set(cluster.scheduler.task_prefixes)  # the tasks ran on this (external) cluster
            assert {"fosgate-encode", "fosgate-propose", "fosgate-predict"} <= ran, ran
        finally:
            server.stop()
