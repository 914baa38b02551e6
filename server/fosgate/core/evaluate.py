"""``fosgate evaluate``: score a folder of predictions against a folder of ground truth.

Files are matched by stem: ``<stem>.labels.ome.tif`` (preferred) or ``<stem>.mask.ome.tif`` or any
image named ``<stem>[_mask|.mask|_labels...].<ext>`` on the prediction side; ``<stem>...`` on the
truth side. Binary masks become 4-connected instances. Metrics are those of ``fosgate.core.metrics``:
per-image pixel IoU/F1 (reference-paper MIoU/F1 = their means), object F1 with the IoU-or-centroid
rule, AP@0.5 with IoU-only one-to-one matching, and the count MAE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fosgate.core.metrics import (
    as_instances,
    mean_pixel_scores,
    object_scores,
    pixel_scores,
    summarize_objects,
)

SUFFIXES = (".labels.ome.tif", ".mask.ome.tif", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpg", ".jpeg")
TAGS = ("_mask", ".mask", "-mask", "_masks", "_label", "_labels", ".labels", "_seg", "_pred")


def stem_of(path: Path) -> str:
    name = path.name
    low = name.lower()
    for suffix in SUFFIXES:
        if low.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for tag in TAGS:
        if name.lower().endswith(tag):
            return name[: -len(tag)]
    return name


def read_labels(path: Path) -> np.ndarray:
    import tifffile
    from PIL import Image

    if path.name.lower().endswith((".tif", ".tiff")):
        arr = tifffile.imread(path)
    else:
        arr = np.asarray(Image.open(path))
    arr = np.squeeze(arr)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return as_instances(arr)


def _index(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not p.name.lower().endswith(SUFFIXES):
            continue
        s = stem_of(p)
        if s not in found or p.name.lower().endswith(".labels.ome.tif"):
            found[s] = p
    return found


def evaluate_folders(pred_dir: Path, truth_dir: Path, iou_threshold: float = 0.5,
                     centroid_px: float | None = 40.0) -> dict:
    for d in (pred_dir, truth_dir):
        if not d.is_dir():
            raise SystemExit(f"fosgate evaluate: '{d}' is not a folder.")
    preds, truths = _index(pred_dir), _index(truth_dir)
    common = sorted(set(preds) & set(truths))
    if not common:
        raise SystemExit(f"fosgate evaluate: no prediction in '{pred_dir}' has a ground truth with the same file stem "
                         f"in '{truth_dir}'.")
    images, pairs, per_obj, per_ap = [], [], [], []
    for stem in common:
        p, t = read_labels(preds[stem]), read_labels(truths[stem])
        if p.shape != t.shape:
            raise SystemExit(f"fosgate evaluate: '{stem}' is {p.shape[::-1]} in the predictions but {t.shape[::-1]} "
                             "in the ground truth.")
        px = pixel_scores(p > 0, t > 0)
        ob = object_scores(p, t, iou_threshold=iou_threshold, centroid_px=centroid_px)
        ap = object_scores(p, t, iou_threshold=0.5, centroid_px=None)
        pairs.append((p > 0, t > 0))
        per_obj.append(ob)
        per_ap.append(ap)
        images.append({"image": stem, "pixel_iou": px["iou"], "pixel_f1": px["f1"], "object_f1": ob["f1"],
                       "ap50": ap["ap"], "n_pred": ob["n_pred"], "n_true": ob["n_true"],
                       "count_error": ob["count_error"]})
    summary = {**mean_pixel_scores(pairs), **summarize_objects(per_obj), "ap50": summarize_objects(per_ap)["ap50"],
               "images": len(common)}
    missing = sorted(set(truths) - set(preds))
    return {"summary": summary, "images": images, "unmatched_truth": missing}


def format_table(result: dict) -> str:
    lines = [f"{'image':40s} {'pix IoU':>8s} {'pix F1':>7s} {'obj F1':>7s} {'AP@0.5':>7s} {'pred':>5s} {'true':>5s}"]
    for r in result["images"]:
        lines.append(f"{r['image'][:40]:40s} {r['pixel_iou']:8.3f} {r['pixel_f1']:7.3f} {r['object_f1']:7.3f} "
                     f"{r['ap50']:7.3f} {r['n_pred']:5d} {r['n_true']:5d}")
    s = result["summary"]
    lines.append(f"mean over {s['images']} images: pixel MIoU {s['pixel_miou']:.3f}, pixel F1 {s['pixel_f1']:.3f}; "
                 f"object F1 {s['object_f1']:.3f} (precision {s['object_precision']:.3f}, recall "
                 f"{s['object_recall']:.3f}); AP@0.5 {s['ap50']:.3f}; count MAE {s['count_mae']:.2f}")
    if result["unmatched_truth"]:
        lines.append(f"no prediction for: {', '.join(result['unmatched_truth'])}")
    return "\n".join(lines)
