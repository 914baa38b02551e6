"""DELiVR c-Fos light-sheet patches: pixel F1 and object F1 on z-slices, cross-validated by brain.

Data: ../shared/data/delivr-cfos (33 uint16 volumes of 100 x 100 x 100 voxels, ~1.6 x 1.6 x 6 um, with
binary masks annotated in virtual reality; erturklab/delivr_cfos @ 51ef796, MIT licence; Kaltenecker
et al. 2024, Nat Methods, "Virtual reality-empowered deep-learning analysis of brain cells").

Volumes are grouped by the first number of their name (``patchvolume_<group>_<k>``; patches of one
group come from one sample) and the groups are split into ``--folds`` folds, so no test slice has a
neighbour in training. Per fold the reference U-Net is trained with fosgate's trainer on every z-slice
of the training volumes (each volume normalised once: 1st-99.8th percentile of the volume, as fosgate
does for a slide), ``--steps`` gradient steps of batch 16 on 96-px crops, with 10 % of the training
slices held out for validation: the weights of the best validation epoch are kept and the probability
threshold is calibrated on those slices (fosgate's trainer does both; sparse cells leave the net
under-confident, so 0.5 would miss most of them). Each held-out z-slice is then predicted (seam-free
whole-image prediction), thresholded at the calibrated value and scored against its mask slice:

- pixel F1 / IoU pooled over all held-out voxels (most slices hold no cell at all, so a per-slice
  mean would be dominated by empty slices scored 1.0);
- object F1 pooled over slices (2-D connected components, min size 2 px; a match is IoU >= 0.5 or
  centroids <= 3 px apart, one-to-one: cells are only ~5-10 px across here) and count MAE per slice.

    .venv/bin/python bench/bench_delivr.py [--arch reference|default] [--folds 3] [--steps 600] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from common import ARCHS, RESULTS, fit_arch, need_data, save

MIN_SIZE = 2
VAL_FRACTION = 0.1
CENTROID_PX = 3.0


def load_volumes(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import tifffile

    out = []
    for path in sorted((folder / "images").glob("*.tif")):
        out.append((path.stem, tifffile.imread(path), tifffile.imread(folder / "masks" / path.name) > 0))
    return out


def group_of(name: str) -> str:
    m = re.match(r"patchvolume_(\d+)_", name)
    return m.group(1) if m else name


def folds_by_group(names: list[str], n_folds: int) -> list[list[int]]:
    """Indices per fold; whole groups go to one fold, largest groups first, onto the smallest fold."""
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(group_of(n), []).append(i)
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for g in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        min(folds, key=len).extend(groups[g])
    return [sorted(f) for f in folds]


def run(n_folds: int, steps: int, max_train_volumes: int | None = None, max_test_volumes: int | None = None,
        max_folds: int | None = None, seed: int = 0, arch: str = "reference") -> dict:
    from fosgate.core.metrics import object_scores, summarize_objects
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainConfig, TrainingPair

    data = load_volumes(need_data("delivr-cfos"))
    names = [d[0] for d in data]
    norm = Normalization(high=99.8)
    folds = folds_by_group(names, n_folds)
    rows = []
    pooled = {"inter": 0, "pred": 0, "true": 0}
    all_objects = []
    t_all = time.perf_counter()
    for f, test_idx in enumerate(folds[:max_folds]):
        train_idx = [i for i in range(len(data)) if i not in test_idx][:max_train_volumes]
        test_idx = test_idx[:max_test_volumes]
        pairs = []
        for i in train_idx:
            name, vol, mask = data[i]
            lo, hi = norm.stats_of_array(vol[..., None])
            pairs += [TrainingPair(vol[z][..., None], mask[z].astype(np.uint8), f"{name}_z{z}", lo=lo, hi=hi)
                      for z in range(vol.shape[0])]
        epochs = max(1, steps // 25)
        cfg = TrainConfig(epochs=epochs, tile_size=96, batch_size=16, val_fraction=VAL_FRACTION, seed=seed,
                          steps_per_epoch=25)
        t0 = time.perf_counter()
        predict, metrics = fit_arch(arch, pairs, cfg, norm)
        threshold = float(metrics["threshold"])
        train_s = time.perf_counter() - t0
        inter = npred = ntrue = 0
        objects = []
        for i in test_idx:
            name, vol, mask = data[i]
            lo, hi = norm.stats_of_array(vol[..., None])
            for z in range(vol.shape[0]):  # each slice normalised with its volume's statistics
                # reference: calibrated threshold, components of >= MIN_SIZE px; default: its calibrated post
                lab = (predict(vol[z][..., None], lo, hi, min_size_px=MIN_SIZE) if arch == "reference"
                       else predict(vol[z][..., None], lo, hi))
                truth = mask[z]
                inter += int(np.count_nonzero((lab > 0) & truth))
                npred += int(np.count_nonzero(lab))
                ntrue += int(np.count_nonzero(truth))
                objects.append(object_scores(lab, truth, 0.5, CENTROID_PX))
        summary = summarize_objects(objects)
        rows.append({"fold": f, "train_volumes": [names[i] for i in train_idx],
                     "test_volumes": [names[i] for i in test_idx], "train_slices": len(pairs),
                     "test_slices": len(objects), "steps": epochs * 25, "train_seconds": train_s,
                     "threshold": threshold, "best_epoch": metrics.get("best_epoch"),
                     **({"post": metrics["post"]} if "post" in metrics else {}),
                     "pixel_f1": 2 * inter / max(npred + ntrue, 1),
                     "pixel_iou": inter / max(npred + ntrue - inter, 1), **summary,
                     "true_objects": sum(o["n_true"] for o in objects),
                     "predicted_objects": sum(o["n_pred"] for o in objects)})
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("volumes")}), file=sys.stderr,
              flush=True)
        pooled["inter"] += inter
        pooled["pred"] += npred
        pooled["true"] += ntrue
        all_objects += objects
    total = summarize_objects(all_objects)
    return {
        "folds": rows,
        "pooled": {"pixel_f1": 2 * pooled["inter"] / max(pooled["pred"] + pooled["true"], 1),
                   "pixel_iou": pooled["inter"] / max(pooled["pred"] + pooled["true"] - pooled["inter"], 1),
                   **total, "slices": len(all_objects)},
        "settings": {"folds": n_folds, "steps": steps, "batch": 16, "crop": 96, "val_fraction": VAL_FRACTION,
                     "min_size": MIN_SIZE, "centroid_px": CENTROID_PX, "normalisation": "volume 1-99.8 pct",
                     "seed": seed, "arch": arch},
        "wall_seconds": time.perf_counter() - t_all,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600, help="gradient steps per fold (batch 16 of 96 px)")
    ap.add_argument("--quick", action="store_true", help="1 fold scored on 2 volumes, 4 training volumes, 25 steps")
    ap.add_argument("--arch", default="reference", choices=ARCHS, help="reference: the paper's U-Net (saved as "
                    "delivr); default: fosgate's unet2 with its calibrated post-processing (saved as delivr_default)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        result = run(3, 25, max_train_volumes=4, max_test_volumes=2, max_folds=1, arch=args.arch)
    else:
        result = run(args.folds, args.steps, arch=args.arch)
    result["mode"] = "quick" if args.quick else "full"
    save(args.out, "delivr" if args.arch == "reference" else f"delivr_{args.arch}", result)
    p = result["pooled"]
    print(f"pixel F1 {p['pixel_f1']:.3f}, IoU {p['pixel_iou']:.3f}, object F1 {p['object_f1']:.3f}, "
          f"count MAE {p['count_mae']:.2f} per slice over {p['slices']} slices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
