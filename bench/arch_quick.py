"""Quick design check for issue 14: ``unet2`` vs ``reference`` (and TTA) on a few segebarth-cfos images.

Trains both architectures with the same small budget on the first images of one lab, calibrates on a
validation image, and scores object F1 (IoU >= 0.5, one-to-one) on held-out images of the same lab
against the experts' consensus. Read in place from ../shared/data/segebarth-cfos (never copied).
A smoke-size measurement for design choices, not the benchmark (that is bench_cfos.py).

    .venv/bin/python bench/arch_quick.py --lab wue1 --train 6 --test 4 --epochs 6 --steps 20
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "segebarth-cfos"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default="wue1")
    ap.add_argument("--train", type=int, default=6)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--archs", default="reference,unet2")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from PIL import Image

    from fosgate.core.metrics import as_instances, object_scores, summarize_objects
    from fosgate.core.training import TrainConfig, TrainingPair, train_model

    with open(DATA / "index.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lab"] == args.lab]
    rows = rows[: args.train + args.test]

    def load(r):
        img = np.asarray(Image.open(DATA / "images" / r["file"]))
        img = img if img.ndim == 2 else img[..., :3]
        mask = np.asarray(Image.open(DATA / "masks" / r["file"]))
        mask = mask if mask.ndim == 2 else mask.max(-1)
        px = 1.0 / float(r["px_per_um"]) if r["px_per_um"] else 0.0
        return img, as_instances(mask), px

    data = [load(r) for r in rows]
    train = [TrainingPair(i if i.ndim == 3 else i[..., None], m, f"t{k}", pixel_size_um=px)
             for k, (i, m, px) in enumerate(data[: args.train])]
    test = data[args.train:]
    results = {}
    for arch in args.archs.split(","):
        t0 = time.perf_counter()
        model = train_model(train, TrainConfig(arch=arch, epochs=args.epochs, steps_per_epoch=args.steps,
                                               tile_size=args.tile, batch_size=args.batch, val_fraction=0.2))
        t_train = time.perf_counter() - t0
        for tta in ([False, True] if args.tta else [False]):
            t1 = time.perf_counter()
            per = [object_scores(model.predict_instances(i, pixel_size_um=px, tta=tta), m, 0.5, None)
                   for i, m, px in test]
            key = arch + ("+tta" if tta else "")
            results[key] = {**summarize_objects(per), "train_s": t_train, "predict_s": time.perf_counter() - t1,
                            "val_object_f1": model.metrics.get("val_object_f1"),
                            "post": vars(model.post) if hasattr(model.post, "__dict__") else str(model.post),
                            "best_epoch": model.metrics.get("best_epoch")}
            print(key, json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in results[key].items()}),
                  flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
