"""Band-wise instances equal whole-image labelling; exports agree with the label image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from fosgate.core.exports import (
    iter_object_polygons,
    write_counts_csv,
    write_geojson,
    write_ome_tiff,
    write_roi_zip,
)
from fosgate.core.instances import label_mask


def blobs(h, w, seed, n=40):
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 14)
        m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    m[rng.random((h, w)) < 0.01] = 1  # specks for the size filter
    return m


@given(h=st.integers(1, 300), w=st.integers(1, 300), band=st.integers(1, 64), min_size=st.integers(0, 30),
       seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_band_labelling_equals_whole_image(h, w, band, min_size, seed):
    mask = blobs(h, w, seed)
    labels = np.zeros((h, w), np.uint32)
    objects = label_mask(mask, labels, min_size=min_size, band=band)
    ref, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    sizes = np.bincount(ref.ravel())
    keep = np.nonzero(sizes >= max(min_size, 1))[0]
    keep = keep[keep > 0]
    assert len(objects) == len(keep)
    # same partition, numbered 1..N in raster order of first pixel
    remap = np.zeros(n + 1, np.uint32)
    remap[keep] = np.arange(1, len(keep) + 1)
    np.testing.assert_array_equal(labels, remap[ref])
    for o in objects:
        ys, xs = np.nonzero(labels == o.label)
        assert o.area == ys.size
        assert o.bbox == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        assert abs(o.centroid_y - ys.mean()) < 1e-6 and abs(o.centroid_x - xs.mean()) < 1e-6


def test_split_touching_separates_two_overlapping_discs():
    yy, xx = np.mgrid[:80, :120]
    mask = (((yy - 40) ** 2 + (xx - 40) ** 2 <= 400) | ((yy - 40) ** 2 + (xx - 72) ** 2 <= 400)).astype(np.uint8)
    labels = np.zeros(mask.shape, np.uint32)
    assert len(label_mask(mask, labels, min_size=10)) == 1
    labels = np.zeros(mask.shape, np.uint32)
    objects = label_mask(mask, labels, min_size=10, split_touching=True, band=16)
    assert len(objects) == 2
    assert sorted(o.area for o in objects) == sorted(np.bincount(labels.ravel())[1:].tolist())
    assert sum(o.area for o in objects) == mask.sum()


def test_split_touching_wins_over_a_centre_map_with_one_seed():
    """A unet2 model whose calibration chose the distance split: the centre map (one flat peak over both
    discs, as an under-confident net gives) is then not used, and the two discs are still separated; with
    seeds from that map they stay one object."""
    yy, xx = np.mgrid[:80, :120]
    mask = (((yy - 40) ** 2 + (xx - 40) ** 2 <= 400) | ((yy - 40) ** 2 + (xx - 72) ** 2 <= 400)).astype(np.uint8)
    centre = (mask * 200).astype(np.uint8)  # one seed region at any level up to 200/255
    seeded = np.zeros(mask.shape, np.uint32)
    assert len(label_mask(mask, seeded, min_size=10, centre=centre, seed_threshold=0.5, centre_scale=255)) == 1
    split = np.zeros(mask.shape, np.uint32)
    objects = label_mask(mask, split, min_size=10, centre=centre, seed_threshold=0.5, centre_scale=255,
                         split_touching=True)
    assert len(objects) == 2 and np.unique(split).size == 3


@pytest.fixture
def exported(tmp_path):
    mask = blobs(300, 260, seed=5)
    mask[100:140, 100:140] = 1
    mask[115:125, 115:125] = 0  # an object with a hole
    labels = np.zeros(mask.shape, np.uint32)
    grey = (mask * 200 + 10).astype(np.uint8)[..., None]
    objects = label_mask(mask, labels, min_size=5, image_reader=lambda y0, y1, x0, x1: grey[y0:y1, x0:x1])
    polygons = list(iter_object_polygons(labels, objects, band=50))
    paths = {
        "rois": write_roi_zip(tmp_path / "x.rois.zip", polygons),
        "geojson": write_geojson(tmp_path / "x.geojson", polygons, pixel_size_um=0.5),
        "csv": write_counts_csv(tmp_path / "x.counts.csv", objects, pixel_size_um=0.5),
        "labels": write_ome_tiff(tmp_path / "x.labels.ome.tif", labels, dtype=np.uint16, pixel_size_um=0.5),
    }
    return labels, objects, polygons, paths


def test_polygons_cover_exactly_the_object_pixels(exported):
    from rasterio import features

    labels, objects, polygons, _ = exported
    assert len(polygons) == len(objects)
    for o, geom in polygons:
        assert geom.is_valid and geom.area == o.area
        filled = features.rasterize([(geom, 1)], out_shape=labels.shape, dtype=np.uint8)
        np.testing.assert_array_equal(filled > 0, labels == o.label)
    assert any(len(g.interiors) for _, g in polygons if g.geom_type == "Polygon"), "the hole was lost"


def test_roi_zip_geojson_csv_tiff(exported):
    import roifile
    import shapely.geometry
    import tifffile

    labels, objects, _, paths = exported
    rois = roifile.roiread(paths["rois"])
    assert len(rois) == len(objects)
    assert sum(r.composite for r in rois) >= 1
    fc = json.loads(paths["geojson"].read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(objects)
    for f, o in zip(fc["features"], objects, strict=True):
        g = shapely.geometry.shape(f["geometry"])
        assert g.is_valid and g.area == o.area
        assert f["properties"]["objectType"] == "detection"
        assert f["properties"]["classification"]["name"] == "c-fos"
        assert f["properties"]["measurements"]["Area px^2"] == o.area
    rows = paths["csv"].read_text().strip().splitlines()
    assert len(rows) == len(objects) + 2 and rows[-1].startswith("total") and f"count={len(objects)}" in rows[-1]
    with tifffile.TiffFile(paths["labels"]) as tf:
        assert tf.is_ome and tf.pages.first.is_tiled
        np.testing.assert_array_equal(tf.asarray(), labels)


IJ_JAR = "/usr/share/java/ij.jar"
IMAGEJ = shutil.which("java") if os.path.exists(IJ_JAR) else None
XVFB = shutil.which("xvfb-run")

MEASURE_MACRO = """
args = split(getArgument(), "|");
newImage("blank", "8-bit black", {w}, {h}, 1);
roiManager("Open", args[0]);
n = roiManager("count");
s = "" + n + "\\n";
for (i = 0; i < n; i++) {{
  roiManager("select", i);
  getStatistics(area);
  s = s + area + "\\n";
}}
File.saveString(s, args[1]);
run("Quit");
"""


@pytest.mark.imagej
@pytest.mark.skipif(not (IMAGEJ and XVFB), reason="needs Debian's imagej and xvfb-run")
def test_imagej_reads_roi_set_with_the_same_areas(exported, tmp_path):
    labels, objects, _, paths = exported
    macro = tmp_path / "measure.ijm"
    macro.write_text(MEASURE_MACRO.format(w=labels.shape[1], h=labels.shape[0]))
    result = tmp_path / "areas.txt"
    home = tmp_path / "home"
    home.mkdir()
    cmd = [XVFB, "-a", IMAGEJ, f"-Duser.home={home}", "-Xmx1g", "-cp", IJ_JAR, "ij.ImageJ", "-ijpath", str(home),
           "-batch", str(macro), f"{paths['rois']}|{result}"]
    proc = subprocess.run(cmd, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=300)
    assert result.exists(), proc.stdout + proc.stderr
    values = result.read_text().split()
    assert int(values[0]) == len(objects)
    areas = [round(float(v)) for v in values[1:]]
    assert areas == [o.area for o in objects]


def test_roi_zip_is_a_plain_zip_of_roi_files(exported):
    _, objects, _, paths = exported
    with zipfile.ZipFile(paths["rois"]) as zf:
        names = zf.namelist()
    assert len(names) == len(objects) and all(n.endswith(".roi") for n in names)


_CONCURRENT_RASTER = """
import threading, warnings
import numpy as np
from shapely.geometry import box
from fosgate.core.edits import _burn
from fosgate.core.exports import object_polygon

warnings.simplefilter("always")
seen = []
warnings.showwarning = lambda message, category, *a, **k: seen.append(category.__name__)
crop = np.zeros((40, 40), np.int32)
crop[5:20, 5:20] = 1

def work(i):
    out = np.zeros((40, 40), np.int32)
    for _ in range(300):
        _burn(out, box(2 + i, 3, 30, 30), 1)
        assert object_polygon(crop, 1, 3, 2 + i).area == 225

threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(",".join(seen))
"""


def test_concurrent_rasterising_raises_no_georeferencing_warning():
    """Eight threads of a fresh process burn translated shapes and trace objects, as concurrent reviews and
    exports do: no warning. Unserialised, rasterio warned NotGeoreferencedWarning once per such run (the
    race is at first use, so it needs a new process)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CONCURRENT_RASTER], capture_output=True, text=True, timeout=300,
                         check=True)
    assert out.stdout.strip() == "", out.stdout
