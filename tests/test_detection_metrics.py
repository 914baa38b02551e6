"""Object detection at IoU >= t (``fosgate.core.metrics.match_instances`` / ``detection_scores``),
checked against an independent brute-force computation: the full IoU matrix from pixel loops and
StarDist's matching rule (``stardist.matching``: cost = -(IoU >= t) - IoU / (2 n), Hungarian) solved
with scipy's ``linear_sum_assignment`` on the whole matrix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from fosgate.core.metrics import (
    as_instances,
    bootstrap_f1_interval,
    detection_scores,
    error_breakdown,
    match_instances,
    object_scores,
    pool_detection,
)


def _random_labels(rng: np.random.Generator, shape=(48, 48), n: int = 8) -> np.ndarray:
    """Overlapping random rectangles and discs painted in turn: touching and overlapping instances."""
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for i in range(1, n + 1):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        if rng.random() < 0.5:
            r = rng.integers(2, 9)
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
        else:
            h, w = rng.integers(2, 14, size=2)
            lab[cy:cy + h, cx:cx + w] = i
    return lab


def _brute_force(pred: np.ndarray, truth: np.ndarray, thr: float) -> tuple[int, list[tuple[int, int, float]]]:
    t_ids = [i for i in np.unique(truth) if i]
    p_ids = [i for i in np.unique(pred) if i]
    if not t_ids or not p_ids:
        return 0, []
    iou = np.zeros((len(t_ids), len(p_ids)))
    for a, ti in enumerate(t_ids):
        for b, pj in enumerate(p_ids):
            inter = np.logical_and(truth == ti, pred == pj).sum()
            union = np.logical_or(truth == ti, pred == pj).sum()
            iou[a, b] = inter / union
    n = min(len(t_ids), len(p_ids))
    cost = -(iou >= thr).astype(float) - iou / (2 * n)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(t_ids[r]), int(p_ids[c]), float(iou[r, c])) for r, c in zip(rows, cols, strict=True)
             if iou[r, c] >= thr]
    return len(pairs), pairs


@pytest.mark.parametrize("thr", [0.1, 0.3, 0.5, 0.7])
def test_matching_equals_brute_force_hungarian(thr):
    rng = np.random.default_rng(int(thr * 100))
    for _ in range(60):
        truth = _random_labels(rng, n=int(rng.integers(0, 10)))
        # a prediction: the truth shifted, eroded or merged in places, plus random new objects
        pred = np.roll(truth, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1)).copy()
        extra = _random_labels(rng, n=int(rng.integers(0, 6)))
        pred[(pred == 0) & (extra > 0)] = extra[(pred == 0) & (extra > 0)] + 100
        if rng.random() < 0.3 and pred.max() > 1:
            pred[pred == pred.max()] = 1  # a merge: one label in two places
        # a label image with a single value is read as a binary mask (its connected components), as documented
        pred, truth = as_instances(pred), as_instances(truth)
        tp, pairs = _brute_force(pred, truth, thr)
        m = match_instances(pred, truth, thr)
        assert len(m["true_ids"]) == tp
        # same total IoU (the matching itself may differ only between equally good ones)
        assert np.isclose(m["iou"].sum(), sum(p[2] for p in pairs))
        assert len(set(m["true_ids"].tolist())) == tp and len(set(m["pred_ids"].tolist())) == tp
        assert np.all(m["iou"] >= thr)
        s = detection_scores(pred, truth, thr)
        n_t, n_p = len(np.unique(truth)) - 1, len(np.unique(pred)) - 1
        assert (s["tp"], s["fp"], s["fn"]) == (tp, n_p - tp, n_t - tp)
        assert s["count_error"] == n_p - n_t
        if thr == 0.5:  # the older object_scores agrees at 0.5 without the centroid rule
            assert object_scores(pred, truth, 0.5, None)["tp"] == tp


def test_binary_masks_become_components_and_edge_cases():
    truth = np.zeros((20, 20), np.uint8)
    truth[2:6, 2:6] = 255
    truth[10:14, 10:14] = 255
    pred = np.zeros_like(truth)
    pred[2:6, 2:6] = 1
    s = detection_scores(pred, truth)
    assert (s["tp"], s["fp"], s["fn"], s["n_true"]) == (1, 0, 1, 2)
    assert s["precision"] == 1.0 and s["recall"] == 0.5 and s["rel_count_error"] == 0.5
    empty = np.zeros_like(truth)
    assert detection_scores(empty, empty)["f1"] == 1.0
    assert detection_scores(empty, truth)["f1"] == 0.0 and detection_scores(truth, empty)["precision"] == 0.0
    with pytest.raises(ValueError):
        match_instances(truth, truth[:10])


def test_pooling_and_bootstrap():
    per = [{"tp": 8, "fp": 2, "fn": 0, "n_pred": 10, "n_true": 8, "count_error": 2, "rel_count_error": 0.25},
           {"tp": 0, "fp": 0, "fn": 4, "n_pred": 0, "n_true": 4, "count_error": -4, "rel_count_error": 1.0}]
    pooled = pool_detection(per)
    assert pooled["f1"] == pytest.approx(16 / 22) and pooled["count_error"] == -1.0
    assert pooled["rel_count_error"] == pytest.approx(0.625) and pooled["n_true"] == 12
    lo, hi = bootstrap_f1_interval(per, n_boot=500)
    assert 0.0 <= lo <= pooled["f1"] <= hi <= 1.0
    assert bootstrap_f1_interval(per[:1]) == pytest.approx((0.8889, 0.8889), abs=1e-3)


def test_error_breakdown_names_each_unmatched_object_once():
    """One scene with each kind of error, built so the answer is known; then random scenes, where the
    parts must add up to FN and FP exactly."""
    t = np.zeros((40, 80), np.int32)
    p = np.zeros_like(t)
    t[2:8, 2:8], p[2:8, 2:8] = 1, 1  # matched
    t[2:8, 12:18], t[2:8, 18:24], p[2:9, 11:25] = 2, 3, 2  # two touching cells, one prediction (IoU 36/98 each)
    t[12:18, 2:8] = 4  # nothing predicted: missed
    t[12:22, 12:22], p[12:16, 12:16] = 5, 3  # 16 of 100 px predicted: IoU 0.16
    t[26:32, 2:20], p[26:32, 2:8], p[26:32, 8:14], p[26:32, 14:20] = 6, 4, 5, 6  # one cell cut in three
    p[30:36, 40:46] = 7  # nothing there: spurious
    d, e = detection_scores(p, t), error_breakdown(p, t)
    assert (d["tp"], d["fn"], d["fp"]) == (1, 5, 6)
    # FN: cells 2 and 3 merged, 4 missed, 5 too small a prediction and 6 (its largest piece covers no other
    # cell) are shape errors; FP: the merging prediction and the small one are shape errors, the three
    # pieces of cell 6 are splits, prediction 7 is spurious
    assert e == {"fn_missed": 1, "fn_merged": 2, "fn_shape": 2, "fp_spurious": 1, "fp_split": 3, "fp_shape": 2}
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = _random_labels(rng, n=10), _random_labels(rng, n=10)
        d, e = detection_scores(a, b), error_breakdown(a, b)
        assert e["fn_missed"] + e["fn_merged"] + e["fn_shape"] == d["fn"]
        assert e["fp_spurious"] + e["fp_split"] + e["fp_shape"] == d["fp"]
    assert error_breakdown(np.zeros_like(t), t)["fn_missed"] == 6
    assert error_breakdown(t, np.zeros_like(t))["fp_spurious"] == 6


def test_paired_f1_difference_resamples_images_jointly():
    """The difference of two methods' pooled F1 on the same images, with an interval of the paired
    difference: identical methods give exactly 0 with a zero-width interval (two separate intervals would
    not), a method better on every image an interval above 0; unequal image lists are refused."""
    from fosgate.core.metrics import bootstrap_f1_interval, paired_f1_difference

    rng = np.random.default_rng(3)
    b = [{"tp": int(t), "fp": int(f), "fn": int(n)} for t, f, n in rng.integers(1, 30, size=(12, 3))]
    assert paired_f1_difference(b, b) == (0.0, 0.0, 0.0)
    lo, hi = bootstrap_f1_interval(b)
    assert hi - lo > 0.02  # the unpaired spread the paired one removes
    a = [{**x, "tp": x["tp"] + 3, "fn": max(0, x["fn"] - 3)} for x in b]
    d, lo, hi = paired_f1_difference(a, b)
    tp, fp, fn = (sum(x[k] for x in a) for k in ("tp", "fp", "fn"))
    tb, fb, nb = (sum(x[k] for x in b) for k in ("tp", "fp", "fn"))
    assert d == pytest.approx(2 * tp / (2 * tp + fp + fn) - 2 * tb / (2 * tb + fb + nb))
    assert 0 < lo <= d <= hi
    with pytest.raises(ValueError):
        paired_f1_difference(a, b[:-1])
