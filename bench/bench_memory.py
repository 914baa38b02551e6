"""Peak memory of whole-slide prediction vs slide size: it must stay flat.

For each size, a child process (fresh interpreter; its peak is read from ``VmHWM``, which, unlike
``ru_maxrss``, does not carry over the parent's peak across exec) writes a tiled
BigTIFF slide of that size (a 512-px c-fos-like field repeated, so generation is fast), predicts it
with ``fosgate.core.pipeline.predict_slide`` (all six outputs) and reports its peak RSS and time.

    .venv/bin/python bench/bench_memory.py [--sizes 4096 10000 20000 50000] [--model tiny|reference]
        [--budget-gb 1.5] [--out bench/results]

``--model threshold`` (default: a fixed 3x3 mean + sigmoid, i.e. "bright blobs", a realistic mask in
seconds) keeps the run short: what is measured is the pipeline's own memory (reading, stitching,
labelling, writing the six outputs), which does not depend on the network; a U-Net window's activation
memory is bounded by ``--budget-gb`` for any model (``--model reference`` measures that too, slowly;
an untrained ``tiny`` U-Net gives a noise mask with a huge number of objects).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, save

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
import tifffile
from fosgate.core.model import FosgateModel, PredictOptions
from fosgate.core.normalize import Normalization
from fosgate.core.slides import open_slide
from fosgate.core.synthetic import generate_cfos
from fosgate.core.unet import build_unet, receptive_field_radius

size, model_kind, budget, work = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
field, _, kinds = generate_cfos(1024, 1024, seed=2)
field = field[:512, :512]
def tiles():
    for _ in range((-(-size // 512)) ** 2):
        yield field
path = work / f"slide_{size}.tif"
tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint8, tile=(512, 512), compression="zlib",
                 bigtiff=True)
if model_kind in ("threshold", "threshold2"):  # threshold2: a second (centre-like) map, as unet2 has
    import keras
    k = 2 if model_kind == "threshold2" else 1
    inp = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(k, 3, padding="same", activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.full((3, 3, 1, k), 20 / 9, np.float32), np.full(k, -10.0, np.float32)])
    rf = 1
else:
    filters = (2, 4, 8, 16, 32) if model_kind == "tiny" else (16, 32, 64, 128, 256)
    model = build_unet(1, filters=filters, seed=0, outputs=2 if model_kind == "unet2" else 1)
    rf = receptive_field_radius(model)
def peak_mb():
    # VmHWM belongs to this process image; ru_maxrss is not reset by exec and would report the parent's peak
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak_mb()
t0 = time.perf_counter()
with open_slide(path) as slide:
    fm = FosgateModel(model, "reference" if model.output_shape[-1] == 1 else "unet2", 1, Normalization(mode="range"), rf)
    out = fm.predict_slide(slide, work, f"s{size}", PredictOptions(memory_budget=budget, threshold=0.5))
print(json.dumps({"size": size, "model": model_kind, "peak_rss_mb": peak_mb(),
                  "rss_before_predict_mb": base, "seconds": time.perf_counter() - t0, "tile": out.tile, "windows": out.windows,
                  "halo": out.halo, "objects": out.count}))
"""


def measure(size: int, model: str, budget_gb: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(size), model, str(budget_gb * 2**30), tmp],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 10000, 20000, 50000])
    ap.add_argument("--model", choices=["threshold", "threshold2", "tiny", "reference", "unet2"], default="threshold")
    ap.add_argument("--budget-gb", type=float, default=1.5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="2048 and 4096 px only")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = [2048, 4096]
    rows = [measure(s, args.model, args.budget_gb) for s in args.sizes]
    save(args.out, "memory", {"rows": rows, "model": args.model, "budget_gb": args.budget_gb,
                              "mode": "quick" if args.quick else "full"})
    print("| slide (px) | peak RSS (MB) | seconds | tile | objects |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} x {r['size']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} | {r['tile']} | {r['objects']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
