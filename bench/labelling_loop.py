"""The labelling loop on real data, through a real fosgate server, with a scripted reviewer.

Data: Fluorescent Neuronal Cells (../shared/data/fnc, yellow + red; CC BY-SA 4.0, Morelli et al. 2021,
Clissa et al. 2024). One image per colour is held out for evaluation; the others are the "slides".

Per training slide: tile clustering (autoencoder + k-means). Then rounds of
  select (round 1: balanced over clusters; later: active, guided by the current model)
  -> auto-label (round 1: classical labeller; later: the current model's predictions)
  -> review by a script that plays the biologist: it corrects every proposal to the ground truth and
     counts what that costs a person (``fosgate.core.edit_cost``: objects kept, re-drawn, deleted and
     drawn, matching at IoU >= 0.5); a proposal that needs no edit is accepted, any other is replaced
     by the ground-truth mask (one "touched" tile)
  -> train on every label so far, from scratch each round (``--retrain-from previous`` fine-tunes the
     previous round's model instead) -> predict the held-out images -> evaluate.
Reports per round: tiles reviewed and touched, the edit cost (this round and so far), pixel F1/MIoU and
object F1 (FNC rule: IoU >= 0.5 or centroids <= 40 px), count MAE.

    .venv/bin/python bench/labelling_loop.py [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, save
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FNC = ROOT.parent / "shared" / "data" / "fnc"
HELD_OUT = {"yellow": "Mar32bS2C2R2_DMl_200x.png", "red": "RT353S2C1R5_r1.png"}


def read_mask(path: Path) -> np.ndarray:
    return (np.asarray(Image.open(path).convert("L")) > 0).astype(np.uint8)


def review_round(fg, slide_id: str, regions: list[tuple[int, int, int, int]], method: str, model_id: str,
                 truth: np.ndarray, workdir: Path, reviewer: str = "scripted"):
    """Auto-label ``regions`` of a slide (``method``: classical or model) and review every proposal as a
    biologist would, through the server: export the proposals, correct each to ``truth`` (the slide's
    mask, slide coordinates), accept it when no edit is needed, else replace it by the truth of its tile.
    Returns (summed ``EditCost``, proposals reviewed, proposals touched)."""
    import zipfile

    import tifffile

    from fosgate.core.edit_cost import NO_COST, edit_cost

    job = fg.wait(fg.autolabel(slide_id, regions, method, model_id=model_id).job_id)
    props = fg.list_proposals(job_id=job.job_id)
    export = fg.wait(fg.export_proposals(job_id=job.job_id).job_id)
    workdir.mkdir(parents=True)
    with zipfile.ZipFile(fg.download_artifact(export.artifacts[0], workdir)) as zf:
        zf.extractall(workdir)
    total, touched = NO_COST, 0
    for p in props:
        x, y, w, h = p.region.x, p.region.y, p.region.width, p.region.height
        proposal = tifffile.imread(workdir / f"{p.proposal_id}.labels.tif")
        gt = truth[y:y + h, x:x + w]
        cost = edit_cost(proposal, gt)
        total += cost
        if cost.edits == 0:
            fg.review(p.proposal_id, "accept", reviewer=reviewer)
        else:
            touched += 1
            mpath = workdir / f"{p.proposal_id}.truth.png"
            Image.fromarray((gt > 0).astype(np.uint8) * 255).save(mpath)
            fg.review(p.proposal_id, "replace", reviewer=reviewer, mask=mpath)
    return total, len(props), touched


def run(out: Path, rounds: int, tiles_per_slide: int, epochs: int, cluster_epochs: int,
        seed: int = 0, retrain_from: str = "scratch", steps_per_epoch: int = 0) -> dict:
    import tifffile

    from fosgate.config import ServerConfig
    from fosgate.core.edit_cost import NO_COST
    from fosgate.core.metrics import mean_pixel_scores, object_scores, summarize_objects
    from fosgate.rpc.server import start_server
    from fosgate_client.client import FosgateClient

    out.mkdir(parents=True, exist_ok=True)
    train_images, test_images = [], []
    for colour in ("yellow", "red"):
        for img in sorted((FNC / colour / "images").glob("*.png")):
            pair = (img, FNC / colour / "masks" / img.name)
            (test_images if img.name == HELD_OUT[colour] else train_images).append(pair)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = start_server(ServerConfig(data_dir=tmp / "data", port=0))
        try:
            with FosgateClient(f"127.0.0.1:{server.port}", timeout=600) as fg:
                slides = []
                for img, mask in train_images:
                    s = fg.upload_slide(img)
                    job = fg.wait(fg.cluster_tiles(s.slide_id, k=5, epochs=cluster_epochs, seed=seed).job_id)
                    slides.append((s, job.result_id, read_mask(mask)))
                tests = [(fg.upload_slide(img), read_mask(mask), img.stem) for img, mask in test_images]
                model_id = ""
                history = []
                reviewed = touched = 0
                total_cost = NO_COST
                for r in range(1, rounds + 1):
                    t_round = time.perf_counter()
                    round_cost = NO_COST
                    strategy, method = ("balanced", "classical") if not model_id else ("active", "model")
                    for s, clustering, truth in slides:
                        picked = fg.select_tiles(clustering, tiles_per_slide, strategy, model_id=model_id,
                                                 seed=seed + r, skip_labelled=True)
                        if not picked:
                            continue
                        regions = [(t.region.x, t.region.y, t.region.width, t.region.height) for t in picked]
                        cost, n_reviewed, n_touched = review_round(fg, s.slide_id, regions, method, model_id, truth,
                                                                   tmp / f"review-{r}-{s.slide_id}")
                        round_cost += cost
                        reviewed += n_reviewed
                        touched += n_touched
                    base = model_id if retrain_from == "previous" else ""
                    train = fg.wait(fg.train([], epochs=epochs, tile_size=128, batch_size=16, seed=seed,
                                             steps_per_epoch=steps_per_epoch, name="fnc-loop",
                                             base_model_id=base).job_id)
                    model_id = train.result_id
                    pairs, objs = [], []
                    for s, truth, stem in tests:
                        job = fg.wait(fg.predict(s.slide_id, model_id, min_size=100, stem=stem).job_id)
                        art = next(a for a in job.artifacts if a.name.endswith(".labels.ome.tif"))
                        (tmp / f"pred-{r}").mkdir(exist_ok=True)
                        pred = tifffile.imread(fg.download_artifact(art, tmp / f"pred-{r}"))
                        pairs.append((pred > 0, truth > 0))
                        objs.append(object_scores(pred, truth, iou_threshold=0.5, centroid_px=40))
                    row = {"round": r, "selection": strategy, "proposals": method, "labels": len(fg.list_labels()),
                           "tiles_reviewed": reviewed, "tiles_touched": touched,
                           "edit_cost": round_cost.to_dict(), "edit_cost_so_far": (total_cost := total_cost
                                                                                   + round_cost).to_dict(),
                           **mean_pixel_scores(pairs), **summarize_objects(objs),
                           "seconds": time.perf_counter() - t_round}
                    history.append(row)
                    print(json.dumps(row), file=sys.stderr)
        finally:
            server.stop()
    result = {"rounds": history, "held_out": [t[0].name for t in test_images], "epochs_per_round": epochs,
              "tiles_per_slide_per_round": tiles_per_slide, "retrain_from": retrain_from,
              "wall_seconds": time.perf_counter() - t0}
    save(out, "labelling_loop", result)
    return result


def markdown(result: dict) -> str:
    lines = ["| round | selection | proposals | labels | tiles reviewed | touched | edits (re-drawn / deleted / "
             "drawn) | edits so far | pixel F1 | pixel MIoU | object F1 | count MAE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rounds"]:
        c = r.get("edit_cost") or {}
        edits = f"{c['edits']} ({c['redrawn']} / {c['deleted']} / {c['drawn']})" if c else "-"
        so_far = (r.get("edit_cost_so_far") or {}).get("edits", "-")
        lines.append(f"| {r['round']} | {r['selection']} | {r['proposals']} | {r['labels']} | {r['tiles_reviewed']} | "
                     f"{r['tiles_touched']} | {edits} | {so_far} | {r['pixel_f1']:.3f} | {r['pixel_miou']:.3f} | "
                     f"{r['object_f1']:.3f} | {r['count_mae']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, few tiles, few epochs (a smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=12, help="tiles per slide per round")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--retrain-from", choices=["scratch", "previous"], default="scratch",
                    help="each round trains on all labels so far from scratch, or fine-tunes the previous model")
    args = ap.parse_args(argv)
    if not FNC.is_dir():
        raise SystemExit(f"{FNC} is missing: the FNC data lives in ../shared/data/fnc")
    if args.quick:
        result = run(args.out, rounds=1, tiles_per_slide=2, epochs=1, cluster_epochs=1, retrain_from=args.retrain_from,
                     steps_per_epoch=5)
    else:
        result = run(args.out, rounds=args.rounds, tiles_per_slide=args.tiles, epochs=args.epochs, cluster_epochs=5,
                     retrain_from=args.retrain_from)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
