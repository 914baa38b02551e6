"""Scale: one slide predicted over a Dask LocalCluster of 1 vs 2 worker processes (same model, same tiles).

Each cluster is warmed up (workers load the model on a first prediction), then the second prediction
of a ``--size`` px synthetic slide is timed. Workers pin TensorFlow to ``--threads`` threads each, so
1 x 2 threads and 2 x 1 thread use the same cores; on a 2-core machine this shows the fan-out overhead
rather than a speed-up, which needs more cores or machines.

    .venv/bin/python bench/bench_scale.py [--size 3072] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, save

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=3072)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="a 1024 px slide")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.size = 1024
    import tifffile

    from fosgate.core.model import FosgateModel, PredictOptions
    from fosgate.core.normalize import Normalization
    from fosgate.core.slides import open_slide
    from fosgate.core.synthetic import generate_cfos
    from fosgate.distributed import DaskExecutor

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image, _, _ = generate_cfos(args.size, args.size, seed=0)
        tifffile.imwrite(tmp / "s.tif", image, tile=(512, 512))
        model = FosgateModel.create("unet2", 1, Normalization(), seed=0)
        model.save(tmp / "m")
        for workers in (1, 2):
            os.environ["TF_NUM_INTRAOP_THREADS"] = str(max(1, (os.cpu_count() or 2) // workers))
            ex = DaskExecutor(workers=workers, processes=True)
            try:
                times = []
                for run in range(2):
                    with open_slide(tmp / "s.tif") as slide:
                        t0 = time.perf_counter()
                        out = model.predict_slide(slide, tmp / f"o{workers}{run}", "s", PredictOptions(tile=args.tile),
                                                  backend=ex)
                        times.append(time.perf_counter() - t0)
                rows.append({"workers": workers, "seconds": times[1], "first_run_seconds": times[0], "count": out.count})
            finally:
                ex.close()
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    save(args.out, "scale", {"rows": rows, "size": args.size, "tile": args.tile,
                             "mode": "quick" if args.quick else "full"})
    print("| Dask workers | seconds (warm) | speed-up | cells |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['seconds']:.1f} | {r['speedup']:.2f} | {r['count']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
