"""The labelling loop for a new lab on real c-FOS data, through a real fosgate server, with a scripted reviewer.

Data: ../shared/data/segebarth-cfos (read in place; Segebarth, Griebel et al. 2020, eLife 9:e59780;
Apache-2.0). A held-out lab L (``--lab``, default inns1) plays the new lab; its images are split as in
``bench_cfos_labels.split_lab`` (seed-dependent) into the *pool* (the new lab's slides) and *test* images
(never labelled). Everything goes through the gRPC API a Fiji or QuPath user drives:

0. **Base model**: the other two c-FOS labs' images and consensus masks are uploaded (TIFFs carrying their
   pixel size) and labelled, and a ``unet2`` is trained on them at 1 um/px (``--base-epochs`` x
   ``--base-steps``): the model a lab would receive. Round 0 scores it on L's test images as it is.
1. Each round, per pool slide: tile clustering (256-px tiles), ``--tiles`` tiles chosen by *active*
   selection with the current model's uncertainty, proposals from the current model (``autolabel
   method=model``), then the scripted reviewer (``labelling_loop.review_round``) corrects every proposal to
   the consensus and the edit cost is counted in objects (kept, re-drawn, deleted, drawn at IoU >= 0.5).
2. Retraining after each round uses **all of L's labels so far** and starts **from the base model** (not
   from the previous round's weights), ``--ft-epochs`` x ``--ft-steps``.
3. The new model predicts L's test images through the server (its calibrated post-processing, outputs at
   the slide's own resolution): object F1 at IoU >= 0.5, precision, recall, count error vs the consensus,
   next to the experts' F1 on the same images.

Reported per round (mean over ``--seeds`` with a 95 % t interval over seeds): tiles reviewed so far,
edits this round and so far, held-out F1 and count error; and whether F1 ever fell from one round to the
next by more than the seed interval (the issue's target: it must not).

    .venv/bin/python bench/cfos_loop.py [--lab inns1] [--seeds 0 1 2] [--rounds 3] [--tiles 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_cfos import CFOS_LABS, DATA, ceiling_by_lab, human_ceiling, load_samples
from bench_cfos_labels import MODEL_PX_UM, split_lab, t_interval
from common import RESULTS, save
from labelling_loop import review_round


def write_slide(s, folder: Path) -> tuple[Path, Path]:
    """``s``'s image and consensus as TIFFs that carry its pixel size (resolution tags, per centimetre)."""
    import tifffile

    from fosgate.core.metrics import as_instances

    res = (s.px_per_um * 1e4, s.px_per_um * 1e4)  # pixels per centimetre (TIFF resolution tags)
    img, mask = folder / f"{s.name}.tif", folder / f"{s.name}.mask.tif"
    tifffile.imwrite(img, s.image, resolution=res, resolutionunit="CENTIMETER")
    tifffile.imwrite(mask, as_instances(s.consensus).astype(np.uint16), resolution=res, resolutionunit="CENTIMETER")
    return img, mask


def evaluate(fg, model_id: str, tests: list, workdir: Path) -> dict[str, Any]:
    """Predict every test slide through the server with the model's own post-processing; pooled scores."""
    import tifffile

    from fosgate.core.metrics import detection_scores, pool_detection

    per = []
    for slide, s in tests:
        job = fg.wait(fg.predict(slide.slide_id, model_id, stem=s.name).job_id)
        art = next(a for a in job.artifacts if a.name.endswith(".labels.ome.tif"))
        pred = np.squeeze(tifffile.imread(fg.download_artifact(art, workdir)))
        per.append({"image": s.name, **detection_scores(pred, s.consensus, 0.5)})
    return {**pool_detection(per), "per_image": per}


def run_seed(lab: str, seed: int, samples: list, args, work: Path) -> list[dict[str, Any]]:
    from fosgate.config import ServerConfig
    from fosgate.core.edit_cost import NO_COST
    from fosgate.core.metrics import as_instances
    from fosgate.rpc.server import start_server
    from fosgate_client.client import FosgateClient

    pool, test = split_lab(samples, lab, seed)
    others = [s for s in samples if s.lab != lab]
    files = work / "files"
    files.mkdir(parents=True)
    server = start_server(ServerConfig(data_dir=work / "data", port=0))
    rows = []
    try:
        with FosgateClient(f"127.0.0.1:{server.port}", timeout=600) as fg:
            t0 = time.perf_counter()
            base_labels = []
            for s in others:
                img, mask = write_slide(s, files)
                slide, mslide = fg.upload_slide(img), fg.upload_slide(mask, role="mask")
                base_labels.append(fg.add_label(slide.slide_id, mslide.slide_id, source="human",
                                                reviewer=f"{s.lab} consensus").label_id)
            base = fg.wait(fg.train(base_labels, epochs=args.base_epochs, steps_per_epoch=args.base_steps,
                                    tile_size=128, batch_size=8, seed=seed, name=f"base-without-{lab}",
                                    pixel_size_um=MODEL_PX_UM).job_id)
            base_id, base_s = base.result_id, time.perf_counter() - t0
            tests = [(fg.upload_slide(write_slide(s, files)[0]), s) for s in test]
            slides = []
            for s in pool:
                slide = fg.upload_slide(write_slide(s, files)[0])
                job = fg.wait(fg.cluster_tiles(slide.slide_id, k=args.k, tile_size=256, seed=seed,
                                               epochs=args.cluster_epochs).job_id)
                slides.append((slide, job.result_id, as_instances(s.consensus)))
            scores = evaluate(fg, base_id, tests, work / "pred-0")
            row0 = {"seed": seed, "round": 0, "model": "base", "tiles_reviewed": 0, "tiles_touched": 0,
                    "edit_cost": NO_COST.to_dict(), "edit_cost_so_far": NO_COST.to_dict(), "labels": 0,
                    "train_seconds": base_s, **scores}
            rows.append(row0)
            print(json.dumps({k: v for k, v in row0.items() if k != "per_image"}), file=sys.stderr, flush=True)
            model_id, reviewed, touched, so_far = base_id, 0, 0, NO_COST
            for r in range(1, args.rounds + 1):
                t_round = time.perf_counter()
                cost_r = NO_COST
                for slide, clustering, truth in slides:
                    picked = fg.select_tiles(clustering, args.tiles, "active", model_id=model_id, seed=seed + r,
                                             skip_labelled=True)
                    if not picked:
                        continue
                    regions = [(t.region.x, t.region.y, t.region.width, t.region.height) for t in picked]
                    cost, n, nt = review_round(fg, slide.slide_id, regions, "model", model_id, truth,
                                               work / f"review-{r}-{slide.slide_id}")
                    cost_r, reviewed, touched = cost_r + cost, reviewed + n, touched + nt
                so_far = so_far + cost_r
                labels = [lb.label_id for slide, _, _ in slides for lb in fg.list_labels(slide_id=slide.slide_id)]
                t_train = time.perf_counter()
                job = fg.wait(fg.train(labels, epochs=args.ft_epochs, steps_per_epoch=args.ft_steps, tile_size=128,
                                       batch_size=8, seed=seed, name=f"{lab}-round", base_model_id=base_id,
                                       pixel_size_um=MODEL_PX_UM).job_id)
                model_id = job.result_id
                train_s = time.perf_counter() - t_train
                scores = evaluate(fg, model_id, tests, work / f"pred-{r}")
                row = {"seed": seed, "round": r, "model": "base + all labels so far", "tiles_reviewed": reviewed,
                       "tiles_touched": touched, "edit_cost": cost_r.to_dict(), "edit_cost_so_far": so_far.to_dict(),
                       "labels": len(labels), "train_seconds": train_s, "seconds": time.perf_counter() - t_round,
                       **scores}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "per_image"}), file=sys.stderr, flush=True)
    finally:
        server.stop()
    for row in rows:
        row.update(lab=lab, pool=[s.name for s in pool], test=[s.name for s in test])
    return rows


def summarize(rows: list[dict], ceiling_rows: list[dict]) -> dict[str, Any]:
    """Per round: means over seeds with 95 % t intervals, the experts on the same test images, and whether
    the held-out F1 fell from one round to the next by more than the seed interval."""
    out = []
    for r in sorted({x["round"] for x in rows}):
        sel = [x for x in rows if x["round"] == r]
        f1 = [x["f1"] for x in sel]
        out.append({"round": r, "seeds": len(sel), "f1": float(np.mean(f1)), "f1_ci95": t_interval(f1),
                    "f1_per_seed": f1, "precision": float(np.mean([x["precision"] for x in sel])),
                    "recall": float(np.mean([x["recall"] for x in sel])),
                    "count_error": float(np.mean([x["count_error"] for x in sel])),
                    "tiles_reviewed": float(np.mean([x["tiles_reviewed"] for x in sel])),
                    "edits": float(np.mean([x["edit_cost"]["edits"] for x in sel])),
                    "edits_so_far": float(np.mean([x["edit_cost_so_far"]["edits"] for x in sel])),
                    "true_objects_reviewed": float(np.mean([x["edit_cost_so_far"]["true"] for x in sel]))})
    falls = []
    for a, b in zip(out, out[1:], strict=False):
        # the per-seed differences carry the seed spread; a fall is a mean drop beyond their interval
        d = [y - x for x, y in zip(a["f1_per_seed"], b["f1_per_seed"], strict=True)]
        lo, hi = t_interval(d)  # one seed: the interval is the change itself
        falls.append({"from": a["round"], "to": b["round"], "mean_change": float(np.mean(d)), "change_ci95": [lo, hi],
                      "fell_beyond_interval": bool(hi < 0)})
    images = {n for x in rows for n in x["test"]}
    experts = ceiling_by_lab(ceiling_rows, images=images)
    return {"rounds": out, "round_changes": falls, "experts": experts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default="inns1", choices=list(CFOS_LABS), help="the held-out 'new' lab")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=4, help="tiles (256 px) per pool slide per round")
    ap.add_argument("--k", type=int, default=4, help="clusters per slide")
    ap.add_argument("--cluster-epochs", type=int, default=3)
    ap.add_argument("--base-epochs", type=int, default=4)
    ap.add_argument("--base-steps", type=int, default=40)
    ap.add_argument("--ft-epochs", type=int, default=3)
    ap.add_argument("--ft-steps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="smoke size: 1 seed, 1 round of 1 tile per slide, a few "
                    "training steps")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the report (e.g. what was shared)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: the benchmark data lives in ../shared/data/segebarth-cfos")
    if args.quick:
        args.seeds, args.rounds, args.tiles, args.cluster_epochs = [0], 1, 1, 1
        args.base_epochs, args.base_steps, args.ft_epochs, args.ft_steps = 1, 5, 1, 5
    t0 = time.perf_counter()
    samples = load_samples()
    ceiling = human_ceiling([s for s in samples if s.lab == args.lab])
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            rows += run_seed(args.lab, seed, samples, args, Path(tmp))
    result = {"mode": "quick" if args.quick else "full", "lab": args.lab,
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "note")}, "model_px_um": MODEL_PX_UM,
              "records": rows, "summary": summarize(rows, ceiling["rows"]), "wall_seconds": time.perf_counter() - t0,
              "notes": args.note}
    save(args.out, "cfos_loop", result)
    for x in result["summary"]["rounds"]:
        print(f"round {x['round']}: tiles {x['tiles_reviewed']:.0f}, edits so far {x['edits_so_far']:.0f}, "
              f"F1 {x['f1']:.3f} [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}], count err {x['count_error']:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
