"""Output files: tiled OME-TIFF written from a lazy array, object polygons, ImageJ ROI set, QuPath
GeoJSON, counts CSV and a PNG overlay.

Invariants
- ``write_ome_tiff`` streams tile by tile from any array-like with ``shape`` and slicing (a zarr
  array on disk), so writing never holds the whole image.
- Object polygons follow pixel edges (``rasterio.features.shapes``, 4-connectivity, integer corner
  coordinates, x = column, y = row), so a polygon filled by ImageJ or QuPath covers exactly the
  object's pixels; holes are kept (composite ROI in ImageJ, polygon interiors in GeoJSON).
- ROI i in the zip, feature i in the GeoJSON and row i in the CSV are the same object (label order).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from fosgate.core.instances import ObjectStats

TILE = 512
CLASS_NAME = "c-fos"
CLASS_COLOR = [255, 64, 64]


def write_ome_tiff(path: Path, arr, *, dtype=None, pixel_size_um: float = 0.0, name: str = "") -> Path:
    """Write a 2-D array-like as a zlib-compressed, tiled (Big)TIFF with OME-XML metadata."""
    import tifffile

    h, w = arr.shape[:2]
    dtype = np.dtype(dtype or arr.dtype)

    def tiles() -> Iterator[np.ndarray]:
        for y0 in range(0, h, TILE):
            band = np.asarray(arr[y0:min(h, y0 + TILE)])
            for x0 in range(0, w, TILE):
                t = band[:, x0:x0 + TILE].astype(dtype, copy=False)
                if t.shape != (TILE, TILE):
                    t = np.pad(t, ((0, TILE - t.shape[0]), (0, TILE - t.shape[1])))
                yield t

    metadata: dict = {"axes": "YX", "Name": name or Path(path).name}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um,
                        PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    bigtiff = h * w * dtype.itemsize > 2**31
    tmp = Path(path).with_name(Path(path).name + ".part")
    tifffile.imwrite(tmp, tiles(), shape=(h, w), dtype=dtype, tile=(TILE, TILE), compression="zlib",
                     ome=True, bigtiff=bigtiff, metadata=metadata)
    tmp.replace(path)
    return Path(path)


def object_polygon(crop: np.ndarray, label: int, oy: int, ox: int):
    """Pixel-edge polygon (shapely, slide-free image coordinates) of ``label`` in a label crop at
    offset (oy, ox). Pieces that touch only diagonally become a MultiPolygon."""
    from rasterio.transform import Affine
    from shapely.geometry import MultiPolygon, shape

    from fosgate.core.pixel_raster import shapes

    m = crop == label
    transform = Affine(1, 0, ox, 0, 1, oy)
    polys = [shape(g) for g, v in shapes(m.astype(np.uint8), m, transform, connectivity=4) if v == 1]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def iter_object_polygons(labels, objects: list[ObjectStats], band: int = 0) -> Iterator[tuple[ObjectStats, object]]:
    """(object, polygon) for each object, in label order, reading ``labels`` band by band (a band
    grows to hold the tallest object starting in it). Objects must be sorted by label, as
    ``label_mask`` returns them; only one band's polygons are held at a time."""
    from fosgate.core.instances import band_rows

    h = labels.shape[0]
    band = band_rows(labels.shape[1], band)
    order = sorted(range(len(objects)), key=lambda i: objects[i].bbox[0])
    pending: dict[int, object] = {}
    nxt = 0  # index into objects of the next object to yield
    i = 0
    for y0 in range(0, h, band):
        members = []
        while i < len(order) and objects[order[i]].bbox[0] < y0 + band:
            members.append(order[i])
            i += 1
        if members:
            y1 = max(objects[k].bbox[2] for k in members)
            x0 = min(objects[k].bbox[1] for k in members)
            x1 = max(objects[k].bbox[3] for k in members)
            block = np.asarray(labels[y0:y1, x0:x1])
            for k in members:
                o = objects[k]
                by0, bx0, by1, bx1 = o.bbox
                pending[k] = object_polygon(block[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0], o.label, by0, bx0)
        while nxt < len(objects) and nxt in pending:
            geom = pending.pop(nxt)
            if geom is not None:
                yield objects[nxt], geom
            nxt += 1
    while nxt < len(objects):
        geom = pending.pop(nxt, None)
        if geom is not None:
            yield objects[nxt], geom
        nxt += 1


def _rings(geom) -> list[list[np.ndarray]]:
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    return [[np.asarray(p.exterior.coords)] + [np.asarray(r.coords) for r in p.interiors] for p in polys]


def roi_for(o: ObjectStats, geom, name: str):
    """An ImageJ ROI: a polygon for a simple shape, a composite (shape) ROI for holes or pieces."""
    from roifile import ROI_TYPE, ImagejRoi

    rings = _rings(geom)
    if len(rings) == 1 and len(rings[0]) == 1:
        pts = rings[0][0][:-1].astype(np.int32)  # closed ring: drop the repeated point
        roi = ImagejRoi.frompoints(pts, name=name)
        roi.roitype = ROI_TYPE.POLYGON
        return roi
    path: list[float] = []
    for poly in rings:
        for ring in poly:
            pts = ring[:-1]
            path += [0.0, float(pts[0, 0]), float(pts[0, 1])]
            for x, y in pts[1:]:
                path += [1.0, float(x), float(y)]
            path.append(4.0)
    roi = ImagejRoi(roitype=ROI_TYPE.RECT, name=name)
    roi.multi_coordinates = np.asarray(path, np.float32)
    roi.shape_roi_size = len(path)
    y0, x0, y1, x1 = o.bbox
    roi.left, roi.top, roi.right, roi.bottom = x0, y0, x1, y1
    return roi


class RoiZipWriter:
    """ImageJ ROI set written one ROI at a time (open in Fiji with the ROI Manager, or drag onto Fiji)."""

    def __init__(self, path: Path):
        import zipfile

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".part")
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, o: ObjectStats, geom) -> None:
        name = f"cell-{o.label:06d}"
        self.zf.writestr(f"{name}.roi", roi_for(o, geom, name).tobytes())

    def close(self) -> Path:
        self.zf.close()
        self.tmp.replace(self.path)
        return self.path


class GeoJsonWriter:
    """QuPath-compatible FeatureCollection of detections (File › Import objects in QuPath 0.4+),
    written feature by feature."""

    def __init__(self, path: Path, pixel_size_um: float = 0.0):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".part")
        self.px = pixel_size_um
        self.fh = open(self.tmp, "w")  # noqa: SIM115 - a streaming writer: closed by its close()
        self.fh.write('{"type": "FeatureCollection", "features": [\n')
        self.first = True

    def add(self, o: ObjectStats, geom) -> None:
        from shapely.geometry import mapping

        measurements = {
            "Area px^2": o.area,
            "Centroid X px": round(o.centroid_x, 3),
            "Centroid Y px": round(o.centroid_y, 3),
            "Mean intensity": round(o.mean_intensity, 4),
            "fosgate label": o.label,
        }
        if self.px:
            measurements["Area µm^2"] = round(o.area * self.px**2, 4)
        feature = {
            "type": "Feature",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fosgate:{self.path.name}:{o.label}")),
            "geometry": mapping(geom),
            "properties": {
                "objectType": "detection",
                "name": f"cell-{o.label:06d}",
                "classification": {"name": CLASS_NAME, "color": CLASS_COLOR},
                "isLocked": False,
                "measurements": measurements,
            },
        }
        self.fh.write(("" if self.first else ",\n") + json.dumps(feature))
        self.first = False

    def close(self) -> Path:
        self.fh.write("\n]}\n")
        self.fh.close()
        self.tmp.replace(self.path)
        return self.path


def write_roi_zip(path: Path, polygons: Iterable[tuple[ObjectStats, object]]) -> Path:
    """ImageJ ROI set of (object, polygon) pairs."""
    w = RoiZipWriter(path)
    for o, g in polygons:
        w.add(o, g)
    return w.close()


def write_geojson(path: Path, polygons: Iterable[tuple[ObjectStats, object]], pixel_size_um: float = 0.0) -> Path:
    """QuPath GeoJSON of (object, polygon) pairs."""
    w = GeoJsonWriter(path, pixel_size_um)
    for o, g in polygons:
        w.add(o, g)
    return w.close()


COUNT_COLUMNS = ["label", "area_px", "area_um2", "centroid_x", "centroid_y", "bbox_x", "bbox_y", "bbox_width",
                 "bbox_height", "mean_intensity"]


def write_counts_csv(path: Path, objects: Iterable[ObjectStats], pixel_size_um: float = 0.0) -> Path:
    """One row per object (slide pixel coordinates) and a final ``total`` row with the count."""
    tmp = Path(path).with_name(Path(path).name + ".part")
    n = 0
    area = 0
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(COUNT_COLUMNS)
        for o in objects:
            y0, x0, y1, x1 = o.bbox
            wr.writerow([o.label, o.area, f"{o.area * pixel_size_um**2:.4f}" if pixel_size_um else "",
                         f"{o.centroid_x:.3f}", f"{o.centroid_y:.3f}", x0, y0, x1 - x0, y1 - y0,
                         f"{o.mean_intensity:.4f}"])
            n += 1
            area += o.area
        wr.writerow(["total", area, f"{area * pixel_size_um**2:.4f}" if pixel_size_um else "", "", "", "", "", "", "",
                     f"count={n}"])
    tmp.replace(path)
    return Path(path)


def write_overlay_png(path: Path, read: Callable[[int, int, int, int], np.ndarray], labels, height: int, width: int,
                      max_side: int = 2048) -> Path:
    """A downsampled picture of the slide (contrast-stretched grey or RGB) with object outlines."""
    from PIL import Image
    from skimage.segmentation import find_boundaries

    step = max(1, int(np.ceil(max(height, width) / max_side)))
    band = max(step, (512 // step) * step)
    rows_img, rows_lab = [], []
    for y0 in range(0, height, band):
        y1 = min(height, y0 + band)
        rows_img.append(read(y0, y1, 0, width)[::step, ::step].astype(np.float32))
        rows_lab.append(np.asarray(labels[y0:y1])[::step, ::step].copy())  # a view would pin the band
    img = np.concatenate(rows_img)
    lab = np.concatenate(rows_lab)
    lo, hi = np.percentile(img, 1), np.percentile(img, 99.8)
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img[..., :3]
    rgb = (rgb * 255).astype(np.uint8)
    edges = find_boundaries(lab, mode="inner") if step == 1 else (lab > 0) & find_boundaries(lab > 0, mode="inner")
    if step > 1:
        rgb[lab > 0] = (0.6 * rgb[lab > 0] + 0.4 * np.array([255, 255, 0])).astype(np.uint8)
    rgb[edges] = [255, 255, 0]
    tmp = Path(path).with_name(Path(path).name + ".part")
    Image.fromarray(rgb).save(tmp, format="PNG")
    tmp.replace(path)
    return Path(path)
