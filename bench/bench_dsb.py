"""Label efficiency on DSB2018 fluorescence nuclei: AP@0.5 when trained on 1, 5, 10, ... images.

Data: ../shared/data/dsb2018 (Kaggle Data Science Bowl 2018 stage1_train, fluorescence images with the
community-fixed instance masks; CC0; Caicedo et al. 2019, Nat Methods 16:1247). A fixed test set of
``--test`` images (seeded) is held out; training sets are drawn from the rest (nested: the 5 include the
1, ...). The reference U-Net is trained with fosgate's trainer (instance masks -> touching cells
separated by a 1-px gap), for the same number of gradient steps in every setting, then each test image
is predicted whole (seam-free tiling), thresholded at 0.5, split into instances (connected components +
watershed of touching nuclei, min size 15 px) and scored; ``--arch default`` trains fosgate's default
model (unet2, ``train_model``) for the same steps and uses its own instances (seeded watershed on the
centre map or the distance split, whichever its calibration chose; post-processing calibrated on the
validation images: 20 % of the images held out, or the bottom 20 % of a single image, as ``fosgate train``
does by default). Scores:
AP@0.5 = TP / (TP + FP + FN) with one-to-one IoU matching (as StarDist / CellSeg1 report it), averaged
over test images; also pixel F1 and object F1.

    .venv/bin/python bench/bench_dsb.py [--arch reference default] [--sizes 1 5 10 all] [--steps 500] [--quick]

Several ``--steps`` (e.g. ``--steps 500 2000 --sizes all --name dsb_budget``) train every setting at each
budget in one run: whether the training budget, not the labels, sets the score (the report shows such a
run beside the main table when it is saved as ``dsb_budget``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import ARCHS, RESULTS, fit_arch, save, t_interval
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018"


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.open(DSB / "images" / name))
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1).astype(np.uint8)
    return img[..., None], np.asarray(Image.open(DSB / "masks" / name)).astype(np.int64)


def calibration_of(arch: str, metrics: dict) -> str:
    """Where a row's post-processing came from: the reference protocol's fixed one, the validation images,
    the training images (no image could be held out), or none."""
    if arch == "reference":
        return "fixed (0.5, 15 px, watershed)"
    if not metrics.get("calibrated"):
        return "none (defaults)"
    return "training images (in-sample)" if metrics.get("calibrated_in_sample") else "held-out validation"


def training_draw(pool: list[str], train_seed: int) -> list[str]:
    """The order training images are drawn in (nested: a size takes the first ones): the pool's own order
    for training seed 0 (the rows stored before training seeds), a permutation by the seed otherwise."""
    if train_seed == 0:
        return list(pool)
    return [pool[i] for i in np.random.default_rng(train_seed).permutation(len(pool))]


def run(sizes: list[str], steps: int | list[int], n_test: int, archs: list[str], seed: int = 0,
        on_row=None, train_seeds: tuple[int, ...] = (0,)) -> dict:
    """Every (arch, size, steps, training seed) trained and scored; ``on_row(result so far)`` after each
    (e.g. a partial save). A budget is rounded down to whole epochs of 25 steps (at least one). ``seed``
    fixes the test images; a training seed draws the training images from the rest (``training_draw``)
    and seeds the training, so its spread is that of which images a user labels and of training."""
    from fosgate.core.metrics import error_breakdown, object_scores, pixel_scores
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainConfig, TrainingPair

    names = sorted(p.name for p in (DSB / "images").glob("*.png"))
    order = np.random.default_rng(seed).permutation(len(names))
    test = [names[i] for i in order[:n_test]]
    pool = [names[i] for i in order[n_test:]]
    test_data = [load(n) for n in test]
    budgets = [steps] if isinstance(steps, int) else list(steps)
    seeded = train_seeds != (0,)
    rows = []

    def result() -> dict:  # the rows so far, with their seed summary when several training seeds ran
        out = {"rows": list(rows), "seed": seed, "archs": archs}
        return out | {"train_seeds": list(train_seeds), "seed_summary": seed_summary(rows)} if seeded else out

    for ts, arch, size_arg, budget in ((t, a, z, b) for t in train_seeds for a in archs for z in sizes
                                       for b in budgets):
        size = len(pool) if size_arg == "all" else int(size_arg)
        train_names = training_draw(pool, ts)[:size]
        pairs = [TrainingPair(*load(n), name=n) for n in train_names]
        epochs = max(1, budget // 25)
        cfg = TrainConfig(epochs=epochs, tile_size=128, batch_size=8, val_fraction=0.2, seed=seed + ts,
                          steps_per_epoch=25)  # fosgate train's default split (one image: its bottom rows)
        t0 = time.perf_counter()
        predict, metrics = fit_arch(arch, pairs, cfg, Normalization())
        train_s = time.perf_counter() - t0
        aps, f1s, pix, counts, causes = [], [], [], Counter(), Counter()
        for img, truth in test_data:
            # the reference protocol: threshold 0.5, watershed of touching nuclei, min size 15 px; unet2:
            # its own calibrated post-processing, as a user gets it
            lab = (predict(img, min_size_px=15, threshold=0.5, split_touching=True) if arch == "reference"
                   else predict(img))
            sc = object_scores(lab, truth, 0.5, None)
            aps.append(sc["ap"])
            f1s.append(sc["f1"])
            pix.append(pixel_scores(lab > 0, truth > 0)["f1"])
            counts.update({k: sc[k] for k in ("tp", "fp", "fn")})
            causes.update(error_breakdown(lab, truth, 0.5))  # why the unmatched are unmatched
        row = {"arch": arch, "train_images": size, "steps": epochs * 25, "train_seconds": train_s,
               "ap50": float(np.mean(aps)), "object_f1": float(np.mean(f1s)), "pixel_f1": float(np.mean(pix)),
               "test_images": len(test), "calibration": calibration_of(arch, metrics),
               **{k: counts[k] for k in ("tp", "fp", "fn")}, "errors": dict(causes),  # summed over test images
               **({"train_seed": ts, "train_names": train_names[:10]} if seeded else {}),
               **({"best_epoch": int(metrics["best_epoch"])} if "best_epoch" in metrics else {}),
               **({"post": metrics["post"]} if "post" in metrics else {})}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if on_row is not None:
            on_row(result())
    return result()


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per (arch, training images, steps): AP@0.5 and object F1 over training seeds, mean and 95 % t
    interval, with each seed's value and post-processing."""
    out = []
    for key in dict.fromkeys((r["arch"], r["train_images"], r["steps"]) for r in rows):
        sel = sorted((r for r in rows if (r["arch"], r["train_images"], r["steps"]) == key),
                     key=lambda r: r["train_seed"])
        ap = [r["ap50"] for r in sel]
        out.append({"arch": key[0], "train_images": key[1], "steps": key[2], "seeds": [r["train_seed"] for r in sel],
                    "ap50": float(np.mean(ap)), "ap50_ci95": t_interval(ap), "ap50_per_seed": ap,
                    "object_f1": float(np.mean([r["object_f1"] for r in sel])),
                    "post_per_seed": [r.get("post") for r in sel]})
    return out


def _setting(row: dict) -> tuple:
    """What a row measured: (arch, training images), and its training seed when it has one."""
    return (row["arch"], row["train_images"], *((row["train_seed"],) if "train_seed" in row else ()))


def merge(paths: list[Path], out: Path, supersede: bool = False, name: str = "dsb") -> int:
    """One result from runs on the same test set (seed, test images, steps) with other archs, sizes or
    training seeds (e.g. the default arch run later beside the stored reference rows, or training seeds run
    as separate jobs): rows concatenated (rows saved before ``--arch`` are the reference net's); a setting
    (arch, training images, training seed) in two parts is refused unless ``supersede``: then a later
    part's row replaces an earlier one (a rerun with newer code), and the replaced rows are kept under
    ``superseded``. Rows with training seeds get their seed summary recomputed over all parts; seeded and
    unseeded rows are not mixed. A part cut for time leaves the result partial unless the parts together
    fill the grid of settings their rows span. Each part's command, date, machine stamp and partial note are
    kept under ``parts`` (a part that is itself a merge brings its own parts); the result's own machine stamp
    is that of the last part whose rows it keeps."""
    parts = [json.loads(p.read_text()) for p in paths]
    kept, replaced = [], []  # kept: (index of the part, row)
    for i, p in enumerate(parts):
        for r in p["rows"]:
            r = {"arch": "reference", **r}
            old = [x for x in kept if _setting(x[1]) == _setting(r)]
            if old and not supersede:
                raise SystemExit("--merge: a setting (arch, training images, training seed) appears in two parts "
                                 "(--supersede: the later part's row replaces the earlier)")
            replaced += [x[1] for x in old]
            kept = [x for x in kept if x not in old] + [(i, r)]
    rows = [r for _, r in kept]
    if len({(p.get("seed", 0), r["test_images"], r["steps"]) for p in parts for r in p["rows"]}) != 1:
        raise SystemExit("--merge: the parts differ in seed, test images or steps")
    seeds = sorted({r["train_seed"] for r in rows if "train_seed" in r})
    if seeds and any("train_seed" not in r for r in rows):
        raise SystemExit("--merge: rows with training seeds (--train-seeds) and rows without cannot be joined")
    grid = [set(k) for k in zip(*(_setting(r) for r in rows), strict=True)]
    complete = len({_setting(r) for r in rows}) == int(np.prod([len(g) for g in grid]))
    # a part cut for time leaves the result partial unless the other parts complete the grid its rows span
    cut = [] if complete else [f"part {i + 1} ({p.get('command')}): {p['partial']}"
                               for i, p in enumerate(parts) if p.get("partial")]
    stamp_keys = ("command", "date", "machine", "partial")
    stamps = [s for p in parts for s in (p.get("parts") or [{k: p.get(k) for k in stamp_keys}])]
    superseded = [r for p in parts for r in p.get("superseded", [])] + replaced
    save(out, name, {"rows": rows, "seed": parts[0].get("seed", 0), "archs": list(dict.fromkeys(r["arch"] for r in rows)),
                     "mode": parts[0].get("mode", "full"),
                     "machine": parts[max(i for i, _ in kept)].get("machine"),
                     "parts": stamps,
                     **({"train_seeds": seeds, "seed_summary": seed_summary(rows)} if seeds else {}),
                     **({"superseded": superseded} if superseded else {}),
                     **({"partial": "; ".join(cut)} if cut else {})})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["1", "5", "10", "all"],
                    help="training-set sizes; 'all' = every image not held out")
    ap.add_argument("--steps", type=int, nargs="+", default=[500],
                    help="gradient steps per setting (batch 8 of 128 px); several: each setting at each budget")
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--arch", nargs="+", default=["reference", "default"], choices=ARCHS,
                    help="reference: the paper's U-Net; default: fosgate's instance-aware unet2")
    ap.add_argument("--quick", action="store_true", help="1 image, 25 steps, 5 test images, the default arch")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON", help="no training: join stored results")
    ap.add_argument("--supersede", action="store_true",
                    help="with --merge: a later part's row of the same setting replaces an earlier one")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0],
                    help="training seeds: each draws other training images from the non-test images and seeds "
                    "the training (0: the stored rows' draw); several give the spread (save as --name dsb_seeds)")
    ap.add_argument("--name", default="dsb", help="result file name (dsb_budget: the steps sweep, dsb_seeds: "
                    "the training seeds, which the report shows beside the main table)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.supersede, args.name)
    if not DSB.is_dir():
        raise SystemExit(f"{DSB} is missing: the DSB2018 data lives in ../shared/data/dsb2018")
    if args.quick:
        args.sizes, args.steps, args.test, args.arch = ["1"], [25], 5, ["default"]
    mode = "quick" if args.quick else "full"
    total = len(args.sizes) * len(args.arch) * len(args.steps) * len(args.train_seeds)

    def partial(res: dict) -> None:  # a run cut for time keeps the settings it finished
        if len(res["rows"]) < total:
            save(args.out, args.name, {**res, "mode": mode, "partial": f"{len(res['rows'])} of {total} settings"})

    result = run(args.sizes, args.steps, args.test, args.arch, on_row=partial, train_seeds=tuple(args.train_seeds))
    result["mode"] = mode
    save(args.out, args.name, result)
    print("| arch | training images | steps | train s | AP@0.5 | object F1 | pixel F1 |\n|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['arch']} | {r['train_images']} | {r['steps']} | {r['train_seconds']:.0f} | {r['ap50']:.3f} | "
              f"{r['object_f1']:.3f} | {r['pixel_f1']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
