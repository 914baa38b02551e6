"""Self-supervised pretraining as a server job (Pretrain RPC, ``fosgate pretrain``), on one real server.

A lab pretrains a base model on its own unlabelled slides, the model refuses to segment until it is
fine-tuned, and ``train --base-model`` turns it into an ordinary model. Tiny budgets (16 tiles of 64 px,
a few steps): these tests check the plumbing and that weights move, not what pretraining is worth.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import tifffile
from test_end_to_end import discs

from fosgate.v1 import fosgate_pb2 as pb

PX_UM = 0.5
TINY = dict(tiles=16, tile_size=64, patch_size=16, epochs=2, steps_per_epoch=3, batch_size=4, seed=3)


def blobs(shape: tuple[int, int], n: int, seed: int, radius: tuple[int, int] = (4, 8)) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 image of bright blobs on a noisy dark background, and their instance labels."""
    return discs(shape, n, seed, radius)


def write_slide(path: Path, image: np.ndarray, px_um: float = PX_UM) -> Path:
    """An ImageJ TIFF whose metadata says ``px_um`` µm per pixel."""
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / px_um, 1 / px_um), metadata={"unit": "um"})
    return path


def grpc_code(call) -> tuple[grpc.StatusCode, str]:
    from fosgate_client.client import FosgateClientError

    with pytest.raises(FosgateClientError) as err:
        call()
    return err.value.code, str(err.value)


# ---------------------------------------------------------------------- one server for the module
@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server

    data = tmp_path_factory.mktemp("pretrain-server")
    running = start_server(ServerConfig(data_dir=data / "data", port=0, dask_scheduler="off"))
    try:
        yield running
    finally:
        running.stop(grace=0.5)


@pytest.fixture(scope="module")
def fg(srv):
    from fosgate_client.client import FosgateClient

    with FosgateClient(f"127.0.0.1:{srv.port}", timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrain-files")
    img, _ = blobs((512, 512), 120, seed=1)
    return {"slide": write_slide(d / "unlabelled.tif", img), "dir": d}


@pytest.fixture(scope="module")
def slide_id(fg, files) -> str:
    return fg.upload_slide(files["slide"]).slide_id


@pytest.fixture(scope="module")
def pretrained(fg, slide_id):
    """A tiny pretraining job through the client: (final job, its events)."""
    events: list[pb.Job] = []
    job = fg.pretrain([slide_id], name="lab-base", **TINY)
    assert job.kind == "pretrain"
    job = fg.wait(job.job_id, on_event=events.append, timeout=600)
    return job, events


# ---------------------------------------------------------------------- (a) the job and its model
def test_pretraining_job_registers_a_model_that_learnt_something(fg, srv, pretrained):
    from fosgate.core.model import FosgateModel
    from fosgate.core.unet import build_model

    job, events = pretrained
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.result_id.startswith("md_")
    messages = [e.message for e in events]
    assert any(m.startswith("Epoch 2/2: masked reconstruction loss ") for m in messages), messages
    progress = [e.progress for e in events]
    assert progress == sorted(progress)
    assert any(a.name == "pretraining_curve.png" and a.size_bytes > 0 for a in job.artifacts)
    assert json.loads(job.params)["tiles"] == 16

    listed = {m.model_id: m for m in fg.list_models()}
    model = listed[job.result_id]
    assert model.name == "lab-base" and model.version == 1 and model.arch == "unet2"
    assert model.metrics["pretrained"] == 1.0 and model.metrics["tiles"] == 16.0
    assert math.isfinite(model.metrics["mim_loss"]) and math.isfinite(model.metrics["mim_val_loss"])
    assert model.metrics["mim_val_loss"] == pytest.approx(job.metrics["mim_val_loss"])
    assert list(model.label_ids) == [] and model.parent_model_id == ""
    assert model.pixel_size_um == pytest.approx(PX_UM)  # the slide's own, from its metadata

    # a fresh net of the same seed is reproducible, and the stored one started from it: pretraining never
    # touches the segmentation head ("maps"), which is still the fresh one; the layers it shares did move
    stored = FosgateModel.load(srv.app.store.get_model(job.result_id).path).network
    fresh_a, fresh_b = build_model("unet2", 1, seed=TINY["seed"]), build_model("unet2", 1, seed=TINY["seed"])
    assert all(np.array_equal(a, b) for a, b in zip(fresh_a.get_weights(), fresh_b.get_weights(), strict=True))
    assert np.array_equal(stored.get_layer("maps").get_weights()[0], fresh_a.get_layer("maps").get_weights()[0])
    for layer in ("down0_a", "bottom_a", "up0_b"):
        assert not np.allclose(stored.get_layer(layer).get_weights()[0], fresh_a.get_layer(layer).get_weights()[0])
    assert [w.shape for w in stored.get_weights()] == [w.shape for w in fresh_a.get_weights()]


# ---------------------------------------------------------------------- (b) it refuses to segment
def test_a_pretrained_only_model_refuses_to_segment(fg, pretrained, slide_id):
    model_id = pretrained[0].result_id
    before = len(fg.list_jobs())
    for call in (lambda: fg.predict(slide_id, model_id),
                 lambda: fg.autolabel(slide_id, [(0, 0, 64, 64)], "model", model_id=model_id),
                 lambda: fg.export_model(model_id, "bioimageio")):
        code, message = grpc_code(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION, message
        assert f"Model '{model_id}' was pretrained without labels" in message
        assert f"fosgate train --base-model {model_id}" in message
    assert len(fg.list_jobs()) == before  # refused before any job was queued


# ---------------------------------------------------------------------- (c) fine-tuning makes an ordinary model
def test_fine_tuning_the_pretrained_model_gives_a_model_that_predicts(fg, pretrained, files):
    base_id = pretrained[0].result_id
    d = files["dir"]
    img, lab = blobs((128, 128), 12, seed=5)
    s = fg.upload_slide(write_slide(d / "labelled.tif", img))
    tifffile.imwrite(d / "labelled.mask.tif", lab)
    m = fg.upload_slide(d / "labelled.mask.tif", role="mask")
    label_id = fg.add_label(s.slide_id, m.slide_id, source="import").label_id
    job = fg.wait(fg.train([label_id], base_model_id=base_id, epochs=2, steps_per_epoch=3, tile_size=64,
                           batch_size=4, name="lab-tuned").job_id, timeout=600)
    tuned = fg.get_model(job.result_id)
    assert tuned.parent_model_id == base_id and list(tuned.label_ids) == [label_id]
    assert "pretrained" not in tuned.metrics and tuned.arch == "unet2"
    assert tuned.pixel_size_um == pytest.approx(PX_UM)
    pjob = fg.wait(fg.predict(s.slide_id, tuned.model_id).job_id, timeout=600)
    assert pjob.state == pb.JOB_STATE_SUCCEEDED and "count" in pjob.metrics
    assert fg.get_model(base_id).metrics["pretrained"] == 1.0  # the base itself is unchanged


# ---------------------------------------------------------------------- (d) bad input, said plainly
def test_bad_pretraining_requests_are_refused_with_sentences(fg, files, slide_id):
    d = files["dir"]
    tifffile.imwrite(d / "mask.tif", (blobs((64, 64), 3, seed=2)[1] > 0).astype(np.uint8) * 255)
    mask_id = fg.upload_slide(d / "mask.tif", role="mask").slide_id
    tifffile.imwrite(d / "rgb.tif", np.zeros((96, 96, 3), np.uint8), photometric="rgb")
    rgb_id = fg.upload_slide(d / "rgb.tif").slide_id
    before = len(fg.list_jobs(kind="pretrain"))

    code, message = grpc_code(lambda: fg.pretrain(["sl_doesnotexist"], **TINY))
    assert code == grpc.StatusCode.NOT_FOUND and "no slide with id 'sl_doesnotexist'" in message
    cases = [
        ([mask_id], {}, "uploaded as a mask"),
        ([slide_id], {"masking": "foo"}, "Masking is one of random, intensity (got 'foo')"),
        ([slide_id], {"tiles": 4}, "Sample between 8 and 100000 unlabelled tiles (got 4)"),
        ([slide_id], {"tiles": -1}, "Sample between 8 and 100000 unlabelled tiles (got -1)"),
        ([slide_id], {"tile_size": 100}, "must be a multiple of 16"),
        ([slide_id], {"patch_size": 24}, "must divide the tile"),
        ([slide_id], {"mask_ratio": 1.0}, "masked fraction must be between 0.05 and 0.95"),
        ([slide_id], {"arch": "resnet"}, "Unknown architecture"),
        ([slide_id], {"tiles": 20_000, "tile_size": 512}, "GiB of pretraining tiles"),
        ([slide_id, rgb_id], {}, "mix images of 1 and 3 channels"),
        ([slide_id, slide_id], {}, "listed more than once"),
        ([], {}, "Say which slides to pretrain on"),
        ([slide_id], {"pixel_size_um": 10.0}, "more than 8 times finer"),
        (["x" * 10_000], {}, "('slide_ids') is 10,000 characters long"),
        ([slide_id], {"name": "n" * 300}, "characters long"),
    ]
    for ids, bad, sentence in cases:
        params = {**TINY, **bad}
        code, message = grpc_code(lambda ids=ids, params=params: fg.pretrain(ids, **params))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (bad, code, message)
        assert sentence in message and message.endswith("."), (bad, message)
    assert len(fg.list_jobs(kind="pretrain")) == before


# ---------------------------------------------------------------------- (e) cancel
def test_cancelling_a_running_pretraining_registers_no_model(fg, srv, slide_id):
    models_before = {m.model_id for m in fg.list_models()}
    dirs_before = set((srv.app.store.root / "models").iterdir())
    job = fg.pretrain([slide_id], **{**TINY, "epochs": 1000})
    for j in fg.watch(job.job_id, timeout=600):
        if j.state == pb.JOB_STATE_RUNNING and j.metrics.get("epoch", 0) >= 1:
            fg.cancel(job.job_id)
    final = fg.get_job(job.job_id)
    assert final.state == pb.JOB_STATE_CANCELLED and final.result_id == ""
    assert final.metrics.get("epoch", 0) < 1000
    assert {m.model_id for m in fg.list_models()} == models_before
    assert set((srv.app.store.root / "models").iterdir()) == dirs_before


# ---------------------------------------------------------------------- (f) the command line
def test_cli_pretrain_uploads_files_and_prints_the_model_id_last(fg, srv, files, slide_id):
    import fosgate
    import fosgate_client

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(fosgate.__file__).parents[1]),
                                         str(Path(fosgate_client.__file__).parents[1]), env.get("PYTHONPATH", "")])
    img, _ = blobs((200, 300), 30, seed=9)
    extra = write_slide(files["dir"] / "second.tif", img)
    addr = f"127.0.0.1:{srv.port}"
    cmd = [sys.executable, "-m", "fosgate.cli", "pretrain", "--server", addr, "--slide", str(extra),
           "--slide", slide_id, "--tiles", "16", "--tile-size", "64", "--epochs", "1", "--steps-per-epoch", "2",
           "--batch-size", "4", "--masking", "random", "--name", "cli-base", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    model_id, info = lines[-1], json.loads(lines[-2])
    assert model_id.startswith("md_") and info["model_id"] == model_id and info["metrics"]["pretrained"] == 1.0
    assert len(info["slide_ids"]) == 2 and info["slide_ids"][1] == slide_id  # the file was uploaded first
    assert f"--base-model {model_id}" in res.stderr
    job = fg.get_job(info["job_id"])
    assert json.loads(job.params)["masking"] == "random"

    res = subprocess.run([sys.executable, "-m", "fosgate.cli", "models", "--server", addr], capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith(model_id))
    assert "cli-base v1" in row and "pretrained (no labels)" in row

    res = subprocess.run([sys.executable, "-m", "fosgate.cli", "pretrain", "--server", addr, "--slide", "sl_nope"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and "no slide with id 'sl_nope'" in res.stderr
