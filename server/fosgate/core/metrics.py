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


# ------------------------------------------------------------------------ detection at IoU >= threshold


def _overlaps(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Every overlapping (true, predicted) pair of two instance images: ``t_ids`` / ``p_ids`` (sorted
    instance ids, background 0 excluded), ``area_t`` / ``area_p`` (pixels per instance, same order),
    and per pair ``ct`` / ``cp`` (indices into t_ids / p_ids), ``inter`` (shared pixels) and ``iou``."""
    p, t = as_instances(pred), as_instances(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    p_ids, t_ids = np.unique(p)[1:], np.unique(t)[1:]
    n_p, n_t = len(p_ids), len(t_ids)
    pf, tf = p.ravel(), t.ravel()
    area_p = np.bincount(np.searchsorted(p_ids, pf[pf > 0]), minlength=n_p)
    area_t = np.bincount(np.searchsorted(t_ids, tf[tf > 0]), minlength=n_t)
    fg = (pf > 0) & (tf > 0)
    ti = np.searchsorted(t_ids, tf[fg]).astype(np.int64)
    pi = np.searchsorted(p_ids, pf[fg]).astype(np.int64)
    pair, inter = np.unique(ti * max(n_p, 1) + pi, return_counts=True)
    ct, cp = pair // max(n_p, 1), pair % max(n_p, 1)
    iou = inter / (area_t[ct] + area_p[cp] - inter) if len(pair) else np.zeros(0)
    return {"p_ids": p_ids, "t_ids": t_ids, "area_p": area_p, "area_t": area_t, "ct": ct, "cp": cp,
            "inter": inter, "iou": iou}


def match_instances(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """One-to-one matching of predicted to true instances at IoU >= ``iou_threshold``, as StarDist's
    ``matching`` does it: among all matchings that use only pairs with IoU >= the threshold, the one with
    the most pairs, and among those the largest summed IoU (Hungarian method).

    Binary masks become 4-connected components (:func:`as_instances`); label images keep their
    numbering. Returns ``true_ids``, ``pred_ids`` and ``iou`` of the matched pairs (same length) and
    the instance ids of each side (``all_true``, ``all_pred``, label 0 = background excluded).

    Invariants: every id appears at most once among the matches; every matched IoU >= threshold; for
    ``iou_threshold > 0.5`` the matching is unique (an object overlaps at most one other by more than half).
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    o = _overlaps(pred, truth)
    p_ids, t_ids, n_p, n_t = o["p_ids"], o["t_ids"], len(o["p_ids"]), len(o["t_ids"])
    empty = np.zeros(0, np.int64)
    result = {"true_ids": empty, "pred_ids": empty, "iou": np.zeros(0), "all_true": t_ids, "all_pred": p_ids}
    if not n_p or not n_t:
        return result
    ct, cp, iou = o["ct"], o["cp"], o["iou"]
    keep = iou >= iou_threshold
    ct, cp, iou = ct[keep], cp[keep], iou[keep]
    if not len(ct):
        return result
    # solve each connected group of candidate pairs exactly (tiny groups: fast on 1000s of cells)
    graph = coo_matrix((np.ones(len(ct)), (ct, n_t + cp)), shape=(n_t + n_p, n_t + n_p))
    _, comp = connected_components(graph, directed=False)
    order = np.argsort(comp[ct], kind="stable")
    bounds = np.flatnonzero(np.diff(comp[ct][order])) + 1
    mt, mp = [], []
    for members in np.split(order, bounds):
        a, b, v = ct[members], cp[members], iou[members]
        ua, ub = np.unique(a), np.unique(b)
        if len(ua) == 1 and len(ub) == 1:
            mt.append(int(a[0]))
            mp.append(int(b[0]))
            continue
        cost = np.zeros((len(ua), len(ub)))
        ia, ib = np.searchsorted(ua, a), np.searchsorted(ub, b)
        cost[ia, ib] = -(1.0 + v / (2.0 * min(len(ua), len(ub))))  # most pairs first, then the summed IoU
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if cost[r, c] < 0:
                mt.append(int(ua[r]))
                mp.append(int(ub[c]))
    mt_a, mp_a = np.array(mt, np.int64), np.array(mp, np.int64)
    lookup = {(x, y): z for x, y, z in zip(ct.tolist(), cp.tolist(), iou.tolist(), strict=True)}
    result.update(true_ids=t_ids[mt_a], pred_ids=p_ids[mp_a],
                  iou=np.array([lookup[(x, y)] for x, y in zip(mt, mp, strict=True)]))
    return result


def detection_scores(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object detection of one image at IoU >= ``iou_threshold`` (:func:`match_instances`): TP, FP, FN,
    precision, recall, F1 = 2TP / (2TP + FP + FN), count error = #pred - #true and its relative size
    |#pred - #true| / #true (NaN without true objects). Empty vs empty is perfect (F1 1.0)."""
    m = match_instances(pred, truth, iou_threshold)
    n_p, n_t, tp = len(m["all_pred"]), len(m["all_true"]), len(m["true_ids"])
    fp, fn = n_p - tp, n_t - tp
    return {
        "tp": tp, "fp": fp, "fn": fn, "n_pred": n_p, "n_true": n_t,
        "precision": tp / n_p if n_p else float(n_t == 0),
        "recall": tp / n_t if n_t else float(n_p == 0),
        "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
        "mean_matched_iou": float(np.mean(m["iou"])) if tp else float("nan"),
        "count_error": n_p - n_t,
        "rel_count_error": abs(n_p - n_t) / n_t if n_t else float("nan"),
    }


def error_breakdown(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5,
                    touch: float = 0.1) -> dict[str, int]:
    """Why the objects left unmatched by :func:`match_instances` are unmatched: a diagnosis for a
    person reading a benchmark (which post-processing knob to turn), not a score.

    A predicted object *covers* a true one when it holds at least ``touch`` of the true object's pixels
    (and symmetrically a true object covers a predicted one). Every unmatched true object (an FN) is
    exactly one of: ``fn_missed`` (no prediction covers it: a dim or absent detection), ``fn_merged`` (the
    prediction covering most of it also covers another true object: touching cells not separated), or
    ``fn_shape`` (covered, but IoU < threshold: boundary, size or threshold disagreement). Every unmatched
    prediction (an FP) is one of ``fp_spurious`` (no true object covers it), ``fp_split`` (the true object
    covering most of it also covers another prediction: one cell cut in pieces) or ``fp_shape``. So
    fn_missed + fn_merged + fn_shape == FN and fp_spurious + fp_split + fp_shape == FP."""
    m = match_instances(pred, truth, iou_threshold)
    o = _overlaps(pred, truth)
    n_t, n_p = len(o["t_ids"]), len(o["p_ids"])
    ct, cp, inter = o["ct"], o["cp"], o["inter"]
    covers_t = inter >= touch * o["area_t"][ct]  # prediction cp covers truth ct
    covers_p = inter >= touch * o["area_p"][cp]  # truth ct covers prediction cp

    def classify(own, other, covered, n_own, unmatched) -> tuple[int, int, int]:
        # for each own object: the other-side object sharing most pixels among those covering it
        best = np.full(n_own, -1, np.int64)
        order = np.lexsort((-inter[covered], own[covered]))  # by own id, the largest overlap first
        o_own, o_other = own[covered][order], other[covered][order]
        first = np.r_[True, o_own[1:] != o_own[:-1]] if len(o_own) else np.zeros(0, bool)
        best[o_own[first]] = o_other[first]
        # how many own objects each other-side object covers (the same ``touch`` rule, seen from it)
        n_covered_by = np.bincount(other[covered], minlength=max(int(other.max(initial=-1)) + 1, 1))
        missed = merged = shape = 0
        for i in unmatched:
            if best[i] < 0:
                missed += 1
            elif n_covered_by[best[i]] > 1:
                merged += 1
            else:
                shape += 1
        return missed, merged, shape

    un_t = np.setdiff1d(np.arange(n_t), np.searchsorted(o["t_ids"], m["true_ids"]))
    un_p = np.setdiff1d(np.arange(n_p), np.searchsorted(o["p_ids"], m["pred_ids"]))
    fn = classify(ct, cp, covers_t, n_t, un_t)
    fp = classify(cp, ct, covers_p, n_p, un_p)
    return {"fn_missed": fn[0], "fn_merged": fn[1], "fn_shape": fn[2],
            "fp_spurious": fp[0], "fp_split": fp[1], "fp_shape": fp[2]}


def pool_detection(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Scores of a set of images: F1 / precision / recall from the summed TP, FP, FN (pooled, so an
    image with many cells weighs more), the mean signed count error, the mean relative |count error|
    over images with true objects, and the total counts."""
    tp = sum(s["tp"] for s in per_image)
    fp = sum(s["fp"] for s in per_image)
    fn = sum(s["fn"] for s in per_image)
    rel = [s["rel_count_error"] for s in per_image if s["n_true"]]
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "count_error": float(np.mean([s["count_error"] for s in per_image])) if per_image else float("nan"),
        "rel_count_error": float(np.mean(rel)) if rel else float("nan"),
        "n_pred": int(sum(s["n_pred"] for s in per_image)), "n_true": int(sum(s["n_true"] for s in per_image)),
        "tp": int(tp), "fp": int(fp), "fn": int(fn), "images": len(per_image),
    }


def paired_f1_difference(a: list[dict[str, float]], b: list[dict[str, float]], level: float = 0.95,
                         n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(difference, lo, hi)``: pooled F1 of ``a`` minus pooled F1 of ``b`` (two methods' TP/FP/FN on the
    same images, in the same order) and its percentile bootstrap interval, resampling images jointly for
    both, so the interval is of the paired difference, not of two separate scores."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_f1_difference needs the same non-empty list of images for both methods")
    counts = np.array([[[s["tp"], s["fp"], s["fn"]] for s in side] for side in (a, b)], np.float64)  # (2, n, 3)

    def pooled(sums: np.ndarray) -> np.ndarray:
        denom = 2 * sums[..., 0] + sums[..., 1] + sums[..., 2]
        return np.where(denom > 0, 2 * sums[..., 0] / np.maximum(denom, 1e-12), 1.0)

    whole = pooled(counts.sum(axis=1))
    idx = np.random.default_rng(seed).integers(0, counts.shape[1], size=(n_boot, counts.shape[1]))
    boot = pooled(counts[:, idx].sum(axis=2))  # (2, n_boot)
    diff = boot[0] - boot[1]
    q = (1 - level) / 2
    return float(whole[0] - whole[1]), float(np.quantile(diff, q)), float(np.quantile(diff, 1 - q))


def bootstrap_f1_interval(per_image: list[dict[str, float]], level: float = 0.95, n_boot: int = 2000,
                          seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled F1 (:func:`pool_detection`), resampling images with
    replacement. With one image the interval is that image's F1 (no spread can be estimated)."""
    counts = np.array([[s["tp"], s["fp"], s["fn"]] for s in per_image], np.float64)
    if len(counts) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    sums = counts[idx].sum(axis=1)
    denom = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
    f1 = np.where(denom > 0, 2 * sums[:, 0] / np.maximum(denom, 1e-12), 1.0)
    a = (1 - level) / 2
    return float(np.quantile(f1, a)), float(np.quantile(f1, 1 - a))
