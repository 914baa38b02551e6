"""The labelling loop over a real server: cluster -> select -> auto-label -> review -> train -> iterate."""

from __future__ import annotations

import importlib.util
import zipfile

import grpc
import numpy as np
import pytest
import tifffile

from fosgate.core.exports import iter_object_polygons, write_geojson, write_roi_zip
from fosgate.core.instances import label_mask
from fosgate.core.synthetic import FIELD, TYPES, generate_cfos
from fosgate.v1 import fosgate_pb2 as pb
from fosgate_client.client import FosgateClientError

SIZE = 1024


@pytest.fixture(scope="module")
def synthetic():
    return generate_cfos(SIZE, SIZE, seed=4)


@pytest.fixture
def slide(client, tmp_path, synthetic):
    image, _, _ = synthetic
    tifffile.imwrite(tmp_path / "s.ome.tif", image, tile=(256, 256), ome=True)
    return client.upload_slide(tmp_path / "s.ome.tif")


def _cluster(client, slide_id, seed=0):
    job = client.wait(client.cluster_tiles(slide_id, k=5, epochs=2, seed=seed).job_id, timeout=600)
    return job, client.get_clustering(job.result_id, with_tiles=True)


def test_clustering_is_deterministic_and_finds_the_dark_tiles(client, slide, synthetic):
    _, _, kinds = synthetic
    job, cl = _cluster(client, slide.slide_id)
    names = {a.name for a in job.artifacts}
    assert {"clusters.csv", "cluster_histogram.png", "tsne.png"} <= names
    assert {f"montage_cluster_{c}.png" for c in range(5)} <= names
    n = len(cl.tiles)
    assert n == 81 and sum(cl.cluster_sizes) == n and len(cl.cluster_sizes) == 5
    # tiles lying wholly in a near-black field share the darkest cluster (0)
    dark = [t for t in cl.tiles if TYPES[kinds[t.region.y // FIELD, t.region.x // FIELD]] == "dark"
            and t.region.y // FIELD == (t.region.y + 127) // FIELD and t.region.x // FIELD == (t.region.x + 127) // FIELD]
    assert dark and np.mean([t.cluster == 0 for t in dark]) >= 0.8
    _, again = _cluster(client, slide.slide_id)
    assert [t.cluster for t in again.tiles] == [t.cluster for t in cl.tiles]
    assert [c.clustering_id for c in client.list_clusterings(slide.slide_id)] == [cl.clustering_id,
                                                                                  again.clustering_id]


def test_select_autolabel_review_train_iterate(client, slide, synthetic, tmp_path):
    _, truth, _ = synthetic
    _, cl = _cluster(client, slide.slide_id)
    picked = client.select_tiles(cl.clustering_id, 10, "balanced", exclude=[0], seed=1)
    assert len(picked) == 10 and all(t.cluster != 0 for t in picked)
    regions = [(t.region.x, t.region.y, t.region.width, t.region.height) for t in picked]
    job = client.wait(client.autolabel(slide.slide_id, regions, "classical", clustering_id=cl.clustering_id).job_id,
                      timeout=300)
    props = client.list_proposals(job_id=job.job_id)
    assert len(props) == 10 and all(p.state == pb.PROPOSAL_STATE_PENDING for p in props)
    assert all(p.source == pb.LABEL_SOURCE_CLASSICAL for p in props)
    # skip_labelled leaves out the tiles with pending proposals
    again = client.select_tiles(cl.clustering_id, 81, "random", skip_labelled=True)
    assert not {t.index for t in again} & {t.index for t in picked}
    # tiles overlap their neighbours by the margin: only a tile at least half under a proposal is left out
    # (the slide's last column and row of tiles are shifted in, so they lie mostly under their neighbours)
    def half_covered(t, r):
        dx = min(t.region.x + t.region.width, r.region.x + r.region.width) - max(t.region.x, r.region.x)
        dy = min(t.region.y + t.region.height, r.region.y + r.region.height) - max(t.region.y, r.region.y)
        return dx > 0 and dy > 0 and 2 * dx * dy >= t.region.width * t.region.height

    assert {t.index for t in again} == {t.index for t in cl.tiles if not any(half_covered(t, r) for r in picked)}
    assert len(again) > 81 - 10 - 9  # neighbours of a labelled tile stay eligible (all but some edge tiles)

    # a scripted reviewer: accept, reject, and replace with ground truth as ROI set, GeoJSON and mask file
    def truth_crop(p):
        r = p.region
        crop = truth[r.y:r.y + r.height, r.x:r.x + r.width]
        lab = np.zeros(crop.shape, np.uint32)
        return lab, label_mask(crop > 0, lab, min_size=1)

    # the replacements below need tiles with true cells in them
    props = sorted(props, key=lambda p: -len(truth_crop(p)[1]))
    props = props[3:5] + props[:3] + props[5:]
    assert all(len(truth_crop(p)[1]) for p in props[2:5])
    accepted = client.review(props[0].proposal_id, "accept", reviewer="ana")
    assert accepted.proposal.state == pb.PROPOSAL_STATE_ACCEPTED and accepted.label.parent_id == props[0].proposal_id
    assert accepted.label.source == pb.LABEL_SOURCE_CLASSICAL and accepted.label.reviewer == "ana"
    rejected = client.review(props[1].proposal_id, "reject", reviewer="ana")
    assert rejected.proposal.state == pb.PROPOSAL_STATE_REJECTED and not rejected.HasField("label")
    lab, objs = truth_crop(props[2])
    roi = write_roi_zip(tmp_path / "edit.zip", iter_object_polygons(lab, objs))
    replaced = client.review(props[2].proposal_id, "replace", reviewer="ana", roi_zip=roi)
    assert replaced.proposal.state == pb.PROPOSAL_STATE_REPLACED
    assert replaced.label.source == pb.LABEL_SOURCE_HUMAN and replaced.label.objects == len(objs)
    lab, objs = truth_crop(props[3])
    r = props[3].region
    shifted = [(o, __import__("shapely.affinity").affinity.translate(g, r.x, r.y))
               for o, g in iter_object_polygons(lab, objs)]
    gj = write_geojson(tmp_path / "edit.geojson", shifted)  # slide coordinates, as QuPath exports them
    replaced = client.review(props[3].proposal_id, "replace", reviewer="bo", geojson=gj)
    assert replaced.label.objects == len(objs) and replaced.label.foreground_pixels == int((lab > 0).sum())
    lab, objs = truth_crop(props[4])
    tifffile.imwrite(tmp_path / "edit.tif", (lab > 0).astype(np.uint8) * 255)
    replaced = client.review(props[4].proposal_id, "replace", reviewer="bo", mask=tmp_path / "edit.tif")
    assert replaced.label.objects == len(objs)
    # a second opinion on a decided proposal adds a new label version, the first one stays
    lab0, _ = truth_crop(props[0])
    tifffile.imwrite(tmp_path / "edit0.tif", (lab0 > 0).astype(np.uint8) * 255)
    with pytest.raises(FosgateClientError) as err:  # a decision is final unless the replace names the label
        client.review(props[0].proposal_id, "replace", reviewer="bo", mask=tmp_path / "edit0.tif")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    second = client.review(props[0].proposal_id, "replace", reviewer="bo", mask=tmp_path / "edit0.tif",
                           replaces=accepted.label.label_id)
    assert second.label.parent_id == accepted.label.label_id and second.label.version == 2
    labels_before = {lb.label_id for lb in client.list_labels()}
    assert accepted.label.label_id in labels_before

    # bad reviews get clear statuses and lose nothing
    with pytest.raises(FosgateClientError) as err:
        client.review("pr_doesnotexist", "accept")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(FosgateClientError) as err:
        client.review(props[5].proposal_id, "replace", roi_zip=b"PK\x03\x04garbage")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(FosgateClientError) as err:
        client.review(props[5].proposal_id, "replace", geojson=b"{not json")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {lb.label_id for lb in client.list_labels()} == labels_before

    # train on every label so far, then the model proposes and guides the active selection
    train = client.wait(client.train([], epochs=2, tile_size=64, batch_size=8, name="loop", patience=5).job_id,
                        timeout=900)
    model = client.get_model(train.result_id)
    assert set(model.label_ids) == labels_before
    assert {"training_curve.png"} <= {a.name for a in train.artifacts}
    active = client.select_tiles(cl.clustering_id, 5, "active", model_id=model.model_id, skip_labelled=True)
    assert len(active) == 5
    job = client.wait(client.autolabel(slide.slide_id, [(t.region.x, t.region.y, t.region.width, t.region.height)
                                                        for t in active[:2]], "model", model_id=model.model_id).job_id,
                      timeout=600)
    mprops = client.list_proposals(job_id=job.job_id)
    assert len(mprops) == 2 and all(p.source == pb.LABEL_SOURCE_MODEL for p in mprops)
    assert all(0.0 <= p.uncertainty <= 1.0 for p in mprops)
    # fine-tune the model on all labels (retraining uses everything, not only the newest)
    client.review(mprops[0].proposal_id, "accept", reviewer="ana")
    tuned = client.wait(client.train([], epochs=1, tile_size=64, batch_size=8, name="loop",
                                     base_model_id=model.model_id).job_id, timeout=900)
    tuned_model = client.get_model(tuned.result_id)
    assert tuned_model.version == 2 and tuned_model.parent_model_id == model.model_id
    assert set(tuned_model.label_ids) == {lb.label_id for lb in client.list_labels()}

    export = client.wait(client.export_dataset().job_id, timeout=300)
    path = client.download_artifact(export.artifacts[0], tmp_path / "dl")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    n_labels = len(client.list_labels())
    names = [n for n in names if not n.endswith("/")]
    assert sum(n.startswith("images/") for n in names) == n_labels
    assert sum(n.startswith("masks/") for n in names) == n_labels and "labels.csv" in names


def test_autolabel_bad_input(client, slide):
    with pytest.raises(FosgateClientError) as err:
        client.autolabel(slide.slide_id, [(1000, 1000, 128, 128)], "classical")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(FosgateClientError) as err:
        client.autolabel(slide.slide_id, [(0, 0, 128, 128)], "sam")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and "sam-checkpoint" in str(err.value)
    with pytest.raises(FosgateClientError) as err:
        client.autolabel(slide.slide_id, [(0, 0, 128, 128)], "model", model_id="md_nope")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(FosgateClientError) as err:
        client.select_tiles("cl_nope", 3)
    assert err.value.code == grpc.StatusCode.NOT_FOUND


HAVE_SAM = importlib.util.find_spec("segment_anything") is not None and importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not HAVE_SAM, reason="needs the 'sam' extra (torch, segment-anything)")
def test_sam_autolabel_with_tiny_random_model(tmp_path, synthetic):
    import subprocess
    import sys

    from fosgate.config import ServerConfig
    from fosgate.rpc.server import start_server
    from fosgate_client.client import FosgateClient

    # torch never enters this (TensorFlow) process: the checkpoint is written by a child process too
    ckpt = tmp_path / "tiny_sam.pth"
    subprocess.run([sys.executable, "-m", "fosgate.core.sam", "tiny", str(ckpt)], check=True, timeout=300)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(ckpt.read_bytes()[:1000])
    image, _, _ = synthetic
    tifffile.imwrite(tmp_path / "s.tif", image[:256, :256])
    for path, expect in ((broken, grpc.StatusCode.INVALID_ARGUMENT), (tmp_path / "missing.pth",
                                                                     grpc.StatusCode.FAILED_PRECONDITION)):
        server = start_server(ServerConfig(data_dir=tmp_path / f"d-{path.stem}", port=0, sam_checkpoint=path,
                                           sam_model_type="vit_tiny"))
        try:
            with FosgateClient(f"127.0.0.1:{server.port}") as fg:
                s = fg.upload_slide(tmp_path / "s.tif")
                with pytest.raises(FosgateClientError) as err:
                    fg.autolabel(s.slide_id, [(0, 0, 128, 128)], "sam")
                assert err.value.code == expect
        finally:
            server.stop()
    server = start_server(ServerConfig(data_dir=tmp_path / "d", port=0, sam_checkpoint=ckpt, sam_model_type="vit_tiny"))
    try:
        with FosgateClient(f"127.0.0.1:{server.port}") as fg:
            s = fg.upload_slide(tmp_path / "s.tif")
            sam = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_area": 1,
                   "max_area": 128 * 128, "has_thresholds": True}
            job = fg.wait(fg.autolabel(s.slide_id, [(0, 0, 128, 128), (128, 128, 128, 128)], "sam", sam=sam).job_id,
                          timeout=600)
            assert job.metrics["sam_masks_generated"] >= job.metrics["sam_masks_kept"] > 0
            props = fg.list_proposals(job_id=job.job_id)
            assert len(props) == 2 and all(p.source == pb.LABEL_SOURCE_SAM for p in props)
    finally:
        server.stop()
    assert "torch" not in sys.modules, "SAM must run in a child process, not in the server's"


def _cli(*args, timeout=600):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "fosgate.cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_cli_loop(server, tmp_path, synthetic):
    image, truth, _ = synthetic
    tifffile.imwrite(tmp_path / "slide.tif", image[:512, :512])
    addr = ["--server", f"127.0.0.1:{server.port}"]
    out = _cli("cluster", *addr, "--slide", str(tmp_path / "slide.tif"), "--k", "3", "--epochs", "1",
               "--out", str(tmp_path / "pics"))
    clustering = out[-1]
    assert clustering.startswith("cl_") and (tmp_path / "pics" / "tsne.png").exists()
    picked = _cli("select", *addr, "--clustering", clustering, "--n", "3", "--strategy", "proportional")
    assert len(picked) == 3
    from fosgate_client.client import FosgateClient

    with FosgateClient(f"127.0.0.1:{server.port}") as fg:
        slide_id = fg.list_slides()[0].slide_id
    props = _cli("autolabel", *addr, "--slide", slide_id, "--clustering", clustering, "--n", "3",
                 "--out", str(tmp_path / "review"))
    ids = [line.split("\t")[0] for line in props]
    assert len(ids) == 3
    for pid in ids:
        assert (tmp_path / "review" / f"{pid}.rois.zip").exists() and (tmp_path / "review" / f"{pid}.geojson").exists()
    assert (tmp_path / "review" / "proposals.csv").exists()
    assert _cli("review", *addr, "accept", ids[0], "--reviewer", "ana")[0].split("\t")[1] == "accepted"
    assert _cli("review", *addr, "reject", ids[1])[0].split("\t")[1] == "rejected"
    # edit in "Fiji": take the proposal's own ROI set back as the replacement
    line = _cli("review", *addr, "replace", ids[2], "--roi-zip", str(tmp_path / "review" / f"{ids[2]}.rois.zip"))
    assert line[0].split("\t")[1] == "replaced" and line[0].split("\t")[2].startswith("lb_")
    listing = _cli("review", *addr, "list")
    assert sorted(row.split("\t")[1] for row in listing) == ["accepted", "rejected", "replaced"]
    files = _cli("review", *addr, "export", "--out", str(tmp_path / "dataset"))
    assert sum("/images/" in f for f in files) == 2 and sum("/masks/" in f for f in files) == 2
    # evaluate the exported labels against themselves: perfect scores
    res = _cli("evaluate", "--pred", str(tmp_path / "dataset" / "masks"), "--truth",
               str(tmp_path / "dataset" / "masks"), "--json")
    import json

    summary = json.loads(res[-1])["summary"]
    assert summary["pixel_f1"] == 1.0 and summary["object_f1"] == 1.0 and summary["count_mae"] == 0.0
