"""Smoke test of the speed benchmark (bench/bench_speed.py) in quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_speed_quick(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"  # keep the repository's BENCHMARKS.md untouched
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_speed.py"), "--quick", "--out", str(tmp_path),
                    "--markdown", str(markdown)], check=True, timeout=600, cwd=ROOT)
    result = json.loads((tmp_path / "speed.json").read_text())
    assert set(result["methods"]) == {"fosgate_tiled", "reference_loop", "single_pass"}
    assert all(m["seconds"] > 0 for m in result["methods"].values())
    assert result["max_abs_diff"] < 1e-3
    assert "## Speed" in markdown.read_text()


@pytest.mark.slow
def test_bench_dsb_quick(tmp_path):
    if not (ROOT.parent / "shared" / "data" / "dsb2018").is_dir():
        pytest.skip("../shared/data/dsb2018 not available")
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_dsb.py"), "--quick", "--out", str(tmp_path)],
                   check=True, timeout=900, cwd=ROOT)
    (row,) = json.loads((tmp_path / "dsb.json").read_text())["rows"]
    assert row["train_images"] == 1 and 0.0 <= row["ap50"] <= 1.0 and row["test_images"] == 5
