"""Labels a new lab needs: object F1 vs labelled tiles and vs edit cost, leave-one-lab-out on segebarth-cfos.

Data: ../shared/data/segebarth-cfos (read in place; Segebarth, Griebel et al. 2020, eLife 9:e59780;
Apache-2.0). The c-FOS labs are wue1, mue and inns1 (see bench_cfos.py).

For a held-out lab L and a seed s:

- L's images are split into a *pool* (the new lab's slides, cut into non-overlapping ``--tile``-px tiles
  that a person may label) and *test* images (never labelled, never seen): wue1 holds out half of its
  animal groups (which half rotates with the seed), mue and inns1 hold out one image (rotating).
- Starting points: ``scratch`` (a new unet2), ``base`` (unet2 trained on the other two labs' images,
  ``--base-steps``), ``base-frozen`` (the same base model, one training per seed shared with ``base``,
  fine-tuned with its encoder frozen: a paired contrast with ``base``), ``pretrained`` (a new unet2
  pretrained by masked image modelling on the pool images without their labels,
  ``fosgate.core.pretrain``, ``--pretrain-steps``).
- Selection of n tiles from the pool for each budget in ``--budgets``: ``random``; ``balanced`` over
  k-means clusters of simple tile features (mean, spread and 99th percentile of normalised intensity);
  ``active``: the tiles where the starting model is least sure (mean 4p(1-p) of its foreground map;
  for ``scratch``, which has no model, random). Random and active sets are nested across budgets. A tile set
  already trained from the same start and seed (every strategy at ``all``; active from scratch) is scored once.
- Edit cost of the chosen tiles: the starting model's proposals corrected to the truth by the scripted
  reviewer (``fosgate.core.edit_cost``: objects re-drawn, deleted and drawn); ``scratch`` has no
  proposals, so every object is drawn.
- Fine-tuning on the chosen tiles (``train_model(..., base=start)``, ``--ft-steps``; ``--ft-freeze encoder``
  keeps the start's contracting path fixed, a separate result to compare with), then object F1
  (one-to-one at IoU >= 0.5) and count error on the test images. Budget 0 scores the starting model
  itself (``base`` only: scratch and pretrained cannot segment). ``all`` = every pool tile.

Reported per (lab, start, strategy, budget): mean over seeds of the pooled F1 with a 95 % interval over
seeds (t), mean edit cost, next to the experts' F1 on the same test images (median expert), and the
smallest edit cost that reaches 95 % of the all-tiles score. Strategies whose intervals overlap are
reported as not distinguishable.

    .venv/bin/python bench/bench_cfos_labels.py [--labs inns1 mue wue1] [--seeds 0 1 2 3 4]
        [--budgets 0 4 8 16 32 all] [--starts scratch base pretrained] [--strategies random balanced active]
        [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_cfos import CFOS_LABS, Sample, ceiling_by_lab, human_ceiling, load_samples
from common import RESULTS, save, t_interval

STARTS = ("scratch", "base", "base-frozen", "pretrained")
FROZEN_STARTS = {"base-frozen": "encoder"}  # start -> layer group kept fixed while fine-tuning
STRATEGIES = ("random", "balanced", "active")
MODEL_PX_UM = 1.0  # the models' pixel size (µm), as bench_cfos


@dataclass
class Tile:
    image: int  # index into the pool
    y: int
    x: int
    size: int


def split_lab(samples: list[Sample], lab: str, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(pool, test) of ``lab``: wue1 by animal group halves, the small labs one image out (by seed)."""
    mine = [s for s in samples if s.lab == lab]
    if lab == "wue1":
        groups = sorted({s.group for s in mine}, key=int)
        rng = np.random.default_rng(seed)
        held = set(rng.permutation(groups)[: len(groups) // 2].tolist())
        return [s for s in mine if s.group not in held], [s for s in mine if s.group in held]
    k = seed % len(mine)
    return [s for i, s in enumerate(mine) if i != k], [mine[k]]


def pool_tiles(pool: list[Sample], size: int) -> list[Tile]:
    return [Tile(i, y, x, size) for i, s in enumerate(pool)
            for y in range(0, s.image.shape[0] - size + 1, size) for x in range(0, s.image.shape[1] - size + 1, size)]


def truth_instances(s: Sample) -> np.ndarray:
    from fosgate.core.metrics import as_instances

    return as_instances(s.consensus)


def train_pairs(samples: list[Sample], tiles: list[Tile] | None = None):
    """Training pairs: whole images, or the given tiles of them (normalised with the whole image's stats)."""
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainingPair

    norm = Normalization()
    out = []
    if tiles is None:
        for s in samples:
            out.append(TrainingPair(s.image[..., None], truth_instances(s), s.name, pixel_size_um=1.0 / s.px_per_um))
        return out
    stats = {}
    for t in tiles:
        s = samples[t.image]
        if t.image not in stats:
            stats[t.image] = norm.stats_of_array(s.image[..., None])
        lo, hi = stats[t.image]
        sl = (slice(t.y, t.y + t.size), slice(t.x, t.x + t.size))
        out.append(TrainingPair(s.image[sl][..., None], truth_instances(s)[sl], f"{s.name}_{t.y}_{t.x}", lo=lo, hi=hi,
                                pixel_size_um=1.0 / s.px_per_um))
    return out


def maps_and_labels(model, s: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Foreground map and instance labels of a whole image, at the image's own pixels."""
    from fosgate.core.model import PredictOptions, encode_core, instances_from_encoded
    from fosgate.core.normalize import Normalization
    from fosgate.core.rescale import resample_image, resample_maps, scale_factor

    img = s.image[..., None]
    lo, hi = model.normalization.stats_of_array(img)
    x = Normalization.apply(img, lo, hi, model.normalization.clip_max)
    px = 1.0 / s.px_per_um
    f = scale_factor(px, model.pixel_size_um)
    maps = resample_maps(model.predict_maps(resample_image(x, f)), x.shape[:2], f) if f != 1.0 else model.predict_maps(x)
    post = model.resolve_post(PredictOptions(), px)
    return maps[..., 0], instances_from_encoded(encode_core(maps, post.threshold), post, img)


def tile_features(pool: list[Sample], tiles: list[Tile]) -> np.ndarray:
    from fosgate.core.normalize import Normalization

    norm = Normalization()
    xs = {}
    feats = []
    for t in tiles:
        if t.image not in xs:
            img = pool[t.image].image[..., None]
            lo, hi = norm.stats_of_array(img)
            xs[t.image] = Normalization.apply(img, lo, hi, norm.clip_max)[..., 0]
        c = xs[t.image][t.y:t.y + t.size, t.x:t.x + t.size]
        feats.append([c.mean(), c.std(), np.percentile(c, 99)])
    f = np.asarray(feats)
    return (f - f.mean(0)) / (f.std(0) + 1e-9)


def kmeans_clusters(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from scipy.cluster.vq import kmeans2

    k = max(1, min(k, len(features)))
    _, labels = kmeans2(features, k, seed=seed, minit="++")
    return labels


def choose(strategy: str, n: int, tiles: list[Tile], seed: int, clusters: np.ndarray,
           uncertainty: np.ndarray | None) -> list[int]:
    from fosgate.core.selection import select_tiles

    n = min(n, len(tiles))
    if strategy == "random" or (strategy == "active" and uncertainty is None):
        return sorted(np.random.default_rng(seed).permutation(len(tiles))[:n].tolist())  # nested in n
    if strategy == "active":
        order = np.lexsort((np.random.default_rng(seed).random(len(tiles)), -uncertainty))
        return sorted(order[:n].tolist())  # nested in n
    return select_tiles(clusters, n, "balanced", seed=seed)


def score(model, test: list[Sample]) -> dict[str, Any]:
    from fosgate.core.metrics import detection_scores, pool_detection

    per = []
    for s in test:
        _, lab = maps_and_labels(model, s)
        per.append({"image": s.name, **detection_scores(lab, s.consensus, 0.5)})
    return {**pool_detection(per), "per_image": per}


def make_start(start: str, lab: str, seed: int, others: list[Sample], pool: list[Sample], args) -> Any:
    """The starting model (None for scratch). ``base-frozen`` never comes here: run_lab_seed gives it the
    seed's ``base`` model."""
    from fosgate.core.model import FosgateModel
    from fosgate.core.normalize import Normalization
    from fosgate.core.training import TrainConfig, train_model

    if start == "scratch":
        return None
    if start == "base":
        return train_model(train_pairs(others), TrainConfig(epochs=args.base_epochs, steps_per_epoch=args.base_steps,
                                                            tile_size=128, batch_size=8, seed=seed,
                                                            pixel_size_um=MODEL_PX_UM))
    from fosgate.core.pretrain import PretrainConfig, pretrain
    from fosgate.core.rescale import resample_image, scale_factor

    norm = Normalization()
    rng = np.random.default_rng(seed)
    xs = []
    for s in pool:  # unlabelled pool images at the model's scale
        img = s.image[..., None]
        lo, hi = norm.stats_of_array(img)
        x = Normalization.apply(img, lo, hi, norm.clip_max)
        f = scale_factor(1.0 / s.px_per_um, MODEL_PX_UM)
        xs.append(resample_image(x, f) if f != 1.0 else x)
    n = args.pretrain_tiles
    tiles = np.stack([_crop(xs[i], 128, rng) for i in rng.integers(len(xs), size=n)]).astype(np.float32)
    model = FosgateModel.create("unet2", 1, norm, seed=seed, pixel_size_um=MODEL_PX_UM)
    pretrain(model.network, tiles, PretrainConfig(epochs=args.pretrain_epochs, steps_per_epoch=args.pretrain_steps,
                                                  batch_size=8, tile_size=128, tiles=max(8, n), seed=seed))
    # marked as the pretrain job marks it, so that fine-tuning starts its untrained head at the prior
    # (train_model asks FosgateModel.is_pretrained_only); unmarked, the head kept its random init and 3 of 9
    # fine-tunings (4 x 25 steps) predicted no cell at all (2026-11-29, result discarded)
    model.metrics = {"pretrained": 1.0}
    return model


def _crop(x: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    y0 = int(rng.integers(max(1, x.shape[0] - t + 1)))
    x0 = int(rng.integers(max(1, x.shape[1] - t + 1)))
    c = x[y0:y0 + t, x0:x0 + t]
    return np.pad(c, ((0, t - c.shape[0]), (0, t - c.shape[1]), (0, 0)))


def copy_model(model):
    """An independent copy (``train_model`` fine-tunes its base in place)."""
    from fosgate.core.model import FosgateModel

    if model is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return FosgateModel.load(model.save(Path(tmp) / "m"))


def fine_tune(start_model, pool: list[Sample], tiles: list[Tile], seed: int, args, freeze: str = ""):
    """A new model: ``start_model`` (untouched) or a new unet2 trained on the given pool tiles; ``freeze``
    (else ``--ft-freeze``): the start's layer group kept fixed."""
    from fosgate.core.training import TrainConfig, train_model

    start_model = copy_model(start_model)
    pairs = train_pairs(pool, tiles)
    freeze = (freeze or args.ft_freeze) if start_model is not None else ""  # scratch has nothing to keep
    cfg = TrainConfig(epochs=args.ft_epochs, steps_per_epoch=args.ft_steps or None, tile_size=128, batch_size=8, seed=seed,
                      val_fraction=0.2 if len(pairs) >= 4 else 0.0, pixel_size_um=MODEL_PX_UM, freeze=freeze,
                      learning_rate=args.ft_lr, keep_start=args.ft_keep_start)
    return train_model(pairs, cfg, base=start_model)


def run_lab_seed(lab: str, seed: int, samples: list[Sample], args) -> list[dict]:
    from fosgate.core.edit_cost import NO_COST, edit_cost

    pool, test = split_lab(samples, lab, seed)
    others = [s for s in samples if s.lab != lab]
    tiles = pool_tiles(pool, args.tile)
    truths = [truth_instances(s) for s in pool]
    clusters = kmeans_clusters(tile_features(pool, tiles), args.k, seed)
    budgets = sorted({len(tiles) if b == "all" else min(int(b), len(tiles)) for b in args.budgets})
    rows = []
    fitted: dict[tuple, dict] = {}  # (start, chosen tiles) -> scores: one training per distinct tile set
    made: dict[str, tuple] = {}  # base -> (model, seconds): base-frozen fine-tunes the same base model
    for start in args.starts:
        t0 = time.perf_counter()
        shared = "base" if start in FROZEN_STARTS else start
        if shared not in made:
            made[shared] = (make_start(shared, lab, seed, others, pool, args), time.perf_counter() - t0)
        start_model, start_s = made[shared]
        proposals, uncertainty, zero_shot = None, None, None
        if start_model is not None and start != "pretrained":
            maps_labels = [maps_and_labels(start_model, s) for s in pool]
            proposals = [lab_ for _, lab_ in maps_labels]
            uncertainty = np.array([float(np.mean(4 * p * (1 - p)))
                                    for t in tiles for p in [maps_labels[t.image][0][t.y:t.y + t.size,
                                                                                     t.x:t.x + t.size]]])
        for strategy in args.strategies:
            for n in budgets:
                if n == 0 and start != "base":
                    continue
                chosen = choose(strategy, n, tiles, seed, clusters, uncertainty)
                cost = NO_COST
                for i in chosen:
                    t = tiles[i]
                    sl = (slice(t.y, t.y + t.size), slice(t.x, t.x + t.size))
                    prop = proposals[t.image][sl] if proposals is not None else np.zeros((t.size, t.size), np.int32)
                    cost += edit_cost(prop, truths[t.image][sl])
                t1 = time.perf_counter()
                key = (start, tuple(chosen))
                if n == 0:  # the starting model itself: the same for every strategy
                    sc = zero_shot = zero_shot if zero_shot is not None else score(start_model, test)
                elif key in fitted:  # the same tiles from the same start and seed (e.g. every strategy at "all",
                    sc = fitted[key]  # or active from scratch, which has no model and picks the random tiles)
                else:
                    tuned = fine_tune(start_model, pool, [tiles[i] for i in chosen], seed, args,
                                      FROZEN_STARTS.get(start, ""))
                    steps = int(tuned.metrics["steps_per_epoch"] * tuned.metrics["epochs_run"])
                    sc = fitted[key] = score(tuned, test) | {"train_steps": steps}
                row = {"lab": lab, "seed": seed, "start": start, "strategy": strategy, "tiles": n,
                       "all_tiles": len(tiles), "edit_cost": cost.to_dict(), "train_seconds": time.perf_counter() - t1,
                       "start_seconds": start_s, "test": [s.name for s in test], "pool": [s.name for s in pool],
                       **sc}
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("lab", "seed", "start", "strategy", "tiles", "f1")}
                                 | {"edits": cost.edits}), file=sys.stderr, flush=True)
    return rows


def _share_of_all(sel: list[dict], rows: list[dict]) -> dict[str, Any]:
    """Per seed, this row's F1 and edits as fractions of the same seed's all-tiles run from the same start
    and by the same strategy where it has one (every strategy's all-tiles run is the same tile set, trained
    once in one run; a strategy merged from another process is read against its own), else by any strategy:
    mean F1 share with a t interval over seeds, and the mean edit share. Empty when a seed has no all-tiles
    run."""
    whole = [r for r in rows if r["tiles"] == r["all_tiles"]]
    any_strategy = {(r["lab"], r["seed"], r["start"]): r for r in whole}
    own = {(r["lab"], r["seed"], r["start"], r["strategy"]): r for r in whole}
    pairs = [(r, own.get((r["lab"], r["seed"], r["start"], r["strategy"]))
              or any_strategy.get((r["lab"], r["seed"], r["start"]))) for r in sel]
    if not pairs or any(f is None or not f["f1"] for _, f in pairs):
        return {}
    share = [r["f1"] / f["f1"] for r, f in pairs]
    edits = [r["edit_cost"]["edits"] / f["edit_cost"]["edits"] for r, f in pairs if f["edit_cost"]["edits"]]
    return {"f1_share": float(np.mean(share)), "f1_share_ci95": t_interval(share),
            "edit_share": float(np.mean(edits)) if len(edits) == len(pairs) else None}


def summarize(rows: list[dict], ceiling_rows: list[dict]) -> dict[str, Any]:
    """Per (lab, start, strategy, tiles): mean F1 over seeds with a t interval, mean edits and count error,
    the median expert on the same test images, and (``_share_of_all``) the per-seed share of the all-tiles
    F1 and edits; findings: per start and strategy, the cheapest row whose mean F1 is >= 95 % of that
    strategy's all-tiles mean over its own seeds (else the best all-tiles mean)."""
    out = []
    keys = list(dict.fromkeys((r["lab"], r["start"], r["strategy"], r["tiles"] == r["all_tiles"], r["tiles"])
                              for r in rows))
    for lab, start, strategy, is_all, n in keys:
        sel = [r for r in rows if (r["lab"], r["start"], r["strategy"], r["tiles"]) == (lab, start, strategy, n)]
        images = {im for r in sel for im in r["test"]}
        experts = ceiling_by_lab(ceiling_rows, images=images).get(lab, {})
        f1 = [r["f1"] for r in sel]
        out.append({"lab": lab, "start": start, "strategy": strategy, "tiles": n, "all": is_all, "seeds": len(sel),
                    "f1": float(np.mean(f1)), "f1_ci95": t_interval(f1),
                    "count_error": float(np.mean([r["count_error"] for r in sel])),
                    "edits": float(np.mean([r["edit_cost"]["edits"] for r in sel])),
                    "median_expert_f1": experts.get("median_expert_f1"), **_share_of_all(sel, rows)})
    findings = []
    for lab in dict.fromkeys(r["lab"] for r in out):
        for start in dict.fromkeys(r["start"] for r in out if r["lab"] == lab):
            mine = [r for r in out if r["lab"] == lab and r["start"] == start]
            full = [r for r in mine if r["all"]]
            if not full:
                continue
            best_full = max(r["f1"] for r in full)
            for strategy in dict.fromkeys(r["strategy"] for r in mine):
                # the strategy's own all-tiles row (its seeds: strategies may have run on fewer seeds)
                own = next((r for r in full if r["strategy"] == strategy), None)
                ref = own["f1"] if own else best_full
                cand = sorted((r for r in mine if r["strategy"] == strategy and r["f1"] >= 0.95 * ref),
                              key=lambda r: r["edits"])
                all_edits = own["edits"] if own else None
                findings.append({"lab": lab, "start": start, "strategy": strategy, "all_tiles_f1": ref,
                                 "edits_to_95pct": cand[0]["edits"] if cand else None,
                                 "tiles_to_95pct": cand[0]["tiles"] if cand else None,
                                 "share_ci95_to_95pct": cand[0].get("f1_share_ci95") if cand else None,
                                 "all_tiles_edits": all_edits})
    return {"rows": out, "findings": findings, "distinguishable": _distinguishable(out), "paired": paired(rows)}


def paired(rows: list[dict]) -> list[dict]:
    """Per-seed differences of object F1 for the contrasts that matter, on the seeds both arms ran: a seed
    fixes the test image and the pool, and random selection picks the same tiles from every start, so a
    paired interval is far narrower than two separate ones. Contrasts per lab and budget: each start
    with a model vs scratch (random tiles), and active and balanced vs random from the base model (from
    scratch or pretrained active is random). ``distinguishable``: the 95 % t interval of the mean difference excludes 0 (2+ seeds)."""
    f1 = {(r["lab"], r["start"], r["strategy"], r["tiles"], r["seed"]): r["f1"] for r in rows}
    every = {(r["lab"], r["tiles"]) for r in rows if r["tiles"] == r["all_tiles"]}  # all tiles: one tile set
    arms = dict.fromkeys((r["lab"], r["start"], r["strategy"]) for r in rows)
    contrasts = [((lab, s, "random"), (lab, "scratch", "random")) for lab, s, g in arms
                 if g == "random" and s != "scratch" and (lab, "scratch", "random") in arms]
    contrasts += [((lab, s, g), (lab, s, "random")) for lab, s, g in arms
                  if g in ("active", "balanced") and s == "base" and (lab, s, "random") in arms]
    contrasts += [((lab, s, g), (lab, "base", g)) for lab, s, g in arms  # frozen vs trainable encoder
                  if s in FROZEN_STARTS and (lab, "base", g) in arms]
    out = []
    for a, b in contrasts:
        for n in sorted({k[3] for k in f1 if k[:3] == a and k[3] > 0}):
            if a[2] != b[2] and (a[0], n) in every:  # active and random label the same (all) tiles
                continue
            seeds = sorted(k[4] for k in f1 if k[:4] == (*a, n) and (*b, n, k[4]) in f1)
            if not seeds:
                continue
            d = [f1[(*a, n, sd)] - f1[(*b, n, sd)] for sd in seeds]
            lo, hi = t_interval(d)
            out.append({"lab": a[0], "tiles": n, "a": f"{a[1]}/{a[2]}", "b": f"{b[1]}/{b[2]}", "seeds": seeds,
                        "per_seed": d, "mean": float(np.mean(d)), "ci95": [lo, hi],
                        "distinguishable": bool(len(d) > 1 and (lo > 0 or hi < 0))})
    return out


def _distinguishable(out: list[dict]) -> list[dict]:
    """Pairs of strategies (same lab, start, budget) and whether their seed intervals are disjoint."""
    res = []
    for r in out:
        for q in out:
            if (r["lab"], r["start"], r["tiles"]) == (q["lab"], q["start"], q["tiles"]) and r["strategy"] < q["strategy"]:
                disjoint = r["f1_ci95"][1] < q["f1_ci95"][0] or q["f1_ci95"][1] < r["f1_ci95"][0]
                res.append({"lab": r["lab"], "start": r["start"], "tiles": r["tiles"], "a": r["strategy"],
                            "b": q["strategy"], "distinguishable": bool(disjoint and r["seeds"] > 1)})
    return res


def plot(summary: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    labs = list(dict.fromkeys(r["lab"] for r in rows))
    fig, axes = plt.subplots(len(labs), 2, figsize=(10, 3.6 * len(labs)), squeeze=False)
    for i, lab in enumerate(labs):
        mine = [r for r in rows if r["lab"] == lab]
        for j, xkey in enumerate(("tiles", "edits")):
            ax = axes[i][j]
            for start in dict.fromkeys(r["start"] for r in mine):
                for strategy in dict.fromkeys(r["strategy"] for r in mine):
                    sel = sorted((r for r in mine if r["start"] == start and r["strategy"] == strategy),
                                 key=lambda r: r[xkey])
                    if not sel:
                        continue
                    x = [r[xkey] for r in sel]
                    ax.plot(x, [r["f1"] for r in sel], marker="o", label=f"{start} / {strategy}")
                    ax.fill_between(x, [r["f1_ci95"][0] for r in sel], [r["f1_ci95"][1] for r in sel], alpha=0.15)
            med = next((r["median_expert_f1"] for r in mine if r["median_expert_f1"] is not None), None)
            if med is not None:
                ax.axhline(med, color="k", ls="--", lw=1, label="median expert")
            ax.set_xlabel("labelled tiles" if xkey == "tiles" else "edits (objects re-drawn + deleted + drawn)")
            ax.set_ylabel("object F1 (IoU >= 0.5)")
            ax.set_title(f"held-out lab {lab}")
            ax.set_ylim(0, 1)
        axes[i][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SAME_IN_PARTS = ("tile", "k", "base_epochs", "base_steps", "ft_epochs", "ft_steps",
                 "ft_freeze", "ft_lr", "ft_keep_start",
                 "pretrain_epochs", "pretrain_steps", "pretrain_tiles", "quick")


# a run's (or merge's) result names: the labels benchmark itself, and the selection strategies re-run at the
# fine-tuning default (kept beside it, which holds the older fixed-step runs of every start); and the
# --compare names: other training budgets of the base/random arm paired by seed
RUN_NAMES = ("cfos_labels", "cfos_labels_strategies")
COMPARE_NAMES = ("cfos_labels_budget", "cfos_labels_steps", "cfos_labels_equal_steps")

# settings that results saved before them ran with implicitly
SETTING_BEFORE = {"ft_freeze": "", "ft_lr": 1e-3, "ft_keep_start": False}


def merge(paths: list[Path], out: Path, notes: list[str], name: str = "cfos_labels") -> int:
    """One result from runs of the same settings on other seeds, starting points, labs or selection
    strategies (e.g. one process per seed, so that a run cut for time keeps the seeds it finished; the
    pretrained start run later; another lab as the new lab): records concatenated, the summary recomputed
    over every seed; each part's command, date and machine stamp are kept under ``parts``. Training
    settings must be the same (``SAME_IN_PARTS``), and so must the budgets of parts on the same lab and
    start (others may differ: a row and its share of the all-tiles run only use the runs of its own lab and
    start; ``budgets_by_lab`` records them per start).
    A (lab, seed, start, strategy) run in two parts is refused (it would count twice); another strategy on
    a seed already run joins (its all-tiles run is its own: ``_share_of_all``). Saved as ``name``
    (``RUN_NAMES``)."""
    parts = [json.loads(p.read_text()) for p in paths]
    first = parts[0]["settings"]
    for p in parts[1:]:
        if any(p["settings"].get(k, SETTING_BEFORE.get(k)) != first.get(k, SETTING_BEFORE.get(k))
               for k in SAME_IN_PARTS):
            raise SystemExit("--merge: the results were run with different settings (only the seeds, starting "
                             "points, labs, selection strategies and, between labs or starts, budgets may differ)")
    budgets_by_lab: dict[str, dict[str, list[str]]] = {}
    for p in parts:
        for lab in p["settings"]["labs"]:
            for start in p["settings"]["starts"]:
                if budgets_by_lab.setdefault(lab, {}).setdefault(start, p["settings"]["budgets"]) \
                        != p["settings"]["budgets"]:
                    raise SystemExit(f"--merge: the parts on {lab} from {start} were run with different budgets")
    records = [r for p in parts for r in p["records"]]
    seen = [key for p in parts for key in {(r["lab"], r["seed"], r["start"], r["strategy"]) for r in p["records"]}]
    if len(seen) != len(set(seen)):
        raise SystemExit("--merge: a (lab, seed, start, strategy) appears in two parts")
    if all("ceiling_rows" in p for p in parts):
        ceiling_rows = list({(r["image"], r["expert"]): r for p in parts for r in p["ceiling_rows"]}.values())
    else:  # results saved before the experts' rows were kept: score the experts again
        ceiling_rows = human_ceiling([s for s in load_samples() if s.lab in first["labs"]])["rows"]
    summary = summarize(records, ceiling_rows)
    out.mkdir(parents=True, exist_ok=True)
    plot(summary, out / f"{name}.png")
    result = {"mode": parts[0]["mode"],
              "settings": {**first, "seeds": sorted({r["seed"] for r in records}),
                           "budgets": sorted({b for by_start in budgets_by_lab.values()
                                              for bs in by_start.values() for b in bs},
                                             key=lambda b: (b == "all", int(b) if b != "all" else 0)),
                           "budgets_by_lab": budgets_by_lab,
                           "starts": list(dict.fromkeys(r["start"] for r in records)),
                           "labs": list(dict.fromkeys(r["lab"] for r in records)),
                           "strategies": list(dict.fromkeys(r["strategy"] for r in records))},
              "records": records, "ceiling_rows": ceiling_rows, **summary,
              "wall_seconds": sum(p.get("wall_seconds", 0) for p in parts),
              "machine": parts[0].get("machine"),
              "parts": [{"command": p.get("command"), "date": p.get("date"), "machine": p.get("machine"),
                         "seeds": p["settings"]["seeds"], "starts": p["settings"]["starts"],
                         "labs": p["settings"]["labs"]} for p in parts],
              "notes": [n for p in parts for n in p.get("notes", [])] + notes}
    save(out, name, result)
    return 0


def budget_label(settings: dict) -> str:
    """A run's training settings in words: base-model and fine-tuning epochs x steps, and where they are
    not the old defaults the fine-tuning's learning rate and whether it keeps its start unless beaten."""
    lr = settings.get("ft_lr", SETTING_BEFORE["ft_lr"])
    return (f"base {settings['base_epochs']} x {settings['base_steps']}, "
            f"fine-tune {settings['ft_epochs']} x {settings['ft_steps'] or 'auto'}"
            + (f" at learning rate {lr:g}" if lr != SETTING_BEFORE["ft_lr"] else "")
            + (", start kept unless beaten" if settings.get("ft_keep_start") else ""))


def compare(paths: list[Path], out: Path, notes: list[str], arm: tuple[str, str] = ("base", "random"),
            name: str = "cfos_labels_budget") -> int:
    """Runs that differ in their training (base or fine-tuning steps, learning rate, keeping the start),
    each the same ``arm`` on the same labs and seeds, paired by seed against the FIRST run: a seed fixes
    the test image and the pool, and random selection the tiles, so each per-seed difference compares the
    trainings on the same data.
    Refused when a seed's test images or pool differ between runs, or when a run lacks the arm. Saved as
    ``name`` (the report shows ``cfos_labels_budget`` and ``cfos_labels_steps`` beside the labels benchmark)."""
    runs = [json.loads(p.read_text()) for p in paths]
    keyed = []
    for run in runs:
        recs = {(r["lab"], r["seed"], r["tiles"]): r for r in run["records"] if (r["start"], r["strategy"]) == arm}
        if not recs:
            raise SystemExit(f"--compare: {run.get('command')} has no {arm[0]}/{arm[1]} records")
        keyed.append(recs)
    splits = [{(k[0], k[1]): (r["test"], r["pool"]) for k, r in recs.items()} for recs in keyed]
    for sp in splits[1:]:
        if any(sp[k] != splits[0][k] for k in sp.keys() & splits[0].keys()):
            raise SystemExit("--compare: a seed holds out other images in two runs; they cannot be paired")
    rows, contrasts = [], []
    for run, recs in zip(runs, keyed, strict=True):
        for lab, n in dict.fromkeys((k[0], k[2]) for k in recs):
            sel = [r for k, r in sorted(recs.items()) if (k[0], k[2]) == (lab, n)]
            f1 = [r["f1"] for r in sel]
            rows.append({"run": budget_label(run["settings"]), "lab": lab, "tiles": n,
                         "all": sel[0]["tiles"] == sel[0]["all_tiles"], "seeds": [r["seed"] for r in sel],
                         "f1": float(np.mean(f1)), "f1_ci95": t_interval(f1), "f1_per_seed": f1,
                         "edits": float(np.mean([r["edit_cost"]["edits"] for r in sel])),
                         "count_error": float(np.mean([r["count_error"] for r in sel])),
                         # steps shown only for the budget that grows with the tiles (--ft-steps 0)
                         "train_steps": float(np.mean([r["train_steps"] for r in sel]))
                         if not run["settings"]["ft_steps"] and all("train_steps" in r for r in sel) else None})
    base = keyed[0]
    same_base = [all(r["settings"][k] == runs[0]["settings"][k] for k in ("base_epochs", "base_steps")) for r in runs]
    for run, recs, same in zip(runs[1:], keyed[1:], same_base[1:], strict=True):
        for lab, n in dict.fromkeys((k[0], k[2]) for k in recs):
            seeds = sorted(k[1] for k in recs if (k[0], k[2]) == (lab, n) and k in base)
            if not seeds or (n == 0 and same):  # no label: the same base model, nothing to compare
                continue
            d = [recs[(lab, sd, n)]["f1"] - base[(lab, sd, n)]["f1"] for sd in seeds]
            lo, hi = t_interval(d)
            contrasts.append({"a": budget_label(run["settings"]), "b": budget_label(runs[0]["settings"]), "lab": lab,
                              "tiles": n, "seeds": seeds, "per_seed": d, "mean": float(np.mean(d)), "ci95": [lo, hi],
                              "distinguishable": bool(len(d) > 1 and (lo > 0 or hi < 0))})
    save(out, name, {
        "arm": list(arm), "rows": rows, "contrasts": contrasts, "notes": notes,
        "runs": [{"label": budget_label(r["settings"]), "command": r.get("command"), "date": r.get("date"),
                  "machine": r.get("machine"), "settings": r["settings"]} for r in runs],
        "machine": runs[-1].get("machine")})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labs", nargs="+", default=list(CFOS_LABS), choices=list(CFOS_LABS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--budgets", nargs="+", default=["0", "4", "8", "16", "32", "all"])
    ap.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS))
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--tile", type=int, default=256, help="labelled tile side in the image's own pixels")
    ap.add_argument("--k", type=int, default=4, help="clusters for balanced selection")
    ap.add_argument("--base-epochs", type=int, default=8)
    ap.add_argument("--base-steps", type=int, default=40)
    ap.add_argument("--ft-epochs", type=int, default=12)
    ap.add_argument("--ft-steps", type=int, default=0,
                    help="steps per fine-tuning epoch; 0 (default): the train job's rule, about two passes over the "
                    "labelled tiles per epoch (at least 25), so the budget grows with the tiles. By measurement: on "
                    "wue1 (5 seeds) 12 such epochs beat a fixed 4 x 25 steps with all tiles by +0.072 [+0.042, "
                    "+0.103] (bench/results/cfos_labels_steps.json)")
    ap.add_argument("--ft-lr", type=float, default=1e-3,
                    help="peak learning rate of fine-tuning (cosine decay over its steps), as train's --learning-rate")
    ap.add_argument("--ft-keep-start", action="store_true",
                    help="fine-tuning keeps the starting model's weights when no epoch scores higher on the "
                    "validation tiles (TrainConfig.keep_start; off by default, by measurement)")
    ap.add_argument("--ft-freeze", default="", choices=["", "encoder"],
                    help="layers of the base or pretrained start kept fixed while fine-tuning ('': none)")
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--pretrain-steps", type=int, default=40)
    ap.add_argument("--pretrain-tiles", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="smoke size: inns1, seed 0, budgets 0 and 4, base and "
                    "scratch, random and active, a few steps")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="no training: combine results of the same settings on other seeds into one, re-summarised")
    ap.add_argument("--compare", nargs="+", type=Path, metavar="JSON",
                    help="no training: runs of other base / fine-tuning budgets (base, random), paired by seed "
                    "against the first; saved as --name")
    ap.add_argument("--name", choices=[*RUN_NAMES, *COMPARE_NAMES],
                    help="the result's name: for a run or --merge one of " + ", ".join(RUN_NAMES) + " (default "
                    f"{RUN_NAMES[0]}), for --compare one of " + ", ".join(COMPARE_NAMES) + f" (default {COMPARE_NAMES[0]})")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the report")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    names = COMPARE_NAMES if args.compare else RUN_NAMES
    if args.name is None:
        args.name = names[0]
    elif args.name not in names:
        ap.error(f"--name {args.name} is for {'a run or --merge' if args.compare else '--compare'}; "
                 f"here choose one of {', '.join(names)}")
    if args.merge:
        return merge(args.merge, args.out, args.note, name=args.name)
    if args.compare:
        return compare(args.compare, args.out, args.note, name=args.name)
    if args.quick:
        args.labs, args.seeds, args.budgets = ["inns1"], [0], ["0", "4"]
        args.starts, args.strategies = ["scratch", "base"], ["random", "active"]
        args.base_epochs, args.base_steps, args.ft_epochs, args.ft_steps = 1, 10, 1, 5
    t0 = time.perf_counter()
    samples = load_samples()
    ceiling = human_ceiling([s for s in samples if s.lab in args.labs])
    rows = []
    for lab in args.labs:
        for seed in args.seeds:
            rows += run_lab_seed(lab, seed, samples, args)
    summary = summarize(rows, ceiling["rows"])
    args.out.mkdir(parents=True, exist_ok=True)
    plot(summary, args.out / f"{args.name}.png")
    result = {"mode": "quick" if args.quick else "full",
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "merge", "note", "name")},
              "notes": args.note,
              "records": [{k: v for k, v in r.items() if k != "per_image"} | {"per_image": r["per_image"]} for r in rows],
              "ceiling_rows": ceiling["rows"], **summary, "wall_seconds": time.perf_counter() - t0}
    save(args.out, args.name, result)
    for r in summary["rows"]:
        print(f"{r['lab']:6s} {r['start']:10s} {r['strategy']:8s} tiles {r['tiles']:3d}  F1 {r['f1']:.3f} "
              f"[{r['f1_ci95'][0]:.3f}, {r['f1_ci95'][1]:.3f}]  edits {r['edits']:.0f}  expert {r['median_expert_f1']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
