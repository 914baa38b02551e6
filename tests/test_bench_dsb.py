"""bench/bench_dsb.py --merge without training: the default arch's rows join the stored reference rows of the
same test set, and the report draws one curve per arch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(n: int, ap: float, **extra) -> dict:
    return {"train_images": n, "steps": 500, "train_seconds": 1.0, "ap50": ap, "object_f1": ap, "pixel_f1": ap,
            "test_images": 50, **extra}


def test_dsb_merge_joins_archs_and_refuses_a_setting_twice(tmp_path):
    dsb, report = _load("bench_dsb"), _load("report")
    old = tmp_path / "old.json"  # saved before --arch: the reference net's rows, no arch field
    old.write_text(json.dumps({"rows": [_row(1, 0.73), _row(10, 0.77)], "seed": 0, "command": "bench_dsb.py"}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"rows": [_row(1, 0.75, arch="default"), _row(10, 0.82, arch="default")], "seed": 0,
                               "archs": ["default"], "command": "bench_dsb.py --arch default"}))
    assert dsb.merge([old, new], tmp_path / "out") == 0
    merged = json.loads((tmp_path / "out" / "dsb.json").read_text())
    assert [(r["arch"], r["train_images"]) for r in merged["rows"]] == [
        ("reference", 1), ("reference", 10), ("default", 1), ("default", 10)]
    assert merged["archs"] == ["reference", "default"] and len(merged["parts"]) == 2 and "partial" not in merged
    text = report.dsb(merged, tmp_path)
    assert "| default | 10 | 500 | 1 | 0.820 |" in text and "`bench_dsb.py --arch default`" in text
    assert (tmp_path / "dsb.png").stat().st_size > 0
    cut = tmp_path / "cut.json"  # a run cut for time: the merged result says it is partial
    cut.write_text(json.dumps({"rows": [_row(5, 0.8, arch="default")], "seed": 0, "partial": "1 of 4 settings"}))
    assert dsb.merge([old, cut], tmp_path / "cut") == 0
    assert "1 of 4 settings" in json.loads((tmp_path / "cut" / "dsb.json").read_text())["partial"]
    with pytest.raises(SystemExit, match="two parts"):
        dsb.merge([old, old], tmp_path / "again")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": [_row(5, 0.8, arch="default", test_images=20)], "seed": 0}))
    with pytest.raises(SystemExit, match="differ"):
        dsb.merge([old, other], tmp_path / "again")


def test_dsb_merge_supersede_replaces_a_rerun_setting_and_keeps_the_old_row(tmp_path):
    """A stored merged result plus a rerun of one setting with newer code: with --supersede the rerun's row
    replaces the stored one, the replaced row is kept under ``superseded`` and every part's stamp is kept
    (the stored result's own parts, then the rerun)."""
    dsb = _load("bench_dsb")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"rows": [_row(1, 0.73, arch="reference")], "seed": 0, "command": "run a"}))
    b.write_text(json.dumps({"rows": [_row(1, 0.51, arch="default")], "seed": 0, "command": "run b"}))
    assert dsb.merge([a, b], tmp_path / "stored") == 0
    rerun = tmp_path / "rerun.json"
    rerun.write_text(json.dumps({"rows": [_row(1, 0.70, arch="default")], "seed": 0, "command": "run c"}))
    stored = tmp_path / "stored" / "dsb.json"
    with pytest.raises(SystemExit, match="supersede"):
        dsb.merge([stored, rerun], tmp_path / "out")
    assert dsb.merge([stored, rerun], tmp_path / "out", supersede=True) == 0
    merged = json.loads((tmp_path / "out" / "dsb.json").read_text())
    assert [(r["arch"], r["train_images"], r["ap50"]) for r in merged["rows"]] == [
        ("reference", 1, 0.73), ("default", 1, 0.70)]
    assert [r["ap50"] for r in merged["superseded"]] == [0.51]
    assert [p["command"] for p in merged["parts"]] == ["run a", "run b", "run c"]
    text = _load("report").dsb(merged, tmp_path)
    assert "Rows replaced by a rerun with newer code (AP@0.5 then): default 1 image(s) 0.510." in text


def test_dsb_report_shows_a_steps_sweep_beside_the_main_table(tmp_path):
    """A ``dsb_budget`` run (several --steps in one run) is shown under the main table: one row per
    (arch, images, steps) and the change of AP@0.5 from the smallest budget."""
    report = _load("report")
    main = {"rows": [_row(356, 0.76, arch="default")], "seed": 0, "command": "bench_dsb.py"}
    sweep = {"rows": [_row(356, 0.76, arch="default", best_epoch=20),
                      {**_row(356, 0.81, arch="default", best_epoch=71), "steps": 2000}],
             "seed": 0, "command": "bench_dsb.py --steps 500 2000 --name dsb_budget", "date": "2026-11-29T20:00"}
    plain = report.dsb(main, tmp_path)
    assert "Training budget" not in plain
    text = report.dsb({**main, "companions": {"dsb_budget": sweep}}, tmp_path)
    assert "| default | 356 | 2000 | 71 | 1 | 0.810 |" in text
    assert "default, 356 images: 500 -> 2000 steps +0.050" in text
    assert "`bench_dsb.py --steps 500 2000 --name dsb_budget`" in text


def test_dsb_training_seeds_draw_other_images_and_the_report_shows_their_spread(tmp_path):
    """--train-seeds: seed 0 keeps the stored rows' draw, another seed a permutation of the same non-test
    images; the seed summary gives mean, 95 % interval and each seed's post-processing, shown under the
    main table."""
    dsb, report = _load("bench_dsb"), _load("report")
    pool = [f"img{i}.png" for i in range(20)]
    assert dsb.training_draw(pool, 0) == pool
    other = dsb.training_draw(pool, 1)
    assert sorted(other) == sorted(pool) and other != pool and other == dsb.training_draw(pool, 1)
    post = {"threshold": 0.6, "seed_threshold": 0.5, "min_size_px": 20, "split_touching": True}
    rows = [_row(1, ap, arch="default", train_seed=s, post={**post, "min_size_px": 20 + s})
            for s, ap in enumerate((0.50, 0.70, 0.72))] + [_row(1, 0.75, arch="reference", train_seed=s)
                                                           for s in range(3)]
    summary = dsb.seed_summary(rows)
    by_arch = {x["arch"]: x for x in summary}
    assert by_arch["default"]["ap50"] == pytest.approx(0.64) and by_arch["default"]["seeds"] == [0, 1, 2]
    lo, hi = by_arch["default"]["ap50_ci95"]
    assert lo < 0.50 and hi > 0.72  # three seeds this far apart: a wide interval
    assert by_arch["reference"]["ap50_ci95"] == pytest.approx([0.75, 0.75])
    main = {"rows": [_row(1, 0.51, arch="default")], "seed": 0, "command": "bench_dsb.py"}
    seeds = {"rows": rows, "seed_summary": summary, "seed": 0, "date": "2026-12-07T06:00",
             "command": "bench_dsb.py --train-seeds 0 1 2 --sizes 1 --name dsb_seeds"}
    text = report.dsb({**main, "companions": {"dsb_seeds": seeds}}, tmp_path)
    assert "| default | 1 | 500 | 3 | 0.640 [" in text and "| 0.500, 0.700, 0.720 |" in text
    assert "0.6 / 21 px / distance split" in text and "| fixed; fixed; fixed |" in text
    assert "`bench_dsb.py --train-seeds 0 1 2 --sizes 1 --name dsb_seeds`" in text


def test_dsb_merge_joins_training_seeds_run_as_separate_jobs(tmp_path):
    """Training seeds run as separate jobs (one per arch, or seed 0 cut for time and 1-2 later) merge into one
    dsb_seeds result: the key includes the training seed, the seed summary is recomputed over all parts, a
    part cut for time no longer marks the result partial once the other parts fill the grid, and seeded rows
    are not mixed with unseeded ones."""
    dsb = _load("bench_dsb")

    def part(name, rows, **extra):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"rows": rows, "seed": 0, "command": f"run {name}", **extra}))
        return path

    first = part("s0", [_row(1, 0.72, arch="default", train_seed=0), _row(1, 0.71, arch="reference", train_seed=0)],
                 train_seeds=[0, 1, 2], partial="2 of 6 settings")
    default = part("d", [_row(1, ap, arch="default", train_seed=s) for s, ap in ((1, 0.70), (2, 0.74))])
    ref = part("r", [_row(1, ap, arch="reference", train_seed=s) for s, ap in ((1, 0.69), (2, 0.73))])
    assert dsb.merge([first, default], tmp_path / "half", name="dsb_seeds") == 0
    half = json.loads((tmp_path / "half" / "dsb_seeds.json").read_text())
    assert "2 of 6 settings" in half["partial"]  # the reference net's seeds 1-2 are missing
    assert dsb.merge([first, default, ref], tmp_path / "out", name="dsb_seeds") == 0
    merged = json.loads((tmp_path / "out" / "dsb_seeds.json").read_text())
    assert "partial" not in merged and merged["train_seeds"] == [0, 1, 2]
    assert merged["parts"][0]["partial"] == "2 of 6 settings"
    by_arch = {x["arch"]: x for x in merged["seed_summary"]}
    assert by_arch["default"]["seeds"] == [0, 1, 2] and by_arch["default"]["ap50"] == pytest.approx(0.72)
    assert by_arch["reference"]["ap50_per_seed"] == pytest.approx([0.71, 0.69, 0.73])
    text = _load("report").dsb({"rows": [_row(1, 0.51, arch="default")], "seed": 0,
                                "companions": {"dsb_seeds": merged}}, tmp_path)
    assert "run in parts, merged: `run s0`" in text and "`run r`" in text
    # per seed default - reference: +0.01, +0.01, +0.01: a paired contrast with no spread
    assert "paired by training seed" in text and "1 image(s) +0.010 [+0.010, +0.010] (distinguishable)" in text
    with pytest.raises(SystemExit, match="two parts"):
        dsb.merge([first, default, default], tmp_path / "again", name="dsb_seeds")
    rerun = part("rerun", [_row(1, 0.80, arch="default", train_seed=0)], machine={"platform": "other-vm"})
    assert dsb.merge([tmp_path / "out" / "dsb_seeds.json", rerun], tmp_path / "re", supersede=True,
                     name="dsb_seeds") == 0
    again = json.loads((tmp_path / "re" / "dsb_seeds.json").read_text())
    assert again["machine"] == {"platform": "other-vm"}  # the last part whose rows are kept
    assert [r["ap50"] for r in again["superseded"]] == [0.72]
    assert "Rows replaced by a rerun (AP@0.5 then): default 1 image(s) seed 0 0.720." in _load("report").dsb(
        {"rows": [_row(1, 0.51, arch="default")], "seed": 0, "companions": {"dsb_seeds": again}}, tmp_path)
    plain = part("plain", [_row(1, 0.75, arch="default")])
    with pytest.raises(SystemExit, match="cannot be joined"):
        dsb.merge([first, plain], tmp_path / "again", name="dsb_seeds")


def test_dsb_report_says_why_objects_go_unmatched_where_rows_carry_the_breakdown(tmp_path):
    """Rows with ``errors`` (error_breakdown summed over the test images) get a table of causes: FN and FP
    the sums of their three causes; older rows without it get no table."""
    report = _load("report")
    errs = {"fn_missed": 5, "fn_merged": 7, "fn_shape": 2, "fp_spurious": 3, "fp_split": 1, "fp_shape": 4}
    rows = [_row(10, 0.74, arch="default", errors=errs), _row(10, 0.75, arch="reference")]
    text = report.dsb({"rows": rows, "seed": 0, "command": "bench_dsb.py"}, tmp_path)
    assert "summed over the test images" in text
    assert "| default | 10 | 14 | 5 | 7 | 2 | 8 | 3 | 1 | 4 |" in text
    assert "| reference | 10 | " not in text.split("Why objects go unmatched")[1].split("\n\n")[1]
    assert "Why objects go unmatched" not in report.dsb({"rows": rows[1:], "seed": 0, "command": "x"}, tmp_path)
