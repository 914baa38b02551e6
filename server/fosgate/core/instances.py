"""Instances from a stitched binary mask, band by band: connected components, size filter, optional
watershed split of touching cells, per-object measurements.

Two ways to split touching cells, both on the stitched maps (never per tile):
- ``centre`` given and ``split_touching`` false (the ``unet2`` network's stitched centre map): a
  *seeded* watershed. Seeds are the
  4-connected regions of ``centre >= seed_threshold`` inside an object; only objects holding two or
  more seeds are split, by a watershed on ``-centre`` from those seeds restricted to the object's
  bounding box and pixels. Cells are small, so this is exact (the same as a whole-image watershed
  whose flooding is confined to each connected component) and memory stays bounded by one band.
- ``split_touching`` (the reference net; for ``unet2`` when calibration chose it, the centre map is then
  not used): a watershed on the distance transform of each object's own mask, seeds at its distance
  maxima.

Invariants
- The result equals labelling the whole mask at once with 4-connectivity (components that cross
  band boundaries are merged with a union-find over the touching rows), so an object on a tile or
  band seam is one object, counted once.
- Labels are numbered 1..N in raster order of each object's first pixel; objects smaller than
  ``min_size`` pixels are removed (set to 0). Split pieces get new numbers after N.
- Memory is bounded by one band of the mask (plus, when splitting, the tallest object), not by the
  slide; ``mask`` and ``labels`` may be zarr arrays on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FOUR = ndimage.generate_binary_structure(2, 1)
BAND_PIXELS = 4_000_000  # pixels per band: bounds the working memory whatever the slide's width


def band_rows(width: int, band: int = 0) -> int:
    """Rows per band: ``band`` if given, else as many as fit ``BAND_PIXELS`` (64..1024)."""
    return band if band > 0 else int(min(1024, max(64, BAND_PIXELS // max(width, 1))))


@dataclass(frozen=True)
class ObjectStats:
    label: int
    area: int
    centroid_y: float
    centroid_x: float
    bbox: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)
    mean_intensity: float


def _grey(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=-1, dtype=np.float64) if block.ndim == 3 else block.astype(np.float64)


def _stats_of(lab: np.ndarray, ids: np.ndarray, grey: np.ndarray | None, oy: int, ox: int) -> list[ObjectStats]:
    """Measurements of the objects ``ids`` in a small in-memory label array at offset (oy, ox)."""
    out = []
    for i in ids:
        ys, xs = np.nonzero(lab == i)
        if ys.size == 0:
            continue
        mean = float(grey[ys, xs].mean()) if grey is not None else 0.0
        out.append(ObjectStats(int(i), int(ys.size), float(ys.mean() + oy), float(xs.mean() + ox),
                               (int(ys.min() + oy), int(xs.min() + ox), int(ys.max() + oy + 1), int(xs.max() + ox + 1)),
                               mean))
    return out


def measure_labels(labels: np.ndarray, grey: np.ndarray | None = None) -> list[ObjectStats]:
    """Measurements of every instance of an in-memory label image, keeping its numbering (touching
    instances stay separate, unlike ``label_mask`` which finds connected components)."""
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            out += _stats_of(labels[sl], np.array([i]), grey[sl] if grey is not None else None, sl[0].start,
                             sl[1].start)
    return out


def label_mask(
    mask,
    labels_out,
    *,
    min_size: int = 10,
    split_touching: bool = False,
    image_reader: Callable[[int, int, int, int], np.ndarray] | None = None,
    band: int = 0,
    split_min_distance: int = 0,
    centre=None,
    seed_threshold: float = 0.5,
    centre_scale: float = 1.0,
) -> list[ObjectStats]:
    """Label ``mask`` (2-D, non-zero = foreground) into ``labels_out`` (same shape, uint32) and return
    the objects' measurements (mean intensity from ``image_reader(y0, y1, x0, x1)`` if given).

    ``split_min_distance`` is the smallest distance between two cell centres for the watershed
    split; 0 derives it from the objects (60% of the radius of a large, 75th-percentile object, >= 4 px),
    so large cells are not cut into pieces and small touching ones are still separated.

    ``centre`` (2-D, same shape, may be a zarr array; values in [0, ``centre_scale``], e.g. uint8 with
    scale 255) switches to the seeded watershed (module docstring) with seeds ``centre >= seed_threshold
    * centre_scale``, unless ``split_touching`` asks for the distance-transform split, which wins."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w = mask.shape
    band = band_rows(w, band)
    total = 0
    areas, sum_y, sum_x, sum_i = [], [], [], []
    y0s, x0s, y1s, x1s = [], [], [], []
    pairs: list[np.ndarray] = []
    prev_last: np.ndarray | None = None
    # pass 1: provisional labels per band + per-label sums + pairs that touch across bands
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        m = np.asarray(mask[y0:y1]) > 0
        lab, n = ndimage.label(m, structure=FOUR, output=np.int64)
        if n:
            ys, xs = np.nonzero(lab)
            idx = lab[ys, xs]
            areas.append(np.bincount(idx, minlength=n + 1)[1:])
            sum_y.append(np.bincount(idx, weights=ys + float(y0), minlength=n + 1)[1:])
            sum_x.append(np.bincount(idx, weights=xs.astype(np.float64), minlength=n + 1)[1:])
            if image_reader is not None:
                block = image_reader(y0, y1, 0, w)
                grey = block[ys, xs].mean(axis=-1, dtype=np.float64) if block.ndim == 3 else block[ys, xs]
                sum_i.append(np.bincount(idx, weights=grey, minlength=n + 1)[1:])
                del block
            for sl in ndimage.find_objects(lab):
                y0s.append(sl[0].start + y0)
                y1s.append(sl[0].stop + y0)
                x0s.append(sl[1].start)
                x1s.append(sl[1].stop)
            lab[lab > 0] += total
        first = lab[0]
        if prev_last is not None:
            both = (prev_last > 0) & (first > 0)
            if both.any():
                pairs.append(np.stack([prev_last[both], first[both]], axis=1))
        prev_last = lab[-1].copy()
        labels_out[y0:y1] = lab.astype(np.uint32)
        total += n
    if total == 0:
        return []
    area = np.concatenate(areas).astype(np.int64)
    sy, sx = np.concatenate(sum_y), np.concatenate(sum_x)
    si = np.concatenate(sum_i) if sum_i else np.zeros(total)
    by0, bx0, by1, bx1 = (np.asarray(v, np.int64) for v in (y0s, x0s, y1s, x1s))
    # union-find over the cross-band pairs (as a graph's connected components)
    if pairs:
        pr = np.unique(np.concatenate(pairs), axis=0) - 1
        graph = coo_matrix((np.ones(len(pr), np.int8), (pr[:, 0], pr[:, 1])), shape=(total, total))
        _, comp = connected_components(graph, directed=False)
    else:
        comp = np.arange(total)
    ncomp = int(comp.max()) + 1
    c_area = np.bincount(comp, weights=area, minlength=ncomp)
    c_sy, c_sx, c_si = (np.bincount(comp, weights=v, minlength=ncomp) for v in (sy, sx, si))
    c_y0 = np.full(ncomp, np.iinfo(np.int64).max)
    c_x0 = np.full(ncomp, np.iinfo(np.int64).max)
    c_y1 = np.zeros(ncomp, np.int64)
    c_x1 = np.zeros(ncomp, np.int64)
    np.minimum.at(c_y0, comp, by0)
    np.minimum.at(c_x0, comp, bx0)
    np.maximum.at(c_y1, comp, by1)
    np.maximum.at(c_x1, comp, bx1)
    first_prov = np.full(ncomp, total, np.int64)
    np.minimum.at(first_prov, comp, np.arange(total))
    keep = np.nonzero(c_area >= max(min_size, 1))[0]
    keep = keep[np.argsort(first_prov[keep], kind="stable")]  # raster order of first pixel
    final_of_comp = np.zeros(ncomp, np.uint32)
    final_of_comp[keep] = np.arange(1, len(keep) + 1, dtype=np.uint32)
    lookup = np.zeros(total + 1, np.uint32)
    lookup[1:] = final_of_comp[comp]
    objects = [
        ObjectStats(int(final_of_comp[c]), int(c_area[c]), float(c_sy[c] / c_area[c]), float(c_sx[c] / c_area[c]),
                    (int(c_y0[c]), int(c_x0[c]), int(c_y1[c]), int(c_x1[c])),
                    float(c_si[c] / c_area[c]) if image_reader is not None else 0.0)
        for c in keep
    ]
    # pass 2: final numbering
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        labels_out[y0:y1] = lookup[np.asarray(labels_out[y0:y1])]
    if split_touching and objects:
        if split_min_distance <= 0:
            large_area = float(np.percentile([o.area for o in objects], 75))
            split_min_distance = max(4, int(0.6 * np.sqrt(large_area / np.pi)))
        objects = _split_touching(labels_out, objects, image_reader, band, split_min_distance, min_size)
    elif centre is not None and objects:
        objects = _split_by_seeds(labels_out, objects, centre, seed_threshold * centre_scale, image_reader, band,
                                  min_size)
    return objects


def _split_touching(labels, objects: list[ObjectStats], image_reader, band: int, min_distance: int,
                    min_size: int) -> list[ObjectStats]:
    """Watershed on the distance transform inside each object; band by band over the objects whose
    bounding box starts in the band (the band is extended to hold them whole)."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    h, w = labels.shape
    by_id = {o.label: o for o in objects}
    next_id = max(by_id) + 1
    starts = np.array([o.bbox[0] for o in objects])
    order = np.argsort(starts, kind="stable")
    small = np.pi * min_distance ** 2  # objects smaller than ~one cell of that radius are never split
    for y0 in range(0, h, band):
        members = [objects[i] for i in order if y0 <= starts[i] < y0 + band and objects[i].area >= 2 * small]
        if not members:
            continue
        y1 = max(o.bbox[2] for o in members)
        block = np.asarray(labels[y0:y1])
        grey = _grey(image_reader(y0, y1, 0, w)) if image_reader is not None else None
        changed = False
        for o in members:
            oy0, ox0, oy1, ox1 = o.bbox
            sl = (slice(oy0 - y0, oy1 - y0), slice(ox0, ox1))
            crop = block[sl]
            obj = crop == o.label
            dist = ndimage.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
            peaks = peak_local_max(dist, min_distance=min_distance, labels=obj.astype(np.int32), exclude_border=False,
                                   threshold_abs=min_distance * 0.5)
            if len(peaks) < 2:
                continue
            markers = np.zeros(crop.shape, np.int32)
            markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
            ws = watershed(-dist, markers, mask=obj, connectivity=1)
            sizes = np.bincount(ws.ravel(), minlength=len(peaks) + 1)[1:]
            if (sizes < min_size).any():
                continue
            new = np.zeros(crop.shape, np.int64)
            ids = [o.label] + list(range(next_id, next_id + len(peaks) - 1))
            next_id += len(peaks) - 1
            for k, lid in enumerate(ids, start=1):
                new[ws == k] = lid
            crop[obj] = new[obj]
            changed = True
            del by_id[o.label]
            g = grey[sl] if grey is not None else None
            for s in _stats_of(crop, np.array(ids), g, oy0, ox0):
                by_id[s.label] = s
        if changed:
            labels[y0:y1] = block
    return [by_id[k] for k in sorted(by_id)]


def _split_by_seeds(labels, objects: list[ObjectStats], centre, level: float, image_reader, band: int,
                    min_size: int) -> list[ObjectStats]:
    """Seeded watershed (module docstring) band by band over the objects whose bounding box starts in
    the band (the band is extended to hold them whole). Pieces smaller than ``min_size`` are given to
    a neighbouring piece by the watershed itself: their seeds are dropped and the split redone."""
    from skimage.segmentation import watershed

    h, w = labels.shape
    by_id = {o.label: o for o in objects}
    next_id = max(by_id) + 1
    starts = np.array([o.bbox[0] for o in objects])
    order = np.argsort(starts, kind="stable")
    for y0 in range(0, h, band):
        members = [objects[i] for i in order if y0 <= starts[i] < y0 + band and objects[i].area >= 2]
        if not members:
            continue
        y1 = max(o.bbox[2] for o in members)
        block = np.asarray(labels[y0:y1])
        cmap = np.asarray(centre[y0:y1])
        grey = None
        changed = False
        for o in members:
            oy0, ox0, oy1, ox1 = o.bbox
            sl = (slice(oy0 - y0, oy1 - y0), slice(ox0, ox1))
            crop = block[sl]
            obj = crop == o.label
            c = cmap[sl].astype(np.float32)
            markers, n = ndimage.label((c >= level) & obj, structure=FOUR)
            if n < 2:
                continue
            ws = watershed(-c, markers, mask=obj, connectivity=1)
            sizes = np.bincount(ws.ravel(), minlength=n + 1)[1:]
            while n >= 2 and (sizes < min_size).any():  # too-small pieces: drop their seeds, flood again
                keep = np.nonzero(sizes >= min_size)[0] + 1
                if keep.size < 2:
                    n = keep.size
                    break
                markers = np.where(np.isin(markers, keep), markers, 0)
                markers, n = ndimage.label(markers > 0, structure=FOUR)
                ws = watershed(-c, markers, mask=obj, connectivity=1)
                sizes = np.bincount(ws.ravel(), minlength=n + 1)[1:]
            if n < 2:
                continue
            new = np.zeros(crop.shape, np.int64)
            ids = [o.label] + list(range(next_id, next_id + n - 1))
            next_id += n - 1
            for k, lid in enumerate(ids, start=1):
                new[ws == k] = lid
            crop[obj] = new[obj]
            changed = True
            del by_id[o.label]
            if image_reader is not None and grey is None:
                grey = _grey(image_reader(y0, y1, 0, w))
            g = grey[sl] if grey is not None else None
            for st in _stats_of(crop, np.array(ids), g, oy0, ox0):
                by_id[st.label] = st
        if changed:
            labels[y0:y1] = block
    return [by_id[k] for k in sorted(by_id)]
