"""Prediction fanned out over a Dask LocalCluster of 2 worker processes, one killed mid-job."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
import tifffile

from fosgate.core.modelio import ModelMeta, save_model
from fosgate.core.normalize import Normalization
from fosgate.core.pipeline import predict_slide
from fosgate.core.slides import open_slide
from fosgate.core.synthetic import generate_cfos
from fosgate.core.unet import build_unet, receptive_field_radius
from fosgate.distributed import DaskExecutor

pytestmark = pytest.mark.slow


def test_killed_worker_still_gives_the_same_mask(tmp_path):
    image, _, _ = generate_cfos(768, 640, seed=3)
    tifffile.imwrite(tmp_path / "s.tif", image, tile=(256, 256))
    model = build_unet(1, seed=1)
    rf = receptive_field_radius(model)
    norm = Normalization()
    meta = ModelMeta("md_test", "t", 1, 0.0, 1, norm.to_json(), rf, 128)
    model_dir = save_model(model, meta, tmp_path / "model")
    kw = dict(in_channels=1, normalization=norm, receptive_field=rf, tile=128, threshold=0.5)
    with open_slide(tmp_path / "s.tif") as slide:
        ref = predict_slide(slide, model, out_dir=tmp_path / "ref", stem="s", **kw)
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
            out = predict_slide(slide, model, out_dir=tmp_path / "dask", stem="s", executor=executor,
                                model_dir=str(model_dir), progress=progress, **kw)
        assert killed.is_set()
    finally:
        executor.close()
    a = tifffile.imread(ref.paths["mask"])
    b = tifffile.imread(out.paths["mask"])
    assert a.shape == b.shape == image.shape
    # the same model on the same windows: identical masks (float noise could only flip pixels at p == 0.5)
    assert np.mean(a != b) < 1e-5
    assert out.count == ref.count
