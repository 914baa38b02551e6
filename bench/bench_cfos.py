"""c-FOS counting on segebarth-cfos, lab-wise cross-validated, next to the human ceiling and a peer.

Data: ../shared/data/segebarth-cfos (read in place; GitHub matjesg/bioimage_analysis @ eafeb5f, Apache-2.0;
Segebarth, Griebel et al. 2020, eLife 9:e59780). The c-FOS labs are wue1 (24 confocal images, 6 animal
groups, 1.6 px/um), mue (3 confocal, 0.8 px/um) and inns1 (3 epifluorescence, 1.0 px/um); wue2 stains GABA
(another marker, annotated by other experts, with ignore regions) and is left out.

What is measured (all object scores: one-to-one matching at IoU >= 0.5, instances = 4-connected
components of the binary masks; ``fosgate.core.metrics.detection_scores``):

1. **Human ceiling** (no training): every expert's mask against the consensus (``masks/``), per image
   and per lab (pooled F1 / precision / recall, mean count error, mean |count error| / true count), and
   the median expert per lab. The consensus was estimated from these same experts, so each expert is
   partly compared with itself: the ceiling is, if anything, generous.
2. **Models**, per ``--arch`` (``reference``: today's U-Net as ``fosgate train`` trains it; ``default``:
   the instance-aware model, when the library has it), on the same folds and seeds:
   - ``within``: within-lab folds -- mue and inns1 leave-one-image-out, wue1 grouped k-fold over animal
     groups (``--wue1-folds``, default 3 folds of 2 groups);
   - ``lolo``: leave-one-lab-out -- train on the other two c-FOS labs, test on the held-out one.
   Images are rescaled to the model's pixel size (``--px-per-um``, default 1.0, from index.csv's
   px_per_um), predicted whole (single pass == stitched), the probability map is brought back to the
   image's own resolution, thresholded at the model's calibrated threshold and split into connected
   components of at least ``--min-size-um2`` um^2, then scored against the consensus at full resolution.
   Each test image is predicted once per seed and protocol. Per lab: mean over seeds of the pooled F1,
   and a 95 % percentile bootstrap interval over the lab's test images (2000 resamples; TP/FP/FN of an
   image summed over seeds), next to every expert's F1 on the same images.
3. **Peer** (``--peers stardist``): StarDist 2D from scratch in its own venv (bench/peers/stardist/
   setup.sh) on the same folds and seeds, given the wall-clock seconds the first ``--arch`` trained for
   on that fold; its predictions are scored here with the same code, and its own ``stardist.matching``
   counts are kept as a cross-check of the matching.

    .venv/bin/python bench/bench_cfos.py --ceiling-only                 # seconds, no training
    .venv/bin/python bench/bench_cfos.py [--arch reference default] [--seeds 0 1] [--epochs 3 --steps 40]
        [--protocols within lolo] [--peers stardist] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, ROOT, SHARED_DATA, save
from PIL import Image

DATA = SHARED_DATA / "segebarth-cfos"
CFOS_LABS = ("wue1", "mue", "inns1")
PEERS = ROOT / "bench" / "peers"
WORK = ROOT / "bench" / "out" / "cfos"


@dataclass
class Sample:
    """One c-FOS image with its consensus and every expert's mask (all at the image's own resolution)."""

    name: str
    lab: str
    px_per_um: float
    group: str
    image: np.ndarray  # (h, w) uint8
    consensus: np.ndarray  # (h, w) bool
    experts: dict[str, np.ndarray] = field(default_factory=dict)  # expert -> (h, w) bool


def _bool_mask(path: Path) -> np.ndarray:
    m = np.asarray(Image.open(path))
    return (m.max(axis=-1) if m.ndim == 3 else m) > 0


def load_samples(labs: tuple[str, ...] = CFOS_LABS, names: set[str] | None = None) -> list[Sample]:
    """The c-FOS images of ``labs`` from index.csv (optionally only ``names``), in index order."""
    out = []
    with open(DATA / "index.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["lab"] not in labs or row["marker"] != "cFOS" or (names and row["file"] not in names):
                continue
            img = np.asarray(Image.open(DATA / "images" / row["file"]))
            img = img.max(axis=-1) if img.ndim == 3 else img
            experts = {e: _bool_mask(DATA / "experts" / e / row["file"]) for e in row["experts"].split()}
            out.append(Sample(row["file"].removesuffix(".png"), row["lab"], float(row["px_per_um"]), row["group"],
                              img, _bool_mask(DATA / "masks" / row["file"]), experts))
    return out


# ------------------------------------------------------------------------------------------ human ceiling


def human_ceiling(samples: list[Sample]) -> dict[str, Any]:
    """Each expert against the consensus: per image rows, and per lab each expert's pooled scores with
    a bootstrap interval over images, plus the median expert (median of the experts' pooled F1)."""
    from fosgate.core.metrics import bootstrap_f1_interval, detection_scores, pool_detection

    rows = []
    for s in samples:
        for e, m in s.experts.items():
            d = detection_scores(m, s.consensus, 0.5)
            rows.append({"image": s.name, "lab": s.lab, "expert": e, **d})
    return {"rows": rows, "labs": ceiling_by_lab(rows, bootstrap_f1_interval, pool_detection)}


def ceiling_by_lab(rows: list[dict], interval=None, pool=None, images: set[str] | None = None) -> dict[str, Any]:
    """Per lab (and only over ``images`` if given): each expert's pooled scores and the median expert."""
    if pool is None:
        from fosgate.core.metrics import bootstrap_f1_interval as interval
        from fosgate.core.metrics import pool_detection as pool
    labs: dict[str, Any] = {}
    for lab in dict.fromkeys(r["lab"] for r in rows):
        sel = [r for r in rows if r["lab"] == lab and (images is None or r["image"] in images)]
        if not sel:
            continue
        experts = {}
        for e in sorted({r["expert"] for r in sel}, key=lambda x: int(x.split("_")[-1])):
            per = [r for r in sel if r["expert"] == e]
            lo, hi = interval(per)
            experts[e] = {**pool(per), "f1_ci95": [lo, hi]}
        f1s = [v["f1"] for v in experts.values()]
        labs[lab] = {"experts": experts, "median_expert_f1": float(np.median(f1s)),
                     "best_expert_f1": float(max(f1s)), "worst_expert_f1": float(min(f1s)),
                     "images": len({r["image"] for r in sel})}
    return labs


def stardist_matching_check(rows: list[dict]) -> dict[str, Any] | None:
    """StarDist's ``matching`` of every expert/consensus pair, run in the peer's venv; None without it."""
    py = PEERS / "stardist" / ".venv" / "bin" / "python"
    if not py.exists():
        return None
    WORK.mkdir(parents=True, exist_ok=True)
    pairs = [{"key": f"{r['expert']}/{r['image']}", "pred": str(DATA / "experts" / r["expert"] / f"{r['image']}.png"),
              "truth": str(DATA / "masks" / f"{r['image']}.png")} for r in rows]
    (WORK / "matching_pairs.json").write_text(json.dumps(pairs))
    proc = subprocess.run([str(py), str(PEERS / "stardist" / "check_matching.py"), str(WORK / "matching_pairs.json"),
                           str(WORK / "matching_out.json")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1000:]}
    theirs = json.loads((WORK / "matching_out.json").read_text())
    agree = [r for r in rows if theirs["pairs"][f"{r['expert']}/{r['image']}"] == {k: r[k] for k in ("tp", "fp", "fn")}]
    return {"stardist": theirs["stardist"], "pairs": len(rows), "agree": len(agree),
            "disagree": [f"{r['expert']}/{r['image']}" for r in rows if r not in agree]}


# ------------------------------------------------------------------------------------------------- folds


def make_folds(samples: list[Sample], protocols: list[str], wue1_folds: int) -> list[dict[str, Any]]:
    """Fold definitions (train / test image names). ``within``: leave-one-image-out for labs with at
    most 5 images, grouped k-fold over animal groups for wue1 (group g goes to fold index(g) % k);
    ``lolo``: each c-FOS lab held out, trained on the others. Invariant: within a protocol every image of
    the tested labs is in exactly one test set, and never in that fold's training set."""
    labs = list(dict.fromkeys(s.lab for s in samples))
    folds = []
    for proto in protocols:
        if proto == "within":
            for lab in labs:
                mine = [s for s in samples if s.lab == lab]
                if lab == "wue1":
                    groups = sorted({s.group for s in mine}, key=int)
                    k = min(wue1_folds, len(groups))
                    for i in range(k):
                        held = {g for j, g in enumerate(groups) if j % k == i}
                        folds.append({"protocol": proto, "lab": lab, "fold": f"groups {'+'.join(sorted(held))}",
                                      "test": [s.name for s in mine if s.group in held],
                                      "train": [s.name for s in mine if s.group not in held]})
                else:
                    for s in mine:
                        folds.append({"protocol": proto, "lab": lab, "fold": s.name, "test": [s.name],
                                      "train": [t.name for t in mine if t is not s]})
        elif proto == "lolo":
            for lab in labs:
                folds.append({"protocol": proto, "lab": lab, "fold": f"held-out {lab}",
                              "test": [s.name for s in samples if s.lab == lab],
                              "train": [s.name for s in samples if s.lab != lab]})
        else:
            raise SystemExit(f"unknown protocol {proto!r}")
    return folds


# -------------------------------------------------------------------------------------------- the models


def rescale(image: np.ndarray, factor: float, order: int) -> np.ndarray:
    """``image`` resized by ``factor`` (order 1: bilinear with anti-aliasing when shrinking; order 0:
    nearest, for masks). Factor 1 returns the input."""
    if abs(factor - 1.0) < 1e-9:
        return image
    from skimage.transform import resize

    h, w = image.shape[:2]
    shape = (max(1, round(h * factor)), max(1, round(w * factor)))
    out = resize(image, shape, order=order, preserve_range=True, anti_aliasing=order > 0 and factor < 1)
    return out.astype(image.dtype) if order == 0 else out.astype(np.float32)


class ReferenceArch:
    """Today's model: the reference U-Net trained by ``fosgate.core.training.train_unet`` exactly as
    ``fosgate train`` does (128-px crops, flips / 90-degree rotations, BCE, best epoch by validation
    loss, threshold calibrated for pixel F1 on a held-out image), connected components + min size."""

    name = "reference"

    def __init__(self, epochs: int, steps: int | None, batch: int, px_per_um: float, min_size_um2: float):
        self.epochs, self.steps, self.batch = epochs, steps, batch
        self.px_per_um, self.min_size_um2 = px_per_um, min_size_um2

    def fit(self, train: list[Sample], seed: int) -> dict[str, Any]:
        from fosgate.core.normalize import Normalization
        from fosgate.core.training import TrainConfig, TrainingPair, train_unet

        norm = Normalization()
        pairs = [TrainingPair(rescale(s.image, self.px_per_um / s.px_per_um, 1)[..., None],
                              rescale(s.consensus.astype(np.uint8), self.px_per_um / s.px_per_um, 0), s.name)
                 for s in train]
        model, metrics, history = train_unet(pairs, norm, TrainConfig(epochs=self.epochs, steps_per_epoch=self.steps,
                                                                       batch_size=self.batch, tile_size=128,
                                                                       val_fraction=0.2, seed=seed))
        return {"model": model, "norm": norm, "metrics": metrics, "history": history}

    def predict(self, fitted: dict[str, Any], s: Sample) -> np.ndarray:
        """Instance labels at the image's own resolution."""
        from fosgate.core.instances import label_mask
        from fosgate.core.normalize import Normalization
        from fosgate.core.predict import predict_single_pass

        x = rescale(s.image, self.px_per_um / s.px_per_um, 1)[..., None]
        lo, hi = fitted["norm"].stats_of_array(x)
        prob = predict_single_pass(fitted["model"], Normalization.apply(x, lo, hi, fitted["norm"].clip_max))
        if prob.shape != s.image.shape:
            prob = _resize_to(prob, s.image.shape)  # back to the image's own pixel size
        lab = np.zeros(prob.shape, np.uint32)
        label_mask(prob >= float(fitted["metrics"]["threshold"]), lab,
                   min_size=max(1, round(self.min_size_um2 * s.px_per_um**2)))
        return lab


def _resize_to(prob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from skimage.transform import resize

    return resize(prob, shape[:2], order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)


class DefaultArch:
    """The instance-aware default (``FosgateModel``, arch ``unet2``, from the model-core work): trained by
    ``fosgate.core.training.train_model`` with its augmentation and its post-processing calibrated for
    object F1 on the validation images; ``predict_instances`` rescales to the model's pixel size and
    returns labels at the image's own size. Same epochs x steps, crop size and batch as the reference
    run, so both get the same number of training pixels."""

    name = "default"

    def __init__(self, epochs: int, steps: int | None, batch: int, tile: int, px_per_um: float,
                 weight_average: float = 0.0, members: int = 1):
        self.epochs, self.steps, self.batch, self.tile, self.px_per_um = epochs, steps, batch, tile, px_per_um
        self.weight_average, self.members = weight_average, members
        if weight_average:  # another method: its rows sit beside plain default's in a merged result
            self.name = "default+ema"
        if members > 1:  # a seed ensemble; its first member alone is plain default, scored beside it
            self.name = f"default+ens{members}"

    def fit(self, train: list[Sample], seed: int) -> dict[str, Any]:
        from fosgate.core.metrics import as_instances
        from fosgate.core.training import TrainConfig, TrainingPair, ensemble_of, train_members, train_model

        pairs = [TrainingPair(s.image[..., None], as_instances(s.consensus), s.name, pixel_size_um=1.0 / s.px_per_um)
                 for s in train]
        config = TrainConfig(arch="unet2", epochs=self.epochs, steps_per_epoch=self.steps, tile_size=self.tile,
                             batch_size=self.batch, val_fraction=0.2, seed=seed, pixel_size_um=1.0 / self.px_per_um,
                             weight_average=self.weight_average, members=self.members)
        members = train_members(pairs, config) if self.members > 1 else []
        model = ensemble_of(members, pairs, config) if members else train_model(pairs, config)
        metrics = dict(getattr(model, "metrics", {}) or {})
        post = getattr(model, "post", None)
        metrics["post"] = dict(vars(post)) if hasattr(post, "__dict__") else str(post)
        return {"model": model, "metrics": metrics, "history": dict(getattr(model, "history", {}) or {}),
                "members": members}

    def predict(self, fitted: dict[str, Any], s: Sample, tta: bool = False, model=None) -> np.ndarray:
        model = model or fitted["model"]
        return np.asarray(model.predict_instances(s.image, pixel_size_um=1.0 / s.px_per_um, tta=tta))

    @staticmethod
    def member_method(i: int) -> str:
        """The method name of an ensemble's member ``i`` scored alone: the first is plain ``default`` (the
        same seed, split and training as a run without ``--members``), the others ``default/m<i>``."""
        return "default" if i == 0 else f"default/m{i}"


def default_arch_entry_point():
    """The instance-aware default model's entry point, or None while the library does not have it."""
    try:
        from fosgate.core import model as fm  # noqa: F401  (added by the model-core work)
    except ImportError:
        return None
    return getattr(fm, "FosgateModel", None)


# ------------------------------------------------------------------------------------------------ peers


def run_stardist(fold: dict, seed: int, budget_s: float, samples: list[Sample], args, tag: str) -> dict | None:
    """Train + predict StarDist 2D on ``fold`` in its own venv; returns its JSON (labels as .npy paths)."""
    py = PEERS / "stardist" / ".venv" / "bin" / "python"
    if not py.exists():
        return {"error": "bench/peers/stardist/.venv is missing: run bench/peers/stardist/setup.sh"}
    by = {s.name: s for s in samples}
    work = WORK / "stardist" / tag
    work.mkdir(parents=True, exist_ok=True)
    spec = {"seed": seed, "budget_s": budget_s, "px_per_um": args.px_per_um, "out_dir": str(work),
            "val_fraction": 0.2, "quick": bool(args.quick),
            "images": {n: {"image": str(DATA / "images" / f"{n}.png"), "mask": str(DATA / "masks" / f"{n}.png"),
                           "px_per_um": by[n].px_per_um} for n in fold["train"] + fold["test"]},
            "train": fold["train"], "test": fold["test"]}
    spec_path = work / "fold.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    t0 = time.perf_counter()
    proc = subprocess.run([str(py), str(PEERS / "stardist" / "train_eval.py"), str(spec_path)], capture_output=True,
                          text=True, timeout=max(600, 6 * budget_s))
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    res = json.loads((work / "result.json").read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------------- main


def summarize(records: list[dict], ceiling_rows: list[dict]) -> list[dict]:
    """Per (protocol, method, lab): mean pooled F1 over seeds, bootstrap interval over images, P, R,
    count errors, next to the experts' pooled F1 on the same images and whether the target is met."""
    from fosgate.core.metrics import bootstrap_f1_interval, pool_detection

    out = []
    labs = list(dict.fromkeys(r["lab"] for r in records))
    methods = list(dict.fromkeys(["reference", "default", "default+tta", *(r["method"] for r in records)]))
    keys = sorted(dict.fromkeys((r["protocol"], r["method"], r["lab"]) for r in records),  # lab by lab
                  key=lambda k: (k[0], labs.index(k[2]), methods.index(k[1])))
    for proto, method, lab in keys:
        sel = [r for r in records if (r["protocol"], r["method"], r["lab"]) == (proto, method, lab)]
        seeds = sorted({r["seed"] for r in sel})
        per_seed = {sd: pool_detection([r for r in sel if r["seed"] == sd]) for sd in seeds}
        images = sorted({r["image"] for r in sel})
        summed = []
        for im in images:
            rs = [r for r in sel if r["image"] == im]
            summed.append({k: sum(r[k] for r in rs) for k in ("tp", "fp", "fn")})
        lo, hi = bootstrap_f1_interval(summed)
        experts = ceiling_by_lab(ceiling_rows, images=set(images)).get(lab, {})
        f1 = float(np.mean([v["f1"] for v in per_seed.values()]))
        out.append({
            "protocol": proto, "method": method, "lab": lab, "seeds": seeds, "images": len(images),
            "f1": f1, "f1_ci95": [lo, hi], "f1_per_seed": [per_seed[sd]["f1"] for sd in seeds],
            **{k: float(np.mean([v[k] for v in per_seed.values()]))
               for k in ("precision", "recall", "count_error", "rel_count_error")},
            "n_pred_per_seed": [per_seed[sd]["n_pred"] for sd in seeds], "n_true": per_seed[seeds[0]]["n_true"],
            "experts_f1": {e: v["f1"] for e, v in experts.get("experts", {}).items()},
            "median_expert_f1": experts.get("median_expert_f1"),
            "target_met": bool(experts) and f1 >= experts["median_expert_f1"],
        })
        if all("predict_seconds" in r for r in sel):
            out[-1]["predict_seconds_per_image"] = float(np.mean([r["predict_seconds"] for r in sel]))
        if all("errors" in r for r in sel):  # why objects are unmatched (metrics.error_breakdown), summed
            out[-1]["errors"] = {k: sum(r["errors"][k] for r in sel) for k in sel[0]["errors"]}
    return out


def merge(paths: list[Path], out: Path, notes: list[str], name: str = "cfos") -> int:
    """One result (saved as ``name``) from several runs of the same settings (e.g. a run cut for time,
    finished by another with ``--test-labs``): folds, runs and per-image records concatenated, the summary
    recomputed; the machine stamp and command of each part are kept under ``parts``. A (protocol, fold,
    method, seed) run in two parts counts once if both runs scored every test image the same (a
    deterministic rerun, e.g. the model trained again to run a peer or TTA beside it; the copy whose records
    carry more fields is kept and a note says so); otherwise the merge is refused."""
    parts = [json.loads(p.read_text()) for p in paths]

    def key(r: dict) -> tuple:
        return r["protocol"], r["fold"], r["method"], r.get("seed")

    def scores(p: dict, k: tuple) -> list:
        return sorted((r["image"], r["tp"], r["fp"], r["fn"]) for r in p.get("records", []) if key(r) == k)

    owners: dict[tuple, list[int]] = {}
    for i, p in enumerate(parts):
        for r in p.get("fold_runs", []):
            owners.setdefault(key(r), []).append(i)
    drop: dict[int, list[tuple]] = {}
    for k, idx in owners.items():
        if len(idx) < 2:
            continue
        if any(scores(parts[i], k) != scores(parts[idx[0]], k) for i in idx[1:]):
            raise SystemExit(f"--merge: {k} was run in two parts with different scores")
        # the copy whose records say the most (e.g. prediction seconds, recorded by later versions) stays
        keep_i = max(idx, key=lambda i: (sum(len(r) for r in parts[i]["records"] if key(r) == k), -i))
        for i in idx:
            if i != keep_i:
                drop.setdefault(i, []).append(k)
    for i, ks in drop.items():
        p = parts[i]
        parts[i] = {**p, "fold_runs": [r for r in p["fold_runs"] if key(r) not in ks],
                    "records": [r for r in p.get("records", []) if key(r) not in ks]}
        notes = [*notes, f"Part {i + 1}'s run(s) {', '.join(f'{k[1]} {k[2]}' for k in ks)} were repeated in another "
                         "part with identical scores on every test image: counted once (the copy with more "
                         "recorded fields kept)."]
    for p in parts:  # results saved before "budget_of": the budget was the part's first arch's training time
        for r in p.get("fold_runs", []):
            if "budget_s" in r and "budget_of" not in r and p["settings"].get("archs"):
                r["budget_of"] = p["settings"]["archs"][0]
    base = dict(parts[0])
    keep = ("epochs", "steps_per_epoch", "batch", "px_per_um", "min_size_um2", "tile", "default_tile", "iou_threshold")
    before = {"default_tile": 128}  # results saved before a setting was recorded ran at this value

    def setting(p: dict, k: str):
        return p["settings"].get(k, before.get(k))

    for p in parts[1:]:
        if any(setting(p, k) != setting(base, k) for k in keep):
            raise SystemExit("--merge: the results were run with different training settings")
    seen = set()
    base["folds"], base["fold_runs"], base["records"] = [], [], []
    for p in parts:
        for f in p.get("folds", []):
            if (f["protocol"], f["fold"]) not in seen and any(
                    (r["protocol"], r["fold"]) == (f["protocol"], f["fold"]) for r in p.get("fold_runs", [])):
                seen.add((f["protocol"], f["fold"]))
                base["folds"].append(f)
        base["fold_runs"] += p.get("fold_runs", [])
        base["records"] += p.get("records", [])
    union = {k: list(dict.fromkeys(x for p in parts for x in p["settings"][k])) for k in ("peers", "archs", "protocols",
                                                                                          "seeds")}
    base["settings"] = {**base["settings"], **union, "tta": any(p["settings"].get("tta") for p in parts),
                        # the momentum of the default+ema rows (parts without them ran 0)
                        "weight_average": max(p["settings"].get("weight_average", 0.0) for p in parts),
                        "members": max(p["settings"].get("members", 1) for p in parts)}
    base["labs"] = list(dict.fromkeys(lab for p in parts for lab in p.get("labs", [])))
    rows = list({(r["image"], r["expert"]): r for p in parts for r in p["ceiling"]["rows"]}.values())
    base["ceiling"] = {**base["ceiling"], "rows": rows, "labs": ceiling_by_lab(rows)}  # parts may cover other labs
    base["summary"] = summarize(base["records"], base["ceiling"]["rows"])
    base["parts"] = [{"command": p.get("command"), "date": p.get("date"), "machine": p.get("machine"),
                      "partial": p.get("partial"), "folds_run": sorted({r["fold"] for r in p.get("fold_runs", [])})}
                     for p in parts]
    base["wall_seconds"] = sum(p.get("wall_seconds", 0) for p in parts)
    for k in ("partial", "date", "command"):  # the machine stamp of the first part stays (where it trained)
        base.pop(k, None)
    if notes:
        base["notes"] = base.get("notes", []) + notes
    save(out, name, base)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["reference"], choices=["reference", "default"],
                    help="models to train (default: reference; 'default' needs the instance-aware FosgateModel)")
    ap.add_argument("--protocols", nargs="+", default=["within", "lolo"], choices=["within", "lolo"])
    ap.add_argument("--labs", nargs="+", default=list(CFOS_LABS), choices=list(CFOS_LABS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fold (reference arch)")
    ap.add_argument("--steps", type=int, default=40, help="steps per epoch (of --batch 128-px crops); 0: the train "
                    "job's per-epoch rule (about two passes over the training pixels, 25..400 steps)")
    ap.add_argument("--batch", type=int, default=8, help="crops per step (fosgate train's default: 8)")
    ap.add_argument("--default-tile", type=int, default=128, help="training crop of --arch default (its own "
                    "default is 256; 128 matches the reference run's pixels per step)")
    ap.add_argument("--weight-average", type=float, default=0.0, metavar="M",
                    help="--arch default keeps an exponential moving average of its weights (momentum M per step; "
                    "TrainConfig.weight_average) and is recorded as method default+ema")
    ap.add_argument("--members", type=int, default=1, metavar="K",
                    help="--arch default trains a seed ensemble of K networks (TrainConfig.members), recorded as "
                    "default+ensK; its first member alone is recorded as default (the same training as without "
                    "this option) and the others as default/m1, ...: the single-network baselines of the same run")
    ap.add_argument("--wue1-folds", type=int, default=3, help="grouped k-fold over wue1's 6 animal groups")
    ap.add_argument("--px-per-um", type=float, default=1.0, help="the models' pixel size (images are rescaled)")
    ap.add_argument("--min-size-um2", type=float, default=20.0, help="smallest object kept, in um^2")
    ap.add_argument("--peers", nargs="*", default=[], choices=["stardist"])
    ap.add_argument("--tta", action="store_true", help="also score the default model with test-time augmentation "
                    "(method default+tta; the prediction seconds of both are recorded)")
    ap.add_argument("--test-labs", nargs="+", choices=list(CFOS_LABS),
                    help="run only the folds whose test lab is one of these (e.g. to finish a cut run)")
    ap.add_argument("--folds", nargs="+", type=int, metavar="I",
                    help="run only these folds (0-based, in the order the full run lists them; e.g. a quick probe)")
    ap.add_argument("--save-models", type=Path, metavar="DIR",
                    help="save each fold's trained model (and an ensemble's members) under DIR/<fold>_<method>_s<seed>/, "
                         "to study post-processing without training again")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="no training: combine the folds of these results (same settings) into one, re-summarised")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the report (e.g. what was cut)")
    ap.add_argument("--ceiling-only", action="store_true", help="only the human ceiling (no training)")
    ap.add_argument("--partial-every-fold", action="store_true", help="save the JSON after every fold")
    ap.add_argument("--quick", action="store_true", help="smoke size: inns1 only, one held-out image, 1 seed, "
                    "2 epochs x 5 steps of 4 crops")
    ap.add_argument("--name", default="cfos", help="result name (cfos_budget: a longer-training probe that the "
                    "report sets beside the same folds of the cfos result)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: the benchmark data lives in ../shared/data/segebarth-cfos")
    if args.quick:
        args.labs, args.seeds, args.epochs, args.steps, args.protocols = ["inns1"], [0], 2, 5, ["within"]
        args.batch = 4
    if args.merge:
        return merge(args.merge, args.out, args.note, args.name)
    t_start = time.perf_counter()
    samples = load_samples(tuple(args.labs))
    by = {s.name: s for s in samples}
    ceiling = human_ceiling(samples)
    check = stardist_matching_check(ceiling["rows"])
    if check:
        ceiling["stardist_matching_check"] = check
        print(f"stardist matching cross-check: {check}", file=sys.stderr, flush=True)
    print(json.dumps({lab: {e: round(v["f1"], 3) for e, v in d["experts"].items()} | {"median": d["median_expert_f1"]}
                      for lab, d in ceiling["labs"].items()}), file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "mode": "quick" if args.quick else "full", "labs": args.labs, "ceiling": ceiling,
        "settings": {"iou_threshold": 0.5, "px_per_um": args.px_per_um, "min_size_um2": args.min_size_um2,
                     "epochs": args.epochs, "steps_per_epoch": args.steps or None, "batch": args.batch, "tile": 128,
                     "default_tile": args.default_tile, "weight_average": args.weight_average,
                     "members": args.members,
                     "seeds": args.seeds, "wue1_folds": args.wue1_folds, "protocols": args.protocols,
                     "archs": args.arch, "peers": args.peers, "tta": args.tta, "val_fraction": 0.2,
                     "interval": "95 % percentile bootstrap over the lab's test images (2000 resamples), "
                                 "TP/FP/FN of an image summed over seeds"},
        "left_out": "wue2 (GABA, another marker)",
    }
    if args.note:
        result["notes"] = args.note
    name = args.name
    if args.ceiling_only:
        result["mode"] = "ceiling-only"
        save(args.out, name, result)
        return 0
    folds = make_folds(samples, args.protocols, args.wue1_folds)
    if args.quick:
        folds = folds[:1]
    if args.test_labs:
        folds = [f for f in folds if f["lab"] in args.test_labs]
    if args.folds:
        folds = [f for i, f in enumerate(folds) if i in set(args.folds)]
    archs = []
    for a in args.arch:
        if a == "reference":
            archs.append(ReferenceArch(args.epochs, args.steps or None, args.batch, args.px_per_um, args.min_size_um2))
        elif default_arch_entry_point() is None:
            result.setdefault("not_run", []).append("default: the instance-aware FosgateModel is not in the library "
                                                    "yet (TODO)")
        else:
            archs.append(DefaultArch(args.epochs, args.steps or None, args.batch, args.default_tile, args.px_per_um,
                                     args.weight_average, args.members))
    result.update(folds=folds, fold_runs=[], records=[])
    from fosgate.core.metrics import detection_scores, error_breakdown

    def record(method, fold, seed, s, labels, extra=None):
        d = detection_scores(labels, s.consensus, 0.5)
        result["records"].append({"protocol": fold["protocol"], "fold": fold["fold"], "method": method,
                                  "lab": s.lab, "image": s.name, "seed": seed, **d,
                                  "errors": error_breakdown(labels, s.consensus, 0.5), **(extra or {})})
        return d

    for fi, fold in enumerate(folds):
        for seed in args.seeds:
            budget = None
            for arch in archs:
                t0 = time.perf_counter()
                fitted = arch.fit([by[n] for n in fold["train"]], seed)
                t_train = time.perf_counter() - t0
                budget = budget or t_train
                for n in fold["test"]:
                    t1 = time.perf_counter()
                    labels = arch.predict(fitted, by[n])
                    record(arch.name, fold, seed, by[n], labels, {"predict_seconds": time.perf_counter() - t1, **(
                        {"post": asdict(fitted["model"].post)} if isinstance(arch, DefaultArch) else {})})
                    for i, member in enumerate(fitted.get("members", [])):  # each member alone, on the same image
                        t1 = time.perf_counter()
                        labels = arch.predict(fitted, by[n], model=member)
                        record(arch.member_method(i), fold, seed, by[n], labels,  # with its own calibration
                               {"predict_seconds": time.perf_counter() - t1, "post": asdict(member.post)})
                    if args.tta and arch.name == "default":  # the same model, 8 symmetries averaged
                        t1 = time.perf_counter()
                        labels = arch.predict(fitted, by[n], tta=True)
                        record("default+tta", fold, seed, by[n], labels, {"predict_seconds": time.perf_counter() - t1})
                m = fitted["metrics"]
                result["fold_runs"].append({
                    "protocol": fold["protocol"], "fold": fold["fold"], "lab": fold["lab"], "method": arch.name,
                    "seed": seed, "train_seconds": t_train, "seconds": time.perf_counter() - t0,
                    "threshold": m.get("threshold"), "best_epoch": m.get("best_epoch"),
                    "epochs_run": m.get("epochs_run"), "train_images": m.get("train_images"),
                    "steps_per_epoch": m.get("steps_per_epoch", arch.steps),
                    "val_images": m.get("val_images"), "val_loss": fitted["history"].get("val_loss", []),
                    "val_object_f1_curve": fitted["history"].get("object_f1", []),  # per epoch (unet2)
                    **({"post": m["post"], "val_object_f1": m.get("val_object_f1")} if "post" in m else {})})
                print(json.dumps({k: v for k, v in result["fold_runs"][-1].items() if k != "val_loss"}),
                      file=sys.stderr, flush=True)
                if args.save_models and isinstance(arch, DefaultArch):  # to study post-processing without training
                    where = args.save_models / re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{fold['fold']}_{arch.name}_s{seed}")
                    for i, m in enumerate([fitted["model"], *fitted.get("members", [])]):
                        m.save(where / ("model" if i == 0 else arch.member_method(i - 1).replace("/", "_")))
                    (where / "fold.json").write_text(json.dumps({  # what bench_postprocess needs to redo a split
                        **fold, "method": arch.name, "seed": seed, "tile": arch.tile, "val_fraction": 0.2}, indent=1))
                del fitted
            for peer in args.peers:
                tag = f"{fold['protocol']}_{fi}_s{seed}"
                res = run_stardist(fold, seed, budget or 60.0, samples, args, tag)
                run = {"protocol": fold["protocol"], "fold": fold["fold"], "lab": fold["lab"], "method": peer,
                       "seed": seed, "budget_s": budget, "budget_of": archs[0].name if archs else None}
                if res is None or "error" in res:
                    run["error"] = (res or {}).get("error", "no result")
                else:
                    run.update({k: v for k, v in res.items() if k not in ("predictions",)})
                    for n, pred in res["predictions"].items():
                        d = record(peer, fold, seed, by[n], np.load(pred["labels"]))
                        own = pred.get("stardist_matching")
                        if own:  # the peer's own matching of the same labels: a cross-check of ours
                            run.setdefault("matching_agrees", []).append(
                                (own["tp"], own["fp"], own["fn"]) == (d["tp"], d["fp"], d["fn"]))
                result["fold_runs"].append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "val_loss"})[:600], file=sys.stderr,
                      flush=True)
        if args.partial_every_fold and fi + 1 < len(folds):
            result["summary"] = summarize(result["records"], ceiling["rows"])
            result["partial"] = f"{fi + 1} of {len(folds)} folds"
            result["wall_seconds"] = time.perf_counter() - t_start
            save(args.out, name, dict(result))
    result.pop("partial", None)
    result["summary"] = summarize(result["records"], ceiling["rows"])
    result["wall_seconds"] = time.perf_counter() - t_start
    save(args.out, name, result)
    for r in result["summary"]:
        print(f"{r['protocol']:6s} {r['method']:9s} {r['lab']:5s} F1 {r['f1']:.3f} "
              f"[{r['f1_ci95'][0]:.3f}, {r['f1_ci95'][1]:.3f}] P {r['precision']:.3f} R {r['recall']:.3f} "
              f"count err {r['count_error']:+.1f} median expert {r['median_expert_f1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
