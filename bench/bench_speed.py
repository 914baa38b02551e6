"""Prediction speed: fosgate's stitched prediction vs the reference tile loop vs one whole-image pass.

Issue "Benchmarks", part 2 "Speed". One synthetic c-fos slide (``fosgate.core.synthetic.generate_cfos``,
normalised as ``image / 255``) and one model (``fosgate.core.unet.build_unet(1, seed=0)``, untrained:
speed does not depend on the weights) are timed three ways in one run:

1. ``fosgate_tiled``: ``fosgate.core.predict.predict_tiled`` over an in-memory image, with the window shape
   chosen by ``auto_tile(h, w, 1, memory_budget_bytes=1.5e9, halo=halo)`` and
   ``halo = required_halo(receptive_field_radius(model))`` (what the server does).
2. ``reference_loop``: a faithful re-implementation of the reference recipe's prediction loop (Cai,
   "Advanced Image Segmentation Techniques ... C-fos"; the reference notebooks' "crop" + "predict"
   steps): the slide is cut into 128 x 128 px tiles stepping by 120 px (a 4 px margin on each side,
   tiles at y, x = 0, 120, 240, ... while the tile fits inside the slide); each tile is written to a
   PNG file and read back (the notebooks do this with cv2/PIL; PIL here), normalised, and predicted
   with its own ``model.predict(tile[None], verbose=0)`` call; the prediction is stitched by keeping
   only the centre 120 x 120 px of each tile. As in the reference, the outer 4 px of the slide and
   any strip at the bottom/right that no full tile reaches get no prediction (reported as
   ``lost_pixels``), and the 4 px margin is far smaller than the network's receptive field, so the
   result also differs from a single pass inside the covered area (``max_abs_diff_covered``).
3. ``single_pass``: ``fosgate.core.predict.predict_single_pass`` over the whole image: the compute floor.

Every method is warmed up first (fosgate and the single pass with one untimed run over the whole slide,
the reference loop on a 256-px crop: its input shape never changes), so graph tracing, per-shape
compilation and first-call set-up are not timed. Then the three are timed in turn, ``--repeats`` times
(3 in full mode), and each method's median is reported, so a passing load spike hits all methods alike and
none twice. Throughput is slide megapixels per second for all three (the reference loop is credited with
the whole slide although it leaves the edges out). Targets: fosgate >= 10x faster than the reference
loop, and fosgate time / single-pass time <= 1.15. ``max_abs_diff`` is max |fosgate - single pass|.

    .venv/bin/python bench/bench_speed.py [--quick] [--out bench/results]

Writes ``<out>/speed.json`` and prints a Markdown table (``bench/report.py`` renders BENCHMARKS.md).
Full mode: a 2048 x 2048 slide (``--size``); ``--quick``: 512 x 512. Other Keras backends run it too
(``KERAS_BACKEND=jax``: the GPU check, where TensorFlow is not installed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, save
from PIL import Image
from report import speed as speed_section

ROOT = Path(__file__).resolve().parents[1]

REF_TILE = 128
REF_MARGIN = 4
MEMORY_BUDGET = 1.5e9
SWEEP_BUDGETS = (3e9, 6e9)
REFERENCE_RADIUS = 94  # receptive_field_radius(build_unet(1)) measured with TensorFlow
TARGET_SPEEDUP = 10.0
TARGET_OVERHEAD = 1.15
METHODS = ("fosgate_tiled", "reference_loop", "single_pass")


def normalise(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32)[..., None] / 255


def fosgate_tiled(model: Any, image: np.ndarray, tile: tuple[int, int], halo: int) -> np.ndarray:
    """Stitched prediction exactly as ``predict_array`` does it (reader over the in-memory image)."""
    from fosgate.core.predict import predict_tiled

    h, w = image.shape[:2]
    out = np.zeros((h, w), np.float32)

    def on_block(cy0: int, cy1: int, cx0: int, cx1: int, prob: np.ndarray) -> None:
        out[cy0:cy1, cx0:cx1] = prob

    predict_tiled(model, lambda y0, y1, x0, x1: image[y0:y1, x0:x1], h, w, tile=tile, halo=halo,
                  on_block=on_block)
    return out


def reference_origins(n: int, tile: int = REF_TILE, margin: int = REF_MARGIN) -> list[int]:
    """Tile origins along one axis: 0, step, 2 * step, ... while a whole tile fits."""
    return list(range(0, n - tile + 1, tile - 2 * margin))


def reference_loop(model: Any, image_u8: np.ndarray, workdir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The reference recipe's loop (module docstring). Returns (stitched, covered mask, phase timings)."""
    h, w = image_u8.shape
    ys, xs = reference_origins(h), reference_origins(w)
    t0 = time.perf_counter()
    paths = []
    for y in ys:  # the "crop" step: every tile to a PNG file
        for x in xs:
            path = workdir / f"tile_{y}_{x}.png"
            Image.fromarray(image_u8[y:y + REF_TILE, x:x + REF_TILE]).save(path)
            paths.append((y, x, path))
    t1 = time.perf_counter()
    out = np.zeros((h, w), np.float32)
    covered = np.zeros((h, w), bool)
    m, core = REF_MARGIN, REF_TILE - REF_MARGIN
    for y, x, path in paths:  # the "predict" step: read back, one predict call per tile, keep the centre
        tile = normalise(np.asarray(Image.open(path)))
        pred = model.predict(tile[None], verbose=0)[0, ..., 0]
        out[y + m:y + core, x + m:x + core] = pred[m:core, m:core]
        covered[y + m:y + core, x + m:x + core] = True
    t2 = time.perf_counter()
    return out, covered, {"crop_write_seconds": t1 - t0, "read_predict_stitch_seconds": t2 - t1,
                          "tiles": len(paths)}


def accelerator(backend: str) -> str:
    """The GPU the Keras backend computes on, or "" for CPU."""
    try:
        if backend == "jax":
            import jax

            return ", ".join(d.device_kind for d in jax.devices() if d.platform == "gpu")
        if backend == "tensorflow":
            import tensorflow as tf

            return ", ".join(d.name for d in tf.config.list_physical_devices("GPU"))
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except Exception:  # noqa: BLE001 - provenance only
        return ""
    return ""


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def window_shape(windows: list) -> list[int]:
    return [windows[0].wy1 - windows[0].wy0, windows[0].wx1 - windows[0].wx0]


def median_time(fn: Any, *args: Any, times: list[float]) -> Any:
    """Run ``fn`` once, append its seconds to ``times``, return its result."""
    result, sec = timed(fn, *args)
    times.append(sec)
    return result


def run(size: int, seed: int, quick: bool, repeats: int = 3) -> dict:
    from fosgate.core.predict import auto_tile, predict_single_pass
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.tiling import plan_windows
    from fosgate.core.unet import build_unet, receptive_field_radius, required_halo

    image_u8, _, _ = generate_cfos(size, size, seed)
    image = normalise(image_u8)
    h, w = image.shape[:2]
    import keras

    model = build_unet(1, seed=0)
    backend = keras.backend.backend()
    # the measurement uses TensorFlow gradients; other Keras backends (the GPU check runs Keras on JAX
    # where TensorFlow is not installed) take the value measured for this same architecture
    radius = receptive_field_radius(model) if backend == "tensorflow" else REFERENCE_RADIUS
    halo = required_halo(radius)
    tile = auto_tile(h, w, 1, memory_budget_bytes=MEMORY_BUDGET, halo=halo)
    windows = plan_windows(h, w, tile, halo)
    window_pixels = sum((v.wy1 - v.wy0) * (v.wx1 - v.wx0) for v in windows)

    # Warm-up (tracing, per-shape compilation on JAX/XLA, oneDNN primitive set-up, first PNG codec use):
    # fosgate and the single pass once on the whole slide (their input shapes), the reference loop on a
    # small crop (its shape is always 128 x 128).
    fosgate_tiled(model, image, tile, halo)
    predict_single_pass(model, image)
    with tempfile.TemporaryDirectory() as tmp:
        reference_loop(model, image_u8[:256, :256], Path(tmp))

    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        tiled = median_time(fosgate_tiled, model, image, tile, halo, times=times["fosgate_tiled"])
        with tempfile.TemporaryDirectory() as tmp:
            ref, covered, phases = median_time(reference_loop, model, image_u8, Path(tmp),
                                               times=times["reference_loop"])
        single = median_time(predict_single_pass, model, image, times=times["single_pass"])
    t_fosgate, t_ref, t_single = (float(np.median(times[m])) for m in METHODS)
    # The halo overhead is set by the window budget: time the larger budgets a user can give
    # (``--predict-memory-gb``) that change the tiling, up to one window for the whole slide.
    sweep = []
    for budget in SWEEP_BUDGETS:
        t_b = auto_tile(h, w, 1, memory_budget_bytes=budget, halo=halo)
        if t_b == tile or any(tuple(x["tile"]) == t_b for x in sweep):
            continue
        wins = plan_windows(h, w, t_b, halo)
        fosgate_tiled(model, image, t_b, halo)  # warm-up at this window shape
        secs: list[float] = []
        for _ in range(repeats):
            out_b = median_time(fosgate_tiled, model, image, t_b, halo, times=secs)
        sec = float(np.median(secs))
        sweep.append({"budget_gb": budget / 1e9, "tile": list(t_b), "windows": len(wins),
                      "window_size": window_shape(wins), "seconds": sec, "seconds_all": secs,
                      "over_single_pass": sec / t_single,
                      "window_pixels_over_slide_pixels": sum((v.wy1 - v.wy0) * (v.wx1 - v.wx0) for v in wins) / (h * w),
                      "max_abs_diff_vs_single": float(np.abs(out_b - single).max())})

    mpx = h * w / 1e6
    lost = int(covered.size - covered.sum())
    methods = {
        "fosgate_tiled": {"seconds": t_fosgate, "megapixels_per_s": mpx / t_fosgate, "tile": list(tile), "halo": halo,
                          "windows": len(windows), "window_size": window_shape(windows),
                          "window_pixels_over_slide_pixels": window_pixels / (h * w),
                          "max_abs_diff_vs_single": float(np.abs(tiled - single).max())},
        "reference_loop": {"seconds": t_ref, "megapixels_per_s": mpx / t_ref, "tile": REF_TILE,
                           "margin": REF_MARGIN, "step": REF_TILE - 2 * REF_MARGIN, **phases,
                           "lost_pixels": lost, "lost_fraction": lost / covered.size,
                           "max_abs_diff_covered": float(np.abs(ref - single)[covered].max())},
        "single_pass": {"seconds": t_single, "megapixels_per_s": mpx / t_single},
    }
    speedup = t_ref / t_fosgate
    overhead = t_fosgate / t_single
    for m in METHODS:
        methods[m]["seconds_all"] = times[m]
    return {
        "mode": "quick" if quick else "full",
        "repeats": repeats,
        "slide": {"height": h, "width": w, "seed": seed, "generator": "fosgate.core.synthetic.generate_cfos"},
        "model": {"builder": "fosgate.core.unet.build_unet(1, seed=0)", "trained": False,
                  "parameters": int(model.count_params()), "receptive_field_radius": radius},
        "methods": methods,
        "speedup_vs_reference": speedup,
        "fosgate_over_single_pass": overhead,
        "targets": {"speedup_vs_reference_min": TARGET_SPEEDUP, "fosgate_over_single_pass_max": TARGET_OVERHEAD,
                    "speedup_met": speedup >= TARGET_SPEEDUP, "overhead_met": overhead <= TARGET_OVERHEAD},
        "max_abs_diff": methods["fosgate_tiled"]["max_abs_diff_vs_single"],
        "reference_over_single_pass": t_ref / t_single,
        "budget_sweep": sweep,
        "memory_budget_gb": MEMORY_BUDGET / 1e9,
        "keras_backend": backend,
        "accelerator": accelerator(backend),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="512 x 512 slide instead of 2048 x 2048")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for speed.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=2048, help="slide side in px (full mode)")
    ap.add_argument("--sizes", type=int, nargs="+", help="several slide sides, one run each, saved together as "
                    "{'runs': [...]} (the GPU check: --sizes 2048 4096 8192 --name speed_gpu)")
    ap.add_argument("--name", default="", help="result name (default: speed, or speed_gpu with --sizes)")
    ap.add_argument("--repeats", type=int, default=0, help="timed runs of each method (default 3, quick 1)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.sizes:
        runs = [run(size, args.seed, args.quick, repeats) for size in args.sizes]
        save(args.out, args.name or "speed_gpu", {"runs": runs, "how": "bench_speed.py --sizes, Keras backend "
                                                  f"{runs[0]['keras_backend']}, {runs[0]['accelerator'] or 'CPU'}"})
        for r in runs:
            print(f"{r['slide']['height']}^2: {r['speedup_vs_reference']:.1f}x the reference loop, "
                  f"{r['fosgate_over_single_pass']:.2f}x the single pass, max abs diff {r['max_abs_diff']:.1e}")
        return 0
    result = run(512 if args.quick else args.size, args.seed, args.quick, repeats)
    save(args.out, args.name or "speed", result)
    print(speed_section(result, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
