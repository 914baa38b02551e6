"""How much of a c-FOS model's held-out error is its post-processing: the calibrated post-processing
against fixed defaults, a calibration on more images, and the best one for the test image itself.

Reads models saved by ``bench_cfos.py --save-models DIR`` (each fold's model, an ensemble's members, and
the fold's ``fold.json``); trains nothing. For each saved model:

1. its validation images are rebuilt exactly as ``train_model`` held them out (``split_pairs`` with the
   fold's seed and tile, the model's normalisation and pixel size), and calibration is re-run on them: the
   post-processing it chooses must be the one stored with the model (a check that the rebuild is exact;
   a mismatch is recorded, never hidden);
2. the held-out test images are predicted once (``FosgateModel.predict_image_maps``, the maps
   ``predict_instances`` post-processes), then post-processed several ways and scored against the
   consensus (object F1, one-to-one matching at IoU >= 0.5):

   - ``calibrated``: the model's own post-processing (what a user gets);
   - ``fixed``: ``PostProcess()``'s defaults, no calibration;
   - ``pooled``: calibrated on the validation *and* training images together (more objects, in-sample);
   - ``oracle``: calibrated on the test image itself (the same search): an upper bound on what any
     calibration could give this model, not a method.

Per lab and variant: pooled F1 over the (image, model) units, and the paired difference from
``calibrated`` with a 95 % bootstrap over those units (``paired_f1_difference``).

    .venv/bin/python bench/bench_postprocess.py --models /work/exp/models [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from common import RESULTS, save

VARIANTS = ("calibrated", "fixed", "pooled", "oracle")


def rebuild_validation(model, samples: list, fold: dict) -> tuple[list, list, int | None]:
    """``(validation, training, size_cap)`` ``_Prepared`` images of ``model``'s fold, as ``train_model``
    split them (``training.split_of`` with the fold's pairs, tile, validation fraction and seed)."""
    from fosgate.core.metrics import as_instances
    from fosgate.core.training import TrainConfig, TrainingPair, min_size_cap, split_of

    by = {s.name: s for s in samples}
    pairs = [TrainingPair(by[n].image[..., None], as_instances(by[n].consensus), n, pixel_size_um=1.0 / by[n].px_per_um)
             for n in fold["train"]]
    config = TrainConfig(tile_size=int(fold["tile"]), val_fraction=float(fold["val_fraction"]), seed=int(fold["seed"]))
    prepared, train, val = split_of(model, pairs, config)
    return val, train, min_size_cap([p.inst for p in prepared])


def score(labels, truth) -> dict[str, int]:
    """TP / FP / FN of ``labels`` against ``truth`` (one-to-one matching at IoU >= 0.5)."""
    from fosgate.core.metrics import object_scores

    sc = object_scores(labels, truth, 0.5, None)
    return {k: int(sc[k]) for k in ("tp", "fp", "fn")}


def study_model(model, samples: list, fold: dict) -> dict:
    """One saved model: the calibration check and every variant's scores on the fold's test images."""
    from fosgate.core.metrics import as_instances
    from fosgate.core.model import PostProcess, PredictOptions
    from fosgate.core.training import _predict_images, calibrate_postprocess, in_sample_calibration_set

    val, train, cap = rebuild_validation(model, samples, fold)
    if not val or val is train:
        raise SystemExit(f"{fold['fold']}: no held-out validation to rebuild")
    vmaps = _predict_images(model.network, [p.x for p in val])
    tie = in_sample_calibration_set(train)
    tmaps = _predict_images(model.network, [p.x for p in tie])
    start = PostProcess(min_size_px=10)  # where train_model and ensemble_of start their calibration
    redo, _ = calibrate_postprocess(vmaps, [p.inst for p in val], start, arch=model.arch, size_cap=cap,
                                    tie_maps=tmaps, tie_truths=[p.inst for p in tie])
    pooled, _ = calibrate_postprocess(vmaps + tmaps, [p.inst for p in val] + [p.inst for p in tie], start,
                                      arch=model.arch, size_cap=cap)
    by = {s.name: s for s in samples}
    posts = {"calibrated": model.post, "fixed": start, "pooled": pooled}
    out: dict = {"stored_post": asdict(model.post), "recalibrated_post": asdict(redo),
                 "calibration_reproduced": redo == model.post, "posts": {k: asdict(v) for k, v in posts.items()},
                 "images": {}}
    for name in fold["test"]:
        s = by[name]
        px = 1.0 / s.px_per_um
        maps = model.predict_image_maps(s.image, pixel_size_um=px)
        truth = as_instances(s.consensus)
        img = s.image[..., None]
        # the min size is calibrated in the model's pixels; the image's pixels may be others (as for a user)
        at_image = {k: model.with_post(**asdict(v)).resolve_post(PredictOptions(), px) for k, v in posts.items()}
        oracle, _ = calibrate_postprocess([maps], [truth], at_image["calibrated"], arch=model.arch)
        res = {k: score(model.instances_from_maps(maps, v, img), truth)
               for k, v in (*at_image.items(), ("oracle", oracle))}
        out["images"][name] = {**res, "oracle_post": asdict(oracle)}
    return out


def summarize(rows: list[dict]) -> list[dict]:
    """Per lab, kind and variant: pooled F1 over (image, model) units and the paired difference from
    calibrated. Kinds: ``model`` (each fold's model as a user gets it: one network or the ensemble) and
    ``member`` (an ensemble's networks alone), never pooled together."""
    from fosgate.core.metrics import paired_f1_difference

    def f1(units: list[dict]) -> float:
        tp, fp, fn = (sum(u[k] for u in units) for k in ("tp", "fp", "fn"))
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0

    out = []
    def kind(r: dict) -> str:
        return "model" if r["model"] == "model" else "member"

    labs = list(dict.fromkeys(r["lab"] for r in rows))
    for lab, k in sorted(dict.fromkeys((r["lab"], kind(r)) for r in rows),
                         key=lambda x: (labs.index(x[0]), x[1] != "model")):  # a lab's models before members
        group = [r for r in rows if (r["lab"], kind(r)) == (lab, k)]
        units = [(r, im) for r in group for im in r["study"]["images"].values()]
        base = [im["calibrated"] for _, im in units]
        for v in VARIANTS:
            mine = [im[v] for _, im in units]
            d, lo, hi = (paired_f1_difference(mine, base) if len(units) > 1  # one unit: nothing to resample
                         else (f1(mine) - f1(base), None, None))
            out.append({"lab": lab, "kind": k, "variant": v, "units": len(units), "f1": f1(mine),
                        "minus_calibrated": d, "ci95": [lo, hi],
                        "reproduced": sum(r["study"]["calibration_reproduced"] for r in group), "models": len(group)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True, help="a folder written by bench_cfos.py --save-models")
    ap.add_argument("--name", default="cfos_postprocess")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    from bench_cfos import load_samples

    from fosgate.core.model import FosgateModel

    folds = sorted(p.parent for p in args.models.glob("*/fold.json"))
    if not folds:
        raise SystemExit(f"{args.models}: no fold.json below it (run bench_cfos.py --save-models {args.models})")
    samples = load_samples()
    rows = []
    for where in folds:
        fold = json.loads((where / "fold.json").read_text())
        for mdir in sorted(p.parent for p in where.glob("*/meta.json")):
            model = FosgateModel.load(mdir)
            study = study_model(model, samples, fold)
            rows.append({"lab": fold["lab"], "fold": fold["fold"], "seed": fold["seed"], "method": fold["method"],
                         "model": mdir.name, "study": study})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "study"}
                             | {"reproduced": study["calibration_reproduced"],
                                **{v: {n: im[v] for n, im in study["images"].items()} for v in VARIANTS}}),
                  file=sys.stderr, flush=True)
    result = {"models_dir": str(args.models), "variants": list(VARIANTS), "rows": rows, "summary": summarize(rows),
              **({"notes": args.note} if args.note else {})}
    save(args.out, args.name, result)
    for x in result["summary"]:
        iv = "" if x["ci95"][0] is None else f" [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"
        print(f"{x['lab']:6} {x['kind']:6} {x['variant']:10} F1 {x['f1']:.3f}  minus calibrated "
              f"{x['minus_calibrated']:+.3f}{iv}  ({x['units']} image-models; calibration reproduced "
              f"{x['reproduced']}/{x['models']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
