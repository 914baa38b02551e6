"""The Fiji macros in real ImageJ (Debian's ij.jar under xvfb-run, own user.home) against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
from test_end_to_end import discs

from conftest import register_model

ROOT = Path(__file__).resolve().parents[1]
MACROS = ROOT / "fiji_macros"
IJ_JAR = "/usr/share/java/ij.jar"
JAVA = shutil.which("java")
XVFB = shutil.which("xvfb-run")
FOSGATE = str(Path(sys.executable).with_name("fosgate"))

pytestmark = [pytest.mark.imagej,
              pytest.mark.skipif(not (JAVA and XVFB and os.path.exists(IJ_JAR)), reason="needs ImageJ and xvfb-run")]


def run_macro(name: str, args: str, home: Path) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    cmd = [XVFB, "-a", JAVA, f"-Duser.home={home}", "-Xmx1g", "-cp", IJ_JAR, "ij.ImageJ", "-ijpath", str(home),
           "-batch", str(MACROS / name), args]
    return subprocess.run(cmd, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=600)


def read_kv(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture
def model_id(server, discs_model_dir):
    """A trained model registered in this test's server (trained once per session, conftest)."""
    return register_model(server, discs_model_dir)


def test_segment_send_and_count_in_imagej(server, client, model_id, tmp_path):
    img, _ = discs((300, 260), 25, seed=3)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    addr = f"127.0.0.1:{server.port}"
    out = tmp_path / "out"
    res = tmp_path / "segment.txt"
    proc = run_macro("Fosgate_Segment.ijm", f"server={addr};model={model_id};fosgate={FOSGATE};"
                     f"image={tmp_path / 'cells.tif'};out={out};result={res}", tmp_path / "home1")
    assert res.exists(), proc.stdout + proc.stderr
    kv = read_kv(res)
    assert "error" not in kv, kv
    rows = (out / "cells.counts.csv").read_text().strip().splitlines()
    # ROI Manager count == the server's count == the counts table
    assert int(kv["count"]) == int(kv["server_count"]) == len(rows) - 2 > 5

    # send the (here unedited) ROI set back as a reviewed label of the image
    res2 = tmp_path / "send.txt"
    proc = run_macro("Fosgate_Send_ROIs.ijm", f"server={addr};fosgate={FOSGATE};image={tmp_path / 'cells.tif'};"
                     f"rois={out / 'cells.rois.zip'};reviewer=ana;result={res2}", tmp_path / "home2")
    assert res2.exists(), proc.stdout + proc.stderr
    kv2 = read_kv(res2)
    assert "error" not in kv2, kv2
    label = next(lb for lb in client.list_labels() if lb.label_id == kv2["label"])
    assert label.objects == int(kv["count"]) and label.reviewer == "ana"
    labels = tifffile.imread(out / "cells.labels.ome.tif")
    assert label.foreground_pixels == int((labels > 0).sum())

    # per-region counts: two named rectangles over the cells from the server
    rois = roifile.roiread(out / "cells.rois.zip")
    regions = {"region:left": (0, 0, 130, 300), "region:right": (130, 0, 130, 300)}
    all_rois = tmp_path / "with_regions.zip"
    for r in rois:
        r.tofile(all_rois, mode="a")
    for name, (x, y, w, h) in regions.items():
        rect = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=x, top=y, right=x + w, bottom=y + h, name=name)
        rect.tofile(all_rois, mode="a")
    csv = tmp_path / "regions.csv"
    proc = run_macro("Fosgate_Count_Regions.ijm", f"image={tmp_path / 'cells.tif'};rois={all_rois};csv={csv}",
                     tmp_path / "home3")
    assert csv.exists(), proc.stdout + proc.stderr
    table = [line.split(",") for line in csv.read_text().strip().splitlines()[1:]]
    expected = {}
    ids = np.unique(labels)[1:]
    for name, (x, y, w, h) in regions.items():
        n = 0
        for i in ids:
            ys, xs = np.nonzero(labels == i)
            cx, cy = int(np.floor(xs.mean() + 1e-9)), int(np.floor(ys.mean() + 1e-9))
            n += x <= cx < x + w and y <= cy < y + h
        expected[name] = n
    assert {row[0]: int(row[1]) for row in table} == expected
    assert sum(expected.values()) == int(kv["count"])
    assert [int(row[2]) for row in table] == [130 * 300, 130 * 300]

    # the same regions counted on the server, for the prediction job Fosgate Segment ran
    csv2, res4 = tmp_path / "regions_server.csv", tmp_path / "count.txt"
    proc = run_macro("Fosgate_Count_Regions.ijm", f"rois={all_rois};csv={csv2};server={addr};fosgate={FOSGATE};"
                     f"job={kv['job']};result={res4}", tmp_path / "home4")
    assert res4.exists(), proc.stdout + proc.stderr
    kv4 = read_kv(res4)
    assert "error" not in kv4, kv4
    import csv as csvmod

    with open(csv2, newline="") as fh:
        rows = {r["name"]: r for r in csvmod.DictReader(fh)}
    server_rows = {}
    counts = list(csvmod.DictReader((out / "cells.counts.csv").read_text().splitlines()))[:-1]
    for name, (x, y, w, h) in regions.items():  # borders belong to the region: x <= cx + 0.5 <= x + w
        server_rows[name.removeprefix("region:")] = sum(
            x <= float(c["centroid_x"]) + 0.5 <= x + w and y <= float(c["centroid_y"]) + 0.5 <= y + h for c in counts)
    assert {n: int(rows[n]["cells"]) for n in server_rows} == server_rows
    assert [float(rows[n]["area_px"]) for n in server_rows] == [130 * 300, 130 * 300]
    assert int(kv4["cells_in_regions"]) == int(kv["count"]) and int(kv4["cells_outside"]) == 0


def test_segment_macro_says_when_the_server_is_unreachable(tmp_path):
    img, _ = discs((64, 64), 3, seed=1)
    tifffile.imwrite(tmp_path / "c.tif", img)
    res = tmp_path / "r.txt"
    proc = run_macro("Fosgate_Segment.ijm", f"server=127.0.0.1:9;model=md_x;fosgate={FOSGATE};"
                     f"image={tmp_path / 'c.tif'};out={tmp_path / 'o'};result={res}", tmp_path / "home")
    assert res.exists(), proc.stdout + proc.stderr
    assert "Cannot reach the fosgate server at 127.0.0.1:9" in read_kv(res)["error"]
