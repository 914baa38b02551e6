"""Peak RSS of whole-slide prediction does not grow with the slide (bench/bench_memory.py, child processes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_peak_rss_is_flat_up_to_12k_square():
    """Peak RSS of a 12000^2 prediction (8.6x the pixels of 4096^2) stays within 400 MB of the 4096^2 one: one
    float32 map of the whole slide alone would be 576 MB. (bench/bench_memory.py measures up to 20000^2; the test
    stopped doing so to keep CI under ~40 minutes: 308 s there.)"""
    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))  # bench_memory imports bench/common.py
    spec = importlib.util.spec_from_file_location("bench_memory", Path(__file__).resolve().parents[1] / "bench" /
                                                  "bench_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # two output maps (foreground + centre, as the default unet2): the centre map and the seeded watershed are
    # on the path too
    small = bench.measure(4096, "threshold2", 1.5)
    big = bench.measure(12000, "threshold2", 1.5)
    print(f"\npeak RSS: 4096^2 {small['peak_rss_mb']:.0f} MB, 12000^2 {big['peak_rss_mb']:.0f} MB "
          f"({big['seconds']:.0f} s, {big['objects']} objects)")
    assert big["peak_rss_mb"] < 2000
    assert big["peak_rss_mb"] - small["peak_rss_mb"] < 400  # 8.6x the pixels, (almost) the same memory
