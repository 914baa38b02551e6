"""Run every benchmark, then write BENCHMARKS.md and the plots from their results.

Each benchmark runs in its own Python process (fresh memory peak, no TensorFlow state shared) and
writes ``<out>/<name>.json``; a benchmark that fails is reported and the others still run; the report
is then rendered from every result in ``<out>`` (so ``--only`` re-measures some and keeps the rest).
Benchmarks on ../shared/data are skipped with a note when the data is not there.

    .venv/bin/python bench/run_all.py                 # everything, full size (about 2.5 h on 2 CPUs, plus about
                                                      # 2 h for cfos: 12 folds x 2 seeds of 120 training steps)
    .venv/bin/python bench/run_all.py --only speed dsb
    .venv/bin/python bench/run_all.py --quick --jobs 2  # smoke sizes into bench/out/quick (CI runs this)

``--jobs N`` runs up to N of the data benchmarks at once (their output is printed when each ends); the
machine benchmarks (speed, memory, scale, transport, load) always run alone first, so the times they
report are not shared with another benchmark. Keep ``--jobs 1`` (the default) for published full runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import RESULTS, ROOT, SHARED_DATA

# name -> (script, data folder it needs or None); the order is the order they run in
BENCHMARKS: dict[str, tuple[str, str | None]] = {
    "speed": ("bench_speed.py", None),
    "memory": ("bench_memory.py", None),
    "scale": ("bench_scale.py", None),
    "transport": ("bench_transport.py", None),
    "load": ("bench_load.py", None),
    # the data benchmarks, longest quick run first (so --jobs packs them well)
    "label_efficiency": ("bench_label_efficiency.py", "fnc"),
    "cfos_labels": ("bench_cfos_labels.py", "segebarth-cfos"),
    "labelling_loop": ("labelling_loop.py", "fnc"),
    "cfos_loop": ("cfos_loop.py", "segebarth-cfos"),
    "delivr": ("bench_delivr.py", "delivr-cfos"),
    "fnc_loo": ("bench_fnc_loo.py", "fnc"),
    "dsb": ("bench_dsb.py", "dsb2018"),
    "cfos": ("bench_cfos.py", "segebarth-cfos"),
}
SOLO = ("speed", "memory", "scale", "transport", "load")  # they measure the machine: never run next to another


def run_one(name: str, out: Path, quick: bool, timeout: float, capture: bool) -> bool:
    """Run benchmark ``name`` in its own process; True when it exited 0. With ``capture`` its output is
    printed in one block when it ends (so parallel runs do not interleave line by line)."""
    script, _ = BENCHMARKS[name]
    cmd = [sys.executable, str(ROOT / "bench" / script), "--out", str(out)] + (["--quick"] if quick else [])
    print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    text = ""
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout, capture_output=capture, text=True)
        rc: int | str = proc.returncode
        text = (proc.stdout or "") + (proc.stderr or "")
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        text = str(e.stdout or "") + str(e.stderr or "")
    if capture and text:
        print("".join(f"[{name}] {line}\n" for line in text.rstrip().splitlines()[-60:]), file=sys.stderr, end="",
              flush=True)
    print(f"[{name}] {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)
    return rc == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (minutes, not hours)")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these, keep the other results")
    ap.add_argument("--out", type=Path, help="results folder (default bench/results; --quick: bench/out/quick)")
    ap.add_argument("--markdown", type=Path, help="report file (default BENCHMARKS.md; --quick: <out>/BENCHMARKS.md)")
    ap.add_argument("--jobs", type=int, default=1, help="data benchmarks run at once (the machine ones run alone)")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per benchmark")
    args = ap.parse_args(argv)
    out = args.out or (ROOT / "bench" / "out" / "quick" if args.quick else RESULTS)
    markdown = args.markdown or (out / "BENCHMARKS.md" if args.quick else ROOT / "BENCHMARKS.md")
    names = []
    for name in args.only or BENCHMARKS:
        data = BENCHMARKS[name][1]
        if data and not (SHARED_DATA / data).is_dir():
            print(f"[{name}] skipped: ../shared/data/{data} is not there", file=sys.stderr)
            continue
        names.append(name)
    failed = [n for n in names if n in SOLO and not run_one(n, out, args.quick, args.timeout, capture=False)]
    rest = [n for n in names if n not in SOLO]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        ok = list(pool.map(lambda n: run_one(n, out, args.quick, args.timeout, capture=args.jobs > 1), rest))
    failed += [n for n, good in zip(rest, ok, strict=True) if not good]
    rc = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--results", str(out),
                         "--markdown", str(markdown)], cwd=ROOT).returncode
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())
