"""Render BENCHMARKS.md and its PNG plots from the JSON results in ``bench/results``.

Every section is written from one benchmark's JSON (see ``bench/common.py``); a benchmark that has
not been run yet gets a line saying which command produces it. Nothing here measures anything, so
re-rendering after one benchmark is re-run keeps the others' numbers as they were measured.

    .venv/bin/python bench/report.py [--results bench/results] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, t_interval

DATA_CREDITS = {
    "fnc": "Fluorescent Neuronal Cells sample (../shared/data/fnc; CC BY-SA 4.0; Morelli et al. 2021, Sci Rep "
           "11:22920; Clissa et al. 2024, Sci Data)",
    "dsb": "DSB2018 stage1_train fluorescence images with the community-fixed instance masks "
           "(../shared/data/dsb2018; CC0; Caicedo et al. 2019, Nat Methods 16:1247)",
    "cfos": "segebarth-cfos (../shared/data/segebarth-cfos; GitHub matjesg/bioimage_analysis @ eafeb5f, "
            "Apache-2.0; Segebarth, Griebel et al. 2020, eLife 9:e59780)",
    "delivr": "DELiVR c-Fos light-sheet patches (../shared/data/delivr-cfos; erturklab/delivr_cfos @ 51ef796, "
              "MIT licence; Kaltenecker et al. 2024, Nat Methods)",
}


def _provenance(r: dict) -> str:
    """One line: when, where and with what a result was measured (older results lack some fields)."""
    m = r.get("machine")
    parts = []
    if isinstance(m, dict):
        cpus = m.get("cpus") or m.get("cpu_count")
        parts.append(f"{cpus} CPUs" if cpus else "")
        if m.get("platform"):
            parts.append(f"`{m['platform']}`")
        versions = m.get("versions") or r.get("versions") or {}
        if versions:
            parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
        load = m.get("load_average_1min", m.get("load_average_1min_at_end"))
        if load is not None:
            parts.append(f"1-min load {load:.1f} at the end")
    else:
        if r.get("cpus"):
            parts.append(f"{r['cpus']} CPUs")
        if isinstance(m, str):
            parts.append(f"`{m}`")
    if r.get("date"):
        parts.append(str(r["date"])[:10])
    if r.get("command"):
        parts.append(f"`{r['command']}`")
    text = "; ".join(p for p in parts if p)
    return f"_Measured: {text or 'machine not recorded (before machine stamps were added; 2 CPUs, 2026-11-25)'}._"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _hw(v: Any) -> str:
    """A tile or window size: ``1120`` (square, older results) or ``[h, w]`` -> ``"1120 x 2048"``."""
    return f"{v[0]} x {v[1]}" if isinstance(v, list | tuple) else str(v)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------- sections


def speed(r: dict, plots: Path) -> str:
    m = r["methods"]
    f, ref, s = m["fosgate_tiled"], m["reference_loop"], m["single_pass"]
    sl, t = r["slide"], r["targets"]
    rows = [
        ["fosgate stitched (`predict_tiled`)", f"{f['seconds']:.2f}", f"{f['megapixels_per_s']:.3f}",
         f"tile {_hw(f['tile'])}, halo {f['halo']}, {f['windows']} window(s) of {_hw(f['window_size'])} px; "
         f"max abs diff vs single pass {f['max_abs_diff_vs_single']:.2e}"],
        ["reference loop (128 px tiles, 4 px margin, PNG round trip, one `predict` per tile)",
         f"{ref['seconds']:.2f}", f"{ref['megapixels_per_s']:.3f}",
         f"{ref['tiles']} tiles; {ref['lost_pixels']} px ({ref['lost_fraction']:.1%}) at the edges not predicted; "
         f"max abs diff vs single pass where predicted {ref['max_abs_diff_covered']:.2e}"],
        ["single pass (`predict_single_pass`, compute floor)", f"{s['seconds']:.2f}", f"{s['megapixels_per_s']:.3f}",
         "whole image in one call"],
    ]
    budget = r.get("memory_budget_gb", 1.5)
    lines = [
        "## Speed",
        "",
        f"Prediction of one synthetic {sl['height']} x {sl['width']} c-fos slide (`generate_cfos`, seed "
        f"{sl['seed']}) with one untrained reference U-Net ({r['model']['parameters']} parameters, receptive-field "
        f"radius {r['model']['receptive_field_radius']} px; weights do not change the speed), timed three ways in "
        f"one run (after a warm-up of each{'; median of ' + str(r['repeats']) + ' timed runs each' if r.get('repeats', 1) > 1 else ''}; "
        f"Keras backend: {r.get('keras_backend', 'tensorflow')}"
        f"{', ' + r['accelerator'] if r.get('accelerator') else ', CPU'}); fosgate uses its default {budget} GB window budget. "
        "`bench/bench_speed.py` says exactly what the reference loop does.",
        "",
        _table(["method", "seconds", "Mpx/s", "notes"], rows),
        "",
        f"- fosgate vs reference loop: **{r['speedup_vs_reference']:.1f}x faster** "
        f"(target >= {t['speedup_vs_reference_min']:.0f}x: {'met' if t['speedup_met'] else 'NOT met'})",
        f"- fosgate time / single-pass time: **{r['fosgate_over_single_pass']:.2f}** "
        f"(target <= {t['fosgate_over_single_pass_max']}: {'met' if t['overhead_met'] else 'NOT met'})",
        f"- max abs(stitched - single pass): {r['max_abs_diff']:.2e}",
    ]
    sweep = r.get("budget_sweep") or []
    if "reference_over_single_pass" in r:
        ceiling = r["reference_over_single_pass"]
        line = (f"- ceiling: the reference loop takes {ceiling:.1f}x the single-pass time, so no method computing the "
                f"same network in float32 here can be much more than {ceiling:.1f}x faster than it")
        best = min(sweep, key=lambda x: x["seconds"]) if sweep else None
        if best and best["seconds"] < f["seconds"]:
            line += (f"; with a {best['budget_gb']:g} GB window budget fosgate is "
                     f"{ref['seconds'] / best['seconds']:.1f}x faster than the reference loop and "
                     f"{best['over_single_pass']:.2f}x the single pass (table below)")
        lines.append(line + ".")
    if sweep:
        lines += [
            "",
            f"Where the stitching overhead comes from: {f['windows']} window(s) of {_hw(f['window_size'])} px with a "
            f"{f['halo']}-px halo compute {f['window_pixels_over_slide_pixels']:.2f}x the slide's pixels. The halo is "
            "what makes the result exact; fosgate picks, among the window shapes that fit the memory budget, the one "
            "that recomputes the fewest pixels (border windows spend no halo beyond the image, and windows may be "
            "rectangular strips), and only a larger window (a larger memory budget, `--predict-memory-gb`) shrinks "
            "it further. Run as a compiled graph, the U-Net needs about 400 bytes per window pixel on CPU (the budget "
            "assumes 480). Same run, same slide:",
            "",
            _table(["window budget", "tile", "windows", "window px / slide px", "seconds", "time / single pass",
                    "vs reference loop", "max abs diff vs single pass"],
                   [[f"{budget} GB (default)", _hw(f["tile"]), f["windows"], f"{f['window_pixels_over_slide_pixels']:.2f}",
                     f"{f['seconds']:.2f}", f"{r['fosgate_over_single_pass']:.2f}",
                     f"{r['speedup_vs_reference']:.1f}x", f"{f['max_abs_diff_vs_single']:.1e}"]]
                   + [[f"{x['budget_gb']:g} GB", _hw(x["tile"]), x["windows"], f"{x['window_pixels_over_slide_pixels']:.2f}",
                       f"{x['seconds']:.2f}", f"{x['over_single_pass']:.2f}", f"{ref['seconds'] / x['seconds']:.1f}x",
                       f"{x['max_abs_diff_vs_single']:.1e}"] for x in sweep]),
        ]
    return "\n".join(lines + ["", _provenance(r)])


def speed_gpu(r: dict, plots: Path) -> str:
    rows = []
    for x in r["runs"]:
        m = x["methods"]
        f = m["fosgate_tiled"]
        rows.append([f"{x['slide']['height']}²", f"{f['seconds']:.2f} ({f['megapixels_per_s']:.0f} Mpx/s)",
                     f"{m['reference_loop']['seconds']:.2f} ({m['reference_loop']['megapixels_per_s']:.1f} Mpx/s)",
                     f"{m['single_pass']['seconds']:.2f} ({m['single_pass']['megapixels_per_s']:.0f} Mpx/s)",
                     f"**{x['speedup_vs_reference']:.0f}x**", f"**{x['fosgate_over_single_pass']:.2f}**",
                     f"{f['windows']} of {_hw(f['window_size'])} px", f"{x['max_abs_diff']:.1e}"])
    first = r["runs"][0]
    speedups = [x["speedup_vs_reference"] for x in r["runs"]]
    repeats = first.get("repeats", 1)
    sweeps = [f"{x['slide']['height']}² {s['over_single_pass']:.2f} ({s['windows']} of {_hw(s.get('window_size', s['tile']))} px)"
              for x in r["runs"] for s in x.get("budget_sweep", []) if s["budget_gb"] == 3.0]
    return "\n".join([
        "### Speed on a GPU",
        "",
        f"The same benchmark on the lent GPU machine ({first.get('accelerator') or 'GPU'}), with Keras on its JAX "
        "backend: TensorFlow cannot be installed there, and fosgate's prediction code is plain Keras, so only the "
        "backend differs (the receptive-field radius, measured with TensorFlow gradients, is taken from the CPU "
        f"run: 94 px). {'Median of ' + str(repeats) + ' timed runs' if repeats > 1 else 'One timed run'} of each "
        "method per size, after a warm-up; default 1.5 GB window budget.",
        "",
        _table(["slide", "fosgate stitched s", "reference loop s", "single pass s", "fosgate vs reference",
                "fosgate / single pass", "windows", "max abs diff vs single pass"], rows),
        "",
        "On a GPU the reference loop is bound by its 128-px `predict` calls and PNG round trips, and fosgate's "
        f"large compiled windows are {min(speedups):.0f}-{max(speedups):.0f}x faster. At 2048² every method takes "
        "tens of milliseconds, so per-call dispatch and host-device copies, not pixels, set the ratio to the single "
        "pass; at 8192² one 67-megapixel whole-image call is slower than the stitched windows (not profiled "
        "further). The window shape is chosen for the fewest pixels, which is the CPU's cost; on a GPU a 3 GB "
        "budget gives " + ", ".join(sweeps) + " of the single-pass time. "
        "The differences to the single pass (up to 1e-3) come from GPU convolution arithmetic that varies with "
        "the input shape (XLA may use TF32 tensor cores for float32), not from seams: on CPU the stitched and "
        "single-pass maps are bit-identical.",
        "",
        _provenance(r),
    ])


def memory(r: dict | list, plots: Path) -> str:
    rows = r if isinstance(r, list) else r["rows"]
    meta = {} if isinstance(r, list) else r
    rows = sorted(rows, key=lambda x: x["size"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    mpx = [x["size"] ** 2 / 1e6 for x in rows]
    ax.plot(mpx, [x["peak_rss_mb"] for x in rows], "o-", label="peak RSS")
    ax.plot(mpx, [x["rss_before_predict_mb"] for x in rows], "s--", label="before prediction (runtime)")
    ax.set_xscale("log")
    ax.set_ylim(0, max(x["peak_rss_mb"] for x in rows) * 1.3)
    ax.set_xlabel("slide size (megapixels, log)")
    ax.set_ylabel("MB")
    ax.set_title("Whole-slide prediction: peak memory vs slide size")
    for x, row in zip(mpx, rows, strict=True):
        ax.annotate(f"{row['size']}²", (x, row["peak_rss_mb"]), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(plots / "memory.png", dpi=110)
    plt.close(fig)
    first, last = rows[0], rows[-1]
    growth = (last["size"] / first["size"]) ** 2
    return "\n".join([
        "## Memory",
        "",
        "Peak RSS (`VmHWM`) of whole-slide prediction (`fosgate.core.pipeline.predict_slide`, all six outputs) "
        "in a fresh child process per size (`bench/bench_memory.py`). Slides are zlib-tiled BigTIFFs of a "
        "repeated 512-px synthetic c-fos field. The model is a fixed 3x3 mean + sigmoid (`threshold`): realistic "
        "masks in seconds; the pipeline's own memory (reading, stitching, labelling, six writers) does not "
        "depend on the network, and a U-Net window's activations are bounded by the prediction budget "
        f"({meta.get('budget_gb', 1.5)} GB).",
        "",
        _table(["slide (px)", "peak RSS (MB)", "RSS before prediction (MB)", "seconds", "tile", "objects"],
               [[f"{x['size']} x {x['size']}", f"{x['peak_rss_mb']:.0f}", f"{x['rss_before_predict_mb']:.0f}",
                 f"{x['seconds']:.1f}", _hw(x["tile"]), x["objects"]] for x in rows]),
        "",
        f"{growth:.0f}x the pixels for +{last['peak_rss_mb'] - first['peak_rss_mb']:.0f} MB; about "
        f"{first['rss_before_predict_mb']:.0f} MB of it is the TensorFlow runtime before any prediction.",
        "",
        "![peak memory vs slide size](bench/results/memory.png)",
        "",
        *([meta["note"] + ".", ""] if meta.get("note") else []),
        _provenance(meta) if meta else _provenance({}),
    ])


def scale(r: dict, plots: Path) -> str:
    return "\n".join([
        "## Scale: 1 vs 2 Dask workers",
        "",
        f"`bench/bench_scale.py`: a {r['size']}² px synthetic slide, reference U-Net, 512-px tiles, LocalCluster "
        "of worker processes (TensorFlow threads per worker = cores / workers), second (warm) run timed.",
        "",
        _table(["Dask workers", "seconds (warm)", "speed-up", "cells"],
               [[x["workers"], f"{x['seconds']:.1f}", f"{x['speedup']:.2f}", x["count"]] for x in r["rows"]]),
        "",
        "Identical counts show that the result does not depend on the number of workers. On a 2-core machine "
        "the fan-out costs little and gains little; speed-ups need more cores or machines.",
        "",
        _provenance(r),
    ])


def transport(r: dict, plots: Path) -> str:
    raw, up, down = r["raw_socket_mb_s"], r["grpc_upload_mb_s"], r["grpc_download_mb_s"]
    return "\n".join([
        "## Transport",
        "",
        f"`bench/bench_transport.py`: a {r['file_mb']:.0f} MB uncompressed TIFF uploaded with "
        "`FosgateClient.upload_slide` (client streaming in 1 MiB chunks, SHA-256 computed by client and server, "
        "the file fsynced and its header and last rows decoded before it is acknowledged), and a tile-export zip "
        f"of {r['download_mb']:.0f} MB downloaded with `download_artifact` (server streaming, SHA-256 checked); "
        "the floor is the same bytes through a plain loopback socket with no hashing or disk.",
        "",
        _table(["path", "MB/s", "vs raw socket"],
               [["raw loopback socket", f"{raw:.0f}", "1.00"],
                ["gRPC upload (stream + SHA-256 + fsync)", f"{up:.0f}", f"{up / raw:.2f}"],
                ["gRPC download (stream + SHA-256)", f"{down:.0f}", f"{down / raw:.2f}"]]),
        "",
        f"At these rates the 210 MB of a 10,000 x 7,000 px RGB slide (uncompressed) go up in about {210 / up:.1f} s "
        f"and would come down in {210 / down:.1f} s: small next to predicting it.",
        "",
        _provenance(r),
    ])


def load(r: dict, plots: Path) -> str:
    return "\n".join([
        "## Load: mixed calls while WatchJob streams stay open",
        "",
        f"`bench/bench_load.py`: {r['clients']} clients, each on its own channel, make {r['calls_per_client']} "
        "mixed unary calls (get and list slides, jobs, labels, models, proposals; a Predict submit refused for an "
        f"unknown model) with a `Health.Check` after each, while {r['watchers']} WatchJob streams stay open on "
        "jobs that stay queued for the whole run (four times the old 16-thread pool, which they used to freeze).",
        "",
        _table(["calls", "p50 ms", "p99 ms", "max ms"],
               [[f"unary ({r['calls']})", f"{r['unary_p50_ms']:.1f}", f"{r['unary_p99_ms']:.1f}",
                 f"{r['unary_max_ms']:.1f}"],
                [f"Health.Check ({r['calls']})", f"{r['health_p50_ms']:.1f}", f"{r['health_p99_ms']:.1f}",
                 f"{r['health_max_ms']:.1f}"]]),
        "",
        f"{r['calls_per_s']:.0f} calls/s; {r['errors']} unexpected errors; {r['watchers_ended_cancelled']} of "
        f"{r['watchers']} streams reported the jobs' final (cancelled) state. Target: unary p99 under 1 s, health "
        "SERVING throughout, 0 errors. Long streams have their own thread budgets (`max_watchers`, "
        "`max_transfers`); one stream beyond a budget is refused with RESOURCE_EXHAUSTED instead of queueing.",
        "",
        _provenance(r),
    ])


def _span(values) -> str:
    """``"40"`` for one distinct value, ``"30-37"`` for several (integers)."""
    lo, hi = int(min(values)), int(max(values))
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def fnc_loo(r: dict, plots: Path) -> str:
    s, rows = r["summary"], r["rows"]
    by = r.get("by_colour", {})
    steps = {x.get("steps_per_epoch") for x in rows} - {None}
    val = s.get("val_fraction", 0)
    banded = all(x.get("val_images") and x.get("val_images") == x.get("train_images") for x in rows)
    held = "the bottom band of each image" if banded else "one whole image"
    training = (f"{s.get('epochs', 12)} epochs"
                + (f" of {_span(steps)} steps (batches of {s.get('batch', 16)} random 128-px crops)" if steps else "")
                + (f"; {val:.0%} of the training images held out ({held}) to keep the best epoch and calibrate "
                   "the post-processing, as `fosgate train` does by default" if val else
                   "; no validation, threshold 0.5"))
    colour = ", ".join(f"{c} {v['object_f1']:.3f}" for c, v in by.items())
    missed = [x["image"] for x in rows if x["n_pred"] == 0]
    total_s = sum(x["seconds"] for x in rows)
    compare = []
    other = r.get("companions", {}).get("fnc_loo_independent")
    if other:
        os_, ob = other["summary"], other.get("by_colour", {})
        compare = ["", f"The same protocol with each RGB channel normalised on its own (fosgate's rule before joint "
                   f"RGB normalisation; `--channels independent`, {os_.get('epochs')} epochs): pooled object F1 "
                   f"{os_['object_f1']:.3f} (" + ", ".join(f"{c} {v['object_f1']:.3f}" for c, v in ob.items())
                   + f"), count MAE {os_['count_mae']:.1f}, pixel F1 {os_['pixel_f1']:.3f}. Per channel, a red-only "
                   "stain's nearly empty green and blue channels (99.8th percentile 2 of 255) have their noise "
                   "stretched to the full range; one range for all three keeps them dark. "
                   + _provenance(other).replace("_Measured: ", "_That run: ")]
    new = r.get("companions", {}).get("fnc_loo_default")
    if new:
        ns, nb = new["summary"], new.get("by_colour", {})
        ref_f1 = {x["image"]: x["object_f1"] for x in rows}
        compare += ["", f"The default model (unet2, `--arch default`: the same folds, {ns.get('epochs')} epochs and steps, "
                    "instances from its seeded watershed with the post-processing calibrated on the validation "
                    f"set): pooled object F1 **{ns['object_f1']:.3f}** ("
                    + ", ".join(f"{c} {v['object_f1']:.3f}" for c, v in nb.items())
                    + f") vs {s['object_f1']:.3f} for the reference net, count MAE {ns['count_mae']:.1f} vs "
                    f"{s['count_mae']:.1f}, pixel F1 {ns['pixel_f1']:.3f}; per held-out image (default vs "
                    "reference): " + ", ".join(f"{x['image']} {x['object_f1']:.3f} vs "
                                               f"{ref_f1[x['image']]:.3f}" if x["image"] in ref_f1 else
                                               f"{x['image']} {x['object_f1']:.3f}" for x in new["rows"])
                    + ". " + _provenance(new).replace("_Measured: ", "_That run: ")]
    return "\n".join([
        "## Accuracy: FNC leave-one-image-out",
        "",
        f"`bench/bench_fnc_loo.py`: {DATA_CREDITS['fnc']}. For each of the 6 images (3 yellow, 3 red), the "
        f"reference U-Net is trained from scratch on the other 5 ({training}); the held-out image is predicted "
        "whole, thresholded, and split into cells of at least 100 px. Object matching as the FNC authors: IoU >= 0.5 "
        "or centroids <= 40 px, one-to-one.",
        "",
        _table(["held-out image", "colour", "object F1", "predicted", "true", "pixel F1", "threshold", "best epoch",
                "train + predict s"],
               [[x["image"], x.get("colour", ""), f"{x['object_f1']:.3f}", x["n_pred"], x["n_true"],
                 f"{x['pixel_f1']:.3f}", f"{x.get('threshold', 0.5):.2f}", x.get("best_epoch", "-"),
                 f"{x['seconds']:.0f}"] for x in rows]),
        "",
        f"Pooled object F1 **{s['object_f1']:.3f}**{' (' + colour + ')' if colour else ''}, precision "
        f"{s.get('object_precision', float('nan')):.3f}, recall {s.get('object_recall', float('nan')):.3f}, count MAE "
        f"**{s['count_mae']:.1f}**, mean pixel F1 {s['pixel_f1']:.3f}, MIoU {s['pixel_miou']:.3f}; "
        f"{total_s / 60:.0f} min in all."
        + (f" No cells found in {', '.join(missed)}." if missed else "")
        + " c-ResUnet's published F1 0.81 / MAE 3.09 is on the full FNC test set after training on hundreds of "
        "images; this is a 6-image development sample (each red fold trains on two red images), so it is no "
        "like-for-like comparison.",
        *compare,
        "",
        _provenance(r),
    ])


def _error_table(head: list[str], keys: list[list], errors: list[dict[str, int]], over: str) -> str:
    """Why objects go unmatched, one row per ``keys`` row, from ``fosgate.core.metrics.error_breakdown``
    counts summed over ``over`` (the FN and FP columns are the sums of their three causes)."""
    rows = [[*k, e["fn_missed"] + e["fn_merged"] + e["fn_shape"], e["fn_missed"], e["fn_merged"], e["fn_shape"],
             e["fp_spurious"] + e["fp_split"] + e["fp_shape"], e["fp_spurious"], e["fp_split"], e["fp_shape"]]
            for k, e in zip(keys, errors, strict=True)]
    return "\n".join([
        f"Why objects go unmatched (`fosgate.core.metrics.error_breakdown`, summed over {over}): a missed cell has "
        "no prediction on >= 10 % of it; merged: the prediction on it also covers another cell; shape: covered but "
        "IoU < 0.5 (size, boundary or threshold); spurious: no cell under the prediction; split: the cell under it "
        "also holds another prediction.",
        "",
        _table([*head, "FN", "missed", "merged", "shape", "FP", "spurious", "split", "shape"], rows)])


def dsb(r: dict, plots: Path) -> str:
    rows = sorted(({"arch": "reference", **x} for x in r["rows"]),  # results before --arch: the reference net
                  key=lambda x: (x["arch"], x["train_images"]))
    archs = list(dict.fromkeys(x["arch"] for x in rows))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for arch in archs:
        mine = [x for x in rows if x["arch"] == arch]
        ax.plot([x["train_images"] for x in mine], [x["ap50"] for x in mine], "o-",
                label=f"fosgate {'unet2 (default)' if arch == 'default' else 'reference U-Net'}")
    for value, name, style in ((0.80, "CellSeg1 (1 image)", ":"), (0.59, "Cellpose fine-tuned (1 image)", "--"),
                               (0.44, "StarDist (1 image)", "-.")):
        ax.axhline(value, color="grey", linestyle=style, linewidth=1)
        ax.text(max(x["train_images"] for x in rows), value + 0.01, name, ha="right", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("training images (log)")
    ax.set_ylabel("AP@0.5")
    ax.set_title("DSB2018 fluorescence nuclei")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(plots / "dsb.png", dpi=110)
    plt.close(fig)
    n_test = rows[0]["test_images"]
    return "\n".join([
        "## Accuracy: DSB2018 nuclei, AP@0.5 vs number of training images",
        "",
        f"`bench/bench_dsb.py`: {DATA_CREDITS['dsb']}. {n_test} test images held out (seed 0); nested training sets "
        "drawn from the rest. The reference U-Net, the same number of gradient steps (batch 8 of 128-px crops) in "
        "every setting; instance masks become targets with 1-px gaps between touching nuclei; test images are "
        "predicted whole (seam-free), thresholded at 0.5, split into instances (connected components + watershed "
        "of touching nuclei, min size 15 px); `default` = fosgate's unet2 (`train_model`, the same steps, its own "
        "instances: seeded watershed on the centre map or the distance split, post-processing calibrated for "
        "object F1 where the table says). AP@0.5 = TP / (TP + FP + FN) with one-to-one IoU matching, mean "
        "over test images. Targets (issue 14, default arch): >= 0.80 from 10 images, >= 0.85 from all, never "
        "lower with more images.",
        "",
        _table(["arch", "training images", "steps", "train s", "AP@0.5", "object F1", "pixel F1", "post-processing"],
               [[x["arch"], x["train_images"], x["steps"], f"{x['train_seconds']:.0f}", f"{x['ap50']:.3f}",
                 f"{x['object_f1']:.3f}", f"{x['pixel_f1']:.3f}", _dsb_calibration(x)] for x in rows]),
        "",
        "Published single-image results in this setting (different test images, so indicative only): CellSeg1 "
        "0.80 (mean), Cellpose fine-tuned 0.59, StarDist 0.44.",
        "",
        *([_error_table(["arch", "training images"], [[x["arch"], x["train_images"]] for x in errs],
                        [x["errors"] for x in errs], "the test images"), ""]
          if (errs := [x for x in rows if "errors" in x]) else []),
        "![AP@0.5 vs training images](bench/results/dsb.png)",
        "",
        *([f"**Partial result:** {r['partial']} completed when this was saved.", ""] if r.get("partial") else []),
        *(["Merged from: " + "; ".join(f"`{x.get('command')}` ({str(x.get('date'))[:10]})" for x in r["parts"]) + ".", ""]
          if r.get("parts") else []),
        *(["Rows replaced by a rerun with newer code (AP@0.5 then): " + "; ".join(
            f"{x.get('arch', 'reference')} {x['train_images']} image(s) {x['ap50']:.3f}" for x in r["superseded"])
            + ".", ""] if r.get("superseded") else []),
        _provenance(r),
        *_dsb_budget(r.get("companions", {}).get("dsb_budget")),
        *_dsb_seeds(r.get("companions", {}).get("dsb_seeds")),
    ])


def _dsb_seeds(b: dict | None) -> list[str]:
    """Training seeds (``bench_dsb.py --train-seeds 0 1 2 --name dsb_seeds``): the same test images, each
    seed drawing other training images and seeding the training; AP@0.5 per seed, mean and 95 % interval."""
    if not b or not b.get("seed_summary"):
        return []

    def post(p: dict | None) -> str:
        if not p:
            return "fixed"
        split = "distance split" if p["split_touching"] else f"seeds {p['seed_threshold']:g}"
        return f"{p['threshold']:g} / {p['min_size_px']} px / {split}"

    def machine(x: dict) -> str:
        m = x.get("machine")
        return f", `{m['platform']}`" if isinstance(m, dict) and m.get("platform") else ""

    paired = []  # default - reference per training seed, where both archs ran the same seeds
    for n in dict.fromkeys(x["train_images"] for x in b["seed_summary"]):
        arm = {x["arch"]: x for x in b["seed_summary"] if x["train_images"] == n}
        if {"default", "reference"} <= arm.keys() and arm["default"]["seeds"] == arm["reference"]["seeds"] \
                and len(arm["default"]["seeds"]) > 1:
            diff = [a - r for a, r in zip(arm["default"]["ap50_per_seed"], arm["reference"]["ap50_per_seed"],
                                          strict=True)]
            lo, hi = t_interval(diff)
            paired.append(f"{n} image(s) {statistics.mean(diff):+.3f} [{lo:+.3f}, {hi:+.3f}] "
                          f"({'distinguishable' if lo > 0 or hi < 0 else 'not distinguishable'})")
    where = ("run in parts, merged: " + "; ".join(f"`{x.get('command')}` ({str(x.get('date', ''))[:10]}{machine(x)})"
                                                  for x in b["parts"]) if b.get("parts")
             else f"a separate run, `{b.get('command')}`, {str(b.get('date', ''))[:10]}")
    return ["", f"Training seeds ({where}): the same test images; each seed draws other training images from "
            "the rest and seeds the training (seed 0: the main table's draw, trained again). Post-processing per "
            "seed: threshold / min size / split.", "",
            _table(["arch", "training images", "steps", "seeds", "AP@0.5 [95 % CI]", "per seed", "object F1",
                    "post-processing per seed"],
                   [[x["arch"], x["train_images"], x["steps"], len(x["seeds"]),
                     f"{x['ap50']:.3f} [{x['ap50_ci95'][0]:.3f}, {x['ap50_ci95'][1]:.3f}]",
                     ", ".join(f"{v:.3f}" for v in x["ap50_per_seed"]), f"{x['object_f1']:.3f}",
                     "; ".join(post(p) for p in x["post_per_seed"])] for x in b["seed_summary"]]), "",
            *(["AP@0.5 of unet2 minus the reference net, paired by training seed (same images, same machine "
               "within a seed), mean and 95 % interval: " + "; ".join(paired) + ".", ""] if paired else []),
            *(["Rows replaced by a rerun (AP@0.5 then): " + "; ".join(
                f"{x['arch']} {x['train_images']} image(s) seed {x.get('train_seed', 0)} {x['ap50']:.3f}"
                for x in b["superseded"]) + ".", ""] if b.get("superseded") else []),
            *[x for note in b.get("notes", []) for x in (note, "")],
            *([f"**Partial result:** {b['partial']} completed when this was saved.", ""] if b.get("partial") else []),
            _provenance(b)]


def _dsb_budget(b: dict | None) -> list[str]:
    """A steps sweep (``bench_dsb.py --steps 500 2000 --name dsb_budget``): every setting at each budget in
    one run, and the change of AP@0.5 from the smallest budget to each larger one."""
    if not b:
        return []
    rows = sorted(({"arch": "reference", **x} for x in b["rows"]),
                  key=lambda x: (x["arch"], x["train_images"], x["steps"]))
    gains = []
    for key in dict.fromkeys((x["arch"], x["train_images"]) for x in rows):
        mine = [x for x in rows if (x["arch"], x["train_images"]) == key]
        gains += [f"{key[0]}, {key[1]} images: {mine[0]['steps']} -> {x['steps']} steps "
                  f"{x['ap50'] - mine[0]['ap50']:+.3f}" for x in mine[1:]]
    return ["", "Training budget (a separate run, `" + str(b.get("command")) + "`, " + str(b.get("date", ""))[:10]
            + "): the same settings and test images at several step budgets in one run (best epoch: the epoch of "
            "25 steps whose weights were kept, by validation object F1).", "",
            _table(["arch", "training images", "steps", "best epoch", "train s", "AP@0.5", "object F1", "pixel F1"],
                   [[x["arch"], x["train_images"], x["steps"], x.get("best_epoch", "-"), f"{x['train_seconds']:.0f}",
                     f"{x['ap50']:.3f}", f"{x['object_f1']:.3f}", f"{x['pixel_f1']:.3f}"] for x in rows]), "",
            *(["Change of AP@0.5 with more steps: " + "; ".join(gains) + ".", ""] if gains else []),
            *[x for note in b.get("notes", []) for x in (note, "")],
            *([f"**Partial result:** {b['partial']} completed when this was saved.", ""] if b.get("partial") else []),
            _provenance(b)]


def _dsb_calibration(row: dict) -> str:
    """A DSB row's post-processing (rows saved before bench_dsb recorded it: by the rule of that time)."""
    if "calibration" in row:
        return row["calibration"]
    if row["arch"] == "reference":
        return "fixed (0.5, 15 px, watershed)"
    return "held-out validation" if row["train_images"] >= 5 else "none (defaults)"


def delivr(r: dict, plots: Path) -> str:
    p, st = r["pooled"], r["settings"]
    return "\n".join([
        "## Accuracy: DELiVR c-Fos light-sheet z-slices",
        "",
        f"`bench/bench_delivr.py`: {DATA_CREDITS['delivr']}. 33 volumes of 100³ voxels (~1.6 x 1.6 x 6 µm); "
        f"grouped by sample and split into {st['folds']} folds (no test slice has a neighbour in training). "
        f"Per fold the reference U-Net is trained on every z-slice of the training volumes ({st['steps']} steps, "
        f"batch {st['batch']} of {st['crop']}-px crops, volume-wise 1-99.8 percentile normalisation, "
        f"{st.get('val_fraction', 0) * 100:.0f} % of the training slices for validation: best epoch kept and the "
        "probability threshold calibrated on them); every held-out z-slice is predicted, thresholded and scored "
        "against its mask slice. Pixel F1 / IoU are "
        "pooled over all held-out voxels (most slices hold no cell); object F1 is pooled over slices with 2-D "
        f"components (min size {st['min_size']} px; a match is IoU >= 0.5 or centroids <= {st['centroid_px']:.0f} px: "
        "cells are only ~5-10 px across).",
        "",
        _table(["fold", "train / test volumes", "train s", "threshold", "pixel F1", "pixel IoU", "object F1",
                "precision", "recall", "true / predicted objects", "count MAE per slice"],
               [[x["fold"], f"{len(x['train_volumes'])} / {len(x['test_volumes'])}", f"{x['train_seconds']:.0f}",
                 f"{x.get('threshold', 0.5):.2f}",
                 f"{x['pixel_f1']:.3f}", f"{x['pixel_iou']:.3f}", f"{x['object_f1']:.3f}",
                 f"{x['object_precision']:.3f}", f"{x['object_recall']:.3f}",
                 f"{x['true_objects']} / {x['predicted_objects']}", f"{x['count_mae']:.2f}"] for x in r["folds"]]),
        "",
        f"All folds pooled ({p['slices']} slices): pixel F1 **{p['pixel_f1']:.3f}**, IoU {p['pixel_iou']:.3f}, "
        f"object F1 **{p['object_f1']:.3f}** (precision {p['object_precision']:.3f}, recall "
        f"{p['object_recall']:.3f}), count MAE {p['count_mae']:.2f} per slice. "
        "DELiVR itself segments in 3-D; these 2-D slice scores are not comparable with its published 3-D numbers.",
        *_delivr_default(r.get("companions", {}).get("delivr_default"), r),
        "",
        _provenance(r),
    ])


def _delivr_default(new: dict | None, main: dict) -> list[str]:
    """The default model (``bench_delivr.py --arch default``) on the same folds, beside the reference net;
    per fold when both ran the same folds (the folds are the spread: one training seed each)."""
    if not new:
        return []
    q, ref = new["pooled"], main["pooled"]
    mine, theirs = ({x["fold"]: x for x in run.get("folds", [])} for run in (new, main))
    same = sorted(mine) == sorted(theirs) and all(mine[f]["test_volumes"] == theirs[f]["test_volumes"] for f in mine)
    per_fold = (" Object F1 per fold (same test volumes): " + ", ".join(
        f"{f}: {mine[f]['object_f1']:.3f} vs {theirs[f]['object_f1']:.3f}" for f in sorted(mine)) + "."
        if same else "")
    return ["", f"The default model (unet2, `--arch default`: the same folds, steps and crops; instances from its "
            "seeded watershed with the post-processing calibrated on the validation slices): pooled pixel F1 "
            f"**{q['pixel_f1']:.3f}** vs {ref['pixel_f1']:.3f} for the reference net, object F1 "
            f"**{q['object_f1']:.3f}** vs {ref['object_f1']:.3f} (precision {q['object_precision']:.3f}, recall "
            f"{q['object_recall']:.3f}), count MAE {q['count_mae']:.2f} vs {ref['count_mae']:.2f} per slice. "
            + per_fold + " " + _provenance(new).replace("_Measured: ", "_That run: ")]


def label_efficiency(r: dict, plots: Path) -> str:
    import numpy as np

    rows = r["rows"]
    strategies = ["random", "balanced", "active"]
    metrics = [("pixel_f1", "pixel F1"), ("object_f1", "object F1")]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    summary = {}
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for s in strategies:
            fr = sorted({x["fraction"] for x in rows if x["strategy"] == s})
            vals = [[x[key] for x in rows if x["strategy"] == s and x["fraction"] == f] for f in fr]
            mean = [float(np.mean(v)) for v in vals]
            summary[(s, key)] = dict(zip(fr, mean, strict=True))
            ax.plot([100 * f for f in fr], mean, "o-", label=s)
            if max(len(v) for v in vals) > 1:
                ax.fill_between([100 * f for f in fr], [min(v) for v in vals], [max(v) for v in vals], alpha=0.15)
        ax.set_xlabel("labelled tiles (% of the pool)")
        ax.set_ylabel(label + " (held-out images)")
        ax.set_ylim(0, 1)
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 50, 100], ["10", "25", "50", "100"])
    axes[0].legend(loc="lower right")
    fig.suptitle("Label efficiency on FNC: selection strategy vs labelled fraction")
    fig.tight_layout()
    fig.savefig(plots / "label_efficiency.png", dpi=110)
    plt.close(fig)
    st = r["settings"]
    seeds = st["seeds"]
    table_rows = []
    for f in sorted({x["fraction"] for x in rows}):
        for s in strategies:
            sel = [x for x in rows if x["strategy"] == s and x["fraction"] == f]
            if not sel or (f == 1.0 and s != strategies[0]):
                continue
            name = "all (same set)" if f == 1.0 else s
            pf1 = [x["pixel_f1"] for x in sel]
            table_rows.append([f"{100 * f:.0f} %", name, sel[0]["labelled_tiles"],
                               f"{np.mean(pf1):.3f}" + (f" ± {np.std(pf1, ddof=1):.3f}" if len(pf1) > 1 else ""),
                               f"{np.mean([x['pixel_miou'] for x in sel]):.3f}",
                               f"{np.mean([x['object_f1'] for x in sel]):.3f}",
                               f"{np.mean([x['count_mae'] for x in sel]):.1f}",
                               f"{np.mean([x['train_seconds'] for x in sel]):.0f}"])
    below = sorted(f for f in {x["fraction"] for x in rows} if f < 1.0)
    pf = {s: summary[(s, "pixel_f1")] for s in strategies}
    wins = sum(pf["balanced"][f] > pf["random"][f] for f in below)
    active_wins = sum(pf["active"][f] > pf["balanced"][f] for f in below[1:])  # the first active set is balanced
    reading = [f"Cluster-balanced beats random on held-out pixel F1 at {wins} of {len(below)} fractions below 100 %."]
    if below and 1.0 in pf["random"]:
        f0 = below[0]
        reading.append(f"With {f0:.0%} of the tiles, balanced selection reaches {pf['balanced'][f0]:.3f} "
                       f"({pf['balanced'][f0] / max(pf['random'][1.0], 1e-9):.0%} of the all-tiles score "
                       f"{pf['random'][1.0]:.3f}); random selection reaches {pf['random'][f0]:.3f}.")
    if len(below) > 1:
        reading.append(f"Active selection beats balanced at {active_wins} of {len(below) - 1} larger fractions.")
    if len(seeds) > 1:
        per_seed = {(x["seed"], x["strategy"], x["fraction"]): x["pixel_f1"] for x in rows}
        pairs = [(sd, f) for sd in seeds for f in below
                 if (sd, "balanced", f) in per_seed and (sd, "random", f) in per_seed]
        seed_wins = sum(per_seed[(sd, "balanced", f)] > per_seed[(sd, "random", f)] for sd, f in pairs)
        reading.append(f"Seed by seed, balanced beats random in {seed_wins} of {len(pairs)} (seed, fraction) pairs. "
                       "Pixel F1 is mean ± standard deviation over seeds (selection and training seed); the plot "
                       "shades the range.")
        sd = {(s_, f): float(np.std([x["pixel_f1"] for x in rows if x["strategy"] == s_ and x["fraction"] == f], ddof=1))
              for s_ in ("random", "balanced") for f in below}
        clear = [f for f in below
                 if abs(pf["balanced"][f] - pf["random"][f]) > max(sd[("random", f)], sd[("balanced", f)])]
        reading.append(f"The seed-to-seed standard deviation reaches {max(sd.values()):.2f}; the balanced - random "
                       f"difference exceeds both strategies' spread at {len(clear)} of {len(below)} fractions, so "
                       f"{len(seeds)} seeds {'do not settle' if len(clear) < len(below) else 'support'} the ranking.")
    if below and 1.0 in pf["random"] and pf["random"][1.0] < max(max(pf[s_].values()) for s_ in strategies):
        reading.append(f"With the same {st['steps']} training steps at every point, labelling all tiles does not "
                       f"raise the held-out score here (all tiles: {pf['random'][1.0]:.3f}).")
    if len(seeds) == 1:
        reading.append("One seed: differences of a few hundredths are within run-to-run noise; object F1 and "
                       "count MAE on two held-out images are noisier still.")
    return "\n".join([
        "## Label efficiency: random vs cluster-balanced vs active selection",
        "",
        f"`bench/bench_label_efficiency.py`: {DATA_CREDITS['fnc']}. Two images (`{'`, `'.join(r['held_out'])}`) "
        f"are held out; the 128-px tiles (4-px margin) of the other four form a pool of {r['pool_tiles']} tiles. "
        f"Each slide's tiles are clustered by fosgate (autoencoder + k-means, k = {st['k']}); at each fraction the "
        "tiles are chosen per slide by `select_tiles`: random, balanced over clusters (the reference paper's "
        "recipe), or active (starts from the balanced 10 % set, then adds the tiles the previous model is least "
        "sure of, with balanced quotas). Labels are the true masks of the chosen tiles (a perfect reviewer). A "
        f"fresh reference U-Net is trained for {st['steps']} steps (batch {st['batch']}) at every point, then the "
        "held-out images are predicted whole and scored (pixel F1 / MIoU: mean over the two images; object F1 "
        "and count MAE with the FNC rule, min size 100 px). "
        f"{'Mean over seeds ' + ', '.join(map(str, seeds)) + '.' if len(seeds) > 1 else 'One seed.'}",
        "",
        _table(["labelled", "selection", "tiles", "pixel F1", "pixel MIoU", "object F1", "count MAE", "train s"],
               table_rows),
        "",
        " ".join(reading),
        "",
        "![label efficiency](bench/results/label_efficiency.png)",
        "",
        _provenance(r),
    ])


def _labelling_loop_reading(rounds: list[dict]) -> str:
    """What the rounds show, computed from them (the JSON holds cumulative counts)."""
    edits, replaced, touched, reviewed = [], [], 0, 0
    for x in rounds:
        edits.append(f"{x['tiles_touched'] - touched} of {x['tiles_reviewed'] - reviewed}")
        replaced.append(x["tiles_touched"] - touched)
        touched, reviewed = x["tiles_touched"], x["tiles_reviewed"]
    fewer = all(b < a for a, b in zip(replaced, replaced[1:], strict=False))
    first, last = rounds[0], rounds[-1]
    trend = "rises" if last["object_f1"] > first["object_f1"] + 0.02 else (
        "falls" if last["object_f1"] < first["object_f1"] - 0.02 else "stays level")
    return (f"Reading: the reviewer replaced {', '.join(edits)} proposals in rounds 1-{len(rounds)} ("
            f"{'fewer each round' if fewer else 'not fewer each round'}); held-out object F1 {trend} "
            f"({first['object_f1']:.3f} -> {last['object_f1']:.3f}, count MAE {first['count_mae']:.1f} -> "
            f"{last['count_mae']:.1f}) with {last['labels']} labelled 128-px tiles.")


def labelling_loop(r: dict, plots: Path) -> str:
    if "accept_f1" in r:  # a result of the earlier loop (accept at object F1 >= accept_f1, fine-tune each round)
        reviewer = (f"a scripted reviewer that accepts a proposal whose objects match the truth (object F1 >= "
                    f"{r['accept_f1']}, FNC rule) and otherwise replaces it with the true mask, then "
                    f"{r['epochs_per_round']} epochs of training on all labels so far (fine-tuning the previous model)")
    else:
        start = "from scratch" if r.get("retrain_from") == "scratch" else "fine-tuning the previous model"
        reviewer = ("a scripted reviewer that corrects every proposal to the truth and counts the edits a person "
                    "makes (objects re-drawn, deleted and drawn; matching at IoU >= 0.5; "
                    "`fosgate.core.edit_cost`): a proposal without edits is accepted, any other replaced by the true "
                    f"mask, then {r['epochs_per_round']} epochs of training on all labels so far ({start})")
    has_cost = all("edit_cost" in x for x in r["rounds"])
    head = ["round", "selection", "proposals", "labels", "tiles reviewed", "touched"]
    head += ["edits (re-drawn / deleted / drawn)", "edits so far"] if has_cost else []
    head += ["pixel F1", "pixel MIoU", "object F1", "count MAE", "round s"]
    rows = []
    for x in r["rounds"]:
        row = [x["round"], x["selection"], x["proposals"], x["labels"], x["tiles_reviewed"], x["tiles_touched"]]
        if has_cost:
            c = x["edit_cost"]
            row += [f"{c['edits']} ({c['redrawn']} / {c['deleted']} / {c['drawn']})", x["edit_cost_so_far"]["edits"]]
        row += [f"{x['pixel_f1']:.3f}", f"{x['pixel_miou']:.3f}", f"{x['object_f1']:.3f}", f"{x['count_mae']:.1f}",
                f"{x['seconds']:.0f}"]
        rows.append(row)
    return "\n".join([
        "## Labelling loop on FNC (scripted reviewer)",
        "",
        f"`bench/labelling_loop.py`: {DATA_CREDITS['fnc']}; `{'`, `'.join(r['held_out'])}` are held out, the other "
        "four are the slides, all through a real fosgate server and client. Per slide: tile clustering (k=5). Per "
        f"round and slide: {r['tiles_per_slide_per_round']} tiles selected (round 1 balanced over clusters, later "
        f"active with the current model), proposals (round 1 classical labeller, later the current model), {reviewer}, "
        "and prediction of the held-out images (min size 100 px). \"Touched\" counts replaced tiles, cumulative. "
        f"{r['wall_seconds'] / 60:.1f} min in all.",
        "",
        _table(head, rows),
        "",
        _labelling_loop_reading(r["rounds"]),
        "",
        _provenance(r),
    ])


def _expert_key(e: str) -> int:
    return int(e.split("_")[-1])


def _cfos_plot(r: dict, plots: Path) -> None:
    """Per lab: each expert's F1 (dots), the median expert (bar), each model's F1 with its interval."""
    plt = _plt()
    ceiling = r["ceiling"]["labs"]
    labs = [lab for lab in r.get("labs", list(ceiling)) if lab in ceiling]
    methods = list(dict.fromkeys((x["protocol"], x["method"]) for x in r.get("summary", [])))
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / (1 + len(methods))
    labelled: set[str] = set()
    for i, lab in enumerate(labs):
        c = ceiling[lab]
        ax.bar(i, c["median_expert_f1"], width, color="0.8", label="median expert" if i == 0 else None)
        f1s = [v["f1"] for v in c["experts"].values()]
        ax.plot([i] * len(f1s), f1s, "k.", label="each expert" if i == 0 else None)
        for k, (proto, method) in enumerate(methods):
            row = next((x for x in r["summary"] if (x["protocol"], x["method"], x["lab"]) == (proto, method, lab)), None)
            if row is None:
                continue
            x = i + (k + 1) * width
            lo, hi = row["f1_ci95"]
            label = f"{method} ({proto})"
            ax.bar(x, row["f1"], width, color=f"C{k}", label=label if label not in labelled else None)
            labelled.add(label)
            ax.errorbar(x, row["f1"], yerr=[[row["f1"] - lo], [hi - row["f1"]]], color="k", capsize=2, lw=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labs))] if methods else range(len(labs)), labs)
    ax.set_ylim(0, 1)
    ax.set_ylabel("object F1 vs consensus (IoU >= 0.5)")
    ax.set_title("c-FOS: models vs the lab's experts")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(plots / "cfos.png", dpi=110)
    plt.close(fig)


def cfos(r: dict, plots: Path) -> str:
    st, ceiling = r["settings"], r["ceiling"]["labs"]
    experts = sorted({e for c in ceiling.values() for e in c["experts"]}, key=_expert_key)
    rows = []
    for lab, c in ceiling.items():
        rows.append([lab, c["images"]] + [f"{c['experts'][e]['f1']:.3f}" if e in c["experts"] else "-"
                                          for e in experts]
                    + [f"**{c['median_expert_f1']:.3f}**",
                       ", ".join(f"{e.split('_')[-1]}: {c['experts'][e]['precision']:.2f}/"
                                 f"{c['experts'][e]['recall']:.2f}/{c['experts'][e]['count_error']:+.0f}"
                                 for e in c["experts"])])
    crosscheck = r["ceiling"].get("stardist_matching_check")
    lines = [
        "## c-FOS counting vs the lab's experts (segebarth-cfos)",
        "",
        f"`bench/bench_cfos.py`: {DATA_CREDITS['cfos']}. c-FOS labs wue1 (confocal, 24 images in 6 animal groups, "
        "1.6 px/um), mue (confocal, 3 images, 0.8 px/um), inns1 (epifluorescence, 3 images, 1.0 px/um); "
        f"{r.get('left_out', 'wue2')} is left out. Object scores: one-to-one matching at IoU >= "
        f"{st['iou_threshold']} (`fosgate.core.metrics.match_instances`, StarDist's rule), instances = 4-connected "
        "components; F1, precision (P) and recall (R) pooled over a lab's images (summed TP/FP/FN); count error = "
        "predicted - true count, mean over images.",
        "",
        "### Human ceiling: each expert against the consensus",
        "",
        "No training. The consensus (`masks/`) was estimated from these same experts, so each expert is partly "
        "compared with themself: the ceiling is, if anything, generous. Last column: expert: P/R/mean count error.",
        "",
        _table(["lab", "images"] + [f"expert {_expert_key(e)} F1" for e in experts] + ["median expert", "P/R/count err"],
               rows),
    ]
    if crosscheck:
        lines += ["", f"Cross-check of the matching: StarDist's own `stardist.matching.matching` "
                  f"(stardist {crosscheck.get('stardist')}) on the same {crosscheck['pairs']} expert/consensus pairs "
                  f"gives the same TP/FP/FN for {crosscheck['agree']} of {crosscheck['pairs']}."]
    summ = r.get("summary") or []
    if summ:
        runs = [x for x in r.get("fold_runs", []) if "train_seconds" in x and x["method"] == "reference"]
        t_mean = (sum(x["train_seconds"] for x in runs) / len(runs)) if runs else 0
        lines += [
            "",
            "### Models, lab-wise cross-validated",
            "",
            f"Protocols: `within` = within-lab folds (mue and inns1 leave-one-image-out; wue1 grouped "
            f"{st['wue1_folds']}-fold over its 6 animal groups), `lolo` = leave-one-lab-out (train on the other two "
            f"c-FOS labs). Images are rescaled to {st['px_per_um']} px/um (index.csv's pixel size) for training and "
            "prediction, predicted whole, the probability map is brought back to the image's own resolution, "
            f"thresholded at the model's calibrated threshold and split into components of at least "
            f"{st['min_size_um2']:g} um^2. Training (`reference`): `train_unet` as `fosgate train` does it, "
            f"{st['epochs']} epochs x {st['steps_per_epoch']} steps of {st['batch']} random {st['tile']}-px crops, "
            f"{st['val_fraction']:.0%} of the training images held out for the best epoch and the threshold; mean "
            f"{t_mean:.0f} s per training on this machine. Count err: predicted - true count, mean over images; "
            f"rel. count err: mean over images of abs(predicted - true) / true. Seeds {', '.join(map(str, st['seeds']))}; "
            "F1 is the mean "
            f"over seeds, the interval is a {st['interval']}. Target: object F1 >= the median expert on the same "
            "images.",
            "",
            _table(["protocol", "lab", "method", "images", "object F1 [95 % interval]", "per seed", "P", "R",
                    "count err", "rel. count err", "experts' F1", "median expert", "target"],
                   [[x["protocol"], x["lab"], x["method"], x["images"],
                     f"**{x['f1']:.3f}** [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}]",
                     ", ".join(f"{v:.3f}" for v in x["f1_per_seed"]), f"{x['precision']:.3f}",
                     f"{x['recall']:.3f}", f"{x['count_error']:+.1f}", f"{x['rel_count_error']:.2f}",
                     ", ".join(f"{_expert_key(e)}: {v:.2f}" for e, v in x["experts_f1"].items()),
                     f"{x['median_expert_f1']:.3f}" if x["median_expert_f1"] is not None else "-",
                     "met" if x["target_met"] else "NOT met"] for x in summ]),
        ]
        errs = [x for x in summ if "errors" in x]
        if errs:
            lines += ["", _error_table(["protocol", "lab", "method"], [[x["protocol"], x["lab"], x["method"]] for x in errs],
                                       [x["errors"] for x in errs], "images and seeds")]
        dflt = [x for x in r.get("fold_runs", []) if x.get("method") == "default"]
        if dflt:
            lines += ["", "`default` = the instance-aware `FosgateModel` (arch unet2: foreground + centre maps, seeded "
                      "watershed on the stitched maps; `train_model` with augmentation, post-processing calibrated "
                      "for object F1 on the validation images), same epochs x steps, batch and crop size as the "
                      "reference; folds run: " + ", ".join(f"{x['fold']} (seed {x['seed']}, {x['train_seconds']:.0f} s, "
                                                           f"validation object F1 {x.get('val_object_f1') or float('nan'):.3f})"
                                                           for x in dflt) + "."]
        missing = [p_ for p_ in ("within", "lolo") if p_ not in st["protocols"]]
        if missing or len(st["seeds"]) < 2:
            lines += ["", "**Scope of this result:** " + "; ".join(
                ([f"protocol(s) {', '.join(missing)} not run"] if missing else [])
                + ([f"one seed ({st['seeds'][0]}), so no spread over seeds"] if len(st["seeds"]) < 2 else [])
                + [f"{st['epochs'] * st['steps_per_epoch']} training steps per fold"]) + "."]
        _cfos_plot(r, plots)
        lines += ["", "![c-FOS object F1 per lab: experts and models](bench/results/cfos.png)"]
    else:
        _cfos_plot(r, plots)
        lines += ["", "![c-FOS object F1 per lab: experts](bench/results/cfos.png)", "",
                  "Models: not run yet in this result (`--ceiling-only`); `.venv/bin/python bench/bench_cfos.py` "
                  "trains and scores them."]
    for note in r.get("not_run", []):
        lines += ["", f"**Not run:** {note}. No numbers are shown for it."]
    tta = {(x["protocol"], x["lab"]): x for x in summ if x["method"] == "default+tta"}
    for x in summ:
        t = tta.get((x["protocol"], x["lab"]))
        if x["method"] == "default" and t and "predict_seconds_per_image" in t:
            lines += ["", f"Test-time augmentation ({x['protocol']}, {x['lab']}; the same models, 8 symmetries "
                      f"averaged): object F1 {t['f1']:.3f} [{t['f1_ci95'][0]:.3f}, {t['f1_ci95'][1]:.3f}] vs "
                      f"{x['f1']:.3f} [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}] without "
                      f"({t['f1'] - x['f1']:+.3f}); prediction {t['predict_seconds_per_image']:.1f} s vs "
                      f"{x['predict_seconds_per_image']:.1f} s per image "
                      f"({t['predict_seconds_per_image'] / x['predict_seconds_per_image']:.1f}x)."]
    peers = [x for x in r.get("fold_runs", []) if x.get("method") not in ("reference", "default")]
    done = [x for x in peers if not x.get("error")]
    if done:
        agree = [a for x in done for a in x.get("matching_agrees", [])]
        lines += ["", "Peer: StarDist 2D from scratch (bench/peers/stardist: its own venv with TensorFlow 2.15 / Keras 2; "
                  "32 rays, grid 2, 256-px patches, batch 4, flips / rotations / intensity jitter; 1-99.8 % "
                  "percentile normalisation; the same folds, seeds and pixel size) trained for the wall-clock seconds "
                  "the named fosgate model took to train on the same fold (budget "
                  + ", ".join(f"{x['budget_s']:.0f} s of `{x.get('budget_of') or st['archs'][0]}`" for x in done)
                  + "; it used "
                  + ", ".join(f"{x['train_seconds']:.0f}" for x in done) + " s for "
                  + ", ".join(str(x["steps"]) for x in done) + " steps; the first epoch's graph building is inside "
                  "its time, and it cannot stop before its first step ends), then optimised its probability / NMS "
                  "thresholds on its validation images ("
                  + ", ".join(f"{x['thresholds_seconds']:.0f}" for x in done) + " s more). Its predictions are "
                  "scored here with the same code; StarDist's own `matching` of them gives the same TP/FP/FN for "
                  f"{sum(agree)} of {len(agree)} test images."]
    errors = [x for x in peers if x.get("error")]
    if errors:
        lines += ["", f"**Peer failures:** {len(errors)} of {len(peers)} peer runs failed; first error: "
                  f"`{errors[0]['error'].strip().splitlines()[-1][:300]}`."]
    for note in r.get("notes", []):
        lines += ["", note]
    if r.get("partial"):
        lines += ["", f"**Partial result:** {r['partial']} completed when this was saved."]
    if r.get("parts"):
        lines += ["", "Merged from " + "; ".join(
            f"`{x['command']}` ({str(x['date'])[:16]}, 1-min load {x['machine']['load_average_1min']:.1f} at its end; "
            f"folds: {', '.join(x['folds_run'])}" + (f"; stopped after {x['partial']}" if x.get("partial") else "") + ")"
            for x in r["parts"]) + "."]
    probes = [(name, r.get("companions", {}).get(name)) for name in COMPANIONS["cfos"]]
    return "\n".join(lines + ["", _provenance(r)]
                     + [x for name, probe in probes if probe
                        for x in ("", _cfos_pair(probe, name) if name in PAIRED_CFOS else
                                  _cfos_postprocess(probe) if name == "cfos_postprocess" else
                                  _cfos_budget(r, probe, plots, name))])


def _cfos_postprocess(r: dict) -> str:
    """``bench_postprocess.py``: saved c-FOS models' held-out F1 under each post-processing variant, the
    paired difference from the calibrated one, and whether calibration was reproduced on the rebuilt
    validation images."""
    def post(p: dict) -> str:
        return (f"{p['threshold']:g} / {p['min_size_px']} px / "
                + ("distance split" if p["split_touching"] else f"seeds {p['seed_threshold']:g}"))

    rows = [[x["lab"], x["kind"], x["variant"], x["units"], f"{x['f1']:.3f}",
             "-" if x["variant"] == "calibrated" else f"{x['minus_calibrated']:+.3f}" + (
                 "" if x["units"] < 2 else f" [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"),
             f"{x['reproduced']} / {x['models']}"] for x in r["summary"]]
    per_model = [[x["lab"], x["fold"], x["seed"], x["model"], post(x["study"]["posts"]["calibrated"]),
                  post(x["study"]["posts"]["pooled"]),
                  "; ".join(post(im["oracle_post"]) for im in x["study"]["images"].values())] for x in r["rows"]]
    return "\n".join([
        "### Post-processing: calibrated vs fixed, pooled and oracle (`bench_postprocess.py`)",
        "",
        "Saved models (`bench_cfos.py --save-models`) predicted once per test image and post-processed several "
        "ways: calibrated (the model's own, chosen on its validation images: what a user gets), fixed "
        "(`PostProcess()` defaults), pooled (calibrated on the validation and training images together) and "
        "oracle (the same search on the test image itself: an upper bound, not a method). Held-out object F1 "
        "pooled over (image, model); difference from calibrated with a 95 % bootstrap over those units. "
        "Calibration reproduced: re-running it on the rebuilt validation images gave the stored "
        "post-processing (kind `model`: each fold's model as trained; `member`: an ensemble's networks alone).",
        "",
        _table(["lab", "kind", "variant", "units", "object F1", "minus calibrated [95 %]", "calibration reproduced"],
               rows),
        "",
        "Post-processing per model (threshold / min size at the model's pixel size, oracle at the image's):",
        "",
        _table(["lab", "fold", "seed", "model", "calibrated", "pooled", "oracle (per test image)"], per_model),
        "",
        *[line for note in r.get("notes", []) for line in (note, "")],
        _provenance(r),
    ])


def _pooled_f1(recs, empty: float = 1.0) -> float:
    """F1 of summed TP / FP / FN over records (``empty`` when they hold no object at all)."""
    tp, fp, fn = (sum(x[k] for x in recs) for k in ("tp", "fp", "fn"))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else empty


PAIRED_CFOS = ("cfos_ema", "cfos_ensemble")  # c-FOS companions of two methods paired image by image


def _cfos_pair_method(probe: dict, name: str) -> tuple[str, str, str]:
    """``(method, heading, what was trained)`` of a paired c-FOS companion (``PAIRED_CFOS``)."""
    st = probe["settings"]
    if name == "cfos_ensemble":
        k = int(st.get("members", 1))
        a = f"default+ens{k}"
        return (a, f"### Seed ensembles: {a} vs default (`bench_cfos.py --members {k}`, `--name {name}`)",
                f"a seed ensemble of {k} networks ({a}, `TrainConfig(members={k})`: trained one after another on the "
                "same training / validation split, member i with seed + 1000 i; their maps averaged in one network; "
                "post-processing calibrated on the shared validation images from the averaged maps) and its first "
                "member alone (default: the very training a run without --members does, so the baseline comes from "
                "the same run)")
    a = "default+ema"
    return (a, f"### Weight averaging: {a} vs default (`bench_cfos.py --weight-average`, `--name {name}`)",
            f"plainly (default) and keeping an exponential moving average of the weights ({a}, momentum "
            f"{st.get('weight_average', 0):g} per step; the average is scored on the validation images at each "
            "epoch's end, kept as the best epoch and returned, while training goes on from the raw weights)")


def _cfos_pair(probe: dict, name: str, b: str = "default") -> str:
    """Two methods trained on the same folds and seeds in one probe (``bench_cfos.py --weight-average`` or
    ``--members``): per fold and per lab, each method's held-out object F1 and the paired difference
    ``a - b`` with a 95 % bootstrap over (image, seed) units resampled jointly for both
    (``paired_f1_difference``). An ensemble's other members scored alone (``default/m<i>``) add a column:
    every member's F1 on the same images; several training seeds add the difference on each seed alone."""
    from fosgate.core.metrics import bootstrap_f1_interval, paired_f1_difference

    st = probe["settings"]
    a, heading, trained = _cfos_pair_method(probe, name)
    recs = {(x["method"], x["lab"], x["fold"], x["seed"], x["image"]): x for x in probe.get("records", [])}
    units = sorted({k[1:] for k in recs if k[0] == a and (b, *k[1:]) in recs})
    runs = {(x["method"], x["fold"], x["seed"]): x for x in probe.get("fold_runs", [])}
    others = sorted({k[0] for k in recs if k[0].startswith(f"{b}/m")})  # an ensemble's members 1, 2, ...

    def best_epoch(m, fold, seed) -> str:
        e = runs.get((m, fold, seed), {}).get("best_epoch")
        return "-" if e is None else f"{e:.0f}"

    f1 = _pooled_f1
    fold_rows, lab_rows = [], []
    for lab, fold, seed in dict.fromkeys(u[:3] for u in units):
        mine = [u for u in units if u[:3] == (lab, fold, seed)]
        fa, fb = f1([recs[(a, *u)] for u in mine]), f1([recs[(b, *u)] for u in mine])
        fold_rows.append([lab, fold, seed, len(mine), f"{fb:.3f}", f"{fa:.3f}", f"{fa - fb:+.3f}",
                          *([] if others else [" / ".join(best_epoch(m, fold, seed) for m in (b, a))])])
    medians = {x["lab"]: x.get("median_expert_f1") for x in probe.get("summary", [])}
    several_seeds = len({u[2] for u in units}) > 1
    for lab in dict.fromkeys(u[0] for u in units):
        mine = [u for u in units if u[0] == lab]
        ra, rb = [recs[(a, *u)] for u in mine], [recs[(b, *u)] for u in mine]
        d, lo, hi = paired_f1_difference(ra, rb)
        (la, ha), (lb, hb) = bootstrap_f1_interval(ra), bootstrap_f1_interval(rb)
        med = medians.get(lab)
        alone = [f1([recs[(m, *u)] for u in mine]) for m in (b, *others) if all((m, *u) in recs for u in mine)]
        by_seed = [f1([recs[(a, *u)] for u in mine if u[2] == sd]) - f1([recs[(b, *u)] for u in mine if u[2] == sd])
                   for sd in sorted({u[2] for u in mine})]  # does the difference hold on every training seed?
        one = len(mine) < 2  # one (image, seed): a bootstrap has nothing to resample, so no interval
        iv = (lambda x, y, sign="": "") if one else (lambda x, y, sign="": f" [{x:{sign}.3f}, {y:{sign}.3f}]")
        lab_rows.append([lab, ", ".join(map(str, sorted({u[2] for u in mine}))), len({u[3] for u in mine}),
                         f"{f1(rb):.3f}{iv(lb, hb)}", f"**{f1(ra):.3f}**{iv(la, ha)}", f"{d:+.3f}{iv(lo, hi, '+')}",
                         *([", ".join(f"{v:+.3f}" for v in by_seed)] if several_seeds else []),
                         "- (one image)" if one else "yes" if lo > 0 or hi < 0 else "no",
                         *([", ".join(f"{v:.3f}" for v in alone) + f" (mean {statistics.fmean(alone):.3f})"] if others else []),
                         f"{med:.3f}" if med is not None else "-",
                         "-" if med is None else ("met" if f1(ra) >= med else "NOT met")])
    _, _, text = _cfos_steps({**st, "archs": ["default"]}, probe.get("fold_runs", []))
    return "\n".join([
        heading,
        "",
        f"The same folds and seeds at {text}: {trained}. Held-out object F1 pooled over the test images; "
        f"difference {a} - {b} with a 95 % bootstrap over (image, seed) resampled jointly for both; "
        "distinguishable when that interval excludes 0 (one image has no interval)."
        + (" Difference per seed: on each training seed's test images alone, in the order of the seeds column."
           if several_seeds else ""),
        "",
        _table(["lab", "fold", "seed", "test images", b, a, "difference",
                *([] if others else [f"best epoch ({b} / {a})"])], fold_rows),
        "",
        _table(["lab", "seeds", "images", f"{b} [95 %]", f"{a} [95 %]", "difference [95 %]",
                *(["difference per seed"] if several_seeds else []), "distinguishable",
                *(["each member alone"] if others else []), "median expert", f"target ({a})"], lab_rows),
        "",
        *[line for note in probe.get("notes", []) for line in (note, "")],
        *(["Parts: " + "; ".join(f"`{x.get('command')}` ({str(x.get('date'))[:10]})" for x in probe["parts"]) + ".", ""]
          if probe.get("parts") else []),
        _provenance(probe),
    ])


def _cfos_steps(settings: dict, runs: list[dict]) -> tuple[str, str, str]:
    """A c-FOS run's training budget: a label (``"960 steps"``, ``"30 x 25 steps"``), one epoch (``"40 steps
    of 8 x 128 px"``) and a sentence. ``steps_per_epoch`` None: each fold's steps came from the train job's
    per-epoch rule and are read from its fold runs (``steps_per_epoch``)."""
    epochs, batch = settings["epochs"], settings["batch"]
    crop = settings.get("default_tile", settings["tile"]) if settings.get("archs") == ["default"] else settings["tile"]
    steps = settings.get("steps_per_epoch")
    if steps:
        epoch = f"{steps} steps of {batch} x {crop} px"
        return f"{epochs * steps} steps", epoch, f"{epochs} x {epoch}"
    span = _span(per) if (per := sorted({int(r["steps_per_epoch"]) for r in runs if r.get("steps_per_epoch")})) else "?"
    epoch = f"{span} steps of {batch} x {crop} px"
    return (f"{epochs} x {span} steps", epoch, f"{epochs} epochs x {epoch} (steps per epoch from the train job's "
            "rule: about two passes over the fold's training pixels, at least 25)")


def _cfos_budget(main: dict, probe: dict, plots: Path, name: str = "cfos_budget") -> str:
    """A longer-training run (``bench_cfos.py --name cfos_budget``, ``cfos_long`` or ``cfos_product``) beside
    the same fold, seed and method of the main result: held-out F1 at both budgets and its validation object
    F1 per epoch."""
    st, pst = main["settings"], probe["settings"]
    short, _, short_text = _cfos_steps(st, main.get("fold_runs", []))
    long, long_epoch, long_text = _cfos_steps(pst, probe.get("fold_runs", []))

    pooled_f1 = functools.partial(_pooled_f1, empty=0.0)
    ceiling_rows = probe.get("ceiling", {}).get("rows", [])

    def median_expert(images: set[str]) -> float | None:  # each expert pooled over these images, the median
        f1s = [pooled_f1([r for r in ceiling_rows if r["expert"] == e and r["image"] in images])
               for e in sorted({r["expert"] for r in ceiling_rows if r["image"] in images})]
        return statistics.median(f1s) if f1s else None

    rows, curves = [], []
    for run in probe.get("fold_runs", []):
        key = (run["protocol"], run["fold"], run["method"], run["seed"])
        mine = [x for x in probe["records"] if (x["protocol"], x["fold"], x["method"], x["seed"]) == key]
        theirs = [x for x in main.get("records", []) if (x["protocol"], x["fold"], x["method"], x["seed"]) == key]
        if not mine:
            continue
        f_long = pooled_f1(mine)
        f_short = pooled_f1(theirs) if theirs else None
        images = {x["image"] for x in mine}
        med = median_expert(images)
        rows.append([run["lab"], run["fold"], run["method"], run["seed"], len(images),
                     f"{f_short:.3f}" if f_short is not None else "-", f"**{f_long:.3f}**",
                     f"{med:.3f}" if med is not None else "-", f"{run.get('best_epoch', 0):.0f} of {run.get('epochs_run', 0):.0f}",
                     f"{run['train_seconds'] / 60:.0f} min"])
        if run.get("val_object_f1_curve"):
            curves.append((f"{run['lab']} {run['fold']} seed {run['seed']}", run["val_object_f1_curve"]))
    lab_rows = []  # per lab: every fold the probe ran, pooled, beside the main result on the same folds
    for x in probe.get("summary", []):
        keys = {(r["protocol"], r["fold"], r["method"], r["seed"]) for r in probe.get("fold_runs", [])
                if (r["protocol"], r["method"], r["lab"]) == (x["protocol"], x["method"], x["lab"])}
        theirs = [r for r in main.get("records", []) if (r["protocol"], r["fold"], r["method"], r["seed"]) in keys]
        med = x.get("median_expert_f1")
        lab_rows.append([x["lab"], x["method"], len(keys), x["images"],
                         f"{pooled_f1(theirs):.3f}" if theirs else "-",
                         f"**{x['f1']:.3f}** [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}]",
                         ", ".join(f"{v:.3f}" for v in x.get("f1_per_seed", [])) or "-",
                         f"{x.get('count_error', float('nan')):+.1f}", f"{med:.3f}" if med is not None else "-",
                         "-" if med is None else ("met" if x["f1"] >= med else "NOT met")])
    if curves:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6, max(3.2, 1.6 + 0.12 * len(curves))))  # room for the legend
        for label, c in curves:
            ax.plot(range(1, len(c) + 1), c, marker="o", ms=3, label=label)
        ax.axvline(st["epochs"], color="grey", ls=":", lw=1, label=f"{short} (the main result's whole training, on its "
                   "own shorter schedule)")
        ax.set_xlabel(f"epoch ({long_epoch})")
        ax.set_ylabel("validation object F1")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, ncol=2 if len(curves) > 8 else 1)
        fig.tight_layout()
        fig.savefig(plots / f"{name}.png", dpi=110)
        plt.close(fig)
    return "\n".join([
        f"### Training budget: {long} (`bench_cfos.py --name {name}`)",
        "",
        f"The same folds, seed and method trained for {long_text} instead of "
        f"{short_text} (cosine schedule over all steps, best epoch by validation "
        "object F1); held-out object F1 pooled over the fold's test images. The short column is from the main "
        "result above (another run); the probe's 95 % interval over its test images: "
        + "; ".join(f"{x['lab']} {x['method']} [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}]"
                    for x in probe.get("summary", [])) + ".",
        "",
        _table(["lab", "fold", "method", "seed", "test images", f"F1 at {short}",
                f"F1 at {long}", "median expert (fold's test images)",
                "best epoch",
                "training"], rows),
        "",
        "Per lab, every fold of the probe pooled (mean over seeds of the pooled F1; interval: 95 % bootstrap over "
        "the test images; per seed: each seed's pooled F1):",
        "",
        _table(["lab", "method", "folds", "test images", f"F1 at {short}",
                f"F1 at {long} [95 % interval]", "per seed", "count err",
                "median expert", "target"], lab_rows),
        "",
        *([f"![validation object F1 per epoch](bench/results/{name}.png)", ""] if curves else []),
        *[line for note in probe.get("notes", []) for line in (note, "")],
        *(["Parts: " + "; ".join(f"`{x.get('command')}` ({str(x.get('date'))[:10]})" for x in probe["parts"]) + ".", ""]
          if probe.get("parts") else []),
        "",
        _provenance(probe),
    ])


def cfos_labels(r: dict, plots: Path) -> str:
    companions = r.get("companions", {})
    return "\n".join([
        _cfos_labels_run(r, plots, "## Labels a new lab needs (segebarth-cfos, leave-one-lab-out)", "cfos_labels",
                         [*_cfos_labels_freeze(companions.get("cfos_labels_freeze")),
                          *_cfos_labels_budget(companions.get("cfos_labels_budget")),
                          *_cfos_labels_budget(companions.get("cfos_labels_steps"))]),
        # the strategies re-run, and the equal-steps comparison made against its random arm
        *(["", _cfos_labels_run(companions["cfos_labels_strategies"], plots,
                                "### Selection strategies at the fine-tuning default", "cfos_labels_strategies",
                                _cfos_labels_budget(companions.get("cfos_labels_equal_steps")))]
          if companions.get("cfos_labels_strategies") else []),
    ])


def _fine_tune_words(st: dict) -> str:
    """A labels run's fine-tuning budget: fixed epochs x steps, or the train job's per-epoch rule (0)."""
    return (f"{st['ft_epochs']} x {st['ft_steps']} steps of 8 crops of 128 px" if st["ft_steps"] else
            f"{st['ft_epochs']} epochs of steps of 8 crops of 128 px, each epoch about two passes over the labelled "
            "tiles and at least 25 steps, the train job's rule")


def _cfos_labels_run(r: dict, plots: Path, heading: str, png: str, companions: list[str]) -> str:
    """One bench_cfos_labels result (a run or a merge of runs): its table, reading and paired contrasts;
    ``companions``: lines of the runs compared with it, placed before its plot ``png``."""
    st = r["settings"]
    def same_as_random(x: dict) -> bool:  # scratch and pretrained have no segmenting model to be unsure with
        return x["strategy"] == "active" and x["start"] != "base"

    def ci(lo: float, hi: float) -> str:  # a t interval over few seeds can pass F1's bounds
        return f"[{max(0.0, lo):.3f}, {min(1.0, hi):.3f}]"

    def share_cell(x: dict) -> str:  # per-seed share of the all-tiles F1 and edits (results before it: none)
        if x.get("f1_share") is None or x["all"]:
            return "-"
        lo, hi = x["f1_share_ci95"]
        edits = f" / {100 * x['edit_share']:.0f} %" if x.get("edit_share") is not None else ""
        return f"{100 * x['f1_share']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]{edits}"

    with_share = any(x.get("f1_share") is not None for x in r["rows"])
    rows = [[x["lab"], x["start"], x["strategy"], f"{x['tiles']}{' (all)' if x['all'] else ''}", x["seeds"],
             f"{x['f1']:.3f} {ci(*x['f1_ci95'])}", f"{x['edits']:.0f}",
             *([share_cell(x)] if with_share else []),
             f"{x['count_error']:+.1f}",
             f"{x['median_expert_f1']:.3f}" if x["median_expert_f1"] is not None else "-"] for x in r["rows"]
            if not same_as_random(x)]
    found = []
    for f in r["findings"]:
        if same_as_random(f):
            continue
        if f["edits_to_95pct"] is None:
            found.append(f"{f['lab']} from {f['start']}, {f['strategy']}: no budget reached 95 % of the all-tiles F1 "
                         f"({f['all_tiles_f1']:.3f})")
        else:
            share = (f" = {100 * f['edits_to_95pct'] / f['all_tiles_edits']:.0f} % of the all-tiles edits"
                     if f["all_tiles_edits"] else "")
            per_seed = f.get("share_ci95_to_95pct")
            sure = ("" if not per_seed or f["tiles_to_95pct"] == max(x["tiles"] for x in r["rows"] if x["lab"] == f["lab"])
                    else f" (per seed {100 * per_seed[0]:.1f}-{100 * per_seed[1]:.1f} % of it: "
                    + ("above 95 % on the interval)" if per_seed[0] >= 0.95 else "the interval reaches below 95 %)"))
            found.append(f"{f['lab']} from {f['start']}, {f['strategy']}: 95 % of the all-tiles F1 ({f['all_tiles_f1']:.3f}) "
                         f"with {f['tiles_to_95pct']} tiles, {f['edits_to_95pct']:.0f} edits{share}{sure}")
    pairs = r.get("distinguishable", [])
    apart = [f"{d['lab']}/{d['start']}/{d['tiles']}: {d['a']} vs {d['b']}" for d in pairs if d["distinguishable"]]
    best = []  # per lab and budget: the best start/selection, and which others its interval cannot tell apart
    shown = [x for x in r["rows"] if not same_as_random(x) and x["tiles"] > 0]
    for lab, n in dict.fromkeys((x["lab"], x["tiles"]) for x in shown):
        cands = sorted((x for x in shown if (x["lab"], x["tiles"]) == (lab, n)), key=lambda x: -x["f1"])
        top = cands[0]
        ties = [f"{x['start']}/{x['strategy']}" for x in cands[1:] if min(x["seeds"], top["seeds"]) < 2
                or not (x["f1_ci95"][1] < top["f1_ci95"][0] or top["f1_ci95"][1] < x["f1_ci95"][0])]
        best.append(f"{lab}, {n} tiles: {top['start']}/{top['strategy']} {top['f1']:.3f} {ci(*top['f1_ci95'])}"
                    + (f", not distinguishable from {', '.join(ties)}" if ties else
                       (", above every other at this budget" if len(cands) > 1 else "")))
    return "\n".join([
        heading,
        "",
        "`bench/bench_cfos_labels.py`: for each held-out lab, its images are split into a pool of "
        f"{st['tile']}-px tiles a person may label and test images; starting from scratch, from a base model trained "
        "on the other labs, or from a model pretrained without labels on the pool (masked image modelling), n tiles "
        "are chosen (random, balanced over k-means clusters of tile intensity features, or active: the starting "
        "model's least certain tiles; from scratch or pretrained there is no segmenting model, so active is "
        "random and its rows are not repeated), the starting model's proposals for them are corrected to the "
        "truth by a "
        "scripted reviewer (edits = objects re-drawn + deleted + drawn), the model is fine-tuned "
        f"({_fine_tune_words(st)}"
        + ("; the start's encoder frozen" if st.get("ft_freeze") == "encoder" else "")
        + f"; base: {st['base_epochs']} x "
        f"{st['base_steps']} steps) and scored on the test images (object F1, IoU >= 0.5, pooled; interval: t over "
        + (f"{len(st['seeds'])} seed(s)" if len({x['seeds'] for x in r['rows']}) <= 1 else "the row's seeds")
        + ", shown clipped to [0, 1]; seeds also rotate the pool/test split). "
        f"Mode: {r['mode']}; "
        f"{r['wall_seconds'] / 60:.0f} min.",
        "",
        _table(["held-out lab", "start", "selection", "tiles", "seeds", "object F1 [95 % CI]", "edits",
                *(["of all tiles per seed: F1 [95 % CI] / edits"] if with_share else []),
                "count error", "median expert F1"], rows),
        "",
        "Reading: " + ("; ".join(found) if found else "no all-tiles run in this result") + ". "
        + ("Strategies with disjoint intervals: " + "; ".join(apart) + "." if apart else
           "No two selection strategies are distinguishable at these seeds (their intervals overlap).")
        + (" Best per budget (intervals overlapping the best one's are not distinguishable from it): "
           + "; ".join(best) + "." if best else ""),
        "",
        *(["Paired by seed (a seed fixes the test image and the pool; random selection gives every start the "
           "same tiles): the per-seed difference of object F1, its mean and 95 % t interval; distinguishable when "
           "the interval excludes 0.", "",
           _paired_table(r.get("paired", [])), ""]
          if r.get("paired") else []),
        *companions,
        f"![label efficiency](bench/results/{png}.png)" if (plots / f"{png}.png").exists() else "",
        *[f"\n{note}" for note in r.get("notes", [])],
        *(["", "Run in parts, merged: " + "; ".join(
            f"seed(s) {', '.join(map(str, x['seeds']))} `{x['command']}` ({str(x['date'])[:16]})" for x in r["parts"])
            + "."] if r.get("parts") else []),
        "",
        _provenance(r),
    ])


def _paired_table(pairs: list[dict]) -> str:
    """Per-seed paired contrasts of object F1 (bench_cfos_labels ``paired`` / ``compare``): a - b per seed,
    their mean with its 95 % t interval, and whether it excludes 0."""
    return _table(["held-out lab", "tiles", "a - b", "per seed", "mean [95 % CI]", "distinguishable"],
                  [[x["lab"], x["tiles"], f"{x['a']} - {x['b']}", ", ".join(f"{v:+.3f}" for v in x["per_seed"]),
                    f"{x['mean']:+.3f} [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]",
                    "yes" if x["distinguishable"] else "no"] for x in pairs])


def _cfos_labels_freeze(f: dict | None) -> list[str]:
    """The frozen-encoder run (``--starts base base-frozen``): its paired contrast, one base model per seed."""
    if not f:
        return []
    pairs = [x for x in f.get("paired", [])
             if x["a"].startswith("base-frozen/") and x["b"].startswith("base/")]
    if not pairs:
        return []
    st = f["settings"]
    return ["Which layers to fine-tune (a separate run, `" + str(f.get("command")) + "`, "
            + str(f.get("date", ""))[:10] + f"; {len(st['seeds'])} seeds, {st['ft_epochs']} x {st['ft_steps']} "
            "steps): the same base model per seed fine-tuned whole (`base`) or with its encoder frozen "
            "(`base-frozen`, the library's `TrainConfig(freeze='encoder')`), on the same random tiles.", "",
            _paired_table(pairs), "",
            *[f"{note}" for note in f.get("notes", [])], ""]


def _cfos_labels_budget(b: dict | None) -> list[str]:
    """Runs of other base / fine-tuning budgets (``bench_cfos_labels.py --compare``), paired by seed
    against the first run listed."""
    if not b:
        return []
    arm = "/".join(b["arm"])
    reach = []  # per run and lab: the fewest tiles whose mean F1 is >= 95 % of that run's all-tiles F1
    for run, lab in dict.fromkeys((x["run"], x["lab"]) for x in b["rows"]):
        mine = sorted((x for x in b["rows"] if (x["run"], x["lab"]) == (run, lab)), key=lambda x: x["tiles"])
        full = next((x for x in mine if x["all"]), None)
        if full is None:
            continue
        hit = next(x for x in mine if x["f1"] >= 0.95 * full["f1"])
        share = f" = {100 * hit['edits'] / full['edits']:.0f} % of its edits" if full["edits"] else ""
        reach.append(f"{run}, {lab}: 95 % of its all-tiles F1 ({full['f1']:.3f}) first with {hit['tiles']} tiles"
                     + (" (all)" if hit["all"] else f", {hit['edits']:.0f} edits{share}"))
    return ["Training budget (separate runs of the `" + arm + "` arm, paired by seed against the first: the same "
            "test image and, by random selection, the same tiles per seed): "
            + "; ".join(f"{x['label']}: `{x.get('command')}` ({str(x.get('date', ''))[:10]})" for x in b["runs"])
            + ".", "",
            _table(["budget (epochs x steps of 8 x 128 px)", "held-out lab", "tiles", "object F1 [95 % CI]",
                    "per seed", "edits", "count error"],
                   [[x["run"] + (f" ({x['train_steps']:.0f} steps)" if x.get("train_steps") else ""), x["lab"],
                     f"{x['tiles']}{' (all)' if x['all'] else ''}",
                     f"{x['f1']:.3f} [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}]",
                     ", ".join(f"{v:.3f}" for v in x["f1_per_seed"]), f"{x['edits']:.0f}",
                     f"{x['count_error']:+.1f}"] for x in b["rows"]]), "",
            _paired_table(b["contrasts"]), "",
            *(["Reading (mean over seeds): " + "; ".join(reach) + ".", ""] if reach else []),
            *[f"{note}" for note in b.get("notes", [])], "", _provenance(b), ""]


def cfos_loop(r: dict, plots: Path) -> str:
    st, summ = r["settings"], r["summary"]
    experts = summ["experts"].get(r["lab"], {})
    med = experts.get("median_expert_f1")
    rows = [[x["round"], "base model (other labs)" if x["round"] == 0 else "base + all labels so far",
             f"{x['tiles_reviewed']:.0f}", f"{x['edits']:.0f}", f"{x['edits_so_far']:.0f}",
             f"**{x['f1']:.3f}** [{x['f1_ci95'][0]:.3f}, {x['f1_ci95'][1]:.3f}]",
             ", ".join(f"{v:.3f}" for v in x["f1_per_seed"]), f"{x['precision']:.3f}", f"{x['recall']:.3f}",
             f"{x['count_error']:+.1f}"] for x in summ["rounds"]]
    falls = [f"round {c['from']} -> {c['to']}: {c['mean_change']:+.3f} [{c['change_ci95'][0]:+.3f}, "
             f"{c['change_ci95'][1]:+.3f}]" + (" (a fall beyond the seed interval)" if c["fell_beyond_interval"] else "")
             for c in summ["round_changes"]]
    return "\n".join([
        f"## The labelling loop for a new lab (c-FOS {r['lab']}, through the server)",
        "",
        f"`bench/cfos_loop.py`: {r['lab']} plays a new lab (its images split into pool slides and test images by "
        "seed); a base unet2 is trained through the server on the other two c-FOS labs "
        f"({st['base_epochs']} x {st['base_steps']} steps of 8 x 128 px at {r['model_px_um']} um/px); each round, "
        f"per pool slide, {st['tiles']} tile(s) of 256 px are chosen by active selection with the current model, "
        "its proposals are corrected to the consensus by the scripted reviewer (edits = objects re-drawn + deleted "
        "+ drawn), and the model is retrained from the base on all of the lab's labels so far "
        f"({st['ft_epochs']} x {st['ft_steps']} steps); held-out object F1 at IoU >= 0.5 (pooled over the test "
        f"images; interval: t over {len(st['seeds'])} seed(s)). Mode: {r['mode']}; {r['wall_seconds'] / 60:.0f} min.",
        "",
        _table(["round", "model", "tiles reviewed", "edits", "edits so far", "held-out F1 [95 % CI]", "per seed", "P",
                "R", "count err"], rows),
        "",
        "Experts on the same test images: " + (", ".join(f"{_expert_key(e)}: {v['f1']:.3f}" for e, v in
                                                        experts.get("experts", {}).items())
                                                + f"; median {med:.3f}." if med is not None else "-"),
        "Change of held-out F1 between rounds (mean over seeds, 95 % t interval of the per-seed change): "
        + ("; ".join(falls) if falls else "one round only") + ".",
        *[f"\n{note}" for note in r.get("notes", [])],
        "",
        _provenance(r),
    ])


SECTIONS: list[tuple[str, str, Callable[[Any, Path], str]]] = [
    ("speed", "bench/bench_speed.py", speed),
    ("speed_gpu", "KERAS_BACKEND=jax bench/bench_speed.py --sizes 2048 4096 8192 (on a GPU machine)", speed_gpu),
    ("memory", "bench/bench_memory.py", memory),
    ("scale", "bench/bench_scale.py", scale),
    ("transport", "bench/bench_transport.py", transport),
    ("load", "bench/bench_load.py", load),
    ("cfos", "bench/bench_cfos.py", cfos),
    ("fnc_loo", "bench/bench_fnc_loo.py", fnc_loo),
    ("dsb", "bench/bench_dsb.py", dsb),
    ("delivr", "bench/bench_delivr.py", delivr),
    ("cfos_labels", "bench/bench_cfos_labels.py", cfos_labels),
    ("cfos_loop", "bench/cfos_loop.py", cfos_loop),
    ("label_efficiency", "bench/bench_label_efficiency.py", label_efficiency),
    ("labelling_loop", "bench/labelling_loop.py", labelling_loop),
]


def summary(res: dict[str, Any]) -> str:
    """The headline: each measured number next to its target or published reference."""
    rows = []
    if "speed" in res:
        r = res["speed"]
        rows.append(["speed vs the reference 128-px loop (CPU)", f"{r['speedup_vs_reference']:.1f}x", ">= 10x"])
        rows.append(["stitched time / single-pass time (CPU)", f"{r['fosgate_over_single_pass']:.2f}", "<= 1.15"])
    if "speed_gpu" in res:
        runs = res["speed_gpu"]["runs"]
        rows.append(["speed vs the reference loop (GPU, 2048²-8192²)",
                     f"{min(x['speedup_vs_reference'] for x in runs):.0f}-"
                     f"{max(x['speedup_vs_reference'] for x in runs):.0f}x", ">= 10x"])
        rows.append(["stitched / single pass (GPU)", ", ".join(f"{x['fosgate_over_single_pass']:.2f}" for x in runs),
                     "<= 1.15"])
    if "memory" in res:
        m = res["memory"]
        mr = sorted(m if isinstance(m, list) else m["rows"], key=lambda x: x["size"])
        rows.append([f"peak RSS, {mr[0]['size']}² -> {mr[-1]['size']}² px",
                     f"{mr[0]['peak_rss_mb']:.0f} -> {mr[-1]['peak_rss_mb']:.0f} MB", "flat"])
    if "scale" in res:
        rows.append(["2 vs 1 Dask workers", f"{res['scale']['rows'][-1]['speedup']:.2f}x", "(2 CPUs)"])
    if "transport" in res:
        t = res["transport"]
        rows.append(["gRPC upload / download vs raw socket", f"{t['upload_vs_raw']:.2f} / {t['download_vs_raw']:.2f}",
                     f"raw {t['raw_socket_mb_s']:.0f} MB/s"])
    if "load" in res:
        ld = res["load"]
        rows.append([f"unary / health p99 with {ld['watchers']} open WatchJob streams, {ld['clients']} clients",
                     f"{ld['unary_p99_ms']:.0f} / {ld['health_p99_ms']:.0f} ms, {ld['errors']} errors",
                     "< 1000 ms, 0 errors"])
    if "fnc_loo" in res:
        runs = [("reference", res["fnc_loo"])]
        if res["fnc_loo"].get("companions", {}).get("fnc_loo_default"):
            runs.append(("default", res["fnc_loo"]["companions"]["fnc_loo_default"]))
        for arch, run in runs:
            s, by = run["summary"], run.get("by_colour", {})
            rows.append([f"FNC leave-one-image-out object F1 / count MAE, {arch}",
                         f"{s['object_f1']:.2f} / {s['count_mae']:.1f}"
                         + "".join(f"; {c} {v['object_f1']:.2f} / {v['count_mae']:.1f}" for c, v in by.items()),
                         "c-ResUnet 0.81 / 3.09 (other test set)"])
    if "cfos" in res:
        c = res["cfos"]
        for x in c.get("summary", []):
            rows.append([f"c-FOS {x['lab']} object F1, {x['method']} ({x['protocol']})",
                         f"{x['f1']:.2f} [{x['f1_ci95'][0]:.2f}, {x['f1_ci95'][1]:.2f}]",
                         f">= median expert {x['median_expert_f1']:.2f}: {'met' if x['target_met'] else 'NOT met'}"])
        probes = [c.get("companions", {}).get(n) or {} for n in ("cfos_long", "cfos_product", "cfos_ensemble")]
        for probe, x in ((p_, x) for p_ in probes for x in p_.get("summary", []) if "/m" not in x["method"]):
            folds = {r["fold"] for r in probe.get("records", [])  # an ensemble's first member has no fold run
                     if (r["protocol"], r["lab"], r["method"]) == (x["protocol"], x["lab"], x["method"])}
            rows.append([f"c-FOS {x['lab']} object F1, {x['method']} ({x['protocol']}), "
                         f"{_cfos_steps(probe['settings'], probe.get('fold_runs', []))[0]}, {len(folds)} fold(s)",
                         f"{x['f1']:.2f} [{x['f1_ci95'][0]:.2f}, {x['f1_ci95'][1]:.2f}]",
                         f">= median expert {x['median_expert_f1']:.2f}: {'met' if x['target_met'] else 'NOT met'}"])
        if not c.get("summary"):
            rows.append(["c-FOS human ceiling: median expert F1 per lab",
                         ", ".join(f"{lab} {v['median_expert_f1']:.2f}" for lab, v in c["ceiling"]["labs"].items()),
                         "models to reach it"])
    if "dsb" in res:
        rows_all = sorted(({"arch": "reference", **x} for x in res["dsb"]["rows"]),
                          key=lambda x: (x["arch"], x["train_images"]))
        for arch in dict.fromkeys(x["arch"] for x in rows_all):
            d = [x for x in rows_all if x["arch"] == arch]
            rows.append([f"DSB2018 AP@0.5 ({arch}), " + ", ".join(str(x["train_images"]) for x in d)
                         + " training images", ", ".join(f"{x['ap50']:.2f}" for x in d),
                         "default: >= 0.80 from 10, >= 0.85 from all; 1 image: CellSeg1 0.80, Cellpose 0.59, "
                         "StarDist 0.44"])
    if "delivr" in res:
        p = res["delivr"]["pooled"]
        rows.append(["DELiVR z-slices pixel F1 / object F1, reference", f"{p['pixel_f1']:.2f} / {p['object_f1']:.2f}", "-"])
        q = (res["delivr"].get("companions", {}).get("delivr_default") or {}).get("pooled")
        if q:
            rows.append(["DELiVR z-slices pixel F1 / object F1, default", f"{q['pixel_f1']:.2f} / {q['object_f1']:.2f}",
                         "-"])
    if "label_efficiency" in res:
        le = res["label_efficiency"]["rows"]
        fr = sorted({x["fraction"] for x in le if x["fraction"] < 1.0})
        if fr:
            f0 = fr[0]
            by_strategy: dict[str, list[float]] = {}
            for x in le:
                if x["fraction"] == f0:
                    by_strategy.setdefault(x["strategy"], []).append(x["pixel_f1"])
            val = {k: sum(v) / len(v) for k, v in by_strategy.items()}  # mean over seeds
            n_seeds = len({x["seed"] for x in le})
            rows.append([f"pixel F1 with {f0:.0%} of tiles labelled: random / balanced / active"
                         + (f" (mean of {n_seeds} seeds)" if n_seeds > 1 else ""),
                         " / ".join(f"{val.get(k, float('nan')):.2f}" for k in ("random", "balanced", "active")),
                         "balanced > random (reference paper)"])
    if "cfos_labels" in res:  # per new lab, from the base model with random tiles: F1 (edits) at each budget
        lab_rows = [x for x in res["cfos_labels"]["rows"] if (x["start"], x["strategy"]) == ("base", "random")]
        for lab in dict.fromkeys(x["lab"] for x in lab_rows):
            mine = sorted((x for x in lab_rows if x["lab"] == lab), key=lambda x: x["tiles"])
            med = mine[0].get("median_expert_f1")
            rows.append([f"c-FOS new lab {lab} from the base model: object F1 with "
                         + " / ".join(f"{x['tiles']}{' (all)' if x['all'] else ''}" for x in mine)
                         + f" random tiles ({mine[0]['seeds']} seeds; edits)",
                         ", ".join(f"{x['f1']:.2f} ({x['edits']:.0f})" for x in mine),
                         "95 % of all tiles with <= 25 % of the edits"
                         + (f"; median expert {med:.2f}" if med is not None else "")])
        strat = res["cfos_labels"].get("companions", {}).get("cfos_labels_strategies")
        for lab, start, strategy in dict.fromkeys((x["lab"], x["start"], x["strategy"]) for x in (strat or {}).get("rows", [])
                                                  if not (x["strategy"] == "active" and x["start"] != "base")):
            mine = sorted((x for x in strat["rows"] if (x["lab"], x["start"], x["strategy"]) == (lab, start, strategy)),
                          key=lambda x: x["tiles"])
            rows.append([f"c-FOS new lab {lab} from {start}, fine-tuning default, {strategy} selection: object F1 with "
                         + " / ".join(f"{x['tiles']}{' (all)' if x['all'] else ''}" for x in mine)
                         + f" tiles ({mine[0]['seeds']} seeds; edits)",
                         ", ".join(f"{x['f1']:.2f} ({x['edits']:.0f})" for x in mine),
                         "95 % of all tiles with <= 25 % of the edits"])
        steps = res["cfos_labels"].get("companions", {}).get("cfos_labels_steps")
        for run in (steps or {}).get("runs", []):  # fine-tuned with the train job's per-epoch rule (--ft-steps 0)
            if run["settings"]["ft_steps"]:
                continue
            for lab in dict.fromkeys(x["lab"] for x in steps["rows"] if x["run"] == run["label"]):
                mine = sorted((x for x in steps["rows"] if (x["run"], x["lab"]) == (run["label"], lab)),
                              key=lambda x: x["tiles"])
                rows.append([f"c-FOS new lab {lab} from the base model, fine-tuning steps growing with the tiles: "
                             "object F1 with " + " / ".join(f"{x['tiles']}{' (all)' if x['all'] else ''}" for x in mine)
                             + f" random tiles ({len(mine[0]['seeds'])} seeds; edits)",
                             ", ".join(f"{x['f1']:.2f} ({x['edits']:.0f})" for x in mine),
                             "95 % of all tiles with <= 25 % of the edits"])
    if "cfos_loop" in res:
        c = res["cfos_loop"]
        rounds = c["summary"]["rounds"]
        med = c["summary"]["experts"].get(c["lab"], {}).get("median_expert_f1")
        rows.append([f"c-FOS loop, new lab {c['lab']}: held-out F1 per round (0 = base model; edits so far)",
                     ", ".join(f"{x['f1']:.2f} ({x['edits_so_far']:.0f})" for x in rounds),
                     f"never falls; median expert {med:.2f}" if med is not None else "never falls"])
    if "labelling_loop" in res:
        per_round, touched, reviewed = [], 0, 0  # the JSON holds cumulative counts
        for x in res["labelling_loop"]["rounds"]:
            per_round.append(f"{x['tiles_touched'] - touched}/{x['tiles_reviewed'] - reviewed}")
            touched, reviewed = x["tiles_touched"], x["tiles_reviewed"]
        rows.append(["labelling loop: tiles the reviewer replaced per round (of reviewed)", ", ".join(per_round),
                     "fewer edits each round"])
    if not rows:
        return ""
    return "\n".join(["## Summary", "", _table(["what", "measured", "target / reference"], rows), ""])


OPTIONAL = {"speed_gpu"}  # needs a GPU machine; run_all does not produce it
# results a section compares itself with, handed to it as data["companions"][name] when present
COMPANIONS = {"fnc_loo": ("fnc_loo_independent", "fnc_loo_default"), "delivr": ("delivr_default",),
              "dsb": ("dsb_budget", "dsb_seeds"),
              "cfos": ("cfos_budget", "cfos_long", "cfos_product", "cfos_ema", "cfos_ensemble", "cfos_postprocess"), "cfos_labels": ("cfos_labels_freeze", "cfos_labels_budget",
                                                                           "cfos_labels_steps", "cfos_labels_equal_steps",
                                                                           "cfos_labels_strategies")}


def render(results: Path, plots: Path | None = None) -> str:
    """The whole BENCHMARKS.md text; plots are written into ``plots`` (default: ``results``)."""
    plots = plots or results
    plots.mkdir(parents=True, exist_ok=True)
    parts = [
        "# Benchmarks",
        "",
        "Generated by `bench/run_all.py` (or `bench/report.py` from the stored results) from the JSON files in "
        "`bench/results/`; each section names the script that measured it and the machine it ran on. Every "
        "number comes from one run; ratios compare methods measured in the same run. Scores on ../shared/data "
        "are development scores on small public samples, not benchmarks of record.",
        "",
    ]
    head = len(parts)
    quick = []
    loaded = {}
    for name, script, fn in SECTIONS:
        path = results / f"{name}.json"
        if not path.exists():
            if name not in OPTIONAL:
                parts += [f"## {name}", "", f"Not run yet: `.venv/bin/python {script}`.", ""]
            continue
        data = json.loads(path.read_text())
        found = {c: json.loads((results / f"{c}.json").read_text()) for c in COMPANIONS.get(name, ())
                 if (results / f"{c}.json").exists()}
        if found:
            data = {**data, "companions": found}
        loaded[name] = data
        if isinstance(data, dict) and data.get("mode") == "quick":
            quick.append(name)
        parts += [fn(data, plots), ""]
    parts[head:head] = [summary(loaded)]
    if quick:
        parts[head:head] = [f"**Quick mode** (smoke-test sizes, not meaningful numbers): {', '.join(quick)}.", ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    text = render(args.results)
    if args.markdown.resolve().parent != ROOT.resolve():
        rel = os.path.relpath(args.results.resolve(), args.markdown.resolve().parent)
        text = text.replace("](bench/results/", f"]({rel}/")
    args.markdown.write_text(text)
    print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
