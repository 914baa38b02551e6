"""FNC leave-one-image-out: train on 5 images, score the 6th, for each of the 6 (yellow + red).

Data: Fluorescent Neuronal Cells sample (../shared/data/fnc; CC BY-SA 4.0; Morelli et al. 2021, Clissa
et al. 2024). The reference U-Net, fosgate's trainer (per-image percentile normalisation, random 128-px
crops, ``--epochs`` epochs), whole-image seam-free prediction, threshold 0.5, instances with min size
100 px. Object detection follows the FNC authors: a match is IoU >= 0.5 or centroids <= 40 px,
one-to-one. Reports per-image and pooled object F1, count MAE, pixel F1 and MIoU (mean over images).
Published c-ResUnet on the full FNC test set: F1 0.81, MAE 3.09 (a different, larger test set).

    .venv/bin/python bench/bench_fnc_loo.py [--epochs 12] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import RESULTS, save
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FNC = ROOT.parent / "shared" / "data" / "fnc"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="hold out one image only, 1 epoch")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = 1
    from fosgate.core.instances import label_mask
    from fosgate.core.metrics import mean_pixel_scores, object_scores, summarize_objects
    from fosgate.core.normalize import Normalization
    from fosgate.core.predict import predict_array
    from fosgate.core.training import TrainConfig, TrainingPair, train_unet
    from fosgate.core.unet import receptive_field_radius, required_halo

    items = [(p, FNC / c / "masks" / p.name) for c in ("yellow", "red") for p in sorted((FNC / c / "images").glob("*.png"))]
    data = [(p.stem, np.asarray(Image.open(p).convert("RGB")), (np.asarray(Image.open(m).convert("L")) > 0))
            for p, m in items]
    norm = Normalization()
    rows, objs, pairs = [], [], []
    for i, (name, img, truth) in enumerate(data[:1] if args.quick else data):
        t0 = time.perf_counter()
        train = [TrainingPair(im, tr.astype(np.uint8), n) for j, (n, im, tr) in enumerate(data) if j != i]
        model, _, _ = train_unet(train, norm, TrainConfig(epochs=args.epochs, tile_size=128, val_fraction=0.0, seed=0))
        lo, hi = norm.stats_of_array(img)
        prob = predict_array(model, Normalization.apply(img, lo, hi, norm.clip_max), tile=512,
                             halo=required_halo(receptive_field_radius(model)))
        lab = np.zeros(prob.shape, np.uint32)
        label_mask(prob >= 0.5, lab, min_size=100)
        o = object_scores(lab, truth, 0.5, 40)
        objs.append(o)
        pairs.append((lab > 0, truth))
        rows.append({"image": name, "object_f1": o["f1"], "n_pred": o["n_pred"], "n_true": o["n_true"],
                     "pixel_f1": mean_pixel_scores([(lab > 0, truth)])["pixel_f1"], "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    summary = {**summarize_objects(objs), **mean_pixel_scores(pairs), "epochs": args.epochs}
    save(args.out, "fnc_loo", {"rows": rows, "summary": summary, "mode": "quick" if args.quick else "full"})
    print("| held-out image | object F1 | predicted | true | pixel F1 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['object_f1']:.3f} | {r['n_pred']} | {r['n_true']} | {r['pixel_f1']:.3f} |")
    print(f"\npooled object F1 {summary['object_f1']:.3f}, count MAE {summary['count_mae']:.2f}, "
          f"pixel F1 {summary['pixel_f1']:.3f}, MIoU {summary['pixel_miou']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
