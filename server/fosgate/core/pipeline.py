"""Whole-slide prediction: stitched probability -> mask -> instances -> the six output files.

Invariants
- The slide is read window by window and the mask and labels live in on-disk zarr arrays, so
  memory does not grow with the slide (only with the tile size and the image width of a band).
- The stitched probability map equals a single pass over the whole image (``fosgate.core.predict``);
  instances are computed on the stitched mask, so no object is cut or counted twice at a seam.
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
from fosgate.core.normalize import Normalization
from fosgate.core.predict import auto_tile, predict_tiled
from fosgate.core.tiling import plan_windows
from fosgate.core.unet import required_halo
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


class _Scaled:
    """Read-only view of a 0/1 array as 0/255 (for the mask file) without a copy on disk."""

    def __init__(self, arr, factor: int):
        self.arr, self.factor = arr, factor
        self.shape, self.dtype = arr.shape, np.dtype(np.uint8)

    def __getitem__(self, key):
        return (np.asarray(self.arr[key]) * self.factor).astype(np.uint8)


def predict_slide(
    slide,
    model,
    *,
    in_channels: int,
    normalization: Normalization,
    receptive_field: int,
    out_dir: Path,
    stem: str,
    tile: int | tuple[int, int] = 0,
    halo: int = 0,
    threshold: float = 0.5,
    min_size: int = 10,
    split_touching: bool = False,
    region: tuple[int, int, int, int] | None = None,
    memory_budget: float = 1.5e9,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    executor=None,
    model_dir: str | None = None,
) -> PredictionOutputs:
    """Predict ``slide`` (an open ``fosgate.core.slides.Slide``) with a Keras U-Net and write the
    outputs named ``<stem><suffix>`` (see ``OUTPUT_SUFFIXES``) into ``out_dir``.

    ``halo`` 0 means the smallest 16-multiple covering the model's receptive field, which makes
    the stitched result equal a single pass; ``tile`` 0 picks the window shape that fits the memory
    budget with the least halo recomputation (``auto_tile``). With ``executor`` (a
    ``fosgate.distributed.DaskExecutor``) and ``model_dir`` the windows are predicted by Dask workers,
    which read the slide file themselves; the result is the same mask."""
    import zarr

    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    info = slide.info
    rx, ry, rw, rh = region if region and region[2] and region[3] else (0, 0, info.width, info.height)
    out_dir = Path(out_dir)
    stem = check_stem(stem) or "slide"
    work = inside(out_dir, f".{stem}.work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    report(0.0, "Measuring the slide's intensity range.")
    lo, hi = normalization.stats(slide)

    def read_raw(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return slide.read(ry + y0, ry + y1, rx + x0, rx + x1)

    def read_input(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return Normalization.apply(read_raw(y0, y1, x0, x1), lo, hi, normalization.clip_max)

    halo = halo or required_halo(receptive_field)
    tile = tile or auto_tile(rh, rw, in_channels, memory_budget_bytes=memory_budget, halo=halo)
    windows = plan_windows(rh, rw, tile, halo)
    win_h, win_w = windows[0].wy1 - windows[0].wy0, windows[0].wx1 - windows[0].wx0
    chunks = (1024, 1024)
    # written by this thread only (Dask workers send their thresholded cores back), so chunks need not match cores
    mask = zarr.open_array(work / "mask.zarr", mode="w", shape=(rh, rw), chunks=chunks, dtype="uint8",
                           fill_value=0)
    labels = zarr.open_array(work / "labels.zarr", mode="w", shape=(rh, rw), chunks=chunks, dtype="uint32",
                             fill_value=0)

    def on_block(cy0: int, cy1: int, cx0: int, cx1: int, prob: np.ndarray) -> None:
        mask[cy0:cy1, cx0:cx1] = (prob >= threshold).astype(np.uint8)

    def on_mask(cy0: int, cy1: int, cx0: int, cx1: int, core: np.ndarray) -> None:
        mask[cy0:cy1, cx0:cx1] = core

    def on_tile(done: int, total: int) -> None:
        report(0.7 * done / max(total, 1), f"Predicted {done}/{total} windows.")

    plan = f"{len(windows)} window(s) of {win_w}x{win_h} px with a {halo}-px halo"
    if executor is not None and model_dir:
        report(0.0, f"Predicting {rw}x{rh} px in {plan} on {executor.describe()}.")
        executor.predict_mask(model_dir=model_dir, slide_path=str(slide.path), channel=_channel_of(slide),
                              lo=lo, hi=hi, clip_max=normalization.clip_max, region=(rx, ry, rw, rh),
                              windows=windows, on_mask=on_mask, threshold=threshold, progress=on_tile,
                              should_cancel=should_cancel)
    else:
        report(0.0, f"Predicting {rw}x{rh} px in {plan}.")
        predict_tiled(model, read_input, rh, rw, tile=tile, halo=halo, on_block=on_block, progress=on_tile,
                      should_cancel=should_cancel)

    report(0.7, "Finding cells in the stitched mask.")
    objects = label_mask(mask, labels, min_size=min_size, split_touching=split_touching, image_reader=read_raw)
    if should_cancel and should_cancel():
        from fosgate.errors import Cancelled

        raise Cancelled("Cancelled by user.")

    report(0.85, f"Writing outputs for {len(objects)} cells.")
    paths = {k: inside(out_dir, f"{stem}{s}") for k, s in OUTPUT_SUFFIXES.items()}
    px = info.pixel_size_um
    write_ome_tiff(paths["mask"], _Scaled(mask, 255), dtype=np.uint8, pixel_size_um=px, name=f"{stem} mask")
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
    return PredictionOutputs(paths, len(objects), time.perf_counter() - t0, tile_hw, len(windows), halo, rh, rw)


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
