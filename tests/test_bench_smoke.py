"""Smoke test of the benchmarks: ``bench/run_all.py --quick`` runs every benchmark at smoke-test size
in its own process and renders the report (the README's one benchmark command, small)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(3000)  # 14 min alone on 2 idle cores with --jobs 2, more beside the other test worker
def test_run_all_quick_writes_every_result_and_the_report(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"  # the repository's BENCHMARKS.md and bench/results stay untouched
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--jobs", "2", "--out",
                           str(tmp_path), "--markdown", str(markdown)], capture_output=True, text=True, timeout=2900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    text = markdown.read_text()
    assert "Quick mode" in text

    speed = results["speed"]
    assert set(speed["methods"]) == {"fosgate_tiled", "reference_loop", "single_pass"}
    assert speed["max_abs_diff"] < 1e-3  # stitched == single pass
    assert speed["methods"]["reference_loop"]["lost_pixels"] > 0  # the reference leaves edge strips out
    memory = results["memory"]["rows"]
    assert [r["size"] for r in memory] == [2048, 4096] and all(r["peak_rss_mb"] > 0 for r in memory)
    assert (tmp_path / "memory.png").stat().st_size > 0
    scale = results["scale"]["rows"]
    assert [r["workers"] for r in scale] == [1, 2] and scale[0]["count"] == scale[1]["count"]
    assert results["transport"]["grpc_upload_mb_s"] > 0 and results["transport"]["grpc_download_mb_s"] > 0
    load = results["load"]
    assert load["errors"] == 0 and load["watchers"] == 64 and load["watchers_ended_cancelled"] == 64
    assert load["unary_p99_ms"] > 0 and load["health_p99_ms"] > 0
    for name in ("speed", "memory", "scale", "transport", "load"):
        assert results[name]["machine"]["cpus"] >= 1 and results[name]["date"]

    expected = {"cfos": "segebarth-cfos", "cfos_labels": "segebarth-cfos", "dsb": "dsb2018", "delivr": "delivr-cfos", "fnc_loo": "fnc", "label_efficiency": "fnc",
                "labelling_loop": "fnc", "cfos_loop": "segebarth-cfos"}
    for name, data in expected.items():
        if not (SHARED_DATA / data).is_dir():
            assert name not in results and "Not run yet: `.venv/bin/python bench/" in text
            continue
        assert name in results, f"{name} did not write its result"
    if "cfos" in results:
        c = results["cfos"]
        assert c["mode"] == "quick" and set(c["ceiling"]["labs"]) == {"inns1"}
        ceiling = c["ceiling"]["labs"]["inns1"]
        assert set(ceiling["experts"]) == {"expert_1", "expert_3", "expert_4", "expert_5"}
        assert 0.5 < ceiling["median_expert_f1"] <= 1.0  # experts agree with their consensus
        (fold,) = c["folds"]
        assert fold["test"] == ["inns1_1108"] and "inns1_1108" not in fold["train"] and len(fold["train"]) == 2
        (row,) = c["summary"]
        assert row["method"] == "reference" and row["images"] == 1 and 0.0 <= row["f1"] <= 1.0
        assert row["f1_ci95"][0] <= row["f1"] <= row["f1_ci95"][1] and row["median_expert_f1"] is not None
        e = row["errors"]  # every unmatched object is given one reason
        assert e["fn_missed"] + e["fn_merged"] + e["fn_shape"] == sum(x["fn"] for x in c["records"])
        assert e["fp_spurious"] + e["fp_split"] + e["fp_shape"] == sum(x["fp"] for x in c["records"])
        assert "Why objects go unmatched" in text
        assert "c-FOS counting vs the lab's experts" in text and (tmp_path / "cfos.png").stat().st_size > 0
    if "cfos_labels" in results:
        c = results["cfos_labels"]
        assert c["mode"] == "quick"
        got = {(r["start"], r["strategy"], r["tiles"]) for r in c["records"]}
        assert got == {("base", "random", 0), ("base", "active", 0), ("base", "random", 4), ("base", "active", 4),
                       ("scratch", "random", 4), ("scratch", "active", 4)}
        for r in c["records"]:
            assert r["lab"] == "inns1" and len(r["test"]) == 1 and not set(r["test"]) & set(r["pool"])
            assert 0.0 <= r["f1"] <= 1.0 and r["edit_cost"]["edits"] >= 0
            if r["tiles"] == 0:
                assert r["edit_cost"]["edits"] == 0
            if r["start"] == "scratch":  # no proposals: every true object of the chosen tiles is drawn
                assert r["edit_cost"]["drawn"] == r["edit_cost"]["true"] and r["edit_cost"]["proposed"] == 0
        assert "Labels a new lab needs" in text and (tmp_path / "cfos_labels.png").stat().st_size > 0
    if "cfos_loop" in results:  # round 0 = the base model from the other labs, round 1 = after one review
        c = results["cfos_loop"]
        assert c["mode"] == "quick" and [x["round"] for x in c["summary"]["rounds"]] == [0, 1]
        r0, r1 = sorted(c["records"], key=lambda x: x["round"])
        assert r0["edit_cost"]["edits"] == 0 and r0["tiles_reviewed"] == 0 and r1["tiles_reviewed"] == 2
        assert r1["labels"] == 2 and not set(r1["test"]) & set(r1["pool"]) and r1["lab"] == "inns1"
        cost = r1["edit_cost"]
        assert cost["kept"] + cost["redrawn"] + cost["deleted"] == cost["proposed"]
        assert cost["kept"] + cost["redrawn"] + cost["drawn"] == cost["true"] > 0
        assert 0.0 <= r1["f1"] <= 1.0 and "The labelling loop for a new lab" in text
    if "dsb" in results:
        (row,) = results["dsb"]["rows"]
        assert row["train_images"] == 1 and 0.0 <= row["ap50"] <= 1.0 and row["test_images"] == 5
        assert row["arch"] == "default"  # the quick run exercises the default model's path
        e = row["errors"]  # every unmatched object of the test images has exactly one cause
        assert (e["fn_missed"] + e["fn_merged"] + e["fn_shape"], e["fp_spurious"] + e["fp_split"] + e["fp_shape"]) == (
            row["fn"], row["fp"])
        assert (tmp_path / "dsb.png").stat().st_size > 0
    if "delivr" in results:
        (fold,) = results["delivr"]["folds"]
        assert fold["test_slices"] == 200 and 0.0 <= results["delivr"]["pooled"]["pixel_f1"] <= 1.0
        assert not set(fold["train_volumes"]) & set(fold["test_volumes"])
    if "fnc_loo" in results:
        (row,) = results["fnc_loo"]["rows"]
        # five training images of 1200+ rows: each gives its bottom band to validation (training.split_pairs)
        assert 0.0 < row["threshold"] < 1.0 and row["val_images"] == 5 and row["train_images"] == 5
    if "label_efficiency" in results:
        rows = results["label_efficiency"]["rows"]
        assert {(r["strategy"], r["fraction"]) for r in rows} == {
            (s, f) for s in ("random", "balanced", "active") for f in (0.1, 0.25)}
        by = {(r["strategy"], r["fraction"]): r["labelled_tiles"] for r in rows}
        assert by[("random", 0.1)] == by[("balanced", 0.1)] == by[("active", 0.1)] < by[("active", 0.25)]
        assert (tmp_path / "label_efficiency.png").stat().st_size > 0
    if "labelling_loop" in results:
        (row,) = results["labelling_loop"]["rounds"]
        assert row["tiles_reviewed"] == 8 and 0 <= row["tiles_touched"] <= 8 and row["labels"] == 8
        assert 0.0 <= row["pixel_f1"] <= 1.0 and 0.0 <= row["object_f1"] <= 1.0
        cost = row["edit_cost"]  # the reviewer's corrections, counted in objects
        assert cost == row["edit_cost_so_far"] and cost["edits"] == cost["redrawn"] + cost["deleted"] + cost["drawn"]
        assert cost["kept"] + cost["redrawn"] + cost["deleted"] == cost["proposed"]
        assert (cost["edits"] == 0) == (row["tiles_touched"] == 0)
        assert results["labelling_loop"]["retrain_from"] == "scratch"
