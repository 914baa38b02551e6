"""FNC leave-one-image-out: train on 5 images, score the 6th, for each of the 6 (yellow + red).

Data: Fluorescent Neuronal Cells sample (../shared/data/fnc; CC BY-SA 4.0; Morelli et al. 2021, Clissa
et al. 2024). Each fold trains the reference U-Net exactly as ``fosgate train`` does by default: per-image
percentile normalisation, random 128-px crops with flips/rotations, ``--epochs`` 30, ``--val-fraction``
0.2 of the 5 training images (one whole image) held out to keep the best epoch and to calibrate the
probability threshold (best pixel F1). The held-out image is predicted whole (seam-free), thresholded
at the model's calibrated threshold, and split into instances with min size 100 px. Object detection
follows the FNC authors: a match is IoU >= 0.5 or centroids <= 40 px, one-to-one. Reports per-image and
pooled (all, yellow, red) object F1, count MAE, pixel F1 and MIoU (mean over images). ``--channels
independent`` repeats it with per-channel normalisation of the RGB images (the rule before joint RGB
normalisation), for the report's comparison.
Published c-ResUnet on the full FNC test set: F1 0.81, MAE 3.09 (a different, larger test set).

    .venv/bin/python bench/bench_fnc_loo.py [--arch reference|default] [--epochs 30] [--val-fraction 0.2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import ARCHS, RESULTS, fit_arch, save
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FNC = ROOT.parent / "shared" / "data" / "fnc"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--val-fraction", type=float, default=0.2, help="of the training images, for the best epoch "
                    "and the threshold (0: last epoch, threshold 0.5)")
    ap.add_argument("--quick", action="store_true", help="hold out one image only, 1 epoch of 20 steps")
    ap.add_argument("--steps", type=int, default=0, help="steps per epoch (0: the trainer's default)")
    ap.add_argument("--only", nargs="+", default=[], help="hold out only these images (stems), e.g. to try a change")
    ap.add_argument("--channels", default="auto", choices=["auto", "independent", "joint"],
                    help="normalisation across the RGB channels (fosgate's default: auto = joint for RGB); other "
                    "values are saved as fnc_loo_<value>, the report's comparison row")
    ap.add_argument("--arch", default="reference", choices=ARCHS, help="reference: the paper's U-Net (saved as "
                    "fnc_loo); default: fosgate's unet2 with its calibrated post-processing (saved as fnc_loo_default)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.steps = 1, 20
    from fosgate.core.metrics import mean_pixel_scores, object_scores, summarize_objects
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainConfig, TrainingPair

    items = [(c, p, FNC / c / "masks" / p.name) for c in ("yellow", "red")
             for p in sorted((FNC / c / "images").glob("*.png"))]
    data = [(c, p.stem, np.asarray(Image.open(p).convert("RGB")), (np.asarray(Image.open(m).convert("L")) > 0))
            for c, p, m in items]
    norm = Normalization(channels=args.channels)
    rows, objs, pairs = [], [], []
    for i, (colour, name, img, truth) in enumerate(data):
        if (args.quick and i > 0) or (args.only and name not in args.only):
            continue
        t0 = time.perf_counter()
        train = [TrainingPair(im, tr.astype(np.uint8), n) for j, (_, n, im, tr) in enumerate(data) if j != i]
        predict, metrics = fit_arch(args.arch, train, TrainConfig(epochs=args.epochs, tile_size=128,
                                                                  val_fraction=args.val_fraction, seed=0,
                                                                  steps_per_epoch=args.steps or None), norm)
        t1 = time.perf_counter()
        threshold = float(metrics["threshold"])
        # reference: its calibrated threshold, cells of >= 100 px; default: its own calibrated post-processing
        lab = predict(img, min_size_px=100) if args.arch == "reference" else predict(img)
        o = object_scores(lab, truth, 0.5, 40)
        objs.append(o)
        pairs.append((lab > 0, truth))
        rows.append({"image": name, "colour": colour, "object_f1": o["f1"], "n_pred": o["n_pred"],
                     "n_true": o["n_true"], "tp": o["tp"], "fp": o["fp"], "fn": o["fn"],
                     "count_error": o["count_error"],
                     "pixel_f1": mean_pixel_scores([(lab > 0, truth)])["pixel_f1"],
                     "pixel_iou": mean_pixel_scores([(lab > 0, truth)])["pixel_miou"],
                     "threshold": threshold, "best_epoch": metrics.get("best_epoch"), "arch": args.arch,
                     **({"post": metrics["post"]} if "post" in metrics else {}),
                     "steps_per_epoch": metrics.get("steps_per_epoch"), "train_images": metrics.get("train_images"),
                     "val_images": metrics.get("val_images"), "train_seconds": t1 - t0,
                     "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    summary = {**summarize_objects(objs), **mean_pixel_scores(pairs), "epochs": args.epochs,
               "batch": TrainConfig().batch_size, "val_fraction": args.val_fraction, "channels": args.channels,
               "arch": args.arch}
    by_colour = {}
    for colour in ("yellow", "red"):
        sel = [k for k, r in enumerate(rows) if r["colour"] == colour]
        if sel:
            by_colour[colour] = {**summarize_objects([objs[k] for k in sel]),
                                 **mean_pixel_scores([pairs[k] for k in sel])}
    name = ("fnc_loo" + ("" if args.channels == "auto" else f"_{args.channels}")
            + ("" if args.arch == "reference" else f"_{args.arch}") + ("_only" if args.only else ""))
    save(args.out, name, {"rows": rows, "summary": summary, "by_colour": by_colour,
                               "mode": "quick" if args.quick else "full"})
    print("| held-out image | object F1 | predicted | true | pixel F1 | threshold |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['object_f1']:.3f} | {r['n_pred']} | {r['n_true']} | {r['pixel_f1']:.3f} | "
              f"{r['threshold']:.2f} |")
    print(f"\npooled object F1 {summary['object_f1']:.3f}, count MAE {summary['count_mae']:.2f}, "
          f"pixel F1 {summary['pixel_f1']:.3f}, MIoU {summary['pixel_miou']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
