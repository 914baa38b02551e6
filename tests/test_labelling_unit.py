"""Unit tests of the labelling-loop core: selection quotas, SAM filter/merge, edit parsing, metrics."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from fosgate.core.edits import labels_from_geojson, labels_from_roi_zip
from fosgate.core.exports import iter_object_polygons, write_geojson, write_roi_zip
from fosgate.core.instances import label_mask
from fosgate.core.metrics import mean_pixel_scores, object_scores, pixel_scores
from fosgate.core.sam import SamFilter, filter_masks, merge_masks
from fosgate.core.selection import select_tiles
from fosgate.errors import InvalidInput

CLUSTERS = np.array([0] * 50 + [1] * 30 + [2] * 4 + [3] * 16)


def test_balanced_selection_takes_equally_and_redistributes():
    picked = select_tiles(CLUSTERS, 20, "balanced", seed=1)
    counts = np.bincount(CLUSTERS[picked], minlength=4)
    assert len(set(picked)) == 20
    assert counts[2] == 4 and sorted(counts[[0, 1, 3]]) == [5, 5, 6]


def test_proportional_and_exclusion_and_determinism():
    picked = select_tiles(CLUSTERS, 10, "proportional", exclude=[0], seed=3)
    assert 0 not in CLUSTERS[picked] and len(picked) == 10
    counts = np.bincount(CLUSTERS[picked], minlength=4)
    assert counts[1] > counts[3] > counts[2]
    assert picked == select_tiles(CLUSTERS, 10, "proportional", exclude=[0], seed=3)


def test_active_prefers_uncertain_tiles_within_quotas():
    unc = np.zeros(len(CLUSTERS))
    unc[[3, 60, 82, 90]] = 1.0
    picked = select_tiles(CLUSTERS, 4, "active", uncertainty=unc)
    assert picked == [3, 60, 82, 90]
    with pytest.raises(ValueError):
        select_tiles(CLUSTERS, 4, "active")


def _mask(shape, y0, y1, x0, x1, iou, stab):
    seg = np.zeros(shape, bool)
    seg[y0:y1, x0:x1] = True
    return {"segmentation": seg, "area": int(seg.sum()), "predicted_iou": iou, "stability_score": stab}


def test_sam_filters_and_merge():
    shape = (64, 64)
    masks = [
        _mask(shape, 0, 64, 0, 64, 0.99, 0.99),  # background: too large
        _mask(shape, 0, 2, 0, 2, 0.99, 0.99),  # too small
        _mask(shape, 10, 20, 10, 20, 0.5, 0.99),  # low predicted IoU
        _mask(shape, 30, 40, 30, 40, 0.95, 0.5),  # unstable
        _mask(shape, 40, 50, 10, 20, 0.90, 0.95),  # kept
        _mask(shape, 45, 55, 15, 25, 0.95, 0.95),  # kept, overlaps the previous one and wins (higher IoU)
    ]
    f = SamFilter(min_area=10, max_area=1000, pred_iou_thresh=0.8, stability_score_thresh=0.9)
    kept = filter_masks(masks, f)
    assert [m["area"] for m in kept] == [100, 100]
    merged = merge_masks(kept, shape, min_area=10)
    assert merged.max() == 2
    assert merged[50, 20] == 1 and (merged == 1).sum() == 100  # best first, whole
    assert (merged == 2).sum() == 100 - 25  # only the unclaimed pixels
    assert merge_masks([], shape).max() == 0


@pytest.fixture
def truth_labels():
    yy, xx = np.mgrid[:100, :120]
    mask = np.zeros((100, 120), np.uint8)
    for cy, cx, r in [(20, 20, 8), (50, 60, 12), (80, 100, 6)]:
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    mask[45:55, 55:65] = 0  # a hole in the middle cell
    labels = np.zeros(mask.shape, np.uint32)
    objects = label_mask(mask, labels, min_size=1)
    return labels, objects


def test_roi_zip_round_trip_gives_the_same_pixels(tmp_path, truth_labels):
    labels, objects = truth_labels
    path = write_roi_zip(tmp_path / "t.zip", iter_object_polygons(labels, objects))
    back = labels_from_roi_zip(path.read_bytes(), labels.shape)
    np.testing.assert_array_equal(back, labels)
    # the same ROIs in slide coordinates of a tile at (x=500, y=300)
    shifted = np.zeros((400, 700), np.uint32)
    shifted[300:400, 500:620] = labels
    back = labels_from_roi_zip(write_roi_zip(tmp_path / "s.zip", iter_object_polygons(shifted, label_mask(
        shifted > 0, np.zeros_like(shifted), min_size=1))).read_bytes(), labels.shape, offset=(500, 300))
    np.testing.assert_array_equal(back > 0, labels > 0)


def test_geojson_round_trip(tmp_path, truth_labels):
    labels, objects = truth_labels
    path = write_geojson(tmp_path / "t.geojson", iter_object_polygons(labels, objects))
    np.testing.assert_array_equal(labels_from_geojson(path.read_bytes(), labels.shape), labels)
    features = json.loads(path.read_text())["features"]
    np.testing.assert_array_equal(labels_from_geojson(json.dumps(features).encode(), labels.shape), labels)


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04broken", b"Iout\x00\x01"])
def test_malformed_roi_sets_are_invalid_input(data):
    with pytest.raises(InvalidInput):
        labels_from_roi_zip(data, (10, 10))


def test_zip_without_rois_is_invalid_input():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InvalidInput, match="no .roi"):
        labels_from_roi_zip(buf.getvalue(), (10, 10))


@pytest.mark.parametrize("data", [b"{", b"[1, 2]", b'{"type": "FeatureCollection"}', json.dumps(
    {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[1, 2]]}}).encode()])
def test_malformed_geojson_is_invalid_input(data):
    with pytest.raises(InvalidInput):
        labels_from_geojson(data, (10, 10))


def test_metrics_definitions():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    assert pixel_scores(a, b) == {"iou": 1.0, "f1": 1.0}
    a[0:4, 0:5] = 1
    b[0:4, 0:5] = 1
    b[4:8, 0:5] = 1
    assert pixel_scores(a, b) == {"iou": 0.5, "f1": 2 / 3}
    assert mean_pixel_scores([(a, b), (a, a)]) == {"pixel_miou": 0.75, "pixel_f1": (2 / 3 + 1) / 2}
    assert object_scores(a, b, iou_threshold=0.5, centroid_px=None)["tp"] == 1  # IoU exactly 0.5 matches
    b[8:10, 0:5] = 1  # IoU 20/50 = 0.4: no match by overlap, a match by centroid distance (FNC rule)
    s = object_scores(a, b, iou_threshold=0.5, centroid_px=None)
    assert (s["tp"], s["fp"], s["fn"]) == (0, 1, 1) and s["ap"] == 0.0
    s = object_scores(a, b, iou_threshold=0.5, centroid_px=40)
    assert s["tp"] == 1 and s["f1"] == 1.0 and s["count_error"] == 0


def test_measure_labels_keeps_touching_instances_apart():
    from fosgate.core.instances import measure_labels

    lab = np.zeros((20, 30), np.uint32)
    lab[5:15, 2:12] = 4
    lab[5:15, 12:22] = 9  # touches 4 along a whole edge
    objs = measure_labels(lab)
    assert [(o.label, o.area, o.bbox) for o in objs] == [(4, 100, (5, 2, 15, 12)), (9, 100, (5, 12, 15, 22))]
    polys = list(iter_object_polygons(lab, objs))
    assert [g.area for _, g in polys] == [100, 100]
