"""Run every benchmark, then write BENCHMARKS.md and the plots from their results.

Each benchmark runs in its own Python process (fresh memory peak, no TensorFlow state shared) and
writes ``<out>/<name>.json``; a benchmark that fails is reported and the others still run; the report
is then rendered from every result in ``<out>`` (so ``--only`` re-measures some and keeps the rest).
Benchmarks on ../shared/data are skipped with a note when the data is not there.

    .venv/bin/python bench/run_all.py                 # everything, full size (about 2.5 h on 2 CPUs, plus about
                                                      # 2 h for cfos: 12 folds x 2 seeds of 120 training steps)
    .venv/bin/python bench/run_all.py --only speed dsb
    .venv/bin/python bench/run_all.py --quick         # smoke sizes into bench/out/quick (CI runs this)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, SHARED_DATA

# name -> (script, data folder it needs or None); the order is the order they run in
BENCHMARKS: dict[str, tuple[str, str | None]] = {
    "speed": ("bench_speed.py", None),
    "memory": ("bench_memory.py", None),
    "scale": ("bench_scale.py", None),
    "transport": ("bench_transport.py", None),
    "load": ("bench_load.py", None),
    "dsb": ("bench_dsb.py", "dsb2018"),
    "delivr": ("bench_delivr.py", "delivr-cfos"),
    "cfos": ("bench_cfos.py", "segebarth-cfos"),
    "cfos_labels": ("bench_cfos_labels.py", "segebarth-cfos"),
    "fnc_loo": ("bench_fnc_loo.py", "fnc"),
    "label_efficiency": ("bench_label_efficiency.py", "fnc"),
    "labelling_loop": ("labelling_loop.py", "fnc"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (minutes, not hours)")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these, keep the other results")
    ap.add_argument("--out", type=Path, help="results folder (default bench/results; --quick: bench/out/quick)")
    ap.add_argument("--markdown", type=Path, help="report file (default BENCHMARKS.md; --quick: <out>/BENCHMARKS.md)")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per benchmark")
    args = ap.parse_args(argv)
    out = args.out or (ROOT / "bench" / "out" / "quick" if args.quick else RESULTS)
    markdown = args.markdown or (out / "BENCHMARKS.md" if args.quick else ROOT / "BENCHMARKS.md")
    failed = []
    for name in args.only or BENCHMARKS:
        script, data = BENCHMARKS[name]
        if data and not (SHARED_DATA / data).is_dir():
            print(f"[{name}] skipped: ../shared/data/{data} is not there", file=sys.stderr)
            continue
        cmd = [sys.executable, str(ROOT / "bench" / script), "--out", str(out)] + (["--quick"] if args.quick else [])
        print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        print(f"[{name}] {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
        if rc != 0:
            failed.append(name)
    rc = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--results", str(out),
                         "--markdown", str(markdown)], cwd=ROOT).returncode
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())
