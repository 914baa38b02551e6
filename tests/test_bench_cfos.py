"""bench/bench_cfos.py without training: the fold definitions keep test images out of training, and
the human ceiling on the real segebarth-cfos data (skipped without ../shared) has every expert of a lab
scored against the consensus, with StarDist's matching rule."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # bench_cfos imports bench/common.py
    spec = importlib.util.spec_from_file_location("bench_cfos", BENCH / "bench_cfos.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_cfos"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _fake(b, name, lab, group=""):
    z = np.zeros((8, 8), bool)
    return b.Sample(name, lab, 1.0, group, np.zeros((8, 8), np.uint8), z, {"expert_1": z})


def test_folds_partition_the_test_images_and_never_train_on_them():
    b = _bench()
    samples = ([_fake(b, f"wue1_{i}", "wue1", str(g)) for i, g in enumerate([0, 1, 3, 4, 6, 7] * 4)]
               + [_fake(b, f"mue_{i}", "mue") for i in range(3)] + [_fake(b, f"inns1_{i}", "inns1") for i in range(3)])
    folds = b.make_folds(samples, ["within", "lolo"], wue1_folds=3)
    groups = {s.name: s.group for s in samples}
    for proto in ("within", "lolo"):
        fs = [f for f in folds if f["protocol"] == proto]
        tested = [n for f in fs for n in f["test"]]
        assert sorted(tested) == sorted(s.name for s in samples)  # every image tested exactly once
        for f in fs:
            assert not set(f["train"]) & set(f["test"]) and f["train"]
            if proto == "lolo":
                assert {n.split("_")[0] for n in f["train"]} == {"wue1", "mue", "inns1"} - {f["lab"]}
            elif f["lab"] == "wue1":  # grouped: an animal group is never on both sides
                assert not {groups[n] for n in f["train"]} & {groups[n] for n in f["test"]}
                assert len(f["test"]) == 8
            else:
                assert len(f["test"]) == 1 and len(f["train"]) == 2
    assert len([f for f in folds if f["protocol"] == "within"]) == 9


@pytest.mark.skipif(not (SHARED_DATA / "segebarth-cfos").is_dir(), reason="../shared/data/segebarth-cfos missing")
def test_human_ceiling_on_real_data_scores_every_expert():
    b = _bench()
    samples = b.load_samples(("inns1",))
    assert [s.name for s in samples] == ["inns1_1108", "inns1_1117", "inns1_1124"]
    ceiling = b.human_ceiling(samples)
    assert len(ceiling["rows"]) == 3 * 4
    lab = ceiling["labs"]["inns1"]
    f1 = sorted(v["f1"] for v in lab["experts"].values())
    assert lab["median_expert_f1"] == pytest.approx((f1[1] + f1[2]) / 2)
    for v in lab["experts"].values():
        assert v["tp"] + v["fn"] == v["n_true"] and v["f1_ci95"][0] <= v["f1"] <= v["f1_ci95"][1]
    # the consensus against itself is perfect
    from fosgate.core.metrics import detection_scores

    assert detection_scores(samples[0].consensus, samples[0].consensus)["f1"] == 1.0


def test_merge_of_runs_on_different_labs_keeps_each_labs_experts(tmp_path):
    """Two runs (one lab each) merge into one result whose summary has both labs, each next to its own
    experts (the ceiling is merged too), and the per-part provenance is kept."""
    import json

    b = _bench()

    def part(lab: str, tp: int) -> dict:
        fold = {"protocol": "within", "fold": f"{lab} 0", "lab": lab, "train": [f"{lab}_1"], "test": [f"{lab}_0"]}
        rec = {"protocol": "within", "fold": fold["fold"], "method": "default", "lab": lab, "image": f"{lab}_0",
               "seed": 0, "tp": tp, "fp": 1, "fn": 1, "n_pred": tp + 1, "n_true": tp + 1, "precision": 0.0,
               "recall": 0.0, "f1": 0.0, "count_error": 0, "rel_count_error": 0.0}
        ceiling_rows = [{"image": f"{lab}_0", "lab": lab, "expert": "expert_1", "tp": 9, "fp": 1, "fn": 0,
                         "n_pred": 10, "n_true": 9, "count_error": 1, "rel_count_error": 0.1}]
        settings = {"epochs": 4, "steps_per_epoch": 40, "batch": 8, "px_per_um": 1.0, "min_size_um2": 20.0,
                    "tile": 128, "iou_threshold": 0.5, "peers": [], "archs": ["default"], "protocols": ["within"],
                    "seeds": [0]}
        return {"labs": [lab], "settings": settings, "folds": [fold], "fold_runs": [{**fold, "method": "default", "seed": 0}],
                "records": [rec], "ceiling": {"rows": ceiling_rows, "labs": b.ceiling_by_lab(ceiling_rows)},
                "wall_seconds": 1.0}

    paths = []
    for lab, tp in (("mue", 8), ("wue1", 3)):
        paths.append(tmp_path / f"{lab}.json")
        paths[-1].write_text(json.dumps(part(lab, tp)))
    assert b.merge(paths, tmp_path / "out", ["merged"]) == 0
    merged = json.loads((tmp_path / "out" / "cfos.json").read_text())
    assert merged["labs"] == ["mue", "wue1"] and set(merged["ceiling"]["labs"]) == {"mue", "wue1"}
    by_lab = {x["lab"]: x for x in merged["summary"]}
    assert by_lab["mue"]["f1"] == pytest.approx(16 / 18) and by_lab["wue1"]["f1"] == pytest.approx(6 / 8)
    assert by_lab["wue1"]["median_expert_f1"] == pytest.approx(18 / 19)  # its own expert, not mue's
    assert len(merged["parts"]) == 2 and merged["notes"] == ["merged"]
    assert b.merge(paths[:1], tmp_path / "out", [], "cfos_budget") == 0  # a probe keeps its own name
    assert json.loads((tmp_path / "out" / "cfos_budget.json").read_text())["labs"] == ["mue"]
    # the same fold, method and seed in two parts: a deterministic rerun counts once, anything else is refused
    assert b.merge([paths[0], paths[0]], tmp_path / "again", []) == 0
    again = json.loads((tmp_path / "again" / "cfos.json").read_text())
    assert len(again["records"]) == 1 and len(again["fold_runs"]) == 1 and "counted once" in again["notes"][0]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(part("mue", 7)))
    with pytest.raises(SystemExit, match="different scores"):
        b.merge([paths[0], other], tmp_path / "out", [])
    # a result saved before the default arch's crop was recorded ran at 128 px: it joins a 128-px run and
    # not a 256-px one; the ema rows' momentum is kept
    newer = part("wue1", 3)
    newer["settings"].update(default_tile=128, weight_average=0.99)
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    assert b.merge([paths[0], tmp_path / "newer.json"], tmp_path / "mixed", []) == 0
    assert json.loads((tmp_path / "mixed" / "cfos.json").read_text())["settings"]["weight_average"] == 0.99
    newer["settings"]["default_tile"] = 256
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(SystemExit, match="different training settings"):
        b.merge([paths[0], tmp_path / "newer.json"], tmp_path / "mixed", [])


def _labels_bench():
    _bench()  # bench_cfos_labels imports bench_cfos
    spec = importlib.util.spec_from_file_location("bench_cfos_labels", BENCH / "bench_cfos_labels.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_cfos_labels"] = mod
    spec.loader.exec_module(mod)
    return mod


def _report():
    """bench/report.py as a module (it imports its neighbours from bench/)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("report", BENCH / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_labels_merge_pools_seeds_and_refuses_a_seed_twice(tmp_path):
    """Per-seed runs of bench_cfos_labels merge into one result whose rows average over every seed with a
    t interval (one seed alone has none); another starting point on a seed already run joins as its own
    rows, and so does another selection strategy; another lab or start may have run other budgets; a
    (seed, start, strategy) present in two parts, other settings, or other budgets on the same lab and start
    are refused."""
    import json

    b = _labels_bench()
    settings = {"labs": ["inns1"], "budgets": ["0", "all"], "starts": ["base"], "strategies": ["random"],
                "tile": 256, "k": 4, "base_epochs": 4, "base_steps": 40, "ft_epochs": 4, "ft_steps": 25,
                "pretrain_epochs": 5, "pretrain_steps": 40, "pretrain_tiles": 256, "quick": False}
    ceiling_rows = [{"image": "inns1_0", "lab": "inns1", "expert": "expert_1", "tp": 9, "fp": 1, "fn": 0,
                     "n_pred": 10, "n_true": 9, "count_error": 1, "rel_count_error": 0.1}]

    def part(seed: int, f1: float, start: str = "base", lab: str = "inns1", strategy: str = "random",
             **changed) -> dict:
        recs = [{"lab": lab, "seed": seed, "start": start, "strategy": strategy, "tiles": n, "all_tiles": 40,
                 "edit_cost": {"edits": 3 * n}, "test": ["inns1_0"], "f1": f1 + n / 100, "count_error": -n,
                 "per_image": []} for n in (0, 40)]
        return {"mode": "full", "settings": {**settings, **changed, "seeds": [seed], "starts": [start]}, "records": recs,
                "ceiling_rows": ceiling_rows, "wall_seconds": 10.0, "command": f"seed {seed}", "date": "2026"}

    paths = []
    for seed, f1 in ((0, 0.5), (1, 0.7)):
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(part(seed, f1)))
    assert b.merge(paths, tmp_path / "out", ["two seeds"]) == 0
    merged = json.loads((tmp_path / "out" / "cfos_labels.json").read_text())
    assert merged["settings"]["seeds"] == [0, 1] and len(merged["parts"]) == 2 and merged["notes"] == ["two seeds"]
    full = next(r for r in merged["rows"] if r["all"])
    assert full["seeds"] == 2 and full["f1"] == pytest.approx(1.0)
    lo, hi = full["f1_ci95"]
    assert lo < 0.9 and hi > 1.1  # t(1 dof) interval of 0.9 and 1.1
    assert full["median_expert_f1"] == pytest.approx(18 / 19)
    assert merged["wall_seconds"] == 20.0
    (tmp_path / "again.json").write_text(json.dumps(part(1, 0.6)))
    with pytest.raises(SystemExit, match="in two parts"):
        b.merge([paths[1], tmp_path / "again.json"], tmp_path / "out", [])
    (tmp_path / "other.json").write_text(json.dumps(part(2, 0.6, ft_steps=50)))
    with pytest.raises(SystemExit, match="different settings"):
        b.merge([paths[0], tmp_path / "other.json"], tmp_path / "out", [])
    (tmp_path / "budgets.json").write_text(json.dumps(part(2, 0.6, budgets=["0", "4", "all"])))
    with pytest.raises(SystemExit, match="inns1 from base were run with different budgets"):
        b.merge([paths[0], tmp_path / "budgets.json"], tmp_path / "out", [])
    (tmp_path / "pre.json").write_text(json.dumps(part(0, 0.3, start="pretrained", budgets=["4", "all"])))
    assert b.merge([*paths, tmp_path / "pre.json"], tmp_path / "out", []) == 0
    merged = json.loads((tmp_path / "out" / "cfos_labels.json").read_text())
    assert merged["settings"]["starts"] == ["base", "pretrained"]
    assert merged["settings"]["budgets_by_lab"] == {"inns1": {"base": ["0", "all"], "pretrained": ["4", "all"]}}
    pre = next(r for r in merged["rows"] if r["start"] == "pretrained" and r["all"])
    assert pre["seeds"] == 1 and pre["f1"] == pytest.approx(0.7)
    assert next(r for r in merged["rows"] if r["start"] == "base" and r["all"])["seeds"] == 2
    # another lab as the new lab, with another selection strategy: joins as its own rows, same seeds allowed
    (tmp_path / "wue1.json").write_text(json.dumps(part(0, 0.4, lab="wue1", strategy="balanced",
                                                        labs=["wue1"], strategies=["balanced"],
                                                        budgets=["0", "16", "all"])))
    assert b.merge([*paths, tmp_path / "wue1.json"], tmp_path / "out", []) == 0
    merged = json.loads((tmp_path / "out" / "cfos_labels.json").read_text())
    assert merged["settings"]["labs"] == ["inns1", "wue1"]
    assert merged["settings"]["budgets_by_lab"] == {"inns1": {"base": ["0", "all"]},
                                                 "wue1": {"base": ["0", "16", "all"]}}
    assert merged["settings"]["budgets"] == ["0", "16", "all"]
    assert merged["settings"]["strategies"] == ["random", "balanced"]
    assert [(r["lab"], r["strategy"], r["seeds"]) for r in merged["rows"] if r["all"]] == [
        ("inns1", "random", 2), ("wue1", "balanced", 1)]
    # another strategy on seeds already run (same lab and start, another process): joins as its own rows,
    # its share read against its own all-tiles run; the same strategy on a seed twice is refused
    (tmp_path / "active.json").write_text(json.dumps(part(0, 0.45, strategy="active", strategies=["active"])))
    assert b.merge([*paths, tmp_path / "active.json"], tmp_path / "out", []) == 0
    merged = json.loads((tmp_path / "out" / "cfos_labels.json").read_text())
    active = [r for r in merged["rows"] if r["strategy"] == "active"]
    assert [(r["tiles"], r["seeds"]) for r in active] == [(0, 1), (40, 1)]
    assert active[1]["f1"] == pytest.approx(0.85) and active[1]["f1_share"] == pytest.approx(1.0)
    with pytest.raises(SystemExit, match=r"\(lab, seed, start, strategy\) appears in two parts"):
        b.merge([*paths, tmp_path / "active.json", tmp_path / "active.json"], tmp_path / "out", [])


def test_labels_result_names_follow_the_mode(tmp_path):
    """A merge saves under --name (the strategies re-run sits beside the labels benchmark, plot included);
    a comparison's name is refused for a merge and a run's name for --compare."""
    import json

    b = _labels_bench()
    rec = {"lab": "wue1", "seed": 0, "start": "base", "strategy": "random", "tiles": 0, "all_tiles": 192,
           "edit_cost": {"edits": 0}, "test": ["wue1_a"], "f1": 0.5, "count_error": -3, "per_image": []}
    part = {"mode": "full", "settings": {"labs": ["wue1"], "budgets": ["0"], "starts": ["base"],
                                         "strategies": ["random"], "seeds": [0], "tile": 256, "k": 4,
                                         "base_epochs": 8, "base_steps": 40, "ft_epochs": 12, "ft_steps": 0,
                                         "pretrain_epochs": 5, "pretrain_steps": 40, "pretrain_tiles": 256,
                                         "quick": False},
            "records": [rec], "ceiling_rows": [], "wall_seconds": 1.0}
    (tmp_path / "p.json").write_text(json.dumps(part))
    out = tmp_path / "out"
    assert b.main(["--merge", str(tmp_path / "p.json"), "--name", "cfos_labels_strategies", "--out", str(out)]) == 0
    assert sorted(x.name for x in out.iterdir()) == ["cfos_labels_strategies.json", "cfos_labels_strategies.png"]
    with pytest.raises(SystemExit):
        b.main(["--merge", str(tmp_path / "p.json"), "--name", "cfos_labels_steps", "--out", str(out)])
    with pytest.raises(SystemExit):
        b.main(["--compare", str(tmp_path / "p.json"), "--name", "cfos_labels_strategies", "--out", str(out)])
    assert sorted(x.name for x in out.iterdir()) == ["cfos_labels_strategies.json", "cfos_labels_strategies.png"]


def test_labels_rows_give_each_seeds_share_of_its_all_tiles_run():
    """summarize(): a row's F1 and edits as shares of the same seed's all-tiles run (same start), averaged
    over seeds with a t interval; the finding carries the interval of the row that reaches 95 %."""
    b = _labels_bench()

    def rec(seed, tiles, f1, edits, strategy="random"):
        return {"lab": "wue1", "seed": seed, "start": "base", "strategy": strategy, "tiles": tiles, "all_tiles": 192,
                "edit_cost": {"edits": edits}, "test": [f"w{seed}"], "f1": f1, "count_error": 0.0}

    rows = [rec(0, 16, 0.66, 80), rec(0, 192, 0.70, 800), rec(1, 16, 0.59, 120), rec(1, 192, 0.60, 600),
            rec(0, 16, 0.35, 300, "active"), rec(1, 16, 0.45, 200, "active")]
    out = b.summarize(rows, [])
    row = next(r for r in out["rows"] if (r["strategy"], r["tiles"]) == ("random", 16))
    assert row["f1_share"] == pytest.approx((0.66 / 0.70 + 0.59 / 0.60) / 2)
    assert row["edit_share"] == pytest.approx((0.1 + 0.2) / 2)
    lo, hi = row["f1_share_ci95"]
    assert lo < row["f1_share"] < hi
    active = next(r for r in out["rows"] if r["strategy"] == "active")  # shares the seed's all-tiles run
    assert active["f1_share"] == pytest.approx((0.5 + 0.75) / 2)
    found = next(f for f in out["findings"] if f["strategy"] == "random")
    assert found["tiles_to_95pct"] == 16 and found["share_ci95_to_95pct"] == [lo, hi]
    assert "f1_share" not in b.summarize([rec(0, 16, 0.66, 80)], [])["rows"][0]  # no all-tiles run: no share
    # a strategy run on fewer seeds is held to its own all-tiles mean (its seeds), not another's
    few = rows[:4] + [rec(2, 16, 0.90, 50), rec(2, 192, 0.95, 700), rec(0, 16, 0.67, 300, "active"),
                      rec(0, 192, 0.70, 800, "active")]
    found = {f["strategy"]: f for f in b.summarize(few, [])["findings"]}
    assert found["active"]["all_tiles_f1"] == pytest.approx(0.70) and found["active"]["tiles_to_95pct"] == 16
    assert found["random"]["all_tiles_f1"] == pytest.approx((0.70 + 0.60 + 0.95) / 3)


def test_report_shows_the_strategies_rerun_beside_the_labels_benchmark(tmp_path):
    """The selection strategies re-run at the fine-tuning default is its own subsection under the labels
    benchmark (its fine-tuning rule in words, its own reading) and adds a summary row per strategy."""
    report = _report()

    def row(strategy, tiles, f1, edits):
        return {"lab": "wue1", "start": "base", "strategy": strategy, "tiles": tiles, "all": tiles == 192,
                "seeds": 5, "f1": f1, "f1_ci95": [f1 - 0.05, f1 + 0.05], "edits": edits, "count_error": -1.0,
                "median_expert_f1": 0.73}

    def result(ft_steps, rows, findings):
        return {"settings": {"tile": 256, "ft_epochs": 12, "ft_steps": ft_steps, "base_epochs": 8, "base_steps": 40,
                             "seeds": [0, 1, 2, 3, 4]},
                "rows": rows, "findings": findings, "mode": "full", "wall_seconds": 600.0}

    strat = result(0, [row("random", 0, 0.46, 0), row("random", 16, 0.62, 85), row("random", 192, 0.68, 860),
                       row("active", 16, 0.60, 290) | {"f1_share": 0.96, "f1_share_ci95": [0.9, 1.02],
                                                       "edit_share": 0.33},
                       row("active", 192, 0.68, 860)],
                   [{"lab": "wue1", "start": "base", "strategy": "random", "edits_to_95pct": None,
                     "all_tiles_f1": 0.68, "all_tiles_edits": 860},
                    {"lab": "wue1", "start": "base", "strategy": "active", "edits_to_95pct": 290.0, "tiles_to_95pct": 16,
                     "share_ci95_to_95pct": [0.9, 1.02], "all_tiles_f1": 0.68, "all_tiles_edits": 860}])
    main = result(25, [row("random", 16, 0.60, 81)], [])
    main["companions"] = {"cfos_labels_strategies": strat}
    text = report.cfos_labels(main, tmp_path)
    head, _, sub = text.partition("### Selection strategies at the fine-tuning default")
    assert sub and "(12 x 25 steps of 8 crops" in head
    assert "12 epochs of steps of 8 crops of 128 px, each epoch about two passes" in sub
    assert "wue1 from base, random: no budget reached 95 % of the all-tiles F1 (0.680)" in sub
    assert ("wue1 from base, active: 95 % of the all-tiles F1 (0.680) with 16 tiles, 290 edits = 34 % of the "
            "all-tiles edits (per seed 90.0-102.0 % of it: the interval reaches below 95 %)") in sub
    assert "| 96.0 % [90.0, 102.0] / 33 % |" in sub and "| of all tiles per seed" in sub
    assert "of all tiles per seed" not in head  # results saved before the shares: no such column
    assert "wue1, 16 tiles: base/random 0.620 [0.570, 0.670], not distinguishable from base/active" in sub
    summ = report.summary({"cfos_labels": main})
    assert ("| c-FOS new lab wue1 from base, fine-tuning default, active selection: object F1 with 16 / 192 (all) "
            "tiles (5 seeds; edits) | 0.60 (290), 0.68 (860) |") in summ


def test_labels_paired_contrasts_difference_each_seed():
    """paired(): per-seed F1 differences of each start vs scratch (random tiles) and of active and balanced
    vs random from the base, on the seeds both arms ran; distinguishable when the t interval excludes 0;
    active vs random is not compared at all tiles (the same tile set); base-frozen vs base per strategy and
    budget."""
    b = _labels_bench()
    f1 = {("scratch", "random"): [0.5, 0.6, 0.7], ("pretrained", "random"): [0.6, 0.72, 0.79],
          ("base", "random"): [0.4, 0.8, 0.6], ("base", "active"): [0.45, 0.85, 0.65],
          ("base", "balanced"): [0.3, 0.9, 0.6]}
    rows = [{"lab": "inns1", "start": start, "strategy": strategy, "tiles": n, "all_tiles": 40, "seed": seed,
             "f1": v + (0.1 if n == 40 else 0.0)}
            for (start, strategy), vals in f1.items() for seed, v in enumerate(vals) for n in (4, 40)]
    rows = [r for r in rows if not (r["start"] == "pretrained" and r["seed"] == 2 and r["tiles"] == 40)]
    out = {(x["a"], x["b"], x["tiles"]): x for x in b.paired(rows)}
    pre = out[("pretrained/random", "scratch/random", 4)]
    assert pre["per_seed"] == pytest.approx([0.1, 0.12, 0.09]) and pre["distinguishable"]
    assert pre["ci95"][0] > 0 and pre["mean"] == pytest.approx(0.31 / 3)
    assert out[("pretrained/random", "scratch/random", 40)]["seeds"] == [0, 1]  # seed 2 missing in one arm
    assert not out[("base/random", "scratch/random", 4)]["distinguishable"]  # -0.1, +0.2, -0.1
    act = out[("base/active", "base/random", 4)]
    assert act["per_seed"] == pytest.approx([0.05] * 3) and act["distinguishable"]
    assert ("base/active", "base/random", 40) not in out
    bal = out[("base/balanced", "base/random", 4)]
    assert bal["per_seed"] == pytest.approx([-0.1, 0.1, 0.0]) and not bal["distinguishable"]
    assert ("base/balanced", "base/random", 40) not in out
    frozen = [{**r, "start": "base-frozen", "f1": r["f1"] - 0.02} for r in rows if r["start"] == "base"]
    out = {(x["a"], x["b"], x["tiles"]): x for x in b.paired(rows + frozen)}
    for n in (4, 40):  # the frozen encoder vs the same base fine-tuned whole, also at all tiles
        assert out[("base-frozen/random", "base/random", n)]["per_seed"] == pytest.approx([-0.02] * 3)
    assert out[("base-frozen/active", "base/active", 4)]["distinguishable"]


def test_report_sets_the_budget_probe_beside_the_same_fold_of_the_main_result(tmp_path):
    """report.cfos renders a cfos_budget companion: the probe's held-out F1 next to the main result's F1 on
    the same (protocol, fold, method, seed), and the probe's validation curve as a plot."""
    report = _report()

    def rec(tp, fp, fn, seed=0):
        return {"protocol": "within", "fold": "groups 0+4", "method": "default", "seed": seed, "lab": "wue1",
                "image": "wue1_0001", "tp": tp, "fp": fp, "fn": fn}

    settings = {"epochs": 4, "steps_per_epoch": 40, "batch": 8, "tile": 128}
    main = {"settings": settings, "records": [rec(3, 1, 6), rec(9, 0, 0, seed=1)]}
    probe = {"settings": {**settings, "epochs": 16}, "records": [rec(7, 1, 2)], "command": "probe",
             "fold_runs": [{"protocol": "within", "fold": "groups 0+4", "method": "default", "seed": 0, "lab": "wue1",
                            "best_epoch": 13, "epochs_run": 16, "train_seconds": 600,
                            "val_object_f1_curve": [0.1, 0.5, 0.7]}],
             "summary": [{"protocol": "within", "method": "default", "lab": "wue1", "f1": 0.78, "f1_ci95": [0.7, 0.8],
                          "median_expert_f1": 0.73, "images": 1, "count_error": -2.0, "f1_per_seed": [0.78]}],
             "ceiling": {"rows": [{"image": "wue1_0001", "expert": "expert_1", "tp": 7, "fp": 3, "fn": 3},  # F1 0.70
                                  {"image": "wue1_0001", "expert": "expert_2", "tp": 19, "fp": 6, "fn": 6},  # 0.76
                                  {"image": "wue1_0099", "expert": "expert_2", "tp": 0, "fp": 9, "fn": 9}]}}
    text = report._cfos_budget(main, probe, tmp_path)
    row, lab_row = [line for line in text.splitlines() if line.startswith("| wue1")]
    # 6/13 and 14/17; the main seed 1 is not this seed; the median expert over the fold's own image only
    assert "| 0.462 | **0.824** | 0.730 | 13 of 16 |" in row
    assert lab_row == "| wue1 | default | 1 | 1 | 0.462 | **0.780** [0.700, 0.800] | 0.780 | -2.0 | 0.730 | met |"
    assert "F1 at 160 steps" in text and "F1 at 640 steps" in text
    assert (tmp_path / "cfos_budget.png").stat().st_size > 0


def test_report_reads_a_probe_trained_with_the_train_jobs_steps_rule_from_its_fold_runs():
    """A probe run with ``--steps 0`` (steps_per_epoch None: the train job's per-epoch rule, per fold) is
    labelled with its epochs and the steps its folds ran, at the default arch's own crop size."""
    report = _report()
    settings = {"epochs": 24, "steps_per_epoch": 40, "batch": 8, "tile": 128, "archs": ["default"]}
    assert report._cfos_steps(settings, []) == ("960 steps", "40 steps of 8 x 128 px", "24 x 40 steps of 8 x 128 px")
    rule = {**settings, "epochs": 30, "steps_per_epoch": None, "default_tile": 256}
    runs = [{"steps_per_epoch": 25.0}, {"steps_per_epoch": 31.0}, {"steps_per_epoch": 25.0}]
    label, epoch, text = report._cfos_steps(rule, runs)
    assert (label, epoch) == ("30 x 25-31 steps", "25-31 steps of 8 x 256 px")
    assert text.startswith("30 epochs x 25-31 steps of 8 x 256 px (steps per epoch from the train job's rule")
    # both archs in one run: the reference crop (a run of both archs trains them at --default-tile 128)
    assert report._cfos_steps({**rule, "archs": ["reference", "default"]}, runs[:1])[1] == "25 steps of 8 x 128 px"


def test_report_shows_the_frozen_encoder_contrast_of_its_companion_run():
    """report: a cfos_labels_freeze companion adds its base-frozen vs base paired rows (and only those)."""
    report = _report()
    b = _labels_bench()
    rows = [{"lab": "inns1", "start": start, "strategy": "random", "tiles": 16, "all_tiles": 40, "seed": seed,
             "f1": 0.8 - (0.03 if start == "base-frozen" else 0.0) + 0.01 * seed}
            for start in ("scratch", "base", "base-frozen") for seed in range(3)]
    companion = {"paired": b.paired(rows), "command": "bench_cfos_labels.py --starts base base-frozen",
                 "date": "2026-11-29", "settings": {"seeds": [0, 1, 2], "ft_epochs": 4, "ft_steps": 25},
                 "notes": ["a note"]}
    text = "\n".join(report._cfos_labels_freeze(companion))
    assert "| inns1 | 16 | base-frozen/random - base/random | -0.030, -0.030, -0.030 |" in text
    assert "scratch/random" not in text and "a note" in text and "3 seeds, 4 x 25 steps" in text
    assert report._cfos_labels_freeze(None) == []


def test_labels_compare_pairs_budget_runs_by_seed_and_refuses_other_splits(tmp_path):
    """bench_cfos_labels --compare: runs of other base / fine-tuning budgets (base/random) are paired by seed
    against the first run listed; a seed that holds out another image in two runs is refused; the report
    shows both tables."""
    b = _labels_bench()
    report = _report()

    def run(path, ft_steps, f1s, test=("inns1_1108", "inns1_1117", "inns1_1124")):
        recs = [{"lab": "inns1", "seed": seed, "start": start, "strategy": "random", "tiles": n, "all_tiles": 40,
                 "f1": f1s[seed] + (0.5 if start == "scratch" else 0.0), "edit_cost": {"edits": 10 * n},
                 "count_error": 1.0, "test": [test[seed]], "pool": ["other"]}
                for seed in range(3) for n in (0, 4, 40) for start in ("base", "scratch")]
        settings = {"base_epochs": 4, "base_steps": 40, "ft_epochs": 4, "ft_steps": ft_steps}
        path.write_text(json.dumps({"records": recs, "settings": settings, "command": f"run {ft_steps}",
                                    "date": "2026-11-29T20:00"}))
        return path

    short = run(tmp_path / "a.json", 25, [0.70, 0.75, 0.80])
    long = run(tmp_path / "b.json", 75, [0.75, 0.79, 0.86])
    assert b.compare([short, long], tmp_path / "out", ["a note"]) == 0
    res = json.loads((tmp_path / "out" / "cfos_labels_budget.json").read_text())
    c = {x["tiles"]: x for x in res["contrasts"]}
    assert sorted(c) == [4, 40]  # no 0-tile contrast where both runs share the base budget
    assert c[4]["per_seed"] == pytest.approx([0.05, 0.04, 0.06]) and c[4]["distinguishable"]  # scratch not used
    assert c[4]["a"] == "base 4 x 40, fine-tune 4 x 75" and c[4]["b"] == "base 4 x 40, fine-tune 4 x 25"
    text = "\n".join(report._cfos_labels_budget(res))
    assert "| base 4 x 40, fine-tune 4 x 75 | inns1 | 40 (all) | 0.800 [" in text
    assert ("| inns1 | 4 | base 4 x 40, fine-tune 4 x 75 - base 4 x 40, fine-tune 4 x 25 | "
            "+0.050, +0.040, +0.060 |") in text
    assert "`run 25`" in text and "a note" in text
    settings = {"base_epochs": 4, "base_steps": 40, "ft_epochs": 4, "ft_steps": 25}
    assert b.budget_label({**settings, "ft_lr": 1e-4}) == "base 4 x 40, fine-tune 4 x 25 at learning rate 0.0001"
    assert b.budget_label({**settings, "ft_lr": 1e-3}) == b.budget_label(settings)  # the default, as before it
    assert b.budget_label({**settings, "ft_keep_start": True}).endswith("4 x 25, start kept unless beaten")
    auto = run(tmp_path / "d.json", 0, [0.72, 0.75, 0.80])  # --ft-steps 0: the train job's rule, steps recorded
    rec = json.loads(auto.read_text())
    for r in rec["records"]:
        r["train_steps"] = 300 if r["tiles"] == 4 else 900
        r["f1"] = {0: 0.5, 4: 0.7, 40: 0.8}[r["tiles"]] + 0.01 * r["seed"]  # 4 tiles: under 95 % of all
    auto.write_text(json.dumps(rec))
    assert b.compare([short, auto], tmp_path / "out", [], name="cfos_labels_steps") == 0
    steps = json.loads((tmp_path / "out" / "cfos_labels_steps.json").read_text())
    assert (tmp_path / "out" / "cfos_labels_budget.json").exists()  # the other comparison is kept
    text = "\n".join(report._cfos_labels_budget(steps))
    assert "| base 4 x 40, fine-tune 4 x auto (900 steps) | inns1 | 40 (all) |" in text
    assert "| base 4 x 40, fine-tune 4 x 25 | inns1 | 40 (all) |" in text  # a fixed budget shows no steps
    # the fewest tiles reaching 95 % of each run's own all-tiles F1, with their share of its edits
    assert ("base 4 x 40, fine-tune 4 x 25, inns1: 95 % of its all-tiles F1 (0.750) first with 0 tiles, 0 edits "
            "= 0 % of its edits; base 4 x 40, fine-tune 4 x auto, inns1: 95 % of its all-tiles F1 (0.810) first "
            "with 40 tiles (all)") in text
    other = run(tmp_path / "c.json", 75, [0.7, 0.7, 0.7], test=("inns1_1117", "inns1_1108", "inns1_1124"))
    with pytest.raises(SystemExit, match="other images"):
        b.compare([short, other], tmp_path / "out2", [])


def test_report_summary_has_a_new_lab_row_per_lab_from_the_base():
    """The BENCHMARKS summary lists, per new lab, the base model's F1 (edits) at each budget of random tiles."""
    report = _report()

    def row(lab, start, strategy, tiles, f1, edits):
        return {"lab": lab, "start": start, "strategy": strategy, "tiles": tiles, "all": tiles == 40, "seeds": 3,
                "f1": f1, "edits": edits, "median_expert_f1": 0.875}

    rows = [row("inns1", "base", "random", 16, 0.83, 146), row("inns1", "base", "random", 0, 0.55, 0),
            row("inns1", "base", "random", 40, 0.80, 369), row("inns1", "scratch", "random", 40, 0.7, 340),
            row("inns1", "base", "active", 4, 0.9, 60)]
    text = report.summary({"cfos_labels": {"rows": rows}})
    assert ("| c-FOS new lab inns1 from the base model: object F1 with 0 / 16 / 40 (all) random tiles (3 seeds; "
            "edits) | 0.55 (0), 0.83 (146), 0.80 (369) | 95 % of all tiles with <= 25 % of the edits; median "
            "expert 0.88 |") in text
    assert "0.90" not in text and "0.70" not in text  # neither active tiles nor scratch
    # a fine-tuning comparison adds a row for its run with the train job's per-epoch rule (--ft-steps 0) only
    auto, fixed = "base 4 x 40, fine-tune 12 x auto", "base 4 x 40, fine-tune 4 x 25"
    steps = {"runs": [{"label": fixed, "settings": {"ft_steps": 25}}, {"label": auto, "settings": {"ft_steps": 0}}],
             "rows": [{"run": run, "lab": "wue1", "tiles": n, "all": n == 192, "seeds": [0, 1, 2], "f1": f1,
                       "edits": 4.0 * n} for run, n, f1 in ((fixed, 192, 0.61), (auto, 192, 0.68), (auto, 16, 0.63))]}
    text = report.summary({"cfos_labels": {"rows": rows, "companions": {"cfos_labels_steps": steps}}})
    assert ("| c-FOS new lab wue1 from the base model, fine-tuning steps growing with the tiles: object F1 with 16 / "
            "192 (all) random tiles (3 seeds; edits) | 0.63 (64), 0.68 (768) |") in text
    assert "0.61" not in text  # the fixed-budget run is the labels table's own row, not repeated


def test_report_sets_the_default_arch_beside_the_reference_per_delivr_fold():
    """DELiVR: the default arch's companion run is read beside the reference net pooled and, when both ran
    the same test volumes per fold, fold by fold; other folds give no per-fold sentence."""
    report = _report()

    def run(f1s, volumes=(["a_0"], ["b_0"])):
        folds = [{"fold": i, "test_volumes": v, "object_f1": f}
                 for i, (f, v) in enumerate(zip(f1s, volumes, strict=True))]
        pooled = {"pixel_f1": 0.3, "object_f1": sum(f1s) / 2, "object_precision": 0.5, "object_recall": 0.4,
                  "count_mae": 1.0}
        return {"folds": folds, "pooled": pooled, "command": "bench_delivr.py", "date": "2026-12-07",
                "machine": {"cpus": 2, "platform": "Linux", "load_average_1min": 1.0, "versions": {}}}

    text = " ".join(report._delivr_default(run([0.5, 0.7]), run([0.2, 0.4])))
    assert "Object F1 per fold (same test volumes): 0: 0.500 vs 0.200, 1: 0.700 vs 0.400." in text
    assert "**0.600** vs 0.300" in text
    other = " ".join(report._delivr_default(run([0.5, 0.7], (["a_0"], ["c_0"])), run([0.2, 0.4])))
    assert "per fold" not in other
    assert report._delivr_default(None, run([0.2, 0.4])) == []


def test_report_pairs_weight_averaging_with_plain_training_image_by_image():
    """_cfos_pair: per fold both methods' pooled F1 and their difference; per lab the paired difference
    with its bootstrap interval, 'distinguishable' only when the interval excludes 0; images one method
    lacks are left out of both."""
    report = _report()

    def rec(method, fold, image, tp, fp, fn, seed=3):
        return {"protocol": "within", "method": method, "lab": "wue1", "fold": fold, "seed": seed, "image": image,
                "tp": tp, "fp": fp, "fn": fn}

    records = []
    for i in range(8):
        fold = "groups 0+4" if i < 4 else "groups 1+6"
        records += [rec("default", fold, f"w{i}", 10, 4, 4), rec("default+ema", fold, f"w{i}", 12, 3, 2)]
    records.append(rec("default", "groups 1+6", "w9", 0, 50, 50))  # no default+ema row: not paired
    runs = [{"method": m, "fold": f, "seed": 3, "best_epoch": e} for m, e in (("default", 20), ("default+ema", 23))
            for f in ("groups 0+4", "groups 1+6")]
    probe = {"settings": {"epochs": 24, "steps_per_epoch": 40, "batch": 8, "tile": 128, "weight_average": 0.99},
             "records": records, "fold_runs": runs, "command": "bench_cfos.py --weight-average 0.99",
             "summary": [{"lab": "wue1", "median_expert_f1": 0.726}]}
    text = report._cfos_pair(probe, "cfos_ema")
    assert "momentum 0.99 per step" in text and "24 x 40 steps of 8 x 128 px" in text
    assert "| wue1 | groups 0+4 | 3 | 4 | 0.714 | 0.828 | +0.113 | 20 / 23 |" in text
    lab = next(line for line in text.splitlines() if line.startswith("| wue1 | 3 |"))
    assert "| 8 | 0.714 [0.714, 0.714] | **0.828** [0.828, 0.828] | +0.113 [+0.113, +0.113] | yes | 0.726 | met |" in lab


def test_report_pairs_a_seed_ensemble_with_its_first_member_and_lists_every_member_alone():
    """_cfos_pair for cfos_ensemble: default+ensK against its first member (default) image by image, and
    each member's own pooled F1 (default, default/m1, ...) with their mean in its own column."""
    report = _report()

    def rec(method, image, tp, fp, fn):
        return {"protocol": "within", "method": method, "lab": "mue", "fold": f"fold_{image}", "seed": 0,
                "image": image, "tp": tp, "fp": fp, "fn": fn}

    records = [r for image in ("m1", "m2") for r in (
        rec("default", image, 8, 2, 2), rec("default/m1", image, 6, 4, 4), rec("default/m2", image, 7, 3, 3),
        rec("default+ens3", image, 9, 1, 1))]
    runs = [{"method": "default+ens3", "fold": f"fold_{i}", "seed": 0, "best_epoch": None} for i in ("m1", "m2")]
    probe = {"settings": {"epochs": 24, "steps_per_epoch": 40, "batch": 8, "tile": 128, "members": 3},
             "records": records, "fold_runs": runs, "summary": [{"lab": "mue", "median_expert_f1": 0.863}]}
    text = report._cfos_pair(probe, "cfos_ensemble")
    assert text.startswith("### Seed ensembles: default+ens3 vs default (`bench_cfos.py --members 3`")
    assert "TrainConfig(members=3)" in text and "24 x 40 steps of 8 x 128 px" in text
    assert "| mue | fold_m1 | 0 | 1 | 0.800 | 0.900 | +0.100 |" in text
    lab = next(line for line in text.splitlines() if line.startswith("| mue | 0 |"))
    assert "| yes | 0.800, 0.600, 0.700 (mean 0.700) | 0.863 | met |" in lab
    one = {**probe, "records": [r for r in records if r["image"] == "m1"]}  # one image: no interval to read
    lab = next(line for line in report._cfos_pair(one, "cfos_ensemble").splitlines() if line.startswith("| mue | 0 |"))
    assert "| - (one image) |" in lab and "[" not in lab  # nor a zero-width interval


def test_report_gives_an_ensembles_difference_on_each_training_seed():
    """_cfos_pair with two training seeds: the lab row pools both seeds' images and adds the difference on
    each seed alone (a gain on the pooled images that one seed reverses is visible)."""
    report = _report()

    def rec(method, image, seed, tp, fp, fn):
        return {"protocol": "within", "method": method, "lab": "mue", "fold": f"fold_{image}", "seed": seed,
                "image": image, "tp": tp, "fp": fp, "fn": fn}

    records = [r for image in ("m1", "m2") for r in (
        rec("default", image, 0, 8, 2, 2), rec("default+ens3", image, 0, 9, 1, 1),  # seed 0: +0.100
        rec("default", image, 1, 9, 1, 1), rec("default+ens3", image, 1, 8, 2, 2))]  # seed 1: -0.100
    probe = {"settings": {"epochs": 24, "steps_per_epoch": 40, "batch": 8, "tile": 128, "members": 3},
             "records": records, "fold_runs": [], "summary": [{"lab": "mue", "median_expert_f1": 0.863}]}
    text = report._cfos_pair(probe, "cfos_ensemble")
    assert "| difference per seed | distinguishable |" in text and "in the order of the seeds column" in text
    lab = next(line for line in text.splitlines() if line.startswith("| mue | 0, 1 |"))
    assert "| 2 | 0.850 [" in lab and "| +0.000 [" in lab and "| +0.100, -0.100 | no |" in lab
    one_seed = {**probe, "records": [r for r in records if r["seed"] == 0]}
    assert "difference per seed" not in report._cfos_pair(one_seed, "cfos_ensemble")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "segebarth-cfos").is_dir(), reason="../shared/data/segebarth-cfos missing")
def test_postprocess_study_rebuilds_the_validation_split_of_saved_models(tmp_path):
    """bench_cfos --save-models then bench_postprocess on the saved fold (a tiny ensemble of 2, real data):
    re-running calibration on the rebuilt validation images gives back each model's stored post-processing,
    every test image is scored under every variant, and the oracle (the same search on the test image,
    started from the calibrated post-processing) is never below the calibrated one."""
    cfos = _bench()
    spec = importlib.util.spec_from_file_location("bench_postprocess", BENCH / "bench_postprocess.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    models = tmp_path / "models"
    assert cfos.main(["--quick", "--arch", "default", "--members", "2", "--save-models", str(models),
                      "--out", str(tmp_path), "--name", "q"]) == 0
    (fold,) = list(models.iterdir())
    assert {p.name for p in fold.iterdir()} == {"fold.json", "model", "default", "default_m1"}
    assert study.main(["--models", str(models), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "cfos_postprocess.json").read_text())
    assert len(res["rows"]) == 3 and all(r["study"]["calibration_reproduced"] for r in res["rows"])
    for r in res["rows"]:
        (im,) = r["study"]["images"].values()
        assert set(study.VARIANTS) <= set(im)

        def f1(c):
            return 2 * c["tp"] / max(2 * c["tp"] + c["fp"] + c["fn"], 1)

        assert f1(im["oracle"]) >= f1(im["calibrated"])
    assert {(x["kind"], x["models"]) for x in res["summary"]} == {("model", 1), ("member", 2)}
    text = _report()._cfos_postprocess(res)
    assert text.startswith("### Post-processing: calibrated vs fixed, pooled and oracle")
    assert "| inns1 | model | oracle | 1 |" in text and "| inns1 | member | calibrated | 2 |" in text
    assert "| 1 / 1 |" in text and "| 2 / 2 |" in text  # calibration reproduced for every model
