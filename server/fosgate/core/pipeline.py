"""Whole-slide prediction: stitched probability -> mask -> instances -> the six output files.

Invariants
- The slide is read window by window and the mask and labels live in on-disk zarr arrays, so
  memory does not grow with the slide (only with the tile size and the image width of a band).
- The stitched maps (foreground, and the centre map of ``unet2``) equal a single pass over the whole
  image at the model's scale (``fosgate.core.predict``); instances (components, then the seeded
  watershed) are computed on the stitched maps, so no object is cut or counted twice at a seam.
- Output coordinates: ``mask``, ``labels`` and the ROI set are in the predicted image (the region,
  or the whole slide); the GeoJSON, counts CSV and measurements are in slide pixel coordinates so
  that QuPath places detections where they belong.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fosgate.core.exports import (
    GeoJsonWriter,
    RoiZipWriter,
    iter_object_polygons,
    write_counts_csv,
    write_ome_tiff,
    write_overlay_png,
)
from fosgate.core.instances import ObjectStats, label_mask
from fosgate.core.predict import auto_tile
from fosgate.core.tiling import plan_windows
from fosgate.names import check_stem, inside

Progress = Callable[[float, str], None]

OUTPUT_SUFFIXES = {
    "mask": ".mask.ome.tif",
    "labels": ".labels.ome.tif",
    "rois": ".rois.zip",
    "geojson": ".geojson",
    "counts": ".counts.csv",
    "overlay": ".overlay.png",
}


@dataclass
class PredictionOutputs:
    paths: dict[str, Path]
    count: int
    seconds: float
    tile: tuple[int, int]  # core size (height, width) of an interior window
    windows: int
    halo: int
    height: int
    width: int
    post: object = None  # the fosgate.core.model.PostProcess used
    factor: float = 1.0  # model pixels per slide pixel (1: no resampling)


class _CellMask:
    """Read-only view of a label array as a 0/``factor`` mask of its cells (for the mask file) without a
    copy on disk: the mask file holds exactly the pixels of the counted cells (objects below the min size,
    dropped from the labels, are not in it)."""

    def __init__(self, arr, factor: int):
        self.arr, self.factor = arr, factor
        self.shape, self.dtype = arr.shape, np.dtype(np.uint8)

    def __getitem__(self, key):
        return ((np.asarray(self.arr[key]) > 0) * self.factor).astype(np.uint8)


def predict_slide(
    slide,
    model,
    *,
    out_dir: Path,
    stem: str,
    options=None,
    backend=None,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PredictionOutputs:
    """Predict ``slide`` (an open ``fosgate.core.slides.Slide``) with ``model`` (a
    ``fosgate.core.model.FosgateModel``) and write the outputs named ``<stem><suffix>`` (see
    ``OUTPUT_SUFFIXES``) into ``out_dir``.

    ``options`` (``fosgate.core.model.PredictOptions``): ``halo`` 0 means the smallest 16-multiple
    covering the model's receptive field, which makes the stitched result equal a single pass; ``tile`` 0
    picks the window shape that fits the memory budget with the least halo recomputation (``auto_tile``).
    When the slide's pixel size (``options.pixel_size_um`` or its metadata) and the model's are both known
    and differ, the network sees the slide resampled to the model's scale (``fosgate.core.rescale``;
    stitching is exact at that scale) and the maps are resampled back, so every output is at the slide's
    own resolution. ``backend`` runs the window predictions (default: this process; a
    ``fosgate.distributed.DaskExecutor`` fans them out to workers, which read the slide file themselves);
    the result is the same."""
    import zarr

    from fosgate.core.backend import LocalBackend, WindowJob
    from fosgate.core.model import CENTRE_SCALE, PredictOptions, encode_core
    from fosgate.core.rescale import read_maps_at_source, scale_factor

    opts = options or PredictOptions()
    backend = backend or LocalBackend()
    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    info = slide.info
    region = opts.region
    rx, ry, rw, rh = region if region and region[2] and region[3] else (0, 0, info.width, info.height)
    out_dir = Path(out_dir)
    stem = check_stem(stem) or "slide"
    work = inside(out_dir, f".{stem}.work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    report(0.0, "Measuring the slide's intensity range.")
    normalization = model.normalization
    lo, hi = normalization.stats(slide)
    px = float(opts.pixel_size_um or info.pixel_size_um or 0.0)
    factor = scale_factor(px, model.pixel_size_um)
    post = model.resolve_post(opts, px)
    job = WindowJob(str(getattr(slide, "path", "")), _channel_of(slide), (rx, ry, rw, rh),
                    tuple(map(float, lo)), tuple(map(float, hi)), float(normalization.clip_max), factor,
                    "post" if factor == 1.0 else "raw", float(post.threshold), bool(opts.tta))
    mh, mw = job.shape  # the image the network sees (the region at the model's scale)

    def read_raw(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return slide.read(ry + y0, ry + y1, rx + x0, rx + x1)

    halo = opts.halo or model.halo
    tile = opts.tile or auto_tile(mh, mw, model.in_channels, memory_budget_bytes=opts.memory_budget, halo=halo)
    windows = plan_windows(mh, mw, tile, halo)
    win_h, win_w = windows[0].wy1 - windows[0].wy0, windows[0].wx1 - windows[0].wx0
    chunks = (1024, 1024)
    n_out = len(model.outputs)
    # written by this thread only (Dask workers send their encoded cores back), so chunks need not match cores
    mask = zarr.open_array(work / "mask.zarr", mode="w", shape=(rh, rw), chunks=chunks, dtype="uint8",
                           fill_value=0)
    centre = zarr.open_array(work / "centre.zarr", mode="w", shape=(rh, rw), chunks=chunks, dtype="uint8",
                             fill_value=0) if n_out > 1 else None
    labels = zarr.open_array(work / "labels.zarr", mode="w", shape=(rh, rw), chunks=chunks, dtype="uint32",
                             fill_value=0)
    maps = None
    if factor != 1.0:  # float maps at the model's scale, resampled to the slide's pixels below
        maps = zarr.open_array(work / "maps.zarr", mode="w", shape=(mh, mw, n_out), chunks=(1024, 1024, n_out),
                               dtype="float16", fill_value=0)

    def on_core(cy0: int, cy1: int, cx0: int, cx1: int, core: np.ndarray) -> None:
        if maps is not None:
            maps[cy0:cy1, cx0:cx1] = core
            return
        mask[cy0:cy1, cx0:cx1] = core[..., 0]
        if centre is not None:
            centre[cy0:cy1, cx0:cx1] = core[..., 1]

    def on_tile(done: int, total: int) -> None:
        report(0.7 * done / max(total, 1), f"Predicted {done}/{total} windows.")

    plan = f"{len(windows)} window(s) of {win_w}x{win_h} px with a {halo}-px halo"
    scale = f" at the model's scale ({factor:.3g}x)" if factor != 1.0 else ""
    tta = " with test-time augmentation (8 symmetries)" if opts.tta else ""
    report(0.0, f"Predicting {rw}x{rh} px{scale} in {plan}{tta} on {backend.describe()}.")
    backend.predict_cores(model, slide, job, windows, on_core, progress=on_tile, should_cancel=should_cancel)
    if maps is not None:
        report(0.7, "Resampling the maps to the slide's pixels.")
        at_source = read_maps_at_source(lambda a0, a1, b0, b1: maps[a0:a1, b0:b1], mh, mw, factor)
        for y0 in range(0, rh, 512):
            y1 = min(rh, y0 + 512)
            enc = encode_core(at_source(y0, y1, 0, rw), post.threshold)
            mask[y0:y1] = enc[..., 0]
            if centre is not None:
                centre[y0:y1] = enc[..., 1]

    report(0.7, "Finding cells in the stitched maps.")
    objects = label_mask(mask, labels, min_size=post.min_size_px, split_touching=post.split_touching,
                         image_reader=read_raw, centre=centre, seed_threshold=post.seed_threshold,
                         centre_scale=CENTRE_SCALE)
    if should_cancel and should_cancel():
        from fosgate.errors import Cancelled

        raise Cancelled("Cancelled by user.")

    # ---- output step: the final instance labels (zarr ``labels``) and ``objects`` -> the six files
    report(0.85, f"Writing outputs for {len(objects)} cells.")
    paths = {k: inside(out_dir, f"{stem}{s}") for k, s in OUTPUT_SUFFIXES.items()}
    px = info.pixel_size_um or px
    write_ome_tiff(paths["mask"], _CellMask(labels, 255), dtype=np.uint8, pixel_size_um=px, name=f"{stem} mask")
    label_dtype = np.uint16 if len(objects) < 65535 else np.uint32
    write_ome_tiff(paths["labels"], labels, dtype=label_dtype, pixel_size_um=px, name=f"{stem} labels")
    # one streamed pass over the objects writes the ROI set and the GeoJSON (no list of polygons in memory)
    rois, geojson = RoiZipWriter(paths["rois"]), GeoJsonWriter(paths["geojson"], pixel_size_um=px)
    for o, g in iter_object_polygons(labels, objects):
        rois.add(o, g)
        geojson.add(_shift(o, ry, rx), _translate(g, rx, ry))
    rois.close()
    geojson.close()
    write_counts_csv(paths["counts"], (_shift(o, ry, rx) for o in objects), pixel_size_um=px)
    write_overlay_png(paths["overlay"], read_raw, labels, rh, rw)
    shutil.rmtree(work, ignore_errors=True)
    tile_hw = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    return PredictionOutputs(paths, len(objects), time.perf_counter() - t0, tile_hw, len(windows), halo, rh, rw,
                             post=post, factor=factor)


def _channel_of(slide) -> int | None:
    ch = slide.info.channel
    return None if ch is None or ch < 0 else int(ch)


def _shift(o: ObjectStats, dy: int, dx: int) -> ObjectStats:
    if not dy and not dx:
        return o
    y0, x0, y1, x1 = o.bbox
    return replace(o, centroid_y=o.centroid_y + dy, centroid_x=o.centroid_x + dx, bbox=(y0 + dy, x0 + dx, y1 + dy, x1 + dx))


def _translate(geom, dx: int, dy: int):
    if not dy and not dx:
        return geom
    from shapely.affinity import translate

    return translate(geom, xoff=dx, yoff=dy)
