"""The spine end to end over a real server: upload pairs -> train job -> predict job -> six outputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from fosgate.v1 import fosgate_pb2 as pb


def discs(shape, n, seed, radius=(5, 9)):
    """A grey uint8 image of bright discs on a noisy dark background, and its instance labels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[:h, :w]
    k = 0
    for _ in range(n * 3):
        r = rng.integers(*radius)
        cy, cx = rng.integers(r + 1, h - r - 1), rng.integers(r + 1, w - r - 1)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if labels[disc].any():
            continue
        k += 1
        labels[disc] = k
        if k == n:
            break
    img = rng.normal(30, 8, shape) + (labels > 0) * rng.normal(160, 10, shape)
    return np.clip(img, 0, 255).astype(np.uint8), labels


@pytest.fixture
def trained(client, tmp_path):
    """A briefly trained model (2 images of discs) and its training job."""
    label_ids = []
    for i in range(2):
        img, lab = discs((256, 256), 25, seed=i)
        tifffile.imwrite(tmp_path / f"img{i}.tif", img)
        tifffile.imwrite(tmp_path / f"img{i}.mask.tif", lab)
        s = client.upload_slide(tmp_path / f"img{i}.tif")
        m = client.upload_slide(tmp_path / f"img{i}.mask.tif", role="mask")
        label_ids.append(client.add_label(s.slide_id, m.slide_id, source="import").label_id)
    job = client.train(label_ids, epochs=6, tile_size=64, batch_size=8, seed=0, name="discs")
    events = []
    job = client.wait(job.job_id, on_event=events.append, timeout=600)
    return job, events


def test_train_then_predict_writes_six_outputs(client, trained, tmp_path):
    import roifile
    import shapely.geometry
    from PIL import Image

    job, events = trained
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.result_id.startswith("md_")
    assert any(e.metrics.get("epoch", 0) >= 1 for e in events), "no live epoch progress"
    progress = [e.progress for e in events]
    assert progress == sorted(progress)
    model = client.get_model(job.result_id)
    assert model.in_channels == 1 and model.receptive_field > 50 and model.metrics["pixel_f1"] > 0.5
    assert any(a.name == "training_curve.png" for a in job.artifacts)

    img, truth = discs((700, 530), 60, seed=7)
    tifffile.imwrite(tmp_path / "big.tif", img, tile=(128, 128))
    slide = client.upload_slide(tmp_path / "big.tif")
    pevents = []
    pjob = client.wait(client.predict(slide.slide_id, model.model_id, tile_size=128).job_id,
                       on_event=pevents.append, timeout=600)
    # no threshold in the request: the one calibrated on the validation image at training is used
    thr = model.metrics["threshold"]
    assert 0 < thr < 1 and any(e.message == f"Probability threshold {thr:g} (the model's own, calibrated at "
                                              "training)." for e in pevents), [e.message for e in pevents]
    out = tmp_path / "out"
    files = {p.name for p in client.download_outputs(pjob, out)}
    assert files == {"big.mask.ome.tif", "big.labels.ome.tif", "big.rois.zip", "big.geojson", "big.counts.csv",
                     "big.overlay.png"}
    with tifffile.TiffFile(out / "big.mask.ome.tif") as tf:
        assert tf.is_ome
        mask = tf.asarray()
    assert mask.shape == img.shape and set(np.unique(mask)) <= {0, 255}
    labels = tifffile.imread(out / "big.labels.ome.tif")
    n = int(labels.max())
    assert n == int(pjob.metrics["count"]) == len(np.unique(labels)) - 1
    assert abs(n - 60) <= 12, f"counted {n} of 60 discs"
    assert ((labels > 0) == (mask > 0)).all()
    rois = roifile.roiread(out / "big.rois.zip")
    assert len(rois) == n
    fc = json.loads((out / "big.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == n
    for f in fc["features"]:
        assert shapely.geometry.shape(f["geometry"]).is_valid
        assert f["properties"]["objectType"] == "detection"
    with open(out / "big.counts.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == n + 2  # header + objects + total
    assert Image.open(out / "big.overlay.png").size[0] > 0


def test_cancel_training(client, tmp_path):
    img, lab = discs((256, 256), 20, seed=3)
    tifffile.imwrite(tmp_path / "i.tif", img)
    tifffile.imwrite(tmp_path / "m.tif", lab)
    s = client.upload_slide(tmp_path / "i.tif")
    m = client.upload_slide(tmp_path / "m.tif", role="mask")
    lid = client.add_label(s.slide_id, m.slide_id).label_id
    job = client.train([lid], epochs=500, tile_size=64, batch_size=4)
    for j in client.watch(job.job_id):
        if j.state == pb.JOB_STATE_RUNNING and j.metrics.get("epoch", 0) >= 1:
            client.cancel(job.job_id)
    final = client.get_job(job.job_id)
    assert final.state == pb.JOB_STATE_CANCELLED
    assert client.list_labels()[0].label_id == lid  # labels are never lost


def test_tile_export(client, tmp_path):
    import zipfile

    img, _ = discs((300, 250), 10, seed=1)
    tifffile.imwrite(tmp_path / "t.tif", img)
    slide = client.upload_slide(tmp_path / "t.tif")
    job = client.wait(client.export_tiles(slide.slide_id, 128, 4).job_id, timeout=120)
    (path,) = client.download_outputs(job, tmp_path / "tiles")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        table = list(csv.DictReader(z.read("tiles.csv").decode().splitlines()))
    assert len(table) == len([n for n in names if n.endswith(".png")]) > 0
    covered = np.zeros(img.shape, bool)
    for r in table:
        x, y, w, h = (int(r[k]) for k in ("x", "y", "width", "height"))
        covered[y:y + h, x:x + w] = True
    assert covered.all()


def test_cli_train_and_predict(server, tmp_path):
    """The CLI contract: train prints the model id last; predict downloads the six outputs."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(2):
        img, lab = discs((192, 192), 15, seed=10 + i)
        tifffile.imwrite(images / f"s{i}.tif", img)
        tifffile.imwrite(masks / f"s{i}.tif", ((lab > 0) * 255).astype(np.uint8))
    addr = f"127.0.0.1:{server.port}"
    res = subprocess.run([sys.executable, "-m", "fosgate.cli", "train", "--server", addr, "--images", str(images),
                          "--masks", str(masks), "--epochs", "2", "--tile-size", "64"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    model_id = res.stdout.strip().splitlines()[-1]
    assert model_id.startswith("md_")
    res = subprocess.run([sys.executable, "-m", "fosgate.cli", "predict", "--server", addr, "--model", model_id,
                          "--tile-size", "64", str(images / "s0.tif"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "out").glob("s0.*"))) == 6
    res = subprocess.run([sys.executable, "-m", "fosgate.cli", "predict", "--server", addr, "--model", "md_missing",
                          str(images / "s0.tif"), "--out", str(tmp_path / "out2")], capture_output=True, text=True)
    assert res.returncode == 2 and "no model" in res.stderr


def test_an_ensemble_trains_predicts_and_is_refused_as_a_base(server, client, tmp_path):
    """TrainRequest.members = 2 through the server: one model whose metrics name its 2 networks and each
    one's validation score, progress over both networks' epochs, a prediction like any model's, listed by
    `fosgate models` as an ensemble; fine-tuning from it is refused at submission with a sentence
    (INVALID_ARGUMENT)."""
    import grpc

    from fosgate_client.client import FosgateClientError

    img, lab = discs((256, 256), 25, seed=5)
    tifffile.imwrite(tmp_path / "e.tif", img)
    tifffile.imwrite(tmp_path / "e.mask.tif", lab)
    s = client.upload_slide(tmp_path / "e.tif")
    m = client.upload_slide(tmp_path / "e.mask.tif", role="mask")
    lid = client.add_label(s.slide_id, m.slide_id, source="import").label_id
    events = []
    job = client.wait(client.train([lid], epochs=2, steps_per_epoch=3, tile_size=64, batch_size=4, members=2,
                                   name="pair").job_id, on_event=events.append, timeout=600)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.message
    model = client.get_model(job.result_id)
    assert model.metrics["members"] == 2 and {"member0_val_object_f1", "member1_val_object_f1"} <= set(model.metrics)
    assert max(e.metrics.get("epoch", 0) for e in events) == 4  # 2 networks x 2 epochs
    pred = client.wait(client.predict(s.slide_id, model.model_id).job_id, timeout=600)
    assert pred.state == pb.JOB_STATE_SUCCEEDED, pred.message
    with pytest.raises(FosgateClientError, match="is an ensemble of several networks") as err:
        client.train([lid], base_model_id=model.model_id, epochs=1)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    res = subprocess.run([sys.executable, "-m", "fosgate.cli", "models", "--server", f"127.0.0.1:{server.port}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "pair v1\tunet2 x 2 (ensemble)" in next(x for x in res.stdout.splitlines() if x.startswith(model.model_id))
