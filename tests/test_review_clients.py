"""Reviewing proposals one tile at a time: GetProposalTile, ``fosgate review next`` and the Fiji Review macro
in real ImageJ (Debian's ij.jar under xvfb-run) against a live server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import grpc
import numpy as np
import pytest
import roifile
import tifffile
from test_end_to_end import discs
from test_fiji_macros import FOSGATE, IJ_JAR, JAVA, XVFB, read_kv, run_macro

from fosgate_client.client import FosgateClientError
from fosgate_client.v1 import fosgate_pb2 as pb

TILES = [(0, 0, 128, 128), (128, 0, 128, 128), (256, 128, 128, 128), (0, 256, 128, 128), (256, 256, 128, 128),
         (128, 384, 128, 128)]


@pytest.fixture
def proposals(client, tmp_path):
    """Six pending classical proposals on a 512² slide of bright discs: (slide id, job id, proposals in review order)."""
    image, _ = discs((512, 512), 90, seed=5)
    tifffile.imwrite(tmp_path / "slide.tif", image)
    slide = client.upload_slide(tmp_path / "slide.tif")
    job = client.wait(client.autolabel(slide.slide_id, TILES, "classical").job_id, timeout=300)
    props = client.list_proposals(slide_id=slide.slide_id, state="pending")
    assert len(props) == len(TILES)
    return slide.slide_id, job.job_id, props


def test_proposal_tile_next_skip_and_contents(server, client, proposals):
    slide_id, job_id, props = proposals
    first = client.proposal_tile(slide_id=slide_id)
    assert first.proposal.proposal_id == props[0].proposal_id and first.pending == len(props)
    # the tile is the slide's pixels; the ROI set and GeoJSON hold the proposed cells
    img = tifffile.imread(io.BytesIO(first.image_tiff))
    r = first.proposal.region
    slide_row = server.app.store.get_slide(slide_id)
    full = tifffile.imread(slide_row.path)
    assert img.shape == (r.height, r.width) and np.array_equal(img, full[r.y:r.y + r.height, r.x:r.x + r.width])
    with zipfile.ZipFile(io.BytesIO(first.roi_zip)) as zf:
        assert len(zf.namelist()) == first.proposal.objects
    features = json.loads(first.geojson)["features"]
    assert len(features) == first.proposal.objects
    xs = [x for f in features for ring in f["geometry"]["coordinates"][:1] for x, _ in ring]
    assert all(r.x <= x <= r.x + r.width for x in xs)  # slide coordinates
    # skip passes over proposals; by job works as by slide; a named proposal comes even when skipped
    second = client.proposal_tile(job_id=job_id, skip=[props[0].proposal_id])
    assert second.proposal.proposal_id == props[1].proposal_id and second.pending == len(props)
    named = client.proposal_tile(props[3].proposal_id)
    assert named.proposal.proposal_id == props[3].proposal_id
    client.review(props[0].proposal_id, "accept", reviewer="ana")
    again = client.proposal_tile(slide_id=slide_id)
    assert again.proposal.proposal_id == props[1].proposal_id and again.pending == len(props) - 1
    none = client.proposal_tile(slide_id=slide_id, skip=[p.proposal_id for p in props])
    assert not none.HasField("proposal") and none.pending == len(props) - 1
    # bad requests say what is wrong
    with pytest.raises(FosgateClientError) as err:
        client.proposal_tile()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "slide id" in str(err.value)
    with pytest.raises(FosgateClientError) as err:
        client.proposal_tile(slide_id="sl_nope")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(FosgateClientError) as err:
        client.proposal_tile("pr_nope")
    assert err.value.code == grpc.StatusCode.NOT_FOUND


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FOSGATE, *args], capture_output=True, text=True, timeout=300)


def test_cli_review_next_writes_files_and_prints_lines(server, client, proposals, tmp_path):
    slide_id, _, props = proposals
    addr = f"127.0.0.1:{server.port}"
    proc = _cli("review", "next", "--server", addr, "--slide", slide_id, "--skip", props[0].proposal_id,
                "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    kv = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert kv["proposal"] == props[1].proposal_id and kv["remaining"] == str(len(props)) and kv["skipped"] == "1"
    assert int(kv["objects"]) == props[1].objects
    assert tifffile.imread(kv["image"]).shape == (128, 128)
    if props[1].objects:
        assert len(roifile.roiread(kv["rois"])) == props[1].objects
    proc = _cli("review", "--server", addr, "accept", props[1].proposal_id, "--reviewer", "ana", "--json")
    out = json.loads(proc.stdout)
    assert out["state"] == "accepted" and out["label_id"].startswith("lb_") and out["reviewer"] == "ana"
    proc = _cli("review", "next", "--server", addr, "--slide", "sl_nope", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stdout.startswith("error=") and "sl_nope" in proc.stdout


def _free_spot(labels: np.ndarray, size: int = 12) -> tuple[int, int]:
    """Top-left corner of a size x size square at least 3 px away from every labelled pixel."""
    fg = labels > 0
    h, w = fg.shape
    for y in range(3, h - size - 3, 2):
        for x in range(3, w - size - 3, 2):
            if not fg[y - 3:y + size + 3, x - 3:x + size + 3].any():
                return x, y
    raise AssertionError("no free spot in the tile")


@pytest.mark.imagej
@pytest.mark.skipif(not (JAVA and XVFB and Path(IJ_JAR).exists()), reason="needs ImageJ and xvfb-run")
def test_fiji_review_macro_runs_a_whole_session(server, client, proposals, tmp_path):
    slide_id, job_id, props = proposals
    store = server.app.store
    # the scripted reviewer: edit the first tile with >= 2 cells (delete two, draw one), accept, reject, skip
    edit_at = next(i for i, p in enumerate(props) if p.objects >= 2)
    labels = tifffile.imread(store.get_proposal(props[edit_at].proposal_id).path)
    x, y = _free_spot(labels)
    plan = ["accept", "reject", "skip", "accept", "reject", "accept"]
    plan[edit_at] = f"edit delete=0,1 add={x},{y},12,12"
    decisions = tmp_path / "decisions.txt"
    decisions.write_text("# one decision per proposal\n" + "\n".join(plan) + "\n")
    res = tmp_path / "review.txt"
    addr = f"127.0.0.1:{server.port}"
    proc = run_macro("Fosgate_Review.ijm", f"server={addr};fosgate={FOSGATE};reviewer=ana;slide={slide_id};"
                     f"decisions={decisions};out={tmp_path / 'work'};result={res}", tmp_path / "home")
    assert res.exists(), proc.stdout + proc.stderr
    kv = read_kv(res)
    assert "error" not in kv, kv
    expected = {"accept": "accepted", "reject": "rejected", "skip": "pending", "edit": "replaced"}
    after = {p.proposal_id: p for p in client.list_proposals(slide_id=slide_id)}
    for p, step in zip(props, plan, strict=True):
        now = after[p.proposal_id]
        assert now.state == getattr(pb, f"PROPOSAL_STATE_{expected[step.split()[0]].upper()}"), (p.proposal_id, step)
        if step != "skip":
            assert now.reviewer == "ana"
            assert kv[p.proposal_id].split()[0] == expected[step.split()[0]]
    assert kv[props[plan.index("skip")].proposal_id] == "skipped"
    assert int(kv["pending"]) == 1 and int(kv["skipped"]) == 1
    assert int(kv["accepted"]) == plan.count("accept") and int(kv["rejected"]) == plan.count("reject")
    assert int(kv["edited"]) == 1
    # provenance: accepted labels keep the proposer as source, the edited one is the reviewer's own
    labels_by_id = {lb.label_id: lb for lb in client.list_labels()}
    for p, step in zip(props, plan, strict=True):
        now = after[p.proposal_id]
        if step == "accept":
            lb = labels_by_id[now.label_id]
            assert lb.source == pb.LABEL_SOURCE_CLASSICAL and lb.reviewer == "ana" and lb.objects == p.objects
        if step.startswith("edit"):
            lb = labels_by_id[now.label_id]
            assert lb.source == pb.LABEL_SOURCE_HUMAN and lb.reviewer == "ana"
            assert lb.objects == p.objects - 2 + 1
            edited = tifffile.imread(store.label_path(lb.label_id))  # the drawn cell is in the stored label
            assert edited[y + 6, x + 6] > 0 and labels[y + 6, x + 6] == 0

    # a second session: nothing pending but the skipped one, which comes now; stop leaves it pending
    stop = tmp_path / "stop.txt"
    stop.write_text("stop\n")
    res2 = tmp_path / "review2.txt"
    proc = run_macro("Fosgate_Review.ijm", f"server={addr};fosgate={FOSGATE};reviewer=bo;job={job_id};"
                     f"decisions={stop};out={tmp_path / 'work2'};result={res2}", tmp_path / "home2")
    kv2 = read_kv(res2)
    assert kv2["pending"] == "1" and kv2["accepted"] == "0", proc.stdout + proc.stderr
    assert client.list_proposals(slide_id=slide_id, state="pending")[0].proposal_id == props[plan.index("skip")].proposal_id


def test_fiji_review_macro_says_what_is_missing(tmp_path):
    if not (JAVA and XVFB and Path(IJ_JAR).exists()):
        pytest.skip("needs ImageJ and xvfb-run")
    res = tmp_path / "r.txt"
    run_macro("Fosgate_Review.ijm", f"server=127.0.0.1:9;fosgate={FOSGATE};reviewer=ana;slide=sl_x;result={res}",
              tmp_path / "home")
    assert "Cannot reach the fosgate server at 127.0.0.1:9" in read_kv(res)["error"]
    run_macro("Fosgate_Review.ijm", f"server=127.0.0.1:9;fosgate={FOSGATE};slide=sl_x;result={res}", tmp_path / "h2")
    assert "who reviews" in read_kv(res)["error"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
