"""Label efficiency on FNC: held-out score vs the fraction of tiles labelled, by selection strategy.

Data: Fluorescent Neuronal Cells sample (../shared/data/fnc, yellow + red; CC BY-SA 4.0, Morelli et al.
2021, Clissa et al. 2024). As in bench/labelling_loop.py, ``Mar32bS2C2R2_DMl_200x`` (yellow) and
``RT353S2C1R5_r1`` (red) are held out; the other four images are the slides whose 128-px tiles (4-px
margin, the reference recipe) form the pool a person could label.

Each slide's tiles are clustered with fosgate's tile clustering (autoencoder + k-means, k = 5). For each
fraction of labelled tiles (default 10, 25, 50 %; 100 % is the same set for every strategy) and each
strategy, the tiles are chosen per slide (the fraction of each slide's tiles) with
``fosgate.core.selection.select_tiles``:

- ``random``: uniform over the slide's tiles;
- ``balanced``: the same number from every cluster (the reference paper's balanced set);
- ``active``: starts from the balanced 10 % set; each larger set keeps the previous one and adds, with
  balanced quotas, the tiles where the model trained on the previous set is least certain
  (mean 4 p (1 - p) over the tile).

The labels are the ground-truth masks of the chosen tiles (a perfect reviewer). A fresh reference U-Net
is trained on them for the same number of gradient steps at every point (``--steps``, batch 16 of
128-px crops), the two held-out images are predicted whole (seam-free), thresholded at 0.5 and scored:
pixel F1 and MIoU (mean over the two images, the reference paper's definition) and object F1 / count
MAE (FNC rule: IoU >= 0.5 or centroids <= 40 px; min size 100 px). ``--seeds`` repeats everything with
other selection and training seeds; the plot shows the mean and the range over seeds.

    .venv/bin/python bench/bench_label_efficiency.py [--fractions 0.1 0.25 0.5 1.0] [--steps 300]
        [--seeds 1] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import RESULTS, need_data, save
from PIL import Image

HELD_OUT = {"Mar32bS2C2R2_DMl_200x.png", "RT353S2C1R5_r1.png"}
STRATEGIES = ("random", "balanced", "active")


def load_fnc(fnc: Path) -> tuple[list, list]:
    train, test = [], []
    for colour in ("yellow", "red"):
        for path in sorted((fnc / colour / "images").glob("*.png")):
            img = np.asarray(Image.open(path).convert("RGB"))
            mask = (np.asarray(Image.open(fnc / colour / "masks" / path.name).convert("L")) > 0).astype(np.uint8)
            (test if path.name in HELD_OUT else train).append((path, img, mask))
    return train, test


def core_means(values: np.ndarray, tiles: list) -> np.ndarray:
    """Mean of ``values`` over each crop tile's core (cores partition the image)."""
    return np.array([values[t.core_y:t.core_y + t.core_height, t.core_x:t.core_x + t.core_width].mean()
                     for t in tiles])


def run(fractions: list[float], steps: int, seeds: list[int], cluster_epochs: int, k: int,
        max_tiles_per_slide: int | None = None, max_slides: int | None = None, batch: int = 16) -> dict:
    from fosgate.core.clustering import cluster_tiles
    from fosgate.core.instances import label_mask
    from fosgate.core.metrics import mean_pixel_scores, object_scores, summarize_objects
    from fosgate.core.normalize import Normalization
    from fosgate.core.predict import predict_array
    from fosgate.core.selection import select_tiles
    from fosgate.core.slides import open_slide
    from fosgate.core.training import TrainConfig, TrainingPair, train_unet
    from fosgate.core.unet import receptive_field_radius, required_halo

    train, test = load_fnc(need_data("fnc"))
    if max_slides:  # quick mode: fewer slides to cluster, one held-out image (its top-left 512 px)
        train, test = train[:max_slides], [(p, img[:512, :512], mask[:512, :512]) for p, img, mask in test[:1]]
    norm = Normalization()
    stats = [norm.stats_of_array(img) for _, img, _ in train]
    slides = []
    t_all = time.perf_counter()
    for path, _, _ in train:
        with open_slide(path) as slide:
            res = cluster_tiles(slide, tile=128, margin=4, k=k, seed=0, epochs=cluster_epochs)
        tiles, clusters = res.tiles, res.clusters
        if max_tiles_per_slide:
            tiles, clusters = tiles[:max_tiles_per_slide], clusters[:max_tiles_per_slide]
        slides.append({"name": path.stem, "tiles": tiles, "clusters": np.asarray(clusters)})
    cluster_s = time.perf_counter() - t_all

    def pairs_for(chosen: list[list[int]]) -> list:
        out = []
        for s, (ix, (_, img, mask), (lo, hi)) in enumerate(zip(chosen, train, stats, strict=True)):
            for i in ix:
                t = slides[s]["tiles"][i]
                sl = (slice(t.y, t.y + t.height), slice(t.x, t.x + t.width))
                out.append(TrainingPair(img[sl], mask[sl], f"{slides[s]['name']}_{i}", lo=lo, hi=hi))
        return out

    def fit(chosen: list[list[int]], seed: int):
        pairs = pairs_for(chosen)
        cfg = TrainConfig(epochs=max(1, steps // 25), steps_per_epoch=min(25, steps), tile_size=128, batch_size=batch,
                          val_fraction=0.0, seed=seed)
        t0 = time.perf_counter()
        model, _, _ = train_unet(pairs, norm, cfg)
        return model, time.perf_counter() - t0, len(pairs)

    def probabilities(model, img: np.ndarray) -> np.ndarray:
        lo, hi = norm.stats_of_array(img)
        return predict_array(model, Normalization.apply(img, lo, hi, norm.clip_max), tile=512,
                             halo=required_halo(receptive_field_radius(model)))

    def evaluate(model) -> dict:
        objs, pix = [], []
        for _, img, truth in test:
            lab = np.zeros(truth.shape, np.uint32)
            label_mask(probabilities(model, img) >= 0.5, lab, min_size=100)
            objs.append(object_scores(lab, truth, 0.5, 40))
            pix.append((lab > 0, truth > 0))
        return {**mean_pixel_scores(pix), **summarize_objects(objs)}

    def select(fraction: float, strategy: str, seed: int, previous: list[list[int]] | None = None,
               uncertainty: list[np.ndarray] | None = None) -> list[list[int]]:
        chosen = []
        for s, sl in enumerate(slides):
            n = max(1, round(fraction * len(sl["tiles"])))
            if strategy != "active":
                chosen.append(select_tiles(sl["clusters"], n, strategy, seed=seed))
                continue
            keep = list(previous[s])
            eligible = np.ones(len(sl["tiles"]), bool)
            eligible[keep] = False
            extra = select_tiles(sl["clusters"], n - len(keep), "active", uncertainty=uncertainty[s],
                                 eligible=eligible, seed=seed)
            chosen.append(sorted(keep + extra))
        return chosen

    rows = []
    for seed in seeds:
        full = None
        if 1.0 in fractions:
            chosen = [list(range(len(sl["tiles"]))) for sl in slides]
            model, train_s, n = fit(chosen, seed)
            full = {"fraction": 1.0, "labelled_tiles": n, "train_seconds": train_s, **evaluate(model)}
        prev_active: tuple[list[list[int]], object] | None = None
        for fraction in sorted(f for f in fractions if f < 1.0):
            fitted: dict[str, tuple] = {}
            for strategy in STRATEGIES:
                if strategy == "active" and prev_active is None:
                    # the first active set is the balanced one: the same tiles and seed, so the same model
                    chosen, (model, train_s, n), scores = fitted["balanced"]
                else:
                    if strategy == "active":
                        prev_chosen, prev_model = prev_active
                        unc = [core_means(4 * p * (1 - p), sl["tiles"]) for sl, p in
                               zip(slides, (probabilities(prev_model, img) for _, img, _ in train), strict=True)]
                        chosen = select(fraction, "active", seed, prev_chosen, unc)
                    else:
                        chosen = select(fraction, strategy, seed)
                    model, train_s, n = fit(chosen, seed)
                    scores = evaluate(model)
                fitted[strategy] = (chosen, (model, train_s, n), scores)
                if strategy == "active":
                    prev_active = (chosen, model)
                row = {"seed": seed, "strategy": strategy, "fraction": fraction, "labelled_tiles": n,
                       "train_seconds": train_s, **scores}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        if full is not None:
            rows += [{"seed": seed, "strategy": s, **full} for s in STRATEGIES]
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"rows": rows, "pool_tiles": sum(len(sl["tiles"]) for sl in slides),
            "slides": [sl["name"] for sl in slides], "held_out": sorted(p.stem for p, _, _ in test),
            "settings": {"fractions": fractions, "steps": steps, "batch": batch, "seeds": seeds, "k": k,
                         "cluster_epochs": cluster_epochs, "min_size": 100},
            "cluster_seconds": cluster_s, "wall_seconds": time.perf_counter() - t_all}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--steps", type=int, default=300, help="gradient steps per training (batch 16 of 128 px)")
    ap.add_argument("--seeds", type=int, default=1, help="number of selection/training seeds (0, 1, ...)")
    ap.add_argument("--quick", action="store_true", help="fractions 0.1 and 0.25 of 40 tiles per slide of 3 slides, 5 steps of 4 crops, 512 px of 1 test image")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        result = run([0.1, 0.25], 5, [0], cluster_epochs=1, k=3, max_tiles_per_slide=40, max_slides=3, batch=4)
    else:
        result = run(args.fractions, args.steps, list(range(args.seeds)), cluster_epochs=5, k=5)
    result["mode"] = "quick" if args.quick else "full"
    save(args.out, "label_efficiency", result)
    print("| strategy | fraction | tiles | pixel F1 | object F1 | count MAE |\n|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['strategy']} | {r['fraction']:.2f} | {r['labelled_tiles']} | {r['pixel_f1']:.3f} | "
              f"{r['object_f1']:.3f} | {r['count_mae']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
