"""Segmentation metrics, one module for training, the CLI and benchmarks.

Definitions
- Pixel metrics follow the reference paper (Cai, section III): for each image (or tile), IoU and F1
  (Dice) of the foreground class, then the mean over images ("MIoU", "F1"). An image where both
  prediction and truth are empty is perfect (1.0); ``pixel_scores`` of one image returns its values.
- Object metrics: a one-to-one matching (Hungarian, maximising IoU) between predicted and true
  objects, where a pair may match if IoU >= ``iou_threshold`` or, when ``centroid_px`` is set, if the
  centroids are within ``centroid_px`` pixels (the FNC authors' rule). Then precision, recall,
  F1 = 2TP / (2TP + FP + FN), AP = TP / (TP + FP + FN) (StarDist/DSB2018 "AP@0.5" when
  ``centroid_px`` is None) and the count error (#pred - #true).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage


def pixel_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Foreground IoU and F1 of one binary prediction against one binary truth."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    inter = np.count_nonzero(p & t)
    sp, st = np.count_nonzero(p), np.count_nonzero(t)
    union = sp + st - inter
    if union == 0:
        return {"iou": 1.0, "f1": 1.0}
    return {"iou": inter / union, "f1": 2 * inter / (sp + st)}


def mean_pixel_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Reference-paper MIoU and F1: means over images of per-image foreground IoU and F1."""
    scores = [pixel_scores(p, t) for p, t in pairs]
    if not scores:
        return {"pixel_miou": float("nan"), "pixel_f1": float("nan")}
    return {"pixel_miou": float(np.mean([s["iou"] for s in scores])),
            "pixel_f1": float(np.mean([s["f1"] for s in scores]))}


def as_instances(x: np.ndarray) -> np.ndarray:
    """Instance labels: a label image is kept, a binary mask gets 4-connected components."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x.max(axis=-1)
    values = np.unique(x)
    if values.size <= 2 and (values.size < 2 or values[0] == 0):
        return ndimage.label(x > 0, structure=ndimage.generate_binary_structure(2, 1))[0]
    return x.astype(np.int64)


def object_scores(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5,
                  centroid_px: float | None = 40.0) -> dict[str, float]:
    """Object detection scores of one image (see module docstring)."""

    p, t = as_instances(pred), as_instances(truth)
    p_ids, t_ids = np.unique(p)[1:], np.unique(t)[1:]
    n_p, n_t = len(p_ids), len(t_ids)
    tp = 0
    if n_p and n_t:
        tp = _match(p, t, p_ids, t_ids, iou_threshold, centroid_px)
    fp, fn = n_p - tp, n_t - tp
    return {
        "tp": tp, "fp": fp, "fn": fn, "n_pred": n_p, "n_true": n_t,
        "precision": tp / n_p if n_p else float(n_t == 0),
        "recall": tp / n_t if n_t else float(n_p == 0),
        "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
        "ap": tp / (tp + fp + fn) if (tp + fp + fn) else 1.0,
        "count_error": n_p - n_t,
    }


def summarize_objects(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Pooled object F1/precision/recall/AP over images (sums of TP, FP, FN) and count MAE."""
    tp = sum(s["tp"] for s in per_image)
    fp = sum(s["fp"] for s in per_image)
    fn = sum(s["fn"] for s in per_image)
    denom = tp + fp + fn
    return {
        "object_f1": 2 * tp / (2 * tp + fp + fn) if denom else 1.0,
        "object_precision": tp / (tp + fp) if tp + fp else 1.0,
        "object_recall": tp / (tp + fn) if tp + fn else 1.0,
        "ap50": tp / denom if denom else 1.0,
        "count_mae": float(np.mean([abs(s["count_error"]) for s in per_image])) if per_image else float("nan"),
    }


def _match(p, t, p_ids, t_ids, iou_threshold: float, centroid_px: float | None) -> int:
    """Number of one-to-one matches. Candidate pairs are sparse (overlapping objects, plus near
    centroids); each connected group of candidates is solved exactly with the Hungarian method."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n_p, n_t = len(p_ids), len(t_ids)
    pf, tf = p.ravel(), t.ravel()
    fg = (pf > 0) & (tf > 0)
    ti = np.searchsorted(t_ids, tf[fg])
    pi = np.searchsorted(p_ids, pf[fg])
    pair, inter = np.unique(ti.astype(np.int64) * n_p + pi, return_counts=True)
    area_p = np.bincount(np.searchsorted(p_ids, pf[pf > 0]), minlength=n_p)
    area_t = np.bincount(np.searchsorted(t_ids, tf[tf > 0]), minlength=n_t)
    cand_t, cand_p = pair // n_p, pair % n_p
    iou = inter / (area_t[cand_t] + area_p[cand_p] - inter)
    scores: dict[tuple[int, int], float] = {}
    for a, b, v in zip(cand_t.tolist(), cand_p.tolist(), iou.tolist(), strict=True):
        if v >= iou_threshold:
            scores[(a, b)] = 1.0 + v
    if centroid_px is not None:
        cp = np.array(ndimage.center_of_mass(np.ones(p.shape), p, p_ids)).reshape(-1, 2)
        ct = np.array(ndimage.center_of_mass(np.ones(t.shape), t, t_ids)).reshape(-1, 2)
        for a, near in enumerate(cKDTree(cp).query_ball_point(ct, r=centroid_px)):
            for b in near:
                d = float(np.hypot(*(ct[a] - cp[b])))
                scores[(a, b)] = max(scores.get((a, b), 0.0), 1.0 / (1.0 + d))
    if not scores:
        return 0
    keys = np.array(list(scores), np.int64)
    graph = coo_matrix((np.ones(len(keys)), (keys[:, 0], n_t + keys[:, 1])), shape=(n_t + n_p, n_t + n_p))
    _, comp = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for k, (a, _b) in enumerate(keys.tolist()):
        groups.setdefault(int(comp[a]), []).append(k)
    tp = 0
    for members in groups.values():
        sub = keys[members]
        ta, pb = np.unique(sub[:, 0]), np.unique(sub[:, 1])
        m = np.zeros((len(ta), len(pb)))
        for a, b in sub.tolist():
            m[np.searchsorted(ta, a), np.searchsorted(pb, b)] = scores[(a, b)]
        rows, cols = linear_sum_assignment(-m)
        tp += int(np.count_nonzero(m[rows, cols] > 0))
    return tp
